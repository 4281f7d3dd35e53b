"""Metric sinks: where each evaluation's rows go. The loop calls ``write(rows)`` once per
evaluation (one dict per member, with ``seed``, ``t_env`` and the metrics) and ``close()``
at the end; ``metrics.jsonl`` is always the first sink of a run with a directory.

A new logging backend is one module with a sink class plus one :func:`register` call;
``powmarl train --<name>`` and ``powmarl.train(..., loggers=[name])`` then reach it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol


class Sink(Protocol):
    def write(self, rows: Iterable[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class MissingBackendError(ImportError):
    """A logging backend was asked for but its package is not installed."""


@dataclasses.dataclass(frozen=True)
class SinkKind:
    """A registered sink: ``make(run_dir, record, **options) -> Sink``; ``package`` and
    ``extra`` name what it needs (checked before any sink is built); ``help`` is the CLI's."""

    name: str
    make: Callable[..., Sink]
    package: str | None = None
    extra: str | None = None
    help: str = ""


SINKS: dict[str, SinkKind] = {}


def register(kind: SinkKind) -> None:
    """Make ``kind`` available by name (``loggers=[kind.name]``, ``--<name>``)."""
    if kind.name in SINKS or kind.name == "jsonl":
        raise ValueError(f"sink: {kind.name!r} is already registered")
    SINKS[kind.name] = kind


def import_for(name: str, package: str, extra: str | None = None):
    """Import ``package`` for sink ``name`` or raise MissingBackendError naming the pip extra."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingBackendError(
            f"logging: --{name} needs {package}; install with pip install "
            f"'powmarl[{extra or package}]'",
            name=package,
        ) from None


def require(kind: SinkKind) -> None:
    """Raise MissingBackendError naming the pip extra when the sink's package is missing."""
    if kind.package is not None:
        import_for(kind.name, kind.package, kind.extra)


def make_sinks(
    names: Sequence[str],
    run_dir: str | Path | None,
    record: dict[str, Any] | None = None,
    jsonl: bool = True,
    **options: Any,
) -> list[Sink]:
    """``metrics.jsonl`` (with a run dir and ``jsonl``), then the sinks named in ``names``.

    Every name and package is checked before anything is created, so a typo or a missing
    extra fails before training starts. ``options`` go to every sink's ``make`` (each
    takes the ones it knows).
    """
    from powmarl.io import logging as _builtin  # noqa: F401 - registers tensorboard, wandb
    from powmarl.io.run_dir import MetricsWriter

    names = list(dict.fromkeys([names] if isinstance(names, str) else names))
    unknown = [n for n in names if n not in SINKS]
    if unknown:
        raise ValueError(
            f"loggers: unknown backend {unknown[0]!r}; allowed: {', '.join(sorted(SINKS))}"
        )
    if names and run_dir is None:
        raise ValueError(f"loggers: {', '.join(names)} need a run directory (--run-dir)")
    for name in names:
        require(SINKS[name])
    for name in names:  # options a sink can check before anything is created
        getattr(SINKS[name].make, "check", lambda **_: None)(**options)
    sinks: list[Sink] = [MetricsWriter(run_dir)] if run_dir is not None and jsonl else []
    sinks += [SINKS[name].make(run_dir, record, **options) for name in names]
    return sinks
