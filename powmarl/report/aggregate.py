"""Aggregate statistics over tasks and seeds (Agarwal et al. 2021), computed with rliable.

Each seed's final score on each task is normalised per task, ``(x - low) / (high - low)``,
with ``low``/``high`` either the minimum and maximum final score of any algorithm and seed
on that task (min-max over algorithms) or reference scores the user names per task. On the
normalised scores ``[S seeds, T tasks]`` of each algorithm:

- IQM (mean of the middle 50% of all S*T scores), mean, median (of per-task means) and
  optimality gap ``1 - mean(min(x, 1))``, each with a stratified bootstrap interval
  (seeds resampled with replacement within each task);
- the probability of improvement ``P(X > Y)`` of every pair, the Mann-Whitney U statistic
  per task averaged over tasks, with a stratified bootstrap interval;
- performance profiles: the fraction of runs with normalised score above tau, with bands;
- sample-efficiency curves: the IQM at each point of a common env-step grid.

rliable is an optional extra (``pip install 'powmarl[aggregate]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from powmarl.report.runs import Group, ReportError

MISSING_RLIABLE = (
    "report: --aggregate needs rliable; install with pip install 'powmarl[aggregate]'"
)

#: Statistics of :func:`interval_estimates`, in column order.
STATISTICS = ("IQM", "mean", "median", "optimality gap")

#: Runs whose last evaluations lie further apart than this factor are refused.
BUDGET_TOLERANCE = 1.1

#: Points of the sample-efficiency grid (fewer when the runs evaluated less often).
CURVE_POINTS = 25


def rliable():
    """(rliable.library, rliable.metrics), or ImportError with the install command."""
    try:
        from rliable import library, metrics
    except ImportError:
        raise ImportError(MISSING_RLIABLE, name="rliable") from None
    return library, metrics


@dataclasses.dataclass(frozen=True)
class Options:
    """How to aggregate: reference scores ({task: (low, high)}; None: min-max over
    algorithms), bootstrap samples, interval coverage and the bootstrap's random seed."""

    reference: dict[str, tuple[float, float]] | None = None
    reps: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if int(self.reps) != self.reps or self.reps < 10:
            raise ReportError(f"--bootstrap-reps: must be an integer >= 10, got {self.reps}")
        if not 0.0 < self.confidence < 1.0:
            raise ReportError(f"confidence: must lie strictly between 0 and 1, got {self.confidence}")


@dataclasses.dataclass
class Scores:
    """Final scores of every algorithm on every task, all with the same seeds.

    raw/normalised: algorithm -> [S, T]; bounds: task -> (low, high) of the normalisation."""

    algos: list[str]
    tasks: list[str]
    seeds: list[int]
    raw: dict[str, np.ndarray]
    bounds: dict[str, tuple[float, float]]
    how: str
    normalised: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _final_points(group: Group, metric: str) -> dict[int, tuple[float, float]]:
    """Per seed, (t_env, value) of the seed's last evaluation that logs ``metric``."""
    out = {}
    for seed, rows in sorted(group.curves.items()):
        logged = [r for r in rows if isinstance(r.get(metric), (int, float))]
        if logged:
            out[seed] = (float(logged[-1]["t_env"]), float(logged[-1][metric]))
    return out


def _seed_text(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds) or "none"


def _by_cell(groups: Sequence[Group]) -> tuple[list[str], list[str], dict[tuple[str, str], Group]]:
    """Algorithms (group order), tasks (sorted) and the group of each; refuses a gap."""
    algos = list(dict.fromkeys(g.label for g in groups))
    tasks = sorted({g.task for g in groups})
    cells = {(g.label, g.task): g for g in groups}
    for algo in algos:
        missing = [t for t in tasks if (algo, t) not in cells]
        if missing:
            raise ReportError(
                f"--aggregate: {algo} has no runs on {', '.join(missing)}; every algorithm "
                f"needs runs on every task ({'; '.join(tasks)})"
            )
    return algos, tasks, cells


def _check_budgets(points: dict[tuple[str, str], dict[int, tuple[float, float]]]) -> None:
    """Refuse runs whose last evaluations are not at about the same env step."""
    ends = [(t, a, task, s) for (a, task), p in points.items() for s, (t, _) in p.items()]
    low, high = min(ends), max(ends)
    if high[0] > BUDGET_TOLERANCE * low[0]:
        raise ReportError(
            f"--aggregate: runs end at different env steps ({high[1]} on {high[2]} seed "
            f"{high[3]}: {high[0]:g}; {low[1]} on {low[2]} seed {low[3]}: {low[0]:g}); "
            "compare them at an equal budget with --at T"
        )


def collect(groups: Sequence[Group], metrics: dict[str, str]) -> Scores:
    """Final scores [S, T] per algorithm, refusing (ReportError naming what differs) a
    missing algorithm/task pair, different seeds, unequal budgets or non-finite scores."""
    algos, tasks, cells = _by_cell(groups)
    points = {key: _final_points(g, metrics[g.task]) for key, g in cells.items()}
    first = (algos[0], tasks[0])
    seeds = sorted(points[first])
    for (algo, task), p in points.items():
        if sorted(p) != seeds:
            raise ReportError(
                f"--aggregate: seeds differ: {algo} on {task} has {_seed_text(sorted(p))}, "
                f"{first[0]} on {first[1]} has {_seed_text(seeds)}; every algorithm and "
                "task needs the same seeds"
            )
    if not seeds:
        raise ReportError("--aggregate: no seed logs the final metric")
    _check_budgets(points)
    raw = {
        a: np.asarray([[points[(a, t)][s][1] for t in tasks] for s in seeds]) for a in algos
    }
    for algo, values in raw.items():
        if not np.all(np.isfinite(values)):
            s, t = np.argwhere(~np.isfinite(values))[0]
            raise ReportError(f"--aggregate: {algo} on {tasks[t]} seed {seeds[s]} is not finite")
    return Scores(algos, tasks, seeds, raw, {}, "")


def load_reference(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """Reference scores from a JSON or YAML file: ``{task: {"low": L, "high": H}}`` or
    ``{task: [L, H]}``, task labels as in the report's tables, H > L."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as err:
        raise ReportError(f"--reference-scores: cannot read {path}: {err}") from None
    if not isinstance(data, dict) or not data:
        raise ReportError(f"--reference-scores: {path} must map task labels to low/high scores")
    out = {}
    for task, entry in data.items():
        pair = [entry.get("low"), entry.get("high")] if isinstance(entry, dict) else entry
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2
        ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair)
        if not ok or not pair[1] > pair[0]:
            raise ReportError(
                f"--reference-scores: task {task!r} needs {{low: number, high: number}} "
                f"with high > low, got {entry!r}"
            )
        out[str(task)] = (float(pair[0]), float(pair[1]))
    return out


def normalise(scores: Scores, reference: dict[str, tuple[float, float]] | None) -> Scores:
    """Fill ``bounds``, ``how`` and ``normalised``: per task ``(x - low) / (high - low)``."""
    if reference is not None:
        missing = [t for t in scores.tasks if t not in reference]
        if missing:
            raise ReportError(
                f"--reference-scores: no entry for {'; '.join(missing)}; the file has "
                f"{'; '.join(sorted(reference))}"
            )
        bounds = {t: reference[t] for t in scores.tasks}
        how = "normalised per task by the reference scores (low -> 0, high -> 1)"
    else:
        stacked = np.stack([scores.raw[a] for a in scores.algos])  # [algos, S, T]
        bounds = {}
        for j, task in enumerate(scores.tasks):
            low, high = float(stacked[..., j].min()), float(stacked[..., j].max())
            if not high > low:
                raise ReportError(
                    f"--aggregate: every score on {task} is {low:g}, so min-max "
                    "normalisation is undefined; give --reference-scores"
                )
            bounds[task] = (low, high)
        how = "min-max normalised per task over every algorithm's and seed's final score"
    low, high = (np.asarray([bounds[t][i] for t in scores.tasks]) for i in (0, 1))
    normalised = {a: (v - low) / (high - low) for a, v in scores.raw.items()}
    return dataclasses.replace(scores, bounds=bounds, how=how, normalised=normalised)


def _aggregates(x: np.ndarray) -> np.ndarray:
    """[IQM, mean, median, optimality gap] of normalised scores x [S, T]."""
    _, metrics = rliable()
    return np.asarray(
        [
            metrics.aggregate_iqm(x),
            metrics.aggregate_mean(x),
            metrics.aggregate_median(x),
            metrics.aggregate_optimality_gap(x),
        ]
    )


@contextlib.contextmanager
def seeded_global_rng(seed: int):
    """Seed numpy's global random state for the block, then restore the caller's state.

    rliable 1.2's ``StratifiedBootstrap``/``StratifiedIndependentBootstrap.update_indices``
    draw with ``np.random.choice`` (the global state) and ignore the ``random_state`` they
    are given, so without this a bootstrap interval changes from call to call."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _estimates(score_dict: dict[str, Any], func, options: Options) -> dict[str, np.ndarray]:
    """{key: [3, ...] (point, low, high)} by rliable's stratified bootstrap (percentile).

    Each key is bootstrapped from ``options.seed`` on its own, so its interval depends only
    on its scores, ``func`` and the options, not on which other keys are in the report."""
    library, _ = rliable()
    out = {}
    for key, scores in score_dict.items():
        with warnings.catch_warnings(), seeded_global_rng(options.seed):
            # arch asks for ``generator=`` instead of the ``random_state=`` rliable passes it
            warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
            points, intervals = library.get_interval_estimates(
                {key: scores},
                func,
                reps=options.reps,
                confidence_interval_size=options.confidence,
                random_state=np.random.RandomState(options.seed),
            )
        point = np.atleast_1d(points[key])
        out[key] = np.concatenate([point[None], np.reshape(intervals[key], (2, *point.shape))])
    return out


def interval_estimates(scores: Scores, options: Options) -> dict[str, np.ndarray]:
    """{algo: [3 (point, low, high), 4 statistics]} in :data:`STATISTICS` order."""
    return _estimates(scores.normalised, _aggregates, options)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of scores x [N, T] and y [M, T]: per task the Mann-Whitney U statistic over
    N*M, ``mean(1[x_i > y_j] + 1/2 1[x_i = y_j])``, averaged over tasks. The same number as
    ``rliable.metrics.probability_of_improvement``, without a scipy call per task (which
    made a bootstrap over many pairs take minutes)."""
    wins = x[:, None, :] > y[None, :, :]  # [N, M, T]
    ties = x[:, None, :] == y[None, :, :]
    return float(np.mean(wins + 0.5 * ties))


def improvement_probabilities(scores: Scores, options: Options) -> dict[tuple[str, str], tuple]:
    """{(x, y): (P(X > Y), low, high)} for every ordered pair of different algorithms.

    Each unordered pair is bootstrapped once: with ties counted one half,
    P(Y > X) = 1 - P(X > Y) in every bootstrap sample, so its interval is mirrored."""
    pairs = [(x, y) for i, x in enumerate(scores.algos) for y in scores.algos[i + 1 :]]
    data = {f"{i}": [scores.normalised[x], scores.normalised[y]] for i, (x, y) in enumerate(pairs)}
    est = _estimates(data, probability_of_improvement, options) if pairs else {}
    out = {}
    for i, (x, y) in enumerate(pairs):
        p, low, high = (float(v) for v in est[f"{i}"][:, 0])
        out[(x, y)] = (p, low, high)
        out[(y, x)] = (1.0 - p, 1.0 - high, 1.0 - low)
    return out


def performance_profiles(
    scores: Scores, options: Options, taus: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(taus [K], {algo: [3 (point, low, high), K]}): the fraction of all runs' normalised
    scores above each tau (the run-score distribution), with bootstrap bands."""
    library, _ = rliable()
    if taus is None:
        everything = np.concatenate([v.ravel() for v in scores.normalised.values()])
        taus = np.linspace(min(0.0, everything.min()), max(1.0, everything.max()), 41)
    est = _estimates(scores.normalised, lambda x: library.score_distributions(x, taus), options)
    return taus, est


def _seed_series(group: Group, metric: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per seed, the evaluation env steps [N] and values [N] of ``metric``."""
    out = {}
    for seed, rows in group.curves.items():
        pts = [(r["t_env"], r[metric]) for r in rows if isinstance(r.get(metric), (int, float))]
        out[seed] = tuple(np.asarray(pts, dtype=np.float64).T)
    return out


def iqm_curves(
    groups: Sequence[Group], metrics: dict[str, str], scores: Scores, options: Options
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(grid [G], {algo: [3 (point, low, high), G]}): the IQM over tasks and seeds of the
    normalised evaluation curves, each seed interpolated (np.interp) onto a common grid
    from the latest first evaluation to the earliest last one; normalised with the final
    scores' bounds, so a curve may leave [0, 1] under min-max normalisation."""
    _, rl_metrics = rliable()
    series = {(g.label, g.task): _seed_series(g, metrics[g.task]) for g in groups}
    ends = [(t[0], t[-1], len(t)) for per in series.values() for t, _ in per.values()]
    lo, hi = max(e[0] for e in ends), min(e[1] for e in ends)
    grid = np.linspace(lo, hi, max(2, min(CURVE_POINTS, max(e[2] for e in ends))))
    curves = {}
    for algo in scores.algos:
        values = np.empty((len(scores.seeds), len(scores.tasks), grid.size))  # [S, T, G]
        for j, task in enumerate(scores.tasks):
            low, high = scores.bounds[task]
            for i, seed in enumerate(scores.seeds):
                t, v = series[(algo, task)][seed]
                values[i, j] = (np.interp(grid, t, v) - low) / (high - low)
        curves[algo] = values

    def iqm_per_point(x):
        return np.asarray([rl_metrics.aggregate_iqm(x[..., k]) for k in range(x.shape[-1])])

    return grid, _estimates(curves, iqm_per_point, options)


def aggregate_options(args) -> Options | None:
    """Options from ``powmarl report``'s flags (None without ``--aggregate``); reference
    scores or a bootstrap count without ``--aggregate`` are an error."""
    if not args.aggregate:
        if args.reference_scores is not None or args.bootstrap_reps is not None:
            raise ReportError("--reference-scores/--bootstrap-reps: only with --aggregate")
        return None
    reference = load_reference(args.reference_scores) if args.reference_scores else None
    reps = Options.reps if args.bootstrap_reps is None else args.bootstrap_reps
    return Options(reference=reference, reps=reps)
