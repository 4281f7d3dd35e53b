"""Whole-episode rollouts of host (Python) envs into the JAX rollout's ``EpisodeBatch``.

Every member plays its episodes at the same time: the (member, episode) pairs are laid on
the env copies (in worker processes or in-process) in waves of up to ``len(vec)``
lockstep copies, and one jitted call acts for all members x episodes per step. Each episode is padded to
T = episode_limit exactly as :mod:`powmarl.runners.rollout` pads it: slot t holds the
observation before action t; after the episode ends every slot is zero and
``filled = False``; ``terminated`` is set only on a natural end (a time-limit
truncation leaves it False, so the learner bootstraps through it); slot T (the
observation after the last action) is kept only when the episode ran T steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.learner import Learner
from powmarl.runners.acting import agent_step
from powmarl.runners.rollout import EpisodeStats
from powmarl.types import EpisodeBatch

#: Env seeds are drawn in [0, SEED_RANGE).
SEED_RANGE = 2**31 - 1

#: ``policy(obs [n, A, O], avail [n, A, U]) -> actions [n, A]``; a new policy per wave.
Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]


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


def play_wave(vec, policy: Policy, seeds: Sequence[int], obs_dtype=np.float32):
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




def make_member_act(learner: Learner):
    """Jitted ``act(agent_params [M], hidden [M, n, A, H], obs [M, n, A, O], last [M, n, A],
    avail [M, n, A, U], keys [M, n], t, epsilon [M]) -> (hidden, actions [M, n, A])``: the
    shared agent step for every member and episode. Episode (m, e) acts at step t with
    ``fold_in(keys[m, e], t)``, so its actions do not depend on how episodes are laid on
    env copies (waves)."""

    def one_member(params, hidden, obs, last, avail, keys, t, epsilon):
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, t)
        step = jax.vmap(agent_step, in_axes=(None, None, 0, 0, 0, 0, 0, None))
        hidden, actions, _ = step(learner, params, hidden, obs, last, avail, step_keys, epsilon)
        return hidden, actions

    return jax.jit(jax.vmap(one_member, in_axes=(0, 0, 0, 0, 0, 0, None, 0)))


@functools.partial(jax.jit, static_argnums=1)
def draw_seeds(keys, n: int):
    """Per member, the env seeds and the act keys of ``n`` episodes: ([M, n], [M, n]).

    Jitted: called once per iteration, and run op by op its vmap re-traced a dozen
    primitives every time (a fifth of a small host run's time; the bits are the same)."""

    def one(key):
        seed_key, act_key = jax.random.split(key)
        return jax.random.randint(seed_key, (n,), 0, SEED_RANGE), jax.random.split(act_key, n)

    return jax.vmap(one)(keys)


class _WavePolicy:
    """The members' agents in one wave: copy i plays pair ``pairs[i]`` (a flat index into
    [M * n]); the act runs on all [M, n] slots, of which the wave reads its own."""

    def __init__(self, act, params, keys, epsilon, shape, pairs, hidden_dim: int):
        m, n, a = shape
        self.act, self.params, self.keys, self.epsilon = act, params, keys, epsilon
        self.shape, self.pairs, self.t = shape, np.asarray(pairs), 0
        self.hidden = jnp.zeros((m, n, a, hidden_dim), jnp.float32)
        self.last = np.full((m * n, a), -1, np.int32)

    def _full(self, values: np.ndarray) -> np.ndarray:
        m, n, _ = self.shape
        out = np.zeros((m * n, *values.shape[1:]), values.dtype)
        out[self.pairs] = values
        return out.reshape(m, n, *values.shape[1:])

    def __call__(self, obs: np.ndarray, avail: np.ndarray) -> np.ndarray:
        m, n, a = self.shape
        last = self.last.reshape(m, n, a)
        self.hidden, actions = self.act(
            self.params, self.hidden, self._full(obs), last, self._full(avail), self.keys,
            self.t, self.epsilon,
        )
        self.t += 1
        actions = np.asarray(actions).reshape(m * n, a)
        self.last[self.pairs] = actions[self.pairs]
        return actions[self.pairs]


def play_members(vec, act, agent_params, keys, epsilon, n: int, hidden_dim: int, obs_dtype):
    """``n`` episodes of every member (keys [M], epsilon [M]) on the copies of ``vec``.

    Returns the padded EpisodeBatch (NumPy leaves [M, n, ...]) and EpisodeStats [M, n], as
    the JAX rollout of each member would.
    """
    seeds, act_keys = jax.device_get(draw_seeds(keys, n))
    m, a = seeds.shape[0], vec.spec.num_agents
    total = m * n
    flat_seeds = seeds.reshape(total).tolist()
    fields = empty_episodes(vec.spec, total, obs_dtype)
    returns, lengths = np.zeros(total, np.float32), np.zeros(total, np.int32)
    info = {k: np.zeros(total, np.float32) for k in vec.info_keys}
    for start in range(0, total, len(vec)):
        pairs = np.arange(start, min(start + len(vec), total))
        policy = _WavePolicy(act, agent_params, act_keys, epsilon, (m, n, a), pairs, hidden_dim)
        out, ret, length, sums = play_wave(vec, policy, flat_seeds[start : pairs[-1] + 1], obs_dtype)
        for k in fields:
            fields[k][pairs] = out[k]
        returns[pairs], lengths[pairs] = ret, length
        for k, total_k in info.items():
            total_k[pairs] = sums[k]

    def shaped(x):
        return x.reshape(m, n, *x.shape[1:])

    batch = EpisodeBatch(**{k: shaped(v) for k, v in fields.items()})
    stats = EpisodeStats(shaped(returns), shaped(lengths), {k: shaped(v) for k, v in info.items()})
    return batch, stats
