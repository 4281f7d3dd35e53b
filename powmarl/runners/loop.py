"""The one training loop: every run, on any backend, is driven from here.

Per evaluation period the loop asks its backend for one chunk (``run_chunk``), turns the
per-member metrics into rows, hands them to the sinks (``metrics.jsonl`` first), stops on
a non-finite number, updates the progress bar and the loop :class:`Position`, and writes a
checkpoint of the whole state when one is due. A member is a seed and, in a sweep, one
grid point; all members advance together.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from powmarl.config import Config
from powmarl.io import best, checkpoint
from powmarl.io import episodes as eval_episodes
from powmarl.runners.backend import Backend
from powmarl.runners.members import Member

#: Version of the checkpoint record (1: powmarl 0.1, whose host runner was different).
RECORD_FORMAT = 2


class TrainingFault(RuntimeError):
    """Training produced a non-finite number; the run stopped (last good checkpoint kept)."""


@dataclasses.dataclass
class Position:
    """Where the loop is; written into every checkpoint's record and read back by resume."""

    iteration: int = 0
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    elapsed_s: float = 0.0
    last_checkpoint_t: float = -1.0
    finished: bool = False

    def record(self, t_env_min: float, backend: str) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "backend": backend,
            "iteration": self.iteration,
            "rows": len(self.rows),
            "elapsed_s": self.elapsed_s,
            "last_checkpoint_t": self.last_checkpoint_t,
            "t_env_min": t_env_min,
            "finished": self.finished,
        }

    @classmethod
    def from_record(cls, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Position:
        """The position a checkpoint's record holds (``rows``: the metrics rows kept)."""
        if "member" in meta and "format" not in meta:
            raise ValueError(
                "resume: this checkpoint was written by powmarl 0.1's host runner, which "
                "trained members one after another; this version cannot continue it"
            )
        return cls(
            iteration=int(meta["iteration"]),
            rows=rows,
            elapsed_s=float(meta["elapsed_s"]),
            last_checkpoint_t=float(meta["last_checkpoint_t"]),
            finished=bool(meta["finished"]),
        )


def metric_rows(metrics, members: Sequence[Member], steps, wall: float, elapsed: float):
    """One row per member: ``seed`` (``variant`` and ``hp/*`` in a sweep), every metric,
    ``time/env_steps_per_s`` over the period and ``time/elapsed_s`` of the run."""
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


def check_finite(metrics, members: Sequence[Member], run_dir: Path | None) -> None:
    """Stop on the first non-finite metric, naming it, the member and the step."""
    for name in sorted(metrics, key=lambda n: ("loss" not in n, n)):  # losses first
        values = np.asarray(metrics[name])
        if not np.issubdtype(values.dtype, np.floating):
            continue
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            kept = ""
            if run_dir is not None:
                good = checkpoint.list_checkpoints(run_dir)
                kept = (
                    f"; the last good checkpoint {good[-1].stem} is kept"
                    if good
                    else "; no checkpoint had been written yet"
                )
            raise TrainingFault(
                f"training: {name} is {values[i]} for {members[i].describe()} in the "
                f"evaluation period ending at env step {int(np.asarray(metrics['t_env'])[i])}"
                f"{kept}"
            )


@dataclasses.dataclass
class Loop:
    """Drives ``backend`` to ``cfg.t_max``; ``sinks`` get every evaluation's rows."""

    backend: Backend
    cfg: Config
    run_dir: Path | None = None
    sinks: Sequence[Any] = ()  # objects with write(rows) and close()
    progress: bool = True
    label: str = ""
    #: callable(rows so far) -> bool, asked after each evaluation: True ends the run there
    stop_when: Callable[[list[dict[str, Any]]], bool] | None = None
    #: the env's declared main metric (contract.main_metric), which ranks the evaluations
    #: whose agents are kept for the absolute metric (powmarl.io.best); None: the default
    main_metric: str | None = None

    def run(self, state=None, position: Position | None = None):
        """Train until every member passed ``t_max`` (or ``stop_when``); (state, position)."""
        from powmarl.io.progress import Progress

        position = position or Position()
        backend, members = self.backend, self.backend.members
        state = backend.prepare(state if state is not None else backend.init())
        start = time.perf_counter() - position.elapsed_s
        t_prev = _last_t_env(position.rows, members)
        tracker = best.Tracker(self.run_dir, members, self.main_metric) if self.run_dir else None
        with Progress(self.cfg.t_max, self.label, enabled=self.progress) as bar:
            while not position.finished:
                chunk_start = time.perf_counter()
                state, metrics = backend.run_chunk(state, position.iteration)
                metrics, episodes = eval_episodes.split(metrics)
                t_env = np.asarray(metrics["t_env"], dtype=np.float64)
                now = time.perf_counter()
                rows = metric_rows(metrics, members, t_env - t_prev, now - chunk_start, now - start)
                t_prev = t_env
                for sink in self.sinks:
                    sink.write(rows)
                check_finite(metrics, members, self.run_dir)
                position.iteration += backend.iters_per_chunk
                if tracker is not None:
                    eval_episodes.append(self.run_dir, eval_episodes.lines(episodes, members, t_env))
                    tracker.update(state, metrics, position.iteration)
                position.rows.extend(rows)
                position.elapsed_s = time.perf_counter() - start
                position.finished = bool(t_env.min() >= self.cfg.t_max) or bool(
                    self.stop_when is not None and self.stop_when(position.rows)
                )
                bar.update(int(t_env.min()), float(np.mean(metrics["eval/return_mean"])))
                self._maybe_checkpoint(state, position, float(t_env.min()))
        return state, position

    def _maybe_checkpoint(self, state, position: Position, t_env_min: float) -> None:
        cfg = self.cfg
        if self.run_dir is None:
            return
        due = cfg.checkpoint_interval == 0 or (
            t_env_min - max(position.last_checkpoint_t, 0.0) >= cfg.checkpoint_interval
        )
        if not (due or position.finished):
            return
        position.last_checkpoint_t = t_env_min
        record = position.record(t_env_min, self.backend.kind)
        checkpoint.save(self.run_dir, state, record, keep=cfg.keep_checkpoints)
        kept = checkpoint.list_checkpoints(self.run_dir)
        best.prune(self.run_dir, int(kept[0].stem.split("-")[1]) if kept else position.iteration)


def _last_t_env(rows, members) -> np.ndarray:
    last = {(r["seed"], r.get("variant", "")): r["t_env"] for r in rows}
    return np.asarray([last.get((m.seed, m.variant), 0) for m in members], dtype=np.float64)
