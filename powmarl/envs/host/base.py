"""The host-environment protocol: Python (NumPy) multi-agent envs stepped outside JAX.

A host env is a stateful Python object, as SMAC's ``StarCraft2Env`` is: ``reset`` starts
an episode, ``step`` advances it, and ``get_obs``/``get_state``/``get_avail_actions`` read
the current step. Shapes follow the data contract (DESIGN sec. 3): agents are an array
axis, the team reward is one float, ``terminated`` (natural end, no bootstrap) and
``truncated`` (time limit, bootstrap through it) are distinct. ``info`` has the fixed keys
``info_keys`` with float values; the runner sums them over an episode (``battle_won``
gives ``eval/battle_won_mean``, the test win rate).

Host envs are trained by :mod:`powmarl.runners.host_runner` with the same jitted agent,
buffer and learner as JAX envs; only the rollout runs in Python. Their optional hooks are
:data:`HOST_HOOKS` (absent or None = the default), read only through
:mod:`powmarl.envs.contract`; :class:`HostEnvDefaults` spells the defaults out.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from powmarl.envs.base import COMMON_HOOKS, EnvDefaults, Hook
from powmarl.types import EnvSpec

#: Every optional hook of a host env.
HOST_HOOKS: tuple[Hook, ...] = (
    Hook(
        "max_copies",
        "unlimited",
        "contract.max_copies: vector.make_copies and the host runner cap the env copies "
        "(StarCraft II: 1, one game process); episodes beyond it run in waves",
    ),
    Hook(
        "clone",
        "made again from the registry (envs.make with the same arguments), else by pickling "
        "the env; with neither the runner keeps one copy",
        "contract.copy_factory: vector.make_copies and worker processes build copies",
    ),
    *COMMON_HOOKS,
)

#: The members every host env has (those of :class:`HostEnv`); attributes, then methods.
HOST_ATTRIBUTES = ("spec", "obs_last_action", "obs_agent_id", "info_keys")
HOST_METHODS = ("reset", "step", "get_obs", "get_state", "get_avail_actions", "close")


@runtime_checkable
class HostEnv(Protocol):
    """A cooperative multi-agent Python environment with a team reward.

    Optional hooks (:data:`HOST_HOOKS`; absent or None = the default):

    - ``max_copies``: a positive int, the most copies that may exist at once (unlimited).
    - ``clone() -> env``: a fresh equal copy (default: the registry makes one again, else
      the env is pickled; picklable copies let the runner use worker processes).
    - ``obs_dtype``: a NumPy float dtype the replay buffer stores obs/state in (float32).
    - ``run_defaults``: a mapping of Config/HParams field -> value (default {}).
    - ``render_frame(frame, env_params)``: as for JAX envs (default: not renderable).
    - ``main_metric``: as for JAX envs (default: ``battle_won`` where reported, else return).
    """

    spec: EnvSpec
    #: Agent-input flags the reference code uses for this environment.
    obs_last_action: bool
    obs_agent_id: bool
    #: The keys of ``step``'s info dict (the same every step).
    info_keys: tuple[str, ...]

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start an episode: (obs [A, O], state [X], avail_actions [A, U] bool)."""
        ...

    def step(self, actions: np.ndarray) -> tuple[float, bool, bool, dict[str, float]]:
        """Apply ``actions`` [A] int: (reward, terminated, truncated, info)."""
        ...

    def get_obs(self) -> np.ndarray:  # [A, O]
        ...

    def get_state(self) -> np.ndarray:  # [X]
        ...

    def get_avail_actions(self) -> np.ndarray:  # [A, U] bool, at least one True per agent
        ...

    def close(self) -> None: ...


def is_host_env(env: Any) -> bool:
    """True for a host (Python) env, False for a JAX env; ValueError naming what is missing
    for anything else (:func:`powmarl.envs.contract.env_kind` decides)."""
    from powmarl.envs.contract import env_kind

    return env_kind(env) == "host"


class HostEnvDefaults(EnvDefaults):
    """The defaults of every hook of :data:`HOST_HOOKS`; override the ones an env has."""

    max_copies: int | None = None  # unlimited
    #: None: copies come from the registry or by pickling. Override with a method.
    clone: Any = None


def check_step_views(env: HostEnv, obs, state, avail) -> None:
    """Raise ValueError naming the array when a host env's views disagree with its spec."""
    spec = env.spec
    expected = {
        "obs": (obs, (spec.num_agents, spec.obs_dim)),
        "state": (state, (spec.state_dim,)),
        "avail_actions": (avail, (spec.num_agents, spec.num_actions)),
    }
    for name, (value, shape) in expected.items():
        if np.shape(value) != shape:
            raise ValueError(
                f"{type(env).__name__}: {name} has shape {np.shape(value)}, its spec says {shape}"
            )
    if not np.all(np.asarray(avail, bool).any(axis=-1)):
        raise ValueError(f"{type(env).__name__}: some agent has no available action")
