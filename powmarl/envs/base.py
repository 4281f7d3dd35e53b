"""The JAX environment protocol: gymnax-style pure ``reset``/``step``, plus optional hooks.

An environment is a plain Python object holding only static configuration
(its :class:`EnvSpec`); everything that changes lives in the explicit state,
everything tunable that does not change shapes lives in ``params`` (a pytree,
so it can be vmapped), and randomness comes in through ``key``.
Environments do not auto-reset: the runner resets at the start of each episode
and ignores steps taken after an episode has ended.

Besides the members of :class:`MultiAgentEnv`, a JAX env may define the optional hooks of
:data:`JAX_HOOKS`; an absent hook, or one set to None, means its default. They are read only
through :mod:`powmarl.envs.contract` and validated by ``contract.checked`` when the env is
made (docs/envs/contract.md lists them all). :class:`JaxEnvDefaults` spells the defaults
out for envs that want to inherit them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

from powmarl.types import Array, EnvParams, EnvSpec, EnvState, PRNGKey, TimeStep


class Hook(NamedTuple):
    """One optional hook of an environment protocol: its name, its default, its reader."""

    name: str
    default: str  # what happens when the env does not define it (or sets it to None)
    reader: str  # who reads it, through which contract accessor


#: Hooks of both protocols.
COMMON_HOOKS: tuple[Hook, ...] = (
    Hook(
        "obs_dtype",
        "float32",
        "contract.obs_dtype: the host runner's replay buffer dtype for obs and state; "
        "a JAX env emits obs in it (conformance checks) and its buffer keeps what is emitted",
    ),
    Hook(
        "run_defaults",
        "{} (no env-specific settings)",
        "contract.run_defaults: settings.py, Config/HParams values between the algorithm's "
        "and a preset's",
    ),
    Hook(
        "render_frame",
        "not renderable: asking for a GIF raises ValueError naming the env",
        "contract.renderer: render.draw_frames (powmarl eval --render)",
    ),
    Hook(
        "main_metric",
        "the win rate (battle_won) where the env reports it, else the greedy test return",
        "contract.main_metric: io.best ranks evaluations by it to keep the best agent "
        "(the absolute metric, powmarl eval --best)",
    ),
)

#: Every optional hook of a JAX env.
JAX_HOOKS: tuple[Hook, ...] = (
    Hook(
        "replay_encode",
        "none: the buffer stores obs, state and avail_actions",
        "contract.replay_codec: the JAX rollout stores replay_encode(env_state) per step",
    ),
    Hook(
        "replay_decode",
        "none (must come with replay_encode)",
        "contract.replay_codec: the JAX learner step restores (obs, state, avail_actions)",
    ),
    *COMMON_HOOKS,
)

#: The members every JAX env has (those of :class:`MultiAgentEnv`); attributes, then methods.
JAX_ATTRIBUTES = ("spec", "obs_last_action", "obs_agent_id")
JAX_METHODS = ("default_params", "reset", "step")


@runtime_checkable
class MultiAgentEnv(Protocol):
    """A cooperative multi-agent environment with a team reward.

    Optional hooks (:data:`JAX_HOOKS`; absent or None = the default):

    - ``replay_encode(env_state) -> record`` and ``replay_decode(records) -> (obs, state,
      avail_actions)``: a compact replay record of a step (a pytree of arrays) and its exact
      inverse over any leading dims ([..., A, O], [..., X], [..., A, U]). Both or neither.
    - ``obs_dtype``: a NumPy float dtype (default float32), the dtype obs/state are emitted in.
    - ``run_defaults``: a mapping of Config/HParams field -> value (default {}).
    - ``render_frame(frame, env_params) -> PIL.Image | None``: draws one frame of
      :func:`powmarl.render.play_episode` (a dict with "state" before the step, "actions"
      [A] or None on the final entry, "reward", "return", "t"); None leaves the frame out.
    - ``main_metric``: ``"return"`` or an info key (its per-episode sum, averaged over the
      greedy episodes: a win or arrival rate) that ranks evaluations for the absolute metric
      (default: ``battle_won`` where reported, else the return).
    """

    spec: EnvSpec
    #: Agent-input flags the reference code uses for this environment.
    obs_last_action: bool
    obs_agent_id: bool

    def default_params(self) -> EnvParams: ...

    def reset(self, key: PRNGKey, params: EnvParams) -> tuple[TimeStep, EnvState]: ...

    def step(
        self, key: PRNGKey, state: EnvState, actions: Array, params: EnvParams
    ) -> tuple[TimeStep, EnvState]: ...


class EnvDefaults:
    """The defaults of :data:`COMMON_HOOKS`, for either kind of env to inherit."""

    #: None: float32 (a JAX env declaring a dtype must emit obs and state in it).
    obs_dtype: Any = None
    run_defaults: Mapping[str, Any] = MappingProxyType({})
    #: None: not renderable. Override with ``def render_frame(self, frame, env_params)``.
    render_frame: Any = None
    #: None: battle_won where reported, else the return. Else "return" or an info key.
    main_metric: str | None = None


class JaxEnvDefaults(EnvDefaults):
    """The defaults of every hook of :data:`JAX_HOOKS`; override the ones an env has."""

    #: None: no compact replay. Override both with methods to get one.
    replay_encode: Any = None
    replay_decode: Any = None
