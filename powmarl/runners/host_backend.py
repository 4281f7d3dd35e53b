"""The host backend: Python (NumPy) envs trained with the shared, jitted learner.

Every member trains at the same time, as on the JAX backend: per iteration each member
plays E whole episodes on env copies stepped in worker processes (``num_workers``; in-process
when 1), one jitted call acts for all members x episodes per step, the episodes go into
each member's buffer, and one learner call vmapped over members runs under the shared
schedule (:mod:`powmarl.runners.period`). The state is the JAX backend's ``RunnerState``
stacked over members, so both backends share one checkpoint format; iterations end on
episode boundaries, so a checkpoint needs no env state. Env randomness comes from
per-episode seeds drawn from each member's key: a deterministic env replays exactly.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.algos.base import Algorithm
from powmarl.config import Config, HParams
from powmarl.core.buffer import buffer_init, buffer_insert, buffer_sample
from powmarl.core.exploration import linear_epsilon
from powmarl.envs import contract
from powmarl.learner import learner_for_env
from powmarl.runners.host_rollout import empty_episodes, make_member_act, play_members
from powmarl.runners.jax_runner import RunnerState
from powmarl.runners.members import Member, init_program, member_keys
from powmarl.runners.period import (
    bucketed_update,
    episode_metrics,
    iterations_per_chunk,
    length_ladder,
    reduce_period,
    schedule,
)
from powmarl.types import EpisodeBatch


def default_workers() -> int:
    """One worker process per core."""
    return max(1, os.cpu_count() or 1)


def make_vector(env, copies: int, num_workers: int, log):
    """The env copies: ``copies`` (at most the env's ``max_copies``) in ``num_workers``
    processes, or in this process when 1 worker or when the env cannot be copied there."""
    from powmarl.envs.host.vector import HostVectorEnv, make_copies
    from powmarl.runners.host_workers import WorkerVectorEnv

    limit = contract.max_copies(env)
    copies = max(1, min(copies, limit or copies))
    factory = contract.copy_factory(env) if num_workers > 1 and copies > 1 else None
    if factory is not None and not contract.pickles(factory):  # workers are spawned: it must pickle
        factory = None
    if num_workers > 1 and copies > 1 and factory is None:
        log(f"powmarl: {type(env).__name__} cannot be copied into worker processes; stepping "
            "its copies in this process")
    if factory is None:
        return HostVectorEnv(make_copies(env, copies))
    return WorkerVectorEnv(factory, copies, num_workers, contract.obs_dtype(env))


class HostBackend:
    """Members of a host env trained together (see the module docstring)."""

    kind = "host"

    def __init__(self, env, cfg: Config, algo: Algorithm, members: list[Member],
                 hparams: HParams, num_workers: int | None = None, log=None):
        log = log or (lambda msg: print(msg, file=sys.stderr))
        spec = env.spec
        self.cfg, self.members, self.hparams = cfg, members, hparams
        self.iters_per_chunk = iterations_per_chunk(cfg, spec.episode_limit)
        self.learner = learner_for_env(cfg, env, algo)
        self.obs_dtype = contract.obs_dtype(env)
        workers = default_workers() if num_workers is None else int(num_workers)
        if workers < 1:
            raise ValueError(f"num_workers: must be >= 1, got {num_workers}")
        self._env, self._workers, self._log, self._vec = env, workers, log, None
        self._zeros = None
        self._act = make_member_act(self.learner)
        self._build(spec)

    def _build(self, spec) -> None:
        """The jitted, member-vmapped pieces: init, key split, store, learn."""
        cfg, learner = self.cfg, self.learner
        example = EpisodeBatch(**empty_episodes(spec, cfg.batch_size, self.obs_dtype))
        update = bucketed_update(learner, length_ladder(
            spec.episode_limit, cfg.length_buckets, cfg.length_spacing), "seed")

        def init(key) -> RunnerState:
            learner_key, run_key = jax.random.split(key)
            return RunnerState(
                learner=learner.init(learner_key, jax.tree.map(jnp.asarray, example)),
                buffer=buffer_init(jax.tree.map(lambda x: x[0], example), cfg.buffer_size),
                key=run_key,
                t_env=jnp.zeros((), jnp.int32),
                episodes=jnp.zeros((), jnp.int32),
            )

        def split(state: RunnerState):
            key, rollout_key, sample_key = jax.random.split(state.key, 3)
            return state.replace(key=key), rollout_key, sample_key

        def store(state: RunnerState, episodes: EpisodeBatch, steps) -> RunnerState:
            return state.replace(
                buffer=buffer_insert(state.buffer, episodes),
                t_env=state.t_env + steps,
                episodes=state.episodes + episodes.reward.shape[0],
            )

        def learn(state: RunnerState, sample_key, hp, first_call, update_targets):
            batch = buffer_sample(state.buffer, sample_key, cfg.batch_size)
            learner_state, metrics = update(
                state.learner, batch, hp, state.t_env, first_call, update_targets
            )
            return state.replace(learner=learner_state), metrics

        self._init = init_program(jax.vmap(init))
        self._split = jax.jit(jax.vmap(split))
        self._store = jax.jit(jax.vmap(store), donate_argnums=0)
        self._learn = jax.jit(
            jax.vmap(learn, in_axes=(0, 0, 0, None, None), axis_name="seed"), donate_argnums=0
        )

    @property
    def vec(self):
        """The env copies, started on first use (a checkpoint template needs none)."""
        if self._vec is None:
            wanted = len(self.members) * self.cfg.num_envs
            self._vec = make_vector(self._env, wanted, self._workers, self._log)
            if len(self._vec) < wanted:
                self._log(f"powmarl: {type(self._env).__name__} runs {len(self._vec)} copies; "
                          f"the {wanted} episodes of an iteration are played in waves")
        return self._vec

    def init(self):
        return self._init(member_keys(self.members))

    def template(self):
        return jax.eval_shape(self._init, member_keys(self.members))

    def prepare(self, state):
        return state

    def _play(self, state, keys, epsilon, n: int):
        agent_params = state.learner.params["agent"]
        return play_members(
            self.vec, self._act, agent_params, keys, epsilon, n, self.cfg.rnn_hidden_dim,
            self.obs_dtype,
        )

    def _iteration(self, state, it: int, zeros):
        """One iteration of every member: E episodes, insert, maybe learn."""
        hp = self.hparams
        state, rollout_keys, sample_keys = self._split(state)
        epsilon = linear_epsilon(
            state.t_env.astype(jnp.float32), hp.epsilon_start, hp.epsilon_finish,
            hp.epsilon_anneal_time,
        )
        episodes, stats = self._play(state, rollout_keys, epsilon, self.cfg.num_envs)
        state = self._store(state, episodes, jnp.asarray(stats.lengths.sum(axis=1)))
        can_learn, first_call, update_targets = schedule(it, self.cfg)
        learn_metrics = zeros
        if can_learn:
            state, learn_metrics = self._learn(
                state, sample_keys, hp, jnp.bool_(first_call), jnp.bool_(update_targets)
            )
        out = {
            "learned": np.full(len(self.members), float(can_learn), np.float32),
            "epsilon": np.asarray(epsilon),
            "rollout": episode_metrics("train", stats),
            "learn": jax.device_get(learn_metrics),
        }
        return state, out

    def _learn_zeros(self, state):
        """The learner's metrics as zeros, for iterations without a learner call."""
        if self._zeros is None:
            key = jax.eval_shape(lambda s: s.key, state)  # a shape probe: no key is drawn
            shapes = jax.eval_shape(self._learn, state, key, self.hparams, True, False)[1]
            self._zeros = {k: np.zeros(s.shape, s.dtype) for k, s in shapes.items()}
        return self._zeros

    def run_chunk(self, state, iteration: int):
        zeros = self._learn_zeros(state)
        outs = []
        for it in range(iteration, iteration + self.iters_per_chunk):
            state, out = self._iteration(state, it, zeros)
            outs.append(out)
        per_iter = jax.tree.map(lambda *xs: np.stack(xs), *outs)
        state, eval_keys, _ = self._split(state)
        _, stats = self._play(state, eval_keys, jnp.zeros(len(self.members)),
                              self.cfg.test_nepisode)
        t_env, episodes = jax.device_get((state.t_env, state.episodes))
        return state, jax.device_get(reduce_period(per_iter, stats, t_env, episodes))

    def evaluate(self, agent_params, episodes: int, keys):
        return play_members(
            self.vec, self._act, agent_params, keys, jnp.zeros(len(self.members)), episodes,
            self.cfg.rnn_hidden_dim, self.obs_dtype,
        )[1]

    def close(self) -> None:
        if self._vec is not None:
            self._vec.close()
            self._vec = None
