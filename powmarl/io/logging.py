"""Optional metric sinks next to ``metrics.jsonl``: TensorBoard and Weights & Biases.

Every sink has the interface of :class:`powmarl.io.run_dir.MetricsWriter`:
``write(rows)`` takes rows of one evaluation (one dict per seed, with ``"seed"`` and
``"t_env"``; sweep members may add a ``"variant"`` string) and ``close()`` ends the sink.
Each seed (and variant) is its own run in the backend, so seeds can be compared and
overlaid there; the step is ``t_env``.

``make_loggers(["tensorboard", "wandb"], run_dir, config)`` builds them; the packages are
optional extras (``pip install 'powmarl[tensorboard]'``, ``'powmarl[wandb]'``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from powmarl.io.sinks import (  # noqa: F401 - MissingBackendError is part of this API
    SINKS,
    MissingBackendError,
    SinkKind,
    import_for,
    make_sinks,
    register,
)

WANDB_MODES = ("offline", "online")

#: Row keys that identify a row rather than measure something.
_ROW_KEYS = frozenset({"seed", "t_env", "variant", "algo"})


def _require(module: str, flag: str, extra: str):
    """Import ``module`` or raise MissingBackendError naming the pip extra."""
    return import_for(flag, module, extra)


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a row (no seed, t_env, strings, bools or None)."""
    return {
        k: float(v)
        for k, v in row.items()
        if k not in _ROW_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def member_name(row: dict[str, Any]) -> str:
    """``seed3``, or ``<variant>/seed3`` for a sweep member with a variant."""
    seed = f"seed{int(row['seed'])}"
    variant = row.get("variant") or ""
    if not variant:
        return seed
    return f"{re.sub(r'[^A-Za-z0-9._=+-]+', '_', variant)}/{seed}"


class Logger:
    """Base of the sinks: ``write(rows)``, ``close()``, usable as a context manager."""

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardLogger(Logger):
    """TensorBoard event files, one writer per seed under ``run_dir/tensorboard/seed<k>/``.

    Scalar tag = metric name (``eval/return_mean``), step = ``t_env``.
    ``purge_steps`` (member name -> step; set by ``powmarl resume``) hides that member's
    events at or after the step, which the resumed run logs again, from TensorBoard.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        flush_secs: int = 30,
        purge_steps: dict[str, int] | None = None,
    ):
        self._tbx = _require("tensorboardX", "tensorboard", "tensorboard")
        self.root = Path(run_dir) / "tensorboard"
        self.flush_secs = flush_secs
        self.purge_steps = dict(purge_steps or {})
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str):
        if name not in self._writers:
            logdir = self.root / name
            logdir.mkdir(parents=True, exist_ok=True)
            self._writers[name] = self._tbx.SummaryWriter(
                logdir=str(logdir),
                flush_secs=self.flush_secs,
                purge_step=self.purge_steps.get(name),
            )
        return self._writers[name]

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        touched = set()
        for row in rows:
            name = member_name(row)
            writer = self._writer(name)
            for tag, value in scalars(row).items():
                writer.add_scalar(tag, value, global_step=int(row["t_env"]))
            touched.add(name)
        for name in touched:  # evaluations are rare: make each one visible at once
            self._writers[name].flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _wandb_settings(wandb, mode: str):
    """Settings that keep W&B quiet and, offline, free of any network access.

    Offline, system metrics, machine and cloud metadata probes and git/requirements
    capture are off (they would reach for the network or slow the start). Only fields the
    installed wandb knows are set.
    """
    wanted: dict[str, Any] = {"silent": True, "console": "off", "quiet": True}
    if mode == "offline":
        wanted.update(
            disable_git=True,
            disable_code=True,
            save_code=False,
            x_disable_stats=True,
            x_disable_meta=True,
            x_disable_machine_info=True,
            x_save_requirements=False,
        )
    known = getattr(wandb.Settings, "model_fields", None) or {}
    return wandb.Settings(**{k: v for k, v in wanted.items() if not known or k in known})


class WandbLogger(Logger):
    """Weights & Biases: one W&B run per seed, grouped under the run directory's name.

    Args:
      run_dir: W&B writes under ``run_dir/wandb/`` (offline: ``offline-run-*``; upload
        later with ``wandb sync``).
      config: the run's resolved config (config.json); each seed's run gets ``seed`` added.
      project: W&B project.
      mode: "offline" (default; needs no network or account) or "online".
      name: group name (default: the run directory's name); runs are ``<name>-seed<k>``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: dict[str, Any] | None = None,
        project: str = "powmarl",
        mode: str = "offline",
        name: str | None = None,
    ):
        if mode not in WANDB_MODES:
            raise ValueError(f"--wandb-mode: must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
        if mode == "offline":  # no crash reports to W&B's servers either (the user may override)
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        self._wandb = _require("wandb", "wandb", "wandb")
        self.run_dir = Path(run_dir)
        self.config = dict(config or {})
        self.project = project
        self.mode = mode
        self.name = name or self.run_dir.resolve().name
        self._runs: dict[str, Any] = {}

    def _run(self, row: dict[str, Any]):
        member = member_name(row)
        if member not in self._runs:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            extra = {"seed": int(row["seed"])}
            if row.get("variant"):
                extra["variant"] = row["variant"]
            self._runs[member] = self._wandb.init(
                project=self.project,
                dir=str(self.run_dir),
                mode=self.mode,
                group=self.name,
                name=f"{self.name}-{member.replace('/', '-')}",
                config={**self.config, **extra},
                reinit="create_new",
                settings=_wandb_settings(self._wandb, self.mode),
            )
        return self._runs[member]

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._run(row).log(scalars(row), step=int(row["t_env"]))

    def close(self) -> None:
        """Finish every seed's run; then, unless the user has a global W&B run of their
        own, tear the W&B service down, which waits until the run files are fully written
        (``finish`` alone may return before the last records reach the disk)."""
        for run in self._runs.values():
            run.finish()
        if self._runs and self._wandb.run is None:
            self._wandb.teardown()
        self._runs.clear()


def _check_wandb_mode(mode: str = "offline", **_):
    if mode not in WANDB_MODES:
        raise ValueError(f"--wandb-mode: must be one of {', '.join(WANDB_MODES)}, got {mode!r}")


def _tensorboard(run_dir, record=None, purge_steps=None, **_):
    return TensorBoardLogger(run_dir, purge_steps=purge_steps)


def _wandb(run_dir, record=None, project="powmarl", mode="offline", name=None, **_):
    return WandbLogger(run_dir, record, project=project, mode=mode, name=name)


_wandb.check = _check_wandb_mode

register(SinkKind("tensorboard", _tensorboard, "tensorboardX", "tensorboard",
                  "TensorBoard event files, one directory per seed (RUN_DIR/tensorboard/)"))
register(SinkKind("wandb", _wandb, "wandb", "wandb",
                  "Weights & Biases, one run per seed (offline unless --wandb-mode online)"))

#: The registered logging backends (sinks besides metrics.jsonl).
BACKENDS = tuple(SINKS)


def make_loggers(
    names: Sequence[str],
    run_dir: str | os.PathLike | None,
    config: dict[str, Any] | None = None,
    **options: Any,
) -> list[Logger]:
    """The sinks named in ``names`` (e.g. "tensorboard", "wandb"), in that order, without
    ``metrics.jsonl``; ``options`` (W&B project, mode and name; TensorBoard purge_steps on
    resume) go to each sink (see :func:`powmarl.io.sinks.make_sinks`)."""
    return make_sinks(names, run_dir, config, jsonl=False, **options)
