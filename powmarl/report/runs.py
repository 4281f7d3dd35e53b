"""Load run directories and pool them into groups: one group per (algorithm, variant, task).

A group holds, per seed, that seed's evaluation rows sorted by ``t_env``. Run directories
of the same algorithm, variant and task are pooled (the union of their seeds); the same
seed in two directories is an error naming both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Short names of env arguments in task labels ("stag_hunt p=-4").
_KWARG_ABBREV = {"punishment": "p"}

#: Row keys that are not metrics.
_NOT_METRICS = frozenset({"seed", "t_env", "variant", "algo"})

#: The paper's metric of each family: SMAC win rate, intersection arrival rate, else return.
DEFAULT_METRICS = ("eval/battle_won_mean", "eval/all_arrive_mean", "eval/return_mean")


class ReportError(ValueError):
    """Bad input to a report: names the path, field or metric and what is allowed."""


@dataclasses.dataclass
class Run:
    """One run directory as read from disk."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    tables: dict[str, dict[str, Any]] | None  # seed (str) -> name -> nested lists


@dataclasses.dataclass
class Group:
    """All seeds of one algorithm (+ variant) on one task, pooled over run directories."""

    algo: str
    variant: str
    task: str
    env_id: str
    env_kwargs: dict[str, Any]
    curves: dict[int, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    dirs: dict[int, Path] = dataclasses.field(default_factory=dict)
    tables: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        """Row label: the algorithm, with the variant in brackets if there is one."""
        return f"{self.algo} [{self.variant}]" if self.variant else self.algo

    @property
    def seeds(self) -> list[int]:
        return sorted(self.curves)


def _decode(value: Any) -> Any:
    """Undo ``MetricsWriter``'s encoding of non-finite floats (null, "inf", "-inf")."""
    if value is None:
        return math.nan
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl``; a malformed line is an error naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ReportError(f"report: {path}:{lineno} is not valid JSON ({err.msg})")
            if not isinstance(row, dict) or "seed" not in row or "t_env" not in row:
                raise ReportError(f"report: {path}:{lineno} needs an object with seed and t_env")
            rows.append({k: _decode(v) for k, v in row.items()})
    return rows


def load_run(path: str | os.PathLike) -> Run:
    """Read ``config.json``, ``metrics.jsonl`` and, if present, ``tables.json`` of a run."""
    path = Path(path)
    for name in ("config.json", "metrics.jsonl"):
        if not (path / name).is_file():
            raise ReportError(f"report: {path} is not a run directory (no {name})")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"report: {path / 'config.json'} is not valid JSON ({err.msg})")
    for key in ("algo", "env_id"):
        if key not in config:
            raise ReportError(f"report: {path / 'config.json'} has no {key!r}")
    tables = None
    if (path / "tables.json").is_file():
        tables = json.loads((path / "tables.json").read_text(encoding="utf-8"))
    return Run(path, config, read_rows(path / "metrics.jsonl"), tables)


def _format_value(key: str, value: Any) -> str:
    """``punishment=-4.0`` -> ``p=-4``; lists and dicts become a short stable hash."""
    name = _KWARG_ABBREV.get(key, key)
    if isinstance(value, bool) or value is None:
        return f"{name}={value}"
    if isinstance(value, (int, float)):
        return f"{name}={value:g}"
    if isinstance(value, str):
        return f"{name}={value}"
    digest = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:6]
    return f"{name}#{digest}"


def task_label(env_id: str, env_kwargs: dict[str, Any]) -> str:
    """Column label of a task: the env id and its identifying arguments, sorted by name.

    ``task_label("stag_hunt", {"punishment": -4.0}) == "stag_hunt p=-4"``.
    """
    parts = [_format_value(k, env_kwargs[k]) for k in sorted(env_kwargs)]
    return " ".join([env_id, *parts])


def _env_defaults(env_id: str) -> dict[str, Any]:
    """Default arguments of a registered env ({} for an env this library does not know)."""
    from powmarl.envs import env_kwargs

    try:
        defaults = env_kwargs(env_id)
    except ValueError:
        return {}
    return {k: json.loads(json.dumps(v)) for k, v in defaults.items()}


def identifying_kwargs(runs: Sequence[Run]) -> dict[Path, dict[str, Any]]:
    """Per run, the env arguments that tell its task apart.

    An argument is shown when any run of the same env id sets it; runs that leave it out
    get the env's default, so ``stag_hunt`` at the default punishment and ``stag_hunt``
    with ``punishment=0`` land in the same column.
    """
    given: dict[str, set[str]] = {}
    for run in runs:
        given.setdefault(run.config["env_id"], set()).update(run.config.get("env_kwargs") or {})
    out = {}
    for run in runs:
        env_id = run.config["env_id"]
        defaults = _env_defaults(env_id)
        kwargs = {k: defaults[k] for k in given[env_id] if k in defaults}
        kwargs.update(run.config.get("env_kwargs") or {})
        out[run.path] = kwargs
    return out


def _sorted_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows sorted by t_env; of rows with the same t_env (a resumed run) the last wins."""
    by_t = {}
    for row in rows:
        by_t[row["t_env"]] = row
    return [by_t[t] for t in sorted(by_t)]


def _add_run(groups: dict[tuple, Group], run: Run, kwargs: dict[str, Any]) -> None:
    """Split one run's rows by (algo, variant, seed) and pool them into ``groups``."""
    task = task_label(run.config["env_id"], kwargs)
    split: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in run.rows:
        key = (row.get("algo") or run.config["algo"], row.get("variant") or "", int(row["seed"]))
        split.setdefault(key, []).append(row)
    for (algo, variant, seed), rows in split.items():
        group = groups.setdefault(
            (algo, variant, task), Group(algo, variant, task, run.config["env_id"], kwargs)
        )
        if seed in group.dirs and group.dirs[seed] != run.path:
            raise ReportError(
                f"report: seed {seed} of {group.label} on {task} appears in both "
                f"{group.dirs[seed]} and {run.path}; pass only one of them"
            )
        group.curves[seed] = _sorted_curve(rows)
        group.dirs[seed] = run.path
        table_key = f"{seed} {variant}".strip()  # keys of tables.json: "seed [variant]"
        if run.tables and table_key in run.tables:
            group.tables[seed] = run.tables[table_key]


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Pool runs into groups, ordered by task, then the paper's algorithm order, then variant."""
    from powmarl.presets import ALGOS

    kwargs = identifying_kwargs(runs)
    groups: dict[tuple, Group] = {}
    for run in runs:
        _add_run(groups, run, kwargs[run.path])
    order = {name: i for i, name in enumerate(ALGOS)}
    return sorted(
        groups.values(), key=lambda g: (g.task, order.get(g.algo, len(order)), g.algo, g.variant)
    )


def load_groups(run_dirs: Iterable[str | os.PathLike]) -> list[Group]:
    """Load every run directory and pool them; a repeated directory is read once."""
    paths = list(dict.fromkeys(Path(p).resolve() for p in run_dirs))
    if not paths:
        raise ReportError("report: give at least one run directory")
    return group_runs([load_run(p) for p in paths])


def cut_at(groups: Sequence[Group], at: float) -> list[Group]:
    """The groups as they stood at ``at`` env steps: each seed's rows up to ``at``, seeds
    that had not reached ``at`` (no row at or after it) left out, and groups left with
    no seed dropped. Compares runs stopped at different points on an equal budget.
    One-step tables (``tables.json``, written at the end of a run) are kept only for
    seeds whose run ended at ``at``: the others' tables are from later."""
    if not at > 0:
        raise ReportError(f"--at: must be a positive number of env steps, got {at}")
    out = []
    for group in groups:
        curves, dirs, ended = {}, {}, set()
        for seed, rows in group.curves.items():
            kept = [r for r in rows if r["t_env"] <= at]
            if kept and rows[-1]["t_env"] >= at:
                curves[seed], dirs[seed] = kept, group.dirs[seed]
                if len(kept) == len(rows):
                    ended.add(seed)
        if curves:
            tables = {s: t for s, t in group.tables.items() if s in ended}
            out.append(dataclasses.replace(group, curves=curves, dirs=dirs, tables=tables))
    if not out:
        raise ReportError(f"--at: no seed of these runs reached {at:g} env steps")
    return out


def metric_names(groups: Iterable[Group]) -> list[str]:
    """Every metric logged in any group's rows."""
    names: set[str] = set()
    for group in groups:
        for rows in group.curves.values():
            for row in rows:
                names.update(k for k, v in row.items() if isinstance(v, (int, float)))
    return sorted(names - _NOT_METRICS)


def choose_metric(groups: Sequence[Group], metric: str | None) -> str:
    """``metric`` if logged (error listing the logged ones otherwise), else the default:
    the SMAX win rate where logged (SMAC maps), the arrival rate where logged (the
    intersection), else the greedy test return (also for the SMACv2-like scenarios, whose
    paper metric is the mean test return)."""
    available = metric_names(groups)
    if metric is not None:
        if metric not in available:
            raise ReportError(
                f"--metric: {metric!r} is not logged in these runs; available: "
                f"{', '.join(available)}"
            )
        return metric
    smacv2 = bool(groups) and all(g.env_id.startswith("smacv2_") for g in groups)
    for name in DEFAULT_METRICS[2:] if smacv2 else DEFAULT_METRICS:
        if name in available:
            return name
    raise ReportError(
        f"--metric: none of the default metrics {', '.join(DEFAULT_METRICS)} is logged; "
        f"available: {', '.join(available) or 'none'}"
    )


def final_values(group: Group, metric: str) -> dict[int, float]:
    """Per seed, ``metric`` at the seed's last evaluation row that logs it."""
    out = {}
    for seed, rows in sorted(group.curves.items()):
        logged = [row[metric] for row in rows if isinstance(row.get(metric), (int, float))]
        if logged:
            out[seed] = float(logged[-1])
    return out
