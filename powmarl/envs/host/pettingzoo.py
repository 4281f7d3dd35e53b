"""PettingZoo ``ParallelEnv`` as a host env: ``from_pettingzoo(env_or_factory)``, id ``pettingzoo``.

Mapping to :class:`~powmarl.envs.host.base.HostEnv` (docs/envs/pettingzoo.md):

- agents: ``env.possible_agents`` in their order are the array axis A (fixed for the run);
- obs [A, O]: each agent's observation flattened (:mod:`powmarl.envs.host.spaces`) and
  zero-padded to the largest agent's size; a ``Dict`` observation with an ``"observation"``
  key is read as (observation, action mask);
- avail [A, U]: the ``"action_mask"`` of the observation dict, else of the agent's info,
  else all of its actions; U is the largest agent's action count, the padding unavailable;
- reward: the sum of the step's rewards of the agents that acted (``reward="mean"``: their
  mean);
- state [X]: ``env.state()`` when the env declares a ``state_space``, else the concatenated
  obs [A * O];
- agents that left the episode (terminated, truncated, or gone from ``env.agents``) get zero
  obs and only the no-op ``noop_action`` available; they are sent no action;
- the episode ends when no agent is left, or after ``episode_limit`` steps (truncated). It
  is ``truncated`` when an agent still playing at the end was truncated (a time limit: the
  learner bootstraps through it) and ``terminated`` otherwise, never both.

The PettingZoo package is only imported when an env is built (``import powmarl`` never
imports it).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from powmarl.envs import contract
from powmarl.envs.host import spaces
from powmarl.envs.host.base import HostEnvDefaults
from powmarl.types import EnvSpec

EXTRA = "pettingzoo"
#: attributes that name an env's most steps per episode, in the order they are read
LIMIT_ATTRIBUTES = ("max_cycles", "max_steps", "max_episode_steps")


def _is_parallel_env(obj: Any) -> bool:
    return not isinstance(obj, type) and all(
        hasattr(obj, n) for n in ("possible_agents", "reset", "step", "action_space")
    )


def _not_parallel(obj: Any, where: str) -> ValueError:
    if hasattr(obj, "agent_iter"):
        return ValueError(
            f"{where}: got an AEC env ({type(obj).__name__}); wrap it with "
            "pettingzoo.utils.conversions.aec_to_parallel(env), or use the module's parallel_env"
        )
    return ValueError(
        f"{where}: expected a PettingZoo ParallelEnv or a function returning one, got "
        f"{type(obj).__name__}"
    )


def _episode_limit(env: Any, episode_limit: int | None) -> int:
    if episode_limit is not None:
        if (
            isinstance(episode_limit, bool)
            or int(episode_limit) != episode_limit
            or (episode_limit < 1)
        ):
            raise ValueError(f"episode_limit: must be a positive int, got {episode_limit!r}")
        return int(episode_limit)
    for obj in (env, getattr(env, "unwrapped", None)):
        for name in LIMIT_ATTRIBUTES:
            value = getattr(obj, name, None)
            if isinstance(value, int | np.integer) and value > 0:
                return int(value)
    raise ValueError(
        f"episode_limit: {type(env).__name__} declares none of {', '.join(LIMIT_ATTRIBUTES)}; "
        "pass episode_limit=N (the most steps of an episode)"
    )


def _split_obs_space(space: Any) -> tuple[Any, bool]:
    """(the observation part of ``space``, whether the observation carries an action mask)."""
    import gymnasium.spaces as gs

    if isinstance(space, gs.Dict) and "observation" in space.spaces:
        return space.spaces["observation"], "action_mask" in space.spaces
    return space, False


class PettingZooEnv(HostEnvDefaults):
    """A PettingZoo ``ParallelEnv`` (``pz``) as a host env (see the module docstring).

    Built by :func:`from_pettingzoo` or ``powmarl.envs.make("pettingzoo", env=...)``.
    """

    obs_last_action = False  # EPyMARL's value-based configs (qmix.yaml, vdn.yaml)
    obs_agent_id = True
    info_keys: tuple[str, ...] = ()

    def __init__(
        self, pz, reward: str = "sum", episode_limit: int | None = None, noop_action: int = 0
    ):
        if not _is_parallel_env(pz):
            raise _not_parallel(pz, "from_pettingzoo")
        self.pz, self.reward = pz, spaces.check_reward_mode(reward)
        self.agents = tuple(pz.possible_agents)
        self._obs_spaces = [_split_obs_space(pz.observation_space(a))[0] for a in self.agents]
        self._masked_obs = [_split_obs_space(pz.observation_space(a))[1] for a in self.agents]
        actions = [spaces.discrete_actions(pz.action_space(a), f"pettingzoo: agent {a!r}")
                   for a in self.agents]  # fmt: skip
        self._counts = [n for n, _ in actions]
        self._starts = [start for _, start in actions]
        if isinstance(noop_action, bool) or not 0 <= int(noop_action) < min(self._counts):
            raise ValueError(
                f"noop_action: must be an action every agent has, in [0, {min(self._counts)}), "
                f"got {noop_action!r}"
            )
        self.noop_action = int(noop_action)
        obs_dim = max(spaces.flat_dim(s) for s in self._obs_spaces)
        state_space = getattr(pz, "state_space", None)
        self._env_state = state_space is not None
        state_dim = spaces.flat_dim(state_space) if self._env_state else len(self.agents) * obs_dim
        self.spec = EnvSpec(
            num_agents=len(self.agents),
            num_actions=max(self._counts),
            obs_dim=obs_dim,
            state_dim=state_dim,
            episode_limit=_episode_limit(pz, episode_limit),
        )
        self._t, self._live = 0, ()
        self._views = self._dead_views()

    def _dead_views(self):
        spec = self.spec
        obs = np.zeros((spec.num_agents, spec.obs_dim), np.float32)
        avail = np.zeros((spec.num_agents, spec.num_actions), bool)
        avail[:, self.noop_action] = True
        return obs, np.zeros(spec.state_dim, np.float32), avail

    def _read(self, observations: dict, infos: dict, shown: tuple[str, ...]) -> None:
        """The views of the ``shown`` agents' observations and infos (the others: zero
        obs, only the no-op)."""
        obs, _, avail = self._dead_views()
        for i, agent in enumerate(self.agents):
            if agent not in shown or agent not in observations:
                continue
            value, mask = observations[agent], None
            if self._masked_obs[i] or (isinstance(value, dict) and "observation" in value):
                value, mask = value["observation"], value.get("action_mask")
            if mask is None:
                mask = (infos.get(agent) or {}).get("action_mask")
            if mask is None:
                mask = np.ones(self._counts[i], bool)
            obs[i] = spaces.flat_obs(self._obs_spaces[i], value, self.spec.obs_dim)
            avail[i] = spaces.padded_mask(mask, self.spec.num_actions)
            if not avail[i].any():  # nothing allowed now (e.g. not its turn): it waits
                avail[i, self.noop_action] = True
        if self._env_state:
            state = np.asarray(self.pz.state(), np.float32).reshape(-1)
        else:
            state = obs.reshape(-1)
        self._views = (obs, state, avail)

    def reset(self, seed: int | None = None):
        observations, infos = self.pz.reset(seed=None if seed is None else int(seed))
        self._t = 0
        self._live = tuple(a for a in self.agents if a in self.pz.agents)
        self._read(observations, infos or {}, self._live)
        return self._views

    def step(self, actions):
        actions = np.asarray(actions)
        sent = {a: int(actions[i]) + self._starts[i]
                for i, a in enumerate(self.agents) if a in self._live}  # fmt: skip
        observations, rewards, terms, truncs, infos = self.pz.step(sent)
        self._t += 1
        reward = spaces.team_reward([rewards.get(a, 0.0) for a in self._live], self.reward)
        before = self._live
        playing = set(self.pz.agents)
        self._live = tuple(
            a
            for a in self.agents
            if a in playing and not (terms.get(a, False) or truncs.get(a, False))
        )
        terminated, truncated = False, False
        if not self._live:  # everyone left: a time-out if one still playing was truncated
            truncated = any(truncs.get(a, False) and not terms.get(a, False) for a in before)
            terminated = not truncated
        elif self._t >= self.spec.episode_limit:
            truncated = True
        # at the end, those who played the last step keep their final views: a time-out
        # bootstraps from them
        ended = terminated or truncated
        self._read(observations, infos or {}, before if ended else self._live)
        return reward, terminated, truncated, {}

    def get_obs(self) -> np.ndarray:
        return self._views[0]

    def get_state(self) -> np.ndarray:
        return self._views[1]

    def get_avail_actions(self) -> np.ndarray:
        return self._views[2]

    def close(self) -> None:
        self.pz.close()


def _built(factory: Callable[[], Any], options: dict[str, Any]) -> PettingZooEnv:
    """``factory()`` wrapped, with a ``clone`` that does the same again when the factory
    pickles (spawned workers then build their own copies). A factory that does not pickle
    (a closure, such as the ``parallel_env`` of PettingZoo's and mpe2's modules) sets no
    ``clone``: the env object is pickled instead, where it can be."""
    pz = factory()
    if not _is_parallel_env(pz):
        raise _not_parallel(pz, f"from_pettingzoo: the factory {factory!r} returned")
    env = PettingZooEnv(pz, **options)
    clone = functools.partial(_built, factory, options)
    if contract.pickles(clone):
        env.clone = clone
    return env


def from_pettingzoo(
    env_or_factory: Any,
    *,
    reward: str = "sum",
    episode_limit: int | None = None,
    noop_action: int = 0,
) -> PettingZooEnv:
    """A host env over a PettingZoo ``ParallelEnv``, or over a function returning one.

    Given a function that pickles (one defined at module level, or a ``functools.partial``
    of one), copies for worker processes are made by calling it again; otherwise (an env
    object, or a closure such as mpe2's ``simple_spread_v3.parallel_env``) by pickling the
    env, and in this process when that fails too. ``reward``: "sum" or "mean" of the agents'
    rewards. ``episode_limit``: the most steps of an episode (default: the env's
    ``max_cycles``). ``noop_action``: the one action of agents that left the episode.
    """
    spaces.import_gymnasium("from_pettingzoo", EXTRA)
    options = {"reward": reward, "episode_limit": episode_limit, "noop_action": noop_action}
    if _is_parallel_env(env_or_factory):
        return PettingZooEnv(env_or_factory, **options)
    if callable(env_or_factory):
        return _built(env_or_factory, options)
    raise _not_parallel(env_or_factory, "from_pettingzoo")


def env_function(name: str) -> Callable[..., Any]:
    """The function ``name`` names: ``package.module`` (its ``parallel_env``) or
    ``package.module:function``."""
    module_name, _, attribute = name.partition(":")
    try:
        importlib.import_module("pettingzoo")
    except ImportError as err:
        raise ImportError(f"pettingzoo: needs pettingzoo; pip install 'powmarl[{EXTRA}]'") from err
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"pettingzoo: env={name!r}: cannot import {module_name!r} ({err}); install the "
            "package that provides it (MPE: pip install mpe2)"
        ) from err
    function = getattr(module, attribute or "parallel_env", None)
    if not callable(function):
        raise ValueError(  # noqa: TRY004 - a wrong value of the env argument
            f"env: {module_name!r} has no function {attribute or 'parallel_env'!r}; give "
            "'package.module' (with a parallel_env) or 'package.module:function'"
        )
    return function


def make_pettingzoo(
    env: str = "mpe2.simple_spread_v3",
    env_kwargs: dict | None = None,
    reward: str = "sum",
    episode_limit: int | None = None,
    noop_action: int = 0,
) -> PettingZooEnv:
    """The registry's ``pettingzoo`` id: ``env`` names the ParallelEnv's module (or
    ``module:function``), ``env_kwargs`` its keyword arguments."""
    if env_kwargs is not None and not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs: must be a dict of keyword arguments, got {env_kwargs!r}")
    pz = env_function(env)(**(env_kwargs or {}))
    if not _is_parallel_env(pz):
        raise _not_parallel(pz, f"env={env!r}")
    return PettingZooEnv(pz, reward=reward, episode_limit=episode_limit, noop_action=noop_action)
