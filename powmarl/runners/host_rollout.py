"""Whole-episode rollouts of host (Python) envs into the JAX rollout's ``EpisodeBatch``.

Episodes run in waves of up to ``len(vec)`` lockstep copies. Each episode is padded to
T = episode_limit exactly as :mod:`powmarl.runners.rollout` pads it: slot t holds the
observation before action t; after the episode ends every slot is zero and
``filled = False``; ``terminated`` is set only on a natural end (a time-limit
truncation leaves it False, so the learner bootstraps through it); slot T (the
observation after the last action) is kept only when the episode ran T steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.core.exploration import epsilon_greedy
from powmarl.envs.host.vector import HostVectorEnv
from powmarl.learner import Learner
from powmarl.runners.rollout import EpisodeStats
from powmarl.types import EpisodeBatch

#: ``policy(obs [n, A, O], avail [n, A, U]) -> actions [n, A]``; a new policy per wave.
Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]


def make_act(learner: Learner):
    """Jitted ``act(agent_params, hidden [n, A, H], obs, last [n, A], avail, key, epsilon)
    -> (hidden, actions [n, A] int32, key)``: one GRU step of the shared agent and
    epsilon-greedy over available actions, as the JAX rollout's step; ``key`` is split
    once per call and the unused half returned."""

    def act(agent_params, hidden, obs, last_actions, avail, key, epsilon):
        key, act_key = jax.random.split(key)
        inputs = learner.agent_inputs(jnp.asarray(obs), last_actions)  # [n, A, I]
        hidden, q = jax.vmap(lambda h, x: learner.agent.apply(agent_params, h, x))(hidden, inputs)
        actions = epsilon_greedy(act_key, q, jnp.asarray(avail), epsilon)
        return hidden, actions, key

    return jax.jit(act)


class AgentPolicy:
    """The shared agent acting in ``n`` lockstep envs: recurrent state, last actions, key."""

    def __init__(self, act, agent_params, hidden_dim: int, num_agents: int, n: int, key, epsilon):
        self.act, self.params, self.epsilon, self.key = act, agent_params, epsilon, key
        self.hidden = jnp.zeros((n, num_agents, hidden_dim), jnp.float32)
        self.last = jnp.full((n, num_agents), -1, jnp.int32)

    def __call__(self, obs: np.ndarray, avail: np.ndarray) -> np.ndarray:
        self.hidden, actions, self.key = self.act(
            self.params, self.hidden, obs, self.last, avail, self.key, self.epsilon
        )
        self.last = actions
        return np.asarray(actions)


def empty_episodes(spec, n: int, obs_dtype) -> dict[str, np.ndarray]:
    """Zero (all padding) arrays for ``n`` episodes, the fields of :class:`EpisodeBatch`."""
    t, a, u = spec.episode_limit, spec.num_agents, spec.num_actions
    return {
        "obs": np.zeros((n, t + 1, a, spec.obs_dim), obs_dtype),
        "state": np.zeros((n, t + 1, spec.state_dim), obs_dtype),
        "avail_actions": np.zeros((n, t + 1, a, u), bool),
        "actions": np.zeros((n, t, a), np.uint8),
        "reward": np.zeros((n, t), np.float32),
        "terminated": np.zeros((n, t), bool),
        "filled": np.zeros((n, t), bool),
    }


def play_wave(vec: HostVectorEnv, policy: Policy, seeds: Sequence[int], obs_dtype=np.float32):
    """Play one episode in each of the first ``len(seeds)`` copies until all have ended.

    Returns (fields of an EpisodeBatch as NumPy arrays [n, ...], returns [n], lengths [n],
    info sums {key: [n]}).
    """
    spec = vec.spec
    n, limit = len(seeds), spec.episode_limit
    out = empty_episodes(spec, n, obs_dtype)
    obs, state, avail = vec.reset(seeds)
    alive = np.ones(n, bool)
    returns = np.zeros(n, np.float32)
    lengths = np.zeros(n, np.int32)
    info_sums = {k: np.zeros(n, np.float32) for k in vec.info_keys}
    for t in range(limit):
        out["obs"][alive, t] = obs[alive]
        out["state"][alive, t] = state[alive]
        out["avail_actions"][alive, t] = avail[alive]
        actions = np.asarray(policy(obs, avail)).astype(np.int32)
        reward, terminated, truncated, info, views = vec.step(actions, alive)
        out["actions"][alive, t] = actions[alive]
        out["reward"][alive, t] = reward[alive]
        out["terminated"][:, t] = alive & terminated
        out["filled"][:, t] = alive
        returns += np.where(alive, reward, 0.0).astype(np.float32)
        lengths += alive
        for k in info_sums:
            info_sums[k] += np.where(alive, info[k], 0.0).astype(np.float32)
        alive = alive & ~(terminated | truncated)
        # ended and inactive copies act on stale views; their actions are never applied
        obs, state, avail = views
        if not alive.any():
            break
    # slot T: the observation after the last action, kept when the episode ran T steps
    full = lengths == limit
    if full.any():
        last_obs, last_state, last_avail = obs, state, avail
        out["obs"][full, limit] = last_obs[full]
        out["state"][full, limit] = last_state[full]
        out["avail_actions"][full, limit] = last_avail[full]
    return out, returns, lengths, info_sums


def play_episodes(
    vec: HostVectorEnv,
    make_policy: Callable[[int, int], Policy],
    seeds: Sequence[int],
    obs_dtype=np.float32,
) -> tuple[EpisodeBatch, EpisodeStats]:
    """``len(seeds)`` episodes in waves of ``len(vec)``; ``make_policy(wave, n)`` gives the
    policy of each wave. Returns the padded EpisodeBatch (NumPy leaves [E, ...]) and the
    per-episode stats, as the JAX rollout does."""
    parts = []
    for wave, start in enumerate(range(0, len(seeds), len(vec))):
        wave_seeds = seeds[start : start + len(vec)]
        parts.append(play_wave(vec, make_policy(wave, len(wave_seeds)), wave_seeds, obs_dtype))
    fields = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    stats = EpisodeStats(
        returns=np.concatenate([p[1] for p in parts]),
        lengths=np.concatenate([p[2] for p in parts]),
        info={k: np.concatenate([p[3][k] for p in parts]) for k in vec.info_keys},
    )
    return EpisodeBatch(**fields), stats
