"""The host path: training on Python (NumPy) envs with the shared learner (DESIGN sec. 5).

Per iteration: play E whole episodes in Python with the jitted agent step
(:mod:`powmarl.runners.host_rollout`), pad them into the JAX rollout's ``EpisodeBatch``,
insert them with the same ``buffer_insert``, and run the same jitted learner update under
the JAX runner's schedule (learn once the buffer holds a batch; first call; hard target
copy every ``target_update_interval`` episodes, all from the iteration index; the same
batch-length buckets). A greedy evaluation of ``test_nepisode`` episodes runs whenever
``test_interval`` env steps have passed since the last one (PyMARL's rule) and at the end,
and writes one metrics row with the JAX runner's names.

Differences from the JAX path: members (seeds, sweep points) do not vmap; they train one
after another in this process (a seed sweep may also run them as separate runs). Env
randomness comes from per-episode seeds drawn from the run's key, so a deterministic env
replays exactly from the same seed.

Checkpoints (with a run dir) follow the JAX path's rule (after an evaluation, every
``checkpoint_interval`` env steps, and when a member finishes). One holds the learner
params of the members already finished and the whole state (learner, buffer, key,
counters) of the member in training; its record holds the loop position. Iterations end
on episode boundaries, so resuming needs no env state: a deterministic env (``matrix_host``)
resumes exactly, StarCraft II up to its own randomness.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.algos.base import Algorithm
from powmarl.config import Config, HParams, apply_overrides
from powmarl.core.buffer import buffer_init, buffer_insert, buffer_sample
from powmarl.core.exploration import linear_epsilon
from powmarl.envs.host.vector import HostVectorEnv, make_copies
from powmarl.io import checkpoint
from powmarl.learner import Learner, make_learner
from powmarl.runners import driver
from powmarl.runners.host_rollout import AgentPolicy, empty_episodes, make_act, play_episodes
from powmarl.runners.jax_runner import RunnerState, bucketed_update, length_ladder, schedule
from powmarl.types import EpisodeBatch

#: Env seeds are drawn in [0, SEED_RANGE).
SEED_RANGE = 2**31 - 1


@dataclasses.dataclass
class HostRunner:
    """The jitted pieces for one env spec and config: ``init``, ``act``, ``store``, ``learn``."""

    cfg: Config
    learner: Learner
    vec: HostVectorEnv
    obs_dtype: Any
    init: Any  # key -> RunnerState (single seed)
    act: Any  # see host_rollout.make_act
    store: Any  # (state, episodes, steps) -> state
    learn: Any  # (state, sample_key, hp, t_env, first_call, update_targets) -> (state, metrics)


def make_host_runner(cfg: Config, env, algo: Algorithm) -> HostRunner:
    """Build the host runner of ``algo`` on host env ``env`` (with up to num_envs copies)."""
    spec = env.spec
    last_action = env.obs_last_action if cfg.obs_last_action is None else cfg.obs_last_action
    agent_id = env.obs_agent_id if cfg.obs_agent_id is None else cfg.obs_agent_id
    learner = make_learner(cfg, spec, algo, last_action, agent_id)
    obs_dtype = np.dtype(getattr(env, "obs_dtype", np.float32))
    ladder = length_ladder(spec.episode_limit, cfg.length_buckets, cfg.length_spacing)
    example = EpisodeBatch(**empty_episodes(spec, cfg.batch_size, obs_dtype))

    def init(key) -> RunnerState:
        learner_key, run_key = jax.random.split(key)
        return RunnerState(
            learner=learner.init(learner_key, jax.tree.map(jnp.asarray, example)),
            buffer=buffer_init(jax.tree.map(lambda x: x[0], example), cfg.buffer_size),
            key=run_key,
            t_env=jnp.zeros((), jnp.int32),
            episodes=jnp.zeros((), jnp.int32),
        )

    def store(state: RunnerState, episodes: EpisodeBatch, steps) -> RunnerState:
        return state.replace(
            buffer=buffer_insert(state.buffer, episodes),
            t_env=state.t_env + steps,
            episodes=state.episodes + episodes.reward.shape[0],
        )

    update = bucketed_update(learner, ladder, None)

    def learn(state: RunnerState, sample_key, hp, t_env, first_call, update_targets):
        batch = buffer_sample(state.buffer, sample_key, cfg.batch_size)
        learner_state, metrics = update(state.learner, batch, hp, t_env, first_call, update_targets)
        return state.replace(learner=learner_state), metrics

    return HostRunner(
        cfg=cfg,
        learner=learner,
        vec=HostVectorEnv(make_copies(env, cfg.num_envs)),
        obs_dtype=obs_dtype,
        init=jax.jit(init),
        act=make_act(learner),
        store=jax.jit(store, donate_argnums=0),
        learn=jax.jit(learn, donate_argnums=0),
    )


def host_epsilon(t_env: int, hp: HParams) -> float:
    """The JAX runner's epsilon schedule at ``t_env``, as a Python float."""
    return float(
        linear_epsilon(
            jnp.float32(t_env), hp.epsilon_start, hp.epsilon_finish, hp.epsilon_anneal_time
        )
    )


def rollout(runner: HostRunner, agent_params, key, epsilon, num_episodes: int):
    """``num_episodes`` episodes with epsilon-greedy actions: (EpisodeBatch, EpisodeStats),
    NumPy leaves. ``key`` supplies the env seeds and one action key per wave."""
    seed_key, act_key = jax.random.split(key)
    seeds = np.asarray(jax.random.randint(seed_key, (num_episodes,), 0, SEED_RANGE)).tolist()
    wave_keys = jax.random.split(act_key, -(-num_episodes // len(runner.vec)))
    spec, hidden_dim = runner.vec.spec, runner.cfg.rnn_hidden_dim

    def make_policy(wave: int, n: int):
        return AgentPolicy(
            runner.act, agent_params, hidden_dim, spec.num_agents, n, wave_keys[wave], epsilon
        )

    return play_episodes(runner.vec, make_policy, seeds, runner.obs_dtype)


def _evaluate(runner: HostRunner, state: RunnerState):
    key, eval_key = jax.random.split(state.key)
    agent_params = state.learner.params["agent"]
    _, stats = rollout(runner, agent_params, eval_key, 0.0, runner.cfg.test_nepisode)
    metrics = {
        "eval/return_mean": float(stats.returns.mean()),
        "eval/return_std": float(stats.returns.std()),
        "eval/ep_length_mean": float(stats.lengths.mean()),
        **{f"eval/{k}_mean": float(v.mean()) for k, v in stats.info.items()},
    }
    return state.replace(key=key), metrics


class _Period:
    """Per-iteration metrics between two evaluations, reduced as the JAX ``run_chunk`` does."""

    def __init__(self):
        self.rollout: list[dict[str, float]] = []
        self.learn: list[dict[str, Any]] = []
        self.epsilon = 0.0

    def summary(self, learn_names: Sequence[str]) -> dict[str, float]:
        out = {k: float(np.mean([r[k] for r in self.rollout])) for k in self.rollout[0]}
        learned = jax.device_get(self.learn)
        for name in learn_names:
            values = [m[name] for m in learned]
            out[name] = float(np.mean(values)) if values else 0.0
        out["train/epsilon"] = self.epsilon
        out["train/learner_calls"] = float(len(learned))
        return out


@dataclasses.dataclass
class HostPosition:
    """Where the host loop is; saved in each checkpoint's record and restored by resume."""

    member: int = 0  # index of the member in training
    member_done: bool = False  # that member reached t_max (the next one starts on resume)
    iteration: int = 0  # iterations of all members so far (names the checkpoints)
    it: int = 0  # iterations of the member in training
    t_env: int = 0
    last_eval_t: int = 0
    last_checkpoint_t: int = -1
    member_t_env: list[int] = dataclasses.field(default_factory=list)  # finished members
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    elapsed_s: float = 0.0
    finished: bool = False

    def meta(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["rows"] = len(self.rows)
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, Any], rows: list[dict[str, Any]]) -> HostPosition:
        names = {f.name for f in dataclasses.fields(cls)} - {"rows"}
        return cls(**{k: meta[k] for k in names}, rows=rows)


def checkpoint_template(runner: HostRunner):
    """``meta -> tree of ShapeDtypeStructs`` of a host checkpoint with that record."""
    state = jax.eval_shape(runner.init, jax.random.key(0))

    def template(meta: dict[str, Any]):
        return {"done": [state.learner.params] * int(meta["member"]), "current": state}

    return template


def _maybe_checkpoint(run_dir, cfg: Config, done_params, state, position: HostPosition) -> None:
    if run_dir is None:
        return
    due = cfg.checkpoint_interval == 0 or (
        position.t_env - max(position.last_checkpoint_t, 0) >= cfg.checkpoint_interval
    )
    if not (due or position.member_done):
        return
    position.last_checkpoint_t = position.t_env
    tree = {"done": list(done_params), "current": state}
    checkpoint.save(run_dir, tree, position.meta(), keep=cfg.keep_checkpoints)


def train_member(
    runner: HostRunner,
    hp: HParams,
    member: driver.Member,
    state: RunnerState,
    position: HostPosition,
    done_params: Sequence[Any],
    run_dir: Path | None,
    sinks: Sequence[Any] = (),
    progress: bool = True,
    label: str = "",
    last_member: bool = True,
) -> RunnerState:
    """Train ``member`` from ``state`` at ``position`` to ``t_max``; the new rows go to
    ``position.rows``, checkpoints (with ``run_dir``) hold ``done_params`` too."""
    from powmarl.io.progress import Progress
    from powmarl.io.run_dir import MetricsWriter

    cfg = runner.cfg
    writer = MetricsWriter(run_dir) if run_dir is not None else None
    learn_names = sorted(_learn_metric_names(runner, state, hp))
    start = time.perf_counter() - position.elapsed_s
    period_start = time.perf_counter()
    t_prev = position.last_eval_t
    period = _Period()
    with Progress(cfg.t_max, f"{label} seed {member.seed}", enabled=progress) as bar:
        if position.t_env and position.rows:  # resumed inside this member
            bar.update(position.t_env, position.rows[-1]["eval/return_mean"])
        while position.t_env < cfg.t_max:
            state, position.t_env = _iteration(
                runner, state, hp, position.it, position.t_env, period
            )
            position.it += 1
            position.iteration += 1
            if position.t_env - position.last_eval_t < cfg.test_interval and (
                position.t_env < cfg.t_max
            ):
                continue
            state, eval_metrics = _evaluate(runner, state)
            t_env = position.t_env
            metrics = {**period.summary(learn_names), **eval_metrics}
            metrics["t_env"], metrics["episodes"] = t_env, int(state.episodes)
            now = time.perf_counter()
            arrays = {k: np.asarray([v]) for k, v in metrics.items()}
            new_rows = driver._rows(
                arrays, [member], np.asarray([t_env - t_prev]), now - period_start, now - start
            )
            for sink in ([writer] if writer is not None else []) + list(sinks):
                sink.write(new_rows)
            driver._check_finite(arrays, [member], run_dir)
            position.rows.extend(new_rows)
            position.elapsed_s = now - start
            position.member_done = t_env >= cfg.t_max
            position.finished = position.member_done and last_member
            bar.update(t_env, metrics["eval/return_mean"])
            position.last_eval_t, t_prev, period_start, period = t_env, t_env, now, _Period()
            _maybe_checkpoint(run_dir, cfg, done_params, state, position)
    return state


def _iteration(runner: HostRunner, state, hp, it: int, t_env: int, period: _Period):
    """One iteration: E episodes, insert, maybe learn. Returns (state, new t_env)."""
    cfg = runner.cfg
    key, rollout_key, sample_key = jax.random.split(state.key, 3)
    state = state.replace(key=key)
    epsilon = host_epsilon(t_env, hp)
    agent_params = state.learner.params["agent"]
    episodes, stats = rollout(runner, agent_params, rollout_key, epsilon, cfg.num_envs)
    steps = int(stats.lengths.sum())
    state = runner.store(state, episodes, jnp.int32(steps))
    t_env += steps
    can_learn, first_call, update_targets = schedule(it, cfg)
    if can_learn:
        state, metrics = runner.learn(
            state,
            sample_key,
            hp,
            jnp.int32(t_env),
            jnp.bool_(first_call),
            jnp.bool_(update_targets),
        )
        period.learn.append(metrics)
    period.rollout.append(
        {
            "train/return_mean": float(stats.returns.mean()),
            "train/ep_length_mean": float(stats.lengths.mean()),
            **{f"train/{k}_mean": float(v.mean()) for k, v in stats.info.items()},
        }
    )
    period.epsilon = epsilon
    return state, t_env


def _learn_metric_names(runner: HostRunner, state, hp) -> list[str]:
    key = jax.eval_shape(lambda s: s.key, state)  # a shape probe: no key is drawn
    shapes = jax.eval_shape(runner.learn, state, key, hp, jnp.int32(0), True, False)
    return list(shapes[1])


@dataclasses.dataclass
class HostTrainResult:
    """What the host path hands back to ``powmarl.train`` / ``resume``."""

    params: list[Any]  # learner params, one tree per member
    rows: list[dict[str, Any]]
    runner: HostRunner


def train(
    algo: Algorithm,
    env,
    cfg: Config,
    hp: HParams,
    members: Sequence[driver.Member],
    run_dir: Path | None = None,
    progress: bool = True,
    sinks: Sequence[Any] = (),
    log=None,
    resume_from: tuple[Any, HostPosition] | None = None,
    runner: HostRunner | None = None,
) -> HostTrainResult:
    """Train every member on host env ``env``, one after another (rows tagged by seed).

    ``resume_from`` is a loaded checkpoint tree and its position (see ``powmarl.resume``).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    runner = runner or make_host_runner(cfg, env, algo)
    if len(runner.vec) < cfg.num_envs:
        log(
            f"powmarl: {type(env).__name__} runs {len(runner.vec)} copies; the "
            f"{cfg.num_envs} episodes of an iteration are played in waves"
        )
    done_params: list[Any] = []
    position, state = HostPosition(), None
    if resume_from is not None:
        tree, position = resume_from
        done_params, state = list(tree["done"]), tree["current"]
        if position.member_done:  # the checkpoint closed a member: start the next one
            done_params.append(state.learner.params)
            position.member_t_env.append(position.t_env)
            position = _next_member(position)
            state = None
    while position.member < len(members) and not position.finished:
        index = position.member
        member = members[index]
        member_hp = apply_overrides(cfg, hp, member.hparams)[1]
        if state is None:
            state = runner.init(jax.random.key(member.seed))
        state = train_member(
            runner,
            member_hp,
            member,
            state,
            position,
            done_params,
            run_dir,
            sinks,
            progress,
            algo.name,
            last_member=index == len(members) - 1,
        )
        done_params.append(state.learner.params)
        position.member_t_env.append(position.t_env)
        position, state = _next_member(position), None
    return HostTrainResult(done_params, position.rows, runner)


def _next_member(position: HostPosition) -> HostPosition:
    return dataclasses.replace(
        position,
        member=position.member + 1,
        member_done=False,
        it=0,
        t_env=0,
        last_eval_t=0,
        last_checkpoint_t=-1,
    )
