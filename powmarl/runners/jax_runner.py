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

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from powmarl.algos.base import Algorithm
from powmarl.config import Config, HParams
from powmarl.core.buffer import BufferState, buffer_init, buffer_insert, buffer_sample
from powmarl.core.exploration import linear_epsilon
from powmarl.envs.contract import replay_codec
from powmarl.learner import Learner, LearnerState, learner_for_env
from powmarl.runners.period import (
    bucketed_update,
    episode_metrics,
    iterations_per_chunk,
    length_ladder,
    reduce_period,
    schedule,
)
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


def _zeros(spec) -> Array:
    return jnp.zeros(spec.shape, spec.dtype)


def make_runner(cfg: Config | None, env, algo: Algorithm, seed_axis: str | None = "seed") -> Runner:
    """Build pure ``init``/``run_chunk`` for one seed; vmap ``run_chunk`` over seeds with
    ``axis_name=seed_axis`` (or pass ``seed_axis=None`` to run it without vmap).
    ``cfg=None``: the algorithm's and env's defaults (``powmarl.settings.resolve``; their
    HParams: ``settings.default_hparams(algo, env)``)."""
    if cfg is None:
        from powmarl.settings import resolve

        cfg = resolve(algo, env).cfg
    program = _Program(cfg, env, algo, seed_axis)
    return Runner(
        program.learner, program.init, program.run_chunk, program.rollout, program.iters
    )


class _Program:
    """The pieces of one seed's compiled training program (see the module docstring)."""

    def __init__(self, cfg: Config, env, algo: Algorithm, seed_axis: str | None):
        spec = env.spec
        self.cfg, self.spec = cfg, spec
        self.learner = learner_for_env(cfg, env, algo)
        self.rollout = make_rollout(env, self.learner)
        self.iters = iterations_per_chunk(cfg, spec.episode_limit)
        ladder = length_ladder(spec.episode_limit, cfg.length_buckets, cfg.length_spacing)
        codec = replay_codec(env)
        self.decode = None if codec is None else codec[1]
        self.update = bucketed_update(self.learner, ladder, seed_axis, self.expand)

    def expand(self, batch: EpisodeBatch) -> EpisodeBatch:
        """Restore obs, state and avail_actions where the env stores a compact record."""
        if self.decode is None:
            return batch
        obs, state, avail_actions = self.decode(batch.obs)
        return batch.replace(obs=obs, state=state, avail_actions=avail_actions)

    def init(self, key: PRNGKey, env_params) -> RunnerState:
        cfg = self.cfg
        learner_key, run_key = jax.random.split(key)
        example = self._example_batch(env_params)
        expanded = jax.eval_shape(self.expand, example)
        return RunnerState(
            learner=self.learner.init(learner_key, jax.tree.map(_zeros, expanded)),
            buffer=buffer_init(jax.tree.map(lambda x: x[0], example), cfg.buffer_size),
            key=run_key,
            t_env=jnp.zeros((), jnp.int32),
            episodes=jnp.zeros((), jnp.int32),
        )

    def _example_batch(self, env_params):
        """A zero batch of the shapes and dtypes the rollout produces."""
        shapes, _ = jax.eval_shape(self._probe_rollout, env_params)
        size = self.cfg.batch_size
        return jax.tree.map(lambda s: jnp.zeros((size, *s.shape[1:]), s.dtype), shapes)

    def _probe_rollout(self, env_params):
        a = self.spec.num_agents
        hidden = jnp.zeros((a, self.cfg.rnn_hidden_dim))
        inputs = jnp.zeros((a, self.learner.input_dim))
        params = self.learner.agent.init(jax.random.key(0), hidden, inputs)
        return self.rollout(params, env_params, jax.random.key(0), 1.0, 1)

    def iteration(self, state: RunnerState, it: Array, hp: HParams, env_params):
        """E episodes, insert them, and one learner call when the schedule says so."""
        cfg = self.cfg
        key, rollout_key, sample_key = jax.random.split(state.key, 3)
        epsilon = linear_epsilon(
            state.t_env.astype(jnp.float32),
            hp.epsilon_start,
            hp.epsilon_finish,
            hp.epsilon_anneal_time,
        )
        agent_params = state.learner.params["agent"]
        episodes, stats = self.rollout(agent_params, env_params, rollout_key, epsilon, cfg.num_envs)
        t_env = state.t_env + stats.lengths.sum()
        buffer = buffer_insert(state.buffer, episodes)
        can_learn, first_call, update_targets = schedule(it, cfg)

        # jitted so that ``skip``'s eval_shape and the cond share one trace of the update
        # (a jitted function's trace is cached by its input shapes; tracing it twice cost
        # ~3.6 s of the ~16 s it takes to trace POW-QMIX's chunk)
        @jax.jit
        def learn(learner_state):
            batch = buffer_sample(buffer, sample_key, cfg.batch_size)
            return self.update(learner_state, batch, hp, t_env, first_call, update_targets)

        def skip(learner_state):
            _, shapes = jax.eval_shape(learn, learner_state)
            return learner_state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        learner_state, learn_metrics = jax.lax.cond(can_learn, learn, skip, state.learner)
        new_state = RunnerState(
            learner=learner_state,
            buffer=buffer,
            key=key,
            t_env=t_env,
            episodes=state.episodes + cfg.num_envs,
        )
        out = {
            "learned": can_learn.astype(jnp.float32),
            "epsilon": epsilon,
            "rollout": episode_metrics("train", stats),
            "learn": learn_metrics,
        }
        return new_state, out

    def run_chunk(self, state: RunnerState, hp: HParams, env_params, it0: Array):
        """``iters`` iterations then a greedy evaluation; ``it0`` is the shared iteration index."""

        def body(s, it):
            return self.iteration(s, it, hp, env_params)

        its = it0 + jnp.arange(self.iters, dtype=jnp.int32)
        state, per_iter = jax.lax.scan(body, state, its)
        key, eval_key = jax.random.split(state.key)
        state = state.replace(key=key)
        agent_params = state.learner.params["agent"]
        _, stats = self.rollout(agent_params, env_params, eval_key, 0.0, self.cfg.test_nepisode)
        return state, reduce_period(per_iter, stats, state.t_env, state.episodes)
