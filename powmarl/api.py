"""The Python API: ``powmarl.train(algo, env, seeds=..., t_max=..., **overrides)``,
``resume(run_dir)`` and ``evaluate(run_dir)``.

Each call resolves the settings, picks the backend (:func:`powmarl.runners.backend.backend_for`)
and runs the one loop (:mod:`powmarl.runners.loop`); the run directory is read and
written by :mod:`powmarl.io.run_dir`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from powmarl import algos, settings
from powmarl.config import Config, HParams, from_dict, to_dict
from powmarl.envs import contract
from powmarl.io import best, checkpoint
from powmarl.io import episodes as eval_episodes
from powmarl.io.run_dir import (
    RUN_FORMAT,
    atomic_write_text,
    check_resumable,
    prepare_run_dir,
    read_record,
    run_status,
    truncate_metrics,
)
from powmarl.result import TrainResult
from powmarl.runners.backend import Backend, backend_for
from powmarl.runners.loop import Loop, Position
from powmarl.runners.members import Member, from_record, stack_hparams

__all__ = ["TrainResult", "evaluate", "read_record", "resume", "run_status", "train"]


def resolve_settings(
    env, overrides: dict[str, Any], algo: algos.Algorithm | None = None
) -> tuple[Config, HParams]:
    """Library defaults < the algorithm's < the env's < the user's overrides
    (:func:`powmarl.settings.resolve`, which also says where each value came from)."""
    resolved = settings.resolve(algo, env, overrides)
    return resolved.cfg, resolved.hp


def _versions() -> dict[str, str]:
    import flax
    import optax

    from powmarl import __version__

    return {
        "powmarl": __version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
    }


@dataclasses.dataclass
class _Run:
    """One run being trained: what ``train`` and ``resume`` hand to the loop."""

    algorithm: algos.Algorithm
    env: Any
    cfg: Config
    hp: HParams
    members: list[Member]
    record: dict[str, Any]
    run_dir: Path | None
    env_params: Any = None
    num_workers: int | None = None

    def member_hparams(self) -> HParams:
        """Every member's HParams, stacked: leaves [M]."""
        return stack_hparams(
            [settings.member_hparams(self.cfg, self.hp, m.hparams) for m in self.members]
        )

    def backend(self) -> Backend:
        hps = self.member_hparams()
        return backend_for(
            self.env, self.cfg, self.algorithm, self.members, hps, self.env_params,
            self.num_workers,
        )


def train(
    algo: str | algos.Algorithm,
    env,
    seeds: Sequence[int] = (0,),
    t_max: int | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    env_params: Any = None,
    loggers: Sequence[str] = (),
    logger_options: dict[str, Any] | None = None,
    hparam_grid: dict[str, Sequence[float]] | None = None,
    stop_when: Any = None,
    num_workers: int | None = None,
    preset: Any = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``algo`` on ``env`` for every seed at once.

    ``overrides`` set any :class:`Config` or :class:`HParams` field by name.
    ``hparam_grid`` maps HParams fields to lists of values: every grid point is trained
    for every seed inside the same compiled program (no recompilation).
    ``loggers`` adds sinks by name ("tensorboard", "wandb"; needs ``run_dir``) to the JSONL
    metrics. With ``run_dir`` the run writes checkpoints and can be continued by
    :func:`resume`. Training stops at the first evaluation where every member has taken
    ``t_max`` env steps, or earlier at the first one where ``stop_when(rows so far)`` holds.
    ``num_workers``: processes stepping a Python (host) env's copies (default: one per core).
    ``preset`` (a :class:`powmarl.presets.Preset`) is the settings layer between the env's
    defaults and ``overrides``; config.json records every layer and where each value came
    from.
    """
    from powmarl.envs import make as make_env

    env = make_env(env) if isinstance(env, str) else env
    algorithm = algos.make(algo) if isinstance(algo, str) else algo
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: need at least one seed and no repeats, got {seeds}")
    if t_max is not None:
        overrides["t_max"] = t_max
    if loggers and run_dir is None:
        raise ValueError("loggers: TensorBoard and W&B logging need a run_dir")
    resolved = settings.resolve(algorithm, env, overrides, preset)
    cfg, hp = resolved.cfg, resolved.hp
    settings.check_grid(cfg, hp, hparam_grid or {})
    members = members_of(seeds, hparam_grid)
    run = _Run(algorithm, env, cfg, hp, members, {}, _path(run_dir), env_params, num_workers)
    backend = run.backend()
    run.record = _record(algorithm, env, resolved, seeds, hparam_grid, members, backend.kind)
    if run_dir is not None:
        prepare_run_dir(run_dir, run.record)
    return _train(run, backend, loggers, logger_options, progress, stop_when)


def _path(run_dir) -> Path | None:
    return Path(run_dir) if run_dir is not None else None


def _record(algorithm, env, resolved, seeds, hparam_grid, members, kind) -> dict[str, Any]:
    """What ``config.json`` holds: the algorithm, the env's identity, seeds, members,
    the resolved settings and the library versions."""
    env_id, env_kwargs = contract.identity(env) or (type(env).__name__, {})
    record = {
        "algo": algorithm.name,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "seeds": seeds,
        "hparam_grid": {k: [float(v) for v in vs] for k, vs in (hparam_grid or {}).items()},
        "members": [{"seed": m.seed, "hparams": m.hparams} for m in members],
        **to_dict(resolved.cfg, resolved.hp),
        **resolved.record(),
        "versions": _versions(),
        "run_format": RUN_FORMAT,
    }
    if kind == "host":
        record["runner"] = "host"
    return record


def _train(run: _Run, backend, loggers, logger_options, progress, stop_when, state=None,
           position=None) -> TrainResult:
    """Build the sinks, run the loop on ``backend``, close them; the TrainResult."""
    from powmarl.io.sinks import make_sinks

    sinks = make_sinks(list(loggers), run.run_dir, run.record, **(logger_options or {}))
    loop = Loop(backend, run.cfg, run.run_dir, sinks, progress, run.algorithm.name, stop_when,
                contract.main_metric(run.env))
    try:
        state, position = loop.run(state, position)
    finally:
        for sink in sinks:
            sink.close()
        backend.close()
    result = TrainResult(
        algo=run.algorithm.name,
        env=run.env,
        members=run.members,
        config=run.cfg,
        hparams=run.member_hparams(),
        metrics=position.rows,
        params=state.learner.params,
        env_params=getattr(backend, "env_params", None),
        backend=backend,
        run_dir=run.run_dir,
    )
    one_step = run.env.spec.episode_limit == 1 and backend.kind == "jax"
    if result.run_dir is not None and one_step:
        save_tables(result)
    return result


def _reopen(run_dir, algo=None, env=None, env_params=None, num_workers=None) -> _Run:
    """The run in ``run_dir`` as ``train`` started it (its config.json)."""
    from powmarl.envs import make as make_env

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    check_resumable(run_dir, record)
    env = env if env is not None else make_env(record["env_id"], **record["env_kwargs"])
    algorithm = algo if algo is not None else algos.make(record["algo"])
    cfg, hp = from_dict(record)
    return _Run(algorithm, env, cfg, hp, from_record(record), record, run_dir, env_params,
                num_workers)


def resume(
    run_dir: str | Path,
    progress: bool = True,
    algo: algos.Algorithm | None = None,
    env=None,
    env_params: Any = None,
    loggers: Sequence[str] = (),
    logger_options: dict[str, Any] | None = None,
    num_workers: int | None = None,
) -> TrainResult:
    """Continue the run in ``run_dir`` from its newest valid checkpoint (or from the start
    when it has none) and finish it. Metrics rows written after that checkpoint are
    dropped and recomputed, so the finished run matches an uninterrupted one (bitwise on
    CPU, except the ``time/*`` columns). ``algo``/``env`` are needed only for objects
    that are not registered by name."""
    run = _reopen(run_dir, algo, env, env_params, num_workers)
    backend = run.backend()
    ckpt = checkpoint.load_latest(run.run_dir, backend.template())
    rows = truncate_metrics(run.run_dir, int(ckpt.meta["rows"]) if ckpt else 0)
    eval_episodes.truncate(run.run_dir, len(rows))
    best.truncate(run.run_dir, int(ckpt.meta["iteration"]) if ckpt else 0)
    position = Position.from_record(ckpt.meta, rows) if ckpt else Position(rows=rows)
    options = {**(logger_options or {}), "purge_steps": _purge_steps(run.members, rows)}
    state = ckpt.state if ckpt else None
    return _train(run, backend, loggers, options, progress, None, state, position)


def _purge_steps(members: list[Member], rows) -> dict[str, int]:
    """Per member, the first env step a resumed run logs again (TensorBoard hides the old
    events from there on)."""
    from powmarl.io.logging import member_name

    last = {member_name(row): int(row["t_env"]) for row in rows}
    names = [member_name({"seed": m.seed, "variant": m.variant}) for m in members]
    return {n: last.get(n, -1) + 1 for n in names}


def members_of(seeds: list[int], grid: dict[str, Sequence[float]] | None) -> list[Member]:
    """Every grid point for every seed (the grid is checked by ``settings.check_grid``)."""
    if not grid:
        return [Member(s) for s in seeds]
    names = sorted(grid)
    points = itertools.product(*[[float(v) for v in grid[n]] for n in names])
    return [Member(s, dict(zip(names, p))) for p in points for s in seeds]


def save_tables(result: TrainResult) -> None:
    """Write the one-step tables of every seed to ``tables.json`` in the run directory."""
    tables = {
        str(seed): {k: np.asarray(v).tolist() for k, v in tab.items()}
        for seed, tab in zip(result.labels, result.tables())
    }
    atomic_write_text(result.run_dir / "tables.json", json.dumps(tables, indent=1))


def evaluate(
    run_dir: str | Path,
    episodes: int | None = None,
    key_seed: int = 0,
    render: str | Path | None = None,
    member: int = 0,
    num_workers: int | None = None,
    best: bool = False,
    per_episode: bool = False,
) -> list[dict[str, Any]]:
    """Greedy evaluation of the newest valid checkpoint in ``run_dir``: ``episodes`` per
    member (default: the run's ``test_nepisode``), from ``jax.random.key(key_seed)``.

    Returns one dict per member (seed, variant, return mean/std, episode length and the
    env's info counters). With ``render`` a GIF of one greedy episode of member ``member``
    is written there (JAX envs that draw themselves: matrix games and stag_hunt).
    ``best``: evaluate each member's agent at its best training evaluation instead (the
    absolute metric, :mod:`powmarl.io.best`); its dict adds ``best_metric`` and
    ``best_score``. ``per_episode``: each dict adds ``per_episode``, {name: [episodes]} of
    the return, episode length and info counters.
    """
    run = _reopen(run_dir, num_workers=num_workers)
    if not 0 <= member < len(run.members):
        raise ValueError(f"member: must be in [0, {len(run.members) - 1}], got {member}")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    backend = run.backend()
    if render is not None and backend.kind != "jax":
        raise ValueError("render: GIFs are drawn for JAX envs only, not host (Python) envs")
    try:
        agent_params, t_envs, metas = _agent_params(run, backend, best)
        count = episodes or run.cfg.test_nepisode
        keys = jax.random.split(jax.random.key(key_seed), len(run.members))
        stats = backend.evaluate(agent_params, count, keys)
    finally:
        backend.close()
    out = []
    for i, m in enumerate(run.members):
        stats_i = jax.tree.map(lambda x, i=i: np.asarray(x[i]), stats)
        out.append(_eval_row(m, count, int(t_envs[i]), stats_i))
        if metas:
            out[-1].update(best_metric=metas[i]["metric"], best_score=metas[i]["score"])
        if per_episode:
            values = eval_episodes.split(eval_episodes.outputs(stats_i))[1]
            out[-1]["per_episode"] = {k: v.tolist() for k, v in values.items()}
    if render is not None:
        _render(backend, run, agent_params, keys, member, render)
    return out


def _agent_params(run: _Run, backend, use_best: bool):
    """(agent params [M, ...], t_env per member, best records or None) of the newest
    checkpoint, or of each member's best evaluation."""
    template = backend.template()
    if use_best:
        params, metas = best.load(run.run_dir, template.learner.params["agent"], len(run.members))
        return params, [m["t_env"] for m in metas], metas
    ckpt = checkpoint.load_latest(run.run_dir, template)
    if ckpt is None:
        raise ValueError(f"eval: {run.run_dir} has no checkpoint yet (it was killed before one)")
    return ckpt.state.learner.params["agent"], np.asarray(ckpt.state.t_env), None


def _render(backend, run: _Run, agent_params, keys, member: int, path) -> None:
    from powmarl import render as rendering

    params_i = jax.tree.map(lambda x: x[member], agent_params)
    frames = rendering.play_episode(
        backend.learner, run.env, params_i, backend.env_params,
        jax.random.fold_in(keys[member], 1),
    )
    rendering.write_gif(rendering.draw_frames(run.env, frames, backend.env_params), path)


def _eval_row(member: Member, episodes: int, t_env: int, stats) -> dict[str, Any]:
    """One member's line of ``evaluate``: return and length statistics and the env's info
    counters of its greedy episodes (``stats``: one member's EpisodeStats)."""
    row = {
        "seed": member.seed,
        "variant": member.variant,
        "episodes": episodes,
        "t_env": t_env,
        "return_mean": float(np.mean(stats.returns)),
        "return_std": float(np.std(stats.returns)),
        "ep_length_mean": float(np.mean(stats.lengths)),
    }
    row.update({f"{k}_mean": float(np.mean(v)) for k, v in stats.info.items()})
    return row
