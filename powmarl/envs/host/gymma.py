"""Gymnasium multi-agent envs with EPyMARL's ``gymma`` conventions, as a host env (id ``gymma``).

``powmarl.envs.make("gymma", key="lbforaging:Foraging-8x8-2p-3f-v3", time_limit=50)`` is
EPyMARL's ``--env-config=gymma with env_args.key=... env_args.time_limit=50``. The env is
``gymnasium.make(key)`` (``module:id`` imports the module that registers the id); its
spaces are ``Tuple``s with one entry per agent, its step takes a list of actions and
returns per-agent rewards. As EPyMARL's ``GymmaWrapper`` (docs/envs/gymma.md compares them):

- obs [A, O]: each agent's observation flattened and zero-padded to the largest agent's
  size; state [X]: the concatenated padded obs (X = A * O);
- avail [A, U]: all of an agent's own actions (U: the largest agent's count; the padding
  unavailable). The env's own masks are not read, as in EPyMARL;
- reward: the per-agent rewards summed (``reward="mean"``: their mean), a scalar reward
  as it is; ``done`` a list counts when every entry is set;
- the time limit ``time_limit`` is a truncation (the learner bootstraps through it), also
  when the env reports its own step limit as done at the same step (LBF and RWARE do);
  an earlier ``done`` is a natural end. EPyMARL's episode runner stores a time-out as
  terminal (gymma sets no ``episode_limit`` info); ``timeout_terminates=True`` does that.

Discrete action spaces only (:func:`powmarl.envs.host.spaces.discrete_actions`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from powmarl.envs.host import spaces
from powmarl.envs.host.base import HostEnvDefaults
from powmarl.types import EnvSpec

EXTRA = "gymma"
#: The time limits of EPyMARL's README per suite (its gymma.yaml default is 100).
README_TIME_LIMITS = {"lbforaging": 50, "rware": 500, "matrixgames": 25}


def _make(key: str, env_kwargs: dict):
    gymnasium = spaces.import_gymnasium("gymma", EXTRA)
    module = key.partition(":")[0] if ":" in key else None
    try:
        # EPyMARL's gym.make(key); the env checker is off (it warns on per-agent rewards)
        return gymnasium.make(key, disable_env_checker=True, **env_kwargs)
    except ModuleNotFoundError as err:
        raise ImportError(
            f"gymma: key={key!r}: cannot import {module or err.name!r} ({err}); pip install "
            f"'powmarl[{EXTRA}]' for lbforaging and rware, or the package that registers it"
        ) from err
    except gymnasium.error.Error as err:
        raise ValueError(f"key: gymnasium cannot make {key!r}: {err}") from err


def _agent_spaces(space, name: str, who: str) -> list:
    import gymnasium.spaces as gs

    if not isinstance(space, gs.Tuple):
        raise ValueError(  # noqa: TRY004 - a wrong argument value (the env's key), not a type
            f"gymma: {who}'s {name} is a {type(space).__name__}; gymma envs have a Tuple of "
            "one space per agent"
        )
    return list(space.spaces)


class GymmaEnv(HostEnvDefaults):
    """A gymnasium multi-agent env with Tuple spaces as a host env (see the module docstring)."""

    obs_last_action = False  # EPyMARL's value-based configs (qmix.yaml, vdn.yaml)
    obs_agent_id = True
    info_keys: tuple[str, ...] = ()

    def __init__(
        self,
        key: str,
        time_limit: int = 50,
        reward: str = "sum",
        timeout_terminates: bool = False,
        env_kwargs: dict | None = None,
    ):
        if isinstance(time_limit, bool) or not isinstance(time_limit, int) or time_limit < 1:
            raise ValueError(f"time_limit: must be a positive int, got {time_limit!r}")
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ValueError(f"env_kwargs: must be a dict of keyword arguments, got {env_kwargs!r}")
        self.key, self.reward = key, spaces.check_reward_mode(reward)
        self.timeout_terminates = bool(timeout_terminates)
        self.gym_env = _make(key, env_kwargs or {})
        self._obs_spaces = _agent_spaces(self.gym_env.observation_space, "observation_space", key)
        action_spaces = _agent_spaces(self.gym_env.action_space, "action_space", key)
        self._counts = [spaces.discrete_actions(s, f"gymma: {key} agent {i}")[0]
                        for i, s in enumerate(action_spaces)]  # fmt: skip
        n = int(getattr(self.gym_env.unwrapped, "n_agents", len(action_spaces)))
        obs_dim = max(spaces.flat_dim(s) for s in self._obs_spaces)
        self.spec = EnvSpec(n, max(self._counts), obs_dim, n * obs_dim, time_limit)
        self._avail = np.stack([spaces.padded_mask(np.ones(c, bool), self.spec.num_actions)
                                for c in self._counts])  # fmt: skip
        self._obs = np.zeros((n, obs_dim), np.float32)
        self._t = 0

    def _read(self, observations) -> None:
        self._obs = np.stack(
            [
                spaces.flat_obs(space, value, self.spec.obs_dim)
                for space, value in zip(self._obs_spaces, observations)
            ]
        )

    def reset(self, seed: int | None = None):
        observations, _ = self.gym_env.reset(seed=None if seed is None else int(seed))
        self._t = 0
        self._read(observations)
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions):
        observations, rewards, done, truncated, _ = self.gym_env.step(
            [int(a) for a in np.asarray(actions)]
        )
        self._t += 1
        self._read(observations)
        if isinstance(rewards, Iterable):
            reward = spaces.team_reward(list(rewards), self.reward)
        else:
            reward = float(rewards)
        done = all(done) if isinstance(done, Iterable) else bool(done)
        truncated = all(truncated) if isinstance(truncated, Iterable) else bool(truncated)
        timeout = self._t >= self.spec.episode_limit or (truncated and not done)
        if timeout and not self.timeout_terminates:
            return reward, False, True, {}
        return reward, bool(done or timeout), False, {}

    def get_obs(self) -> np.ndarray:
        return self._obs

    def get_state(self) -> np.ndarray:
        return self._obs.reshape(-1)

    def get_avail_actions(self) -> np.ndarray:
        return self._avail

    def close(self) -> None:
        self.gym_env.close()


def make_gymma(
    key: str = "lbforaging:Foraging-8x8-2p-3f-v3",
    time_limit: int | None = None,
    reward: str = "sum",
    timeout_terminates: bool = False,
    env_kwargs: dict | None = None,
) -> GymmaEnv:
    """The registry's ``gymma`` id. ``time_limit`` None: EPyMARL's README value for the
    suite of ``key`` (LBF 50, RWARE 500, matrix games 25), else gymma.yaml's 100."""
    if time_limit is None:
        time_limit = README_TIME_LIMITS.get(key.partition(":")[0] if ":" in key else "", 100)
    return GymmaEnv(key, time_limit, reward, timeout_terminates, env_kwargs)
