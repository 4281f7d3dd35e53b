"""The Python loop over compiled chunks: logging, checkpoints, faults, budget, devices.

A *member* is one trained copy: a seed and, in a hyperparameter sweep, one point of the
grid. All members of a run share one compiled program (``vmap`` over members); their
hyperparameters are a batched :class:`HParams`. With several local devices the member
axis is sharded across them.
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

from powmarl.config import Config, HParams
from powmarl.io import checkpoint
from powmarl.runners.jax_runner import Runner


class TrainingFault(RuntimeError):
    """Training produced a non-finite number; the run stopped (last good checkpoint kept)."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One trained copy: its seed, and its hyperparameter overrides in a sweep."""

    seed: int
    hparams: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def variant(self) -> str:
        """'' alone; 'name=value,...' for a sweep member (sorted by name)."""
        return ",".join(f"{k}={v:g}" for k, v in sorted(self.hparams.items()))


@dataclasses.dataclass
class Session:
    """Everything the loop needs; built fresh by ``train`` or from a run dir by ``resume``."""

    runner: Runner
    cfg: Config
    hparams: HParams  # leaves [M]
    members: list[Member]
    env_params: Any
    run_dir: Path | None
    label: str
    sinks: Sequence[Any] = ()  # objects with write(rows) and close()
    progress: bool = True
    log: Any = None  # callable(str) for notices
    #: callable(rows so far) -> bool, asked after each evaluation: True ends the run there
    stop_when: Any = None


@dataclasses.dataclass
class Position:
    """Where the loop is: restored from a checkpoint on resume."""

    iteration: int = 0
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    elapsed_s: float = 0.0
    last_checkpoint_t: float = -1.0
    finished: bool = False


def stack_hparams(hps: Sequence[HParams]) -> HParams:
    return jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *hps)


def member_sharding(num_members: int, log=None):
    """Shard the member axis across local devices when there are several and they divide it."""
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    if num_members % len(devices):
        if log:
            log(
                f"powmarl: {num_members} members do not divide over {len(devices)} devices; "
                "running on one device"
            )
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices), ("members",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("members"))


def compile_fns(runner: Runner):
    """Separate compiled ``init`` and ``run_chunk`` (known-pitfalls: a GRU init inside the
    vmapped training program can hang XLA:CPU)."""
    init = jax.jit(jax.vmap(runner.init, in_axes=(0, None)))
    run_chunk = jax.jit(
        jax.vmap(runner.run_chunk, in_axes=(0, 0, None, None), axis_name="seed"),
        donate_argnums=0,
    )
    return init, run_chunk


def member_keys(members: Sequence[Member]):
    return jax.vmap(jax.random.key)(jnp.asarray([m.seed for m in members], dtype=jnp.uint32))


def state_template(session: Session):
    init, _ = compile_fns(session.runner)
    return jax.eval_shape(init, member_keys(session.members), session.env_params)


def run(session: Session, state=None, position: Position | None = None):
    """Train until every member passed ``t_max``; return (final state, position)."""
    from powmarl.io.progress import Progress

    log = session.log or (lambda msg: print(msg, file=sys.stderr))
    cfg, members = session.cfg, session.members
    position = position or Position()
    sharding = member_sharding(len(members), log)
    place = (lambda t: jax.device_put(t, sharding)) if sharding is not None else (lambda t: t)
    init, run_chunk = compile_fns(session.runner)
    hp_arrays = place(session.hparams)
    state = (
        place(state) if state is not None else init(place(member_keys(members)), session.env_params)
    )
    writer = _metrics_writer(session.run_dir)
    start = time.perf_counter() - position.elapsed_s
    t_prev = _last_t_env(position.rows, members)
    with Progress(cfg.t_max, session.label, enabled=session.progress) as bar:
        while not position.finished:
            chunk_start = time.perf_counter()
            it = jnp.int32(position.iteration)
            state, metrics = run_chunk(state, hp_arrays, session.env_params, it)
            metrics = jax.device_get(metrics)
            t_env = np.asarray(metrics["t_env"], dtype=np.float64)
            wall = time.perf_counter() - chunk_start
            rows = _rows(metrics, members, t_env - t_prev, wall, time.perf_counter() - start)
            t_prev = t_env
            if writer is not None:
                writer.write(rows)
            for sink in session.sinks:
                sink.write(rows)
            _check_finite(metrics, members, session.run_dir)
            position.iteration += session.runner.iters_per_chunk
            position.rows.extend(rows)
            position.elapsed_s = time.perf_counter() - start
            position.finished = bool(t_env.min() >= cfg.t_max) or bool(
                session.stop_when is not None and session.stop_when(position.rows)
            )
            bar.update(int(t_env.min()), float(np.mean(metrics["eval/return_mean"])))
            _maybe_checkpoint(session, state, position, float(t_env.min()))
    return state, position


def _metrics_writer(run_dir):
    from powmarl.io.run_dir import MetricsWriter

    return MetricsWriter(run_dir) if run_dir is not None else None


def _last_t_env(rows, members) -> np.ndarray:
    last = {(r["seed"], r.get("variant", "")): r["t_env"] for r in rows}
    return np.asarray([last.get((m.seed, m.variant), 0) for m in members], dtype=np.float64)


def _maybe_checkpoint(session: Session, state, position: Position, t_env_min: float) -> None:
    cfg = session.cfg
    if session.run_dir is None:
        return
    due = cfg.checkpoint_interval == 0 or (
        t_env_min - max(position.last_checkpoint_t, 0.0) >= cfg.checkpoint_interval
    )
    if not (due or position.finished):
        return
    position.last_checkpoint_t = t_env_min
    meta = {
        "iteration": position.iteration,
        "rows": len(position.rows),
        "elapsed_s": position.elapsed_s,
        "last_checkpoint_t": t_env_min,
        "t_env_min": t_env_min,
        "finished": position.finished,
    }
    checkpoint.save(session.run_dir, state, meta, keep=cfg.keep_checkpoints)


def _check_finite(metrics, members, run_dir) -> None:
    """Stop on the first non-finite metric, naming it, the member and the step."""
    for name in sorted(metrics, key=lambda n: ("loss" not in n, n)):  # losses first
        values = np.asarray(metrics[name])
        if not np.issubdtype(values.dtype, np.floating):
            continue
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            member = members[i]
            who = f"seed {member.seed}" + (f" ({member.variant})" if member.variant else "")
            kept = ""
            if run_dir is not None:
                good = checkpoint.list_checkpoints(run_dir)
                kept = (
                    f"; the last good checkpoint {good[-1].stem} is kept"
                    if good
                    else "; no checkpoint had been written yet"
                )
            raise TrainingFault(
                f"training: {name} is {values[i]} for {who} in the evaluation period ending at "
                f"env step {int(np.asarray(metrics['t_env'])[i])}{kept}"
            )


def _rows(metrics, members, steps, wall, elapsed) -> list[dict[str, Any]]:
    rows = []
    for i, member in enumerate(members):
        row: dict[str, Any] = {"seed": member.seed}
        if member.variant:
            row["variant"] = member.variant
            row.update({f"hp/{k}": float(v) for k, v in member.hparams.items()})
        for name, values in metrics.items():
            value = np.asarray(values)[i]
            row[name] = int(value) if np.issubdtype(value.dtype, np.integer) else float(value)
        row["time/env_steps_per_s"] = float(steps[i] / max(wall, 1e-9))
        row["time/elapsed_s"] = float(elapsed)
        rows.append(row)
    return rows
