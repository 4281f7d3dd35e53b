"""The compiled training loop: ``init`` and ``run_chunk``, vmapped over seeds.

``run_chunk`` is a ``lax.scan`` over iterations. Each iteration rolls out E whole
episodes with epsilon-greedy actions, inserts them in the episode buffer, and runs
one learner call when the buffer holds a batch; the chunk ends with a greedy
evaluation. Control flow that decides *whether* something runs (learn, first call,
target copy) depends only on the iteration index, which is shared by all seeds and
passed in unbatched, so under ``vmap`` those ``lax.cond`` stay real branches
instead of becoming selects that run both sides.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from powmarl.algos.base import Algorithm
from powmarl.config import Config, HParams
from powmarl.core.buffer import BufferState, buffer_init, buffer_insert, buffer_sample
from powmarl.core.exploration import linear_epsilon
from powmarl.learner import Learner, LearnerState, make_learner
from powmarl.runners.rollout import make_rollout
from powmarl.types import Array, EpisodeBatch, PRNGKey


@flax.struct.dataclass
class RunnerState:
    learner: LearnerState
    buffer: BufferState
    key: PRNGKey
    t_env: Array  # [] int32 env steps taken in training episodes
    episodes: Array  # [] int32 training episodes finished


class Runner(NamedTuple):
    learner: Learner
    init: Any  # (key, env_params) -> RunnerState
    run_chunk: Any  # (state, hp, env_params, it0) -> (state, metrics)
    rollout: Any
    iters_per_chunk: int


def iterations_per_chunk(cfg: Config, episode_limit: int) -> int:
    """Iterations between evaluations: test_interval env steps at full episode length."""
    return max(1, math.ceil(cfg.test_interval / (cfg.num_envs * episode_limit)))


def length_ladder(episode_limit: int, buckets: int, spacing: str = "halving") -> tuple[int, ...]:
    """Lengths of the truncated learner branches (each also drops the bootstrap tail).

    ``halving``: T, T/2, T/4, ... (rounded up); ``even``: T/(n-1), 2T/(n-1), ..., T. With
    several vmapped seeds the branch is the one of the seed with the longest episode
    (``bucket_index``), so a finer ``even`` ladder wastes less on the other seeds.
    """
    if spacing == "even":
        steps = buckets - 1
        return tuple(sorted({math.ceil(episode_limit * j / steps) for j in range(1, steps + 1)}))
    return tuple(sorted({math.ceil(episode_limit / 2**j) for j in range(buckets - 1)}))


def truncate_batch(batch: EpisodeBatch, length: int) -> EpisodeBatch:
    """The first ``length`` transitions and observation slots (no bootstrap tail)."""
    return jax.tree.map(lambda x: x[:, :length], batch)


def bucket_index(batch: EpisodeBatch, ladder: tuple[int, ...], seed_axis: str | None) -> Array:
    """Branch to run: the shortest ladder length holding every episode, or the full batch
    (index ``len(ladder)``) when some episode ran into the time limit and needs its tail.

    Shared by all seeds (max over the seed axis), so the ``lax.switch`` stays a real branch
    under vmap; truncation only removes padding, so the choice does not change the result.
    """
    episode_limit = batch.reward.shape[1]
    longest = batch.filled.sum(axis=1).max()
    last = episode_limit - 1
    needs_tail = (batch.filled[:, last] & ~batch.terminated[:, last]).any()
    index = jnp.searchsorted(jnp.asarray(ladder), longest)  # first K >= longest
    index = jnp.where(needs_tail, len(ladder), index).astype(jnp.int32)
    if seed_axis is not None:
        index = jax.lax.pmax(index, seed_axis)
    return index


def schedule(it, cfg: Config):
    """(can_learn, first_call, update_targets) of iteration ``it`` (a Python int or a traced
    int32), as PyMARL's run loop has it. It depends on the iteration index alone, which all
    seeds share, so the ``lax.cond`` it drives stays a real branch under vmap."""
    seen_before, seen_after = it * cfg.num_envs, (it + 1) * cfg.num_envs
    interval = cfg.target_update_interval
    update_targets = (seen_before >= interval) & (
        seen_before // interval > (seen_before - cfg.num_envs) // interval
    )
    return seen_after >= cfg.batch_size, seen_before < cfg.batch_size, update_targets


def bucketed_update(learner: Learner, ladder, seed_axis: str | None, expand=lambda b: b):
    """``update(learner_state, batch, hp, t_env, first_call, update_targets)``: the learner
    on ``batch`` truncated to its bucket (a ``lax.switch`` over the ladder lengths, then the
    full batch); ``expand`` restores compact replay records before the learner sees them."""

    def update(learner_state, batch, hp, t_env, first_call, update_targets):
        def on(b):
            return learner.update(learner_state, expand(b), hp, t_env, first_call, update_targets)

        branches = [lambda b, k=k: on(truncate_batch(b, k)) for k in ladder] + [on]
        return jax.lax.switch(bucket_index(batch, ladder, seed_axis), branches, batch)

    return update


def _zeros(spec) -> Array:
    return jnp.zeros(spec.shape, spec.dtype)


def _masked_mean(values: Array, weights: Array) -> Array:
    return (values * weights).sum(axis=0) / jnp.maximum(weights.sum(axis=0), 1.0)


def make_runner(cfg: Config, env, algo: Algorithm, seed_axis: str | None = "seed") -> Runner:
    """Build pure ``init``/``run_chunk`` for one seed; vmap ``run_chunk`` over seeds with
    ``axis_name=seed_axis`` (or pass ``seed_axis=None`` to run it without vmap)."""
    spec = env.spec
    last_action = env.obs_last_action if cfg.obs_last_action is None else cfg.obs_last_action
    agent_id = env.obs_agent_id if cfg.obs_agent_id is None else cfg.obs_agent_id
    learner = make_learner(cfg, spec, algo, last_action, agent_id)
    rollout = make_rollout(env, learner, cfg.rnn_hidden_dim)
    iters = iterations_per_chunk(cfg, spec.episode_limit)
    num_envs = cfg.num_envs
    ladder = length_ladder(spec.episode_limit, cfg.length_buckets, cfg.length_spacing)
    decode = getattr(env, "replay_decode", None)

    def expand(batch: EpisodeBatch) -> EpisodeBatch:
        """Restore obs, state and avail_actions where the env stores a compact record."""
        if decode is None:
            return batch
        obs, state, avail_actions = decode(batch.obs)
        return batch.replace(obs=obs, state=state, avail_actions=avail_actions)

    update = bucketed_update(learner, ladder, seed_axis, expand)

    def init(key: PRNGKey, env_params) -> RunnerState:
        learner_key, run_key = jax.random.split(key)
        example = _example_batch(env_params)
        expanded = jax.eval_shape(expand, example)
        return RunnerState(
            learner=learner.init(learner_key, jax.tree.map(_zeros, expanded)),
            buffer=buffer_init(jax.tree.map(lambda x: x[0], example), cfg.buffer_size),
            key=run_key,
            t_env=jnp.zeros((), jnp.int32),
            episodes=jnp.zeros((), jnp.int32),
        )

    def _example_batch(env_params):
        """A zero batch of the shapes and dtypes the rollout produces."""
        shapes, _ = jax.eval_shape(_probe_rollout, env_params)
        return jax.tree.map(lambda s: jnp.zeros((cfg.batch_size, *s.shape[1:]), s.dtype), shapes)

    def _probe_rollout(env_params):
        hidden = jnp.zeros((spec.num_agents, cfg.rnn_hidden_dim))
        inputs = jnp.zeros((spec.num_agents, learner.input_dim))
        params = learner.agent.init(jax.random.key(0), hidden, inputs)
        return rollout(params, env_params, jax.random.key(0), 1.0, 1)

    def iteration(state: RunnerState, it: Array, hp: HParams, env_params):
        key, rollout_key, sample_key = jax.random.split(state.key, 3)
        epsilon = linear_epsilon(
            state.t_env.astype(jnp.float32),
            hp.epsilon_start,
            hp.epsilon_finish,
            hp.epsilon_anneal_time,
        )
        agent_params = state.learner.params["agent"]
        episodes, stats = rollout(agent_params, env_params, rollout_key, epsilon, num_envs)
        t_env = state.t_env + stats.lengths.sum()
        buffer = buffer_insert(state.buffer, episodes)
        can_learn, first_call, update_targets = schedule(it, cfg)

        def learn(learner_state):
            batch = buffer_sample(buffer, sample_key, cfg.batch_size)
            return update(learner_state, batch, hp, t_env, first_call, update_targets)

        def skip(learner_state):
            _, shapes = jax.eval_shape(learn, learner_state)
            return learner_state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        learner_state, learn_metrics = jax.lax.cond(can_learn, learn, skip, state.learner)
        new_state = RunnerState(
            learner=learner_state,
            buffer=buffer,
            key=key,
            t_env=t_env,
            episodes=state.episodes + num_envs,
        )
        rollout_metrics = {
            "train/return_mean": stats.returns.mean(),
            "train/ep_length_mean": stats.lengths.mean().astype(jnp.float32),
            **{f"train/{k}_mean": v.mean() for k, v in stats.info.items()},
        }
        out = {
            "learned": can_learn.astype(jnp.float32),
            "epsilon": epsilon,
            "rollout": rollout_metrics,
            "learn": learn_metrics,
        }
        return new_state, out

    def run_chunk(state: RunnerState, hp: HParams, env_params, it0: Array):
        """``iters`` iterations then a greedy evaluation; ``it0`` is the shared iteration index."""

        def body(s, it):
            return iteration(s, it, hp, env_params)

        state, per_iter = jax.lax.scan(body, state, it0 + jnp.arange(iters, dtype=jnp.int32))
        learned = per_iter["learned"]
        metrics = {k: v.mean() for k, v in per_iter["rollout"].items()}
        metrics.update({k: _masked_mean(v, learned) for k, v in per_iter["learn"].items()})
        metrics["train/epsilon"] = per_iter["epsilon"][-1]
        metrics["train/learner_calls"] = learned.sum()
        key, eval_key = jax.random.split(state.key)
        state = state.replace(key=key)
        agent_params = state.learner.params["agent"]
        _, stats = rollout(agent_params, env_params, eval_key, 0.0, cfg.test_nepisode)
        metrics["eval/return_mean"] = stats.returns.mean()
        metrics["eval/return_std"] = stats.returns.std()
        metrics["eval/ep_length_mean"] = stats.lengths.mean().astype(jnp.float32)
        for k, v in stats.info.items():
            metrics[f"eval/{k}_mean"] = v.mean()
        metrics["t_env"] = state.t_env
        metrics["episodes"] = state.episodes
        return state, metrics

    return Runner(learner, init, run_chunk, rollout, iters)
