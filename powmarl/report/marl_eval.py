"""marl-eval's JSON from run directories (``powmarl report RUN_DIR... --marl-eval FILE.json``).

The nesting is the one marl-eval's README and ``json_tools.JsonLogger`` describe (Gorsane
et al., 2022)::

    {env: {task: {algo: {"seed_<n>": {
        "step_<k>": {"step_count": t_env, "elapsed_time": s, "<metric>": [per episode]},
        ...,
        "absolute_metrics": {"<metric>": [per episode]}}}}}}

- ``env`` is the env id, ``task`` its identifying arguments (``p=-4``; the env id when it
  has none), ``algo`` the algorithm with its sweep variant; keys are lower case and
  algorithm names have no commas (marl-eval's probability-of-improvement plots split on
  them).
- ``step_<k>`` is the k-th greedy evaluation (from 0); ``step_count`` its env steps,
  ``elapsed_time`` the seconds since the first evaluation (as JsonLogger counts, leaving
  compilation out); one list per metric holds every test episode's value, read from the
  run's ``eval_episodes.jsonl`` (:mod:`powmarl.io.episodes`): ``return`` and each info
  counter (``battle_won`` is named ``win_rate``, marl-eval's name).
- ``absolute_metrics``: the best evaluation's agent of each seed (:mod:`powmarl.io.best`)
  re-evaluated greedily, by default with 10x the run's ``test_nepisode`` episodes.

marl-eval aggregates arrays, so every algorithm and task must have the same seeds and the
same number of evaluations; the export refuses with a message naming what differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from powmarl.io import episodes as eval_episodes
from powmarl.io.run_dir import atomic_write_text
from powmarl.report.runs import Group, ReportError, cut_at, load_groups

#: marl-eval's names for our per-episode counters; the others keep the env's info key.
METRIC_NAMES = {"battle_won": "win_rate"}
#: Per-episode values that are not a performance metric.
NOT_METRICS = frozenset({"ep_length"})
#: ``absolute_metrics`` episodes per seed, as a multiple of the run's test_nepisode.
ABSOLUTE_FACTOR = 10


def keys_of(group: Group) -> tuple[str, str, str]:
    """(env, task, algo) keys of a group: lower case, no commas in the algorithm."""
    task = group.task[len(group.env_id) :].strip() or group.env_id
    algo = group.label.replace(",", " ")
    return group.env_id.lower(), task.lower(), algo.lower()


def metric_values(line: dict[str, Any]) -> dict[str, list]:
    """The metric lists of one ``eval_episodes.jsonl`` line, under marl-eval's names."""
    skip = {"seed", "variant", "t_env", *NOT_METRICS}
    return {METRIC_NAMES.get(k, k).lower(): v for k, v in line.items() if k not in skip}


def _episode_lines(group: Group, seed: int, cache: dict[Path, Any]) -> dict[int, dict]:
    """Seed ``seed`` of ``group``: its per-episode lines by t_env (the last of repeats)."""
    path = group.dirs[seed]
    if path not in cache:
        cache[path] = eval_episodes.read(path)
    if cache[path] is None:
        raise ReportError(
            f"marl-eval: {path} has no {eval_episodes.FILE} (trained before powmarl kept "
            "per-episode test values); train it again to export it"
        )
    return {
        int(ln["t_env"]): ln
        for ln in cache[path]
        if ln["seed"] == seed and ln.get("variant", "") == group.variant
    }


def seed_steps(group: Group, seed: int, cache: dict[Path, Any]) -> dict[str, dict]:
    """``{"step_<k>": {...}}`` of one seed, from its metrics rows and per-episode lines."""
    lines = _episode_lines(group, seed, cache)
    rows = group.curves[seed]
    start = float(rows[0].get("time/elapsed_s", 0.0))
    steps = {}
    for k, row in enumerate(rows):
        t_env = int(row["t_env"])
        if t_env not in lines:
            raise ReportError(
                f"marl-eval: {group.dirs[seed]} has no per-episode values for seed {seed} at "
                f"{t_env} env steps (that part of the run was trained by a powmarl that did "
                f"not write {eval_episodes.FILE})"
            )
        elapsed = float(row.get("time/elapsed_s", start)) - start
        steps[f"step_{k}"] = {
            "step_count": t_env,
            "elapsed_time": elapsed,
            **metric_values(lines[t_env]),
        }
    return steps


def _describe(group: Group) -> str:
    return f"{group.label} on {group.task}"


def check_shape(groups: Sequence[Group]) -> None:
    """Refuse (ReportError naming them) groups whose seeds or evaluation counts differ, and
    two groups that fall on the same keys."""
    if not groups:
        raise ReportError("marl-eval: no runs to export")
    first = groups[0]
    taken: dict[tuple[str, str, str], Group] = {}
    for group in groups:
        keys = keys_of(group)
        if keys in taken:
            raise ReportError(
                f"marl-eval: {_describe(taken[keys])} and {_describe(group)} both become "
                f"{'/'.join(keys)} (keys are lower case, commas dropped); rename one"
            )
        taken[keys] = group
        if group.seeds != first.seeds:
            raise ReportError(
                f"marl-eval: {_describe(group)} has seeds {_seeds(group)} but "
                f"{_describe(first)} has seeds {_seeds(first)}; every algorithm and task "
                "needs the same seeds"
            )
    counts = [(len(g.curves[s]), g, s) for g in groups for s in g.seeds]
    n0, g0, s0 = counts[0]
    for n, group, seed in counts:
        if n != n0:
            raise ReportError(
                f"marl-eval: seed {seed} of {_describe(group)} has {n} evaluations but seed "
                f"{s0} of {_describe(g0)} has {n0}; every run needs the same number "
                "(--at T cuts runs to a common budget)"
            )


def _seeds(group: Group) -> str:
    return ", ".join(str(s) for s in group.seeds)


def build(
    groups: Sequence[Group],
    absolute: Callable[[Group, int], dict[str, list]] | None = None,
) -> dict[str, Any]:
    """The marl-eval dict of ``groups`` (checked by :func:`check_shape`); ``absolute(group,
    seed)`` gives a seed's ``absolute_metrics`` ({name: per-episode values}); None leaves
    them out."""
    check_shape(groups)
    cache: dict[Path, Any] = {}
    out: dict[str, Any] = {}
    for group in groups:
        env, task, algo = keys_of(group)
        seeds = out.setdefault(env, {}).setdefault(task, {}).setdefault(algo, {})
        for seed in group.seeds:
            entry = seed_steps(group, seed, cache)
            if absolute is not None:
                entry["absolute_metrics"] = absolute(group, seed)
            seeds[f"seed_{seed}"] = entry
    return out


class BestEvaluations:
    """``absolute(group, seed)`` for :func:`build`: each run directory's best agents
    re-evaluated once (all its members together) with ``episodes`` per seed (default:
    :data:`ABSOLUTE_FACTOR` x the run's test_nepisode)."""

    def __init__(self, episodes: int | None = None, num_workers: int | None = None):
        if episodes is not None and episodes < 1:
            raise ReportError(f"--absolute-episodes: must be >= 1 (or 0: none), got {episodes}")
        self.episodes, self.num_workers = episodes, num_workers
        self._rows: dict[Path, dict[tuple[int, str], dict]] = {}

    def __call__(self, group: Group, seed: int) -> dict[str, list]:
        from powmarl.api import evaluate, read_record

        path = group.dirs[seed]
        if path not in self._rows:
            count = self.episodes or ABSOLUTE_FACTOR * read_record(path)["config"]["test_nepisode"]
            try:
                rows = evaluate(path, episodes=count, best=True, per_episode=True,
                                num_workers=self.num_workers)  # fmt: skip
            except ValueError as err:
                raise ReportError(f"marl-eval: absolute metrics of {path}: {err}") from None
            self._rows[path] = {(r["seed"], r["variant"]): r for r in rows}
        values = self._rows[path][(seed, group.variant)]["per_episode"]
        return {k: eval_episodes.compact(v) for k, v in metric_values(values).items()}


def export(
    run_dirs: Iterable[str | os.PathLike],
    path: str | os.PathLike,
    at: float | None = None,
    absolute_episodes: int | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Write marl-eval's JSON of ``run_dirs`` to ``path`` and return it.

    ``at``: the evaluations up to that many env steps (as ``powmarl report --at``).
    ``absolute_episodes``: greedy episodes per seed for ``absolute_metrics`` (default 10x
    the run's test_nepisode; 0 leaves them out, re-evaluating nothing).
    """
    groups = load_groups(run_dirs)
    if at is not None:
        groups = cut_at(groups, at)
    check_shape(groups)  # before any re-evaluation
    absolute = None if absolute_episodes == 0 else BestEvaluations(absolute_episodes, num_workers)
    data = build(groups, absolute)
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(data))
    except OSError as err:
        raise ReportError(f"--marl-eval: cannot write {out}: {err.strerror or err}") from None
    return data
