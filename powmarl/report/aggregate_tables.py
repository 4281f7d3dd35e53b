"""The aggregate part of a report: ``aggregate.md`` and ``aggregate.csv`` (statistics and
probabilities of improvement with their intervals, the normalisation constants) and the
figures under ``aggregate/``, each with a caption naming the interval and the number of
bootstrap samples.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from powmarl.io.run_dir import atomic_write_text
from powmarl.report import aggregate as agg
from powmarl.report.runs import Group


def _level(options: agg.Options) -> str:
    return f"{options.confidence:.0%} stratified bootstrap intervals"


def describe(scores: agg.Scores, metrics: dict[str, str], options: agg.Options) -> str:
    """What every aggregate number is over and which interval it carries."""
    names = sorted({metrics[t] for t in scores.tasks})
    return (
        f"Over {len(scores.tasks)} task(s) x {len(scores.seeds)} seeds "
        f"({', '.join(map(str, scores.seeds))}) per algorithm, each seed's final "
        f"{', '.join(f'`{n}`' for n in names)}, {scores.how}. Intervals: "
        f"{options.confidence:.0%} percentile stratified bootstrap confidence intervals "
        f"(rliable; {options.reps} bootstrap samples, seeds resampled with replacement "
        f"within each task, bootstrap seed {options.seed})."
    )


def _interval(values) -> str:
    point, low, high = (float(v) for v in values)
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def to_markdown(scores, metrics, options, estimates, probabilities, pairs) -> str:
    """aggregate.md: the statistics table, the pairwise table and the normalisation."""
    lines = ["## Aggregate statistics", "", describe(scores, metrics, options), ""]
    lines += ["| algorithm | " + " | ".join(agg.STATISTICS) + " |"]
    lines += ["|---|" + "---|" * len(agg.STATISTICS)]
    for algo, est in estimates.items():
        cells = [_interval(est[:, k]) for k in range(len(agg.STATISTICS))]
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    lines += ["", "## Probability of improvement", ""]
    pairwise = (
        "P(X > Y): the probability that a run of X on a task scores higher than a run of Y "
        "(Mann-Whitney U / (n m), ties counted one half), averaged over tasks; "
        f"{_level(options)} ({options.reps} bootstrap samples). 0.5: no difference."
    )
    lines += [
        pairwise,
        "",
        "| X | Y | P(X > Y) |",
        "|---|---|---|",
    ]
    lines += [f"| {x} | {y} | {_interval(probabilities[(x, y)])} |" for x, y in pairs]
    lines += ["", "## Normalisation", "", "| task | metric | low (-> 0) | high (-> 1) |"]
    lines += ["|---|---|---|---|"]
    lines += [
        f"| {t} | `{metrics[t]}` | {scores.bounds[t][0]:g} | {scores.bounds[t][1]:g} |"
        for t in scores.tasks
    ]
    return "\n".join(lines) + "\n"


def to_csv(estimates, probabilities, pairs) -> str:
    """Long format: kind, x, y, statistic, point, low, high."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["kind", "algo", "other", "statistic", "point", "low", "high"])
    for algo, est in estimates.items():
        for k, name in enumerate(agg.STATISTICS):
            writer.writerow(["aggregate", algo, "", name, *(repr(float(v)) for v in est[:, k])])
    for x, y in pairs:
        values = probabilities[(x, y)]
        writer.writerow(["improvement", x, y, "P(X > Y)", *(repr(float(v)) for v in values)])
    return text.getvalue()


def _figures(groups, metrics, scores, options, estimates, probabilities, pairs, out: Path):
    """Draw the four figures; {relative path: caption}."""
    from powmarl.report import aggregate_plots as figs

    level, where = _level(options), out / "aggregate"
    samples = f"{options.reps} bootstrap samples"
    captions = {}
    path = figs.plot_intervals(estimates, level, where / "intervals.png")
    captions[path] = (
        f"IQM, mean, median and optimality gap of normalised scores, {level} ({samples})."
    )
    if pairs:
        path = figs.plot_improvement(probabilities, pairs, level, where / "improvement.png")
        captions[path] = f"Probability of improvement of each pair, {level} ({samples})."
    taus, profiles = agg.performance_profiles(scores, options)
    path = figs.plot_bands(
        taus, profiles, ("normalised score tau", "fraction of runs with score > tau",
                         f"performance profiles, {level}"), where / "profiles.png",
    )  # fmt: skip
    captions[path] = f"Performance profiles (run-score distributions), {level} ({samples})."
    grid, curves = agg.iqm_curves(groups, metrics, scores, options)
    path = figs.plot_bands(
        grid, curves, ("env steps (t_env)", "IQM of normalised score",
                       f"sample efficiency: IQM and {level}"), where / "sample_efficiency.png",
    )  # fmt: skip
    captions[path] = (
        f"IQM over tasks and seeds at {grid.size} env-step points (seeds interpolated onto a "
        f"common grid), {level} ({samples})."
    )
    return {str(p.relative_to(out)): c for p, c in captions.items()}


def write_aggregate(
    groups: Sequence[Group], metrics: dict[str, str], out: Path, options: agg.Options,
    plots: bool = True,
) -> tuple[dict[str, Path], dict[str, str]]:  # fmt: skip
    """Compute and write the aggregate statistics; ({relative path: path}, {relative
    figure path: caption}). Raises ReportError on inconsistent runs (see
    :func:`powmarl.report.aggregate.collect`), ImportError without rliable."""
    agg.rliable()
    scores = agg.normalise(agg.collect(groups, metrics), options.reference)
    estimates = agg.interval_estimates(scores, options)
    probabilities = agg.improvement_probabilities(scores, options)
    pairs = [(x, y) for i, x in enumerate(scores.algos) for y in scores.algos[i + 1 :]]
    md = to_markdown(scores, metrics, options, estimates, probabilities, pairs)
    atomic_write_text(out / "aggregate.md", md)
    atomic_write_text(out / "aggregate.csv", to_csv(estimates, probabilities, pairs))
    written = {"aggregate.md": out / "aggregate.md", "aggregate.csv": out / "aggregate.csv"}
    captions: dict[str, str] = {}
    if plots:
        captions = _figures(groups, metrics, scores, options, estimates, probabilities, pairs, out)
        written.update({name: out / name for name in captions})
    return written, captions
