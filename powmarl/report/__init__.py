"""Reports over run directories: ``make_report(run_dirs, out_dir)``.

Writes ``table.md`` and ``table.csv`` (final metric per algorithm and task, mean and 95%
Student-t CI over seeds), ``curves/<task>.png`` (learning curves with CI bands) and, for
two-agent one-step games, ``heatmaps/<algo>_<task>_seed<k>.png`` (Q_tot, Q*, Q_r); with
``aggregate``, ``aggregate.md``/``.csv`` and ``aggregate/*.png`` (rliable statistics over
tasks and seeds, :mod:`powmarl.report.aggregate`); and ``index.html``, one offline page of
all of it with the runs' settings (:mod:`powmarl.report.page`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from powmarl.io.run_dir import atomic_write_text
from powmarl.report.plots import file_stem, plot_curves, plot_heatmaps
from powmarl.report.runs import Group, ReportError, choose_metric, cut_at, load_groups
from powmarl.report.stats import Interval, mean_ci, t_quantile
from powmarl.report.tables import summarise, to_markdown, write_csv

__all__ = [
    "Interval",
    "ReportError",
    "make_report",
    "mean_ci",
    "t_quantile",
]


def task_metrics(groups: Sequence[Group], metric: str | None) -> dict[str, str]:
    """The metric of each task: ``metric`` everywhere if given (checked to be logged), else
    per task the SMAX win rate where logged, else the greedy test return."""
    tasks = sorted({g.task for g in groups})
    if metric is not None:
        chosen = choose_metric(groups, metric)
        return dict.fromkeys(tasks, chosen)
    return {t: choose_metric([g for g in groups if g.task == t], None) for t in tasks}


def _payoff(group: Group) -> Any:
    """The game's payoff table if the env exposes one (matrix games), else None."""
    if "payoff" in group.env_kwargs:
        return group.env_kwargs["payoff"]
    from powmarl.envs import make

    try:
        env = make(group.env_id, **group.env_kwargs)
    except (ValueError, TypeError):
        return None
    return getattr(env, "payoff", None)


def _write_plots(groups: Sequence[Group], metrics: dict[str, str], out: Path) -> dict[str, Path]:
    """Curves per task and heatmaps per seed of every group with one-step tables."""
    written: dict[str, Path] = {}
    for task, metric in metrics.items():
        path = out / "curves" / f"{file_stem(task)}.png"
        if plot_curves([g for g in groups if g.task == task], metric, task, path):
            written[str(path.relative_to(out))] = path
    for group in groups:
        payoff = _payoff(group) if group.tables else None
        for seed, tables in sorted(group.tables.items()):
            name = f"{file_stem(group.label)}_{file_stem(group.task)}_seed{seed}.png"
            path = out / "heatmaps" / name
            title = f"{group.label} on {group.task}, seed {seed}"
            if plot_heatmaps(tables, title, path, payoff=payoff):
                written[str(path.relative_to(out))] = path
    return written


def make_report(
    run_dirs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    metric: str | None = None,
    plots: bool = True,
    at: float | None = None,
    aggregate: Any = None,
    page: bool = True,
) -> dict[str, Path]:
    """Report on run directories; returns {path relative to ``out_dir``: path written}.

    Args:
      run_dirs: run directories (``powmarl train --run-dir``); runs of the same algorithm,
        variant and task are pooled over seeds.
      out_dir: created if needed; existing report files in it are replaced.
      metric: the final metric to tabulate and plot (default: ``eval/battle_won_mean``
        where logged, else ``eval/return_mean``).
      plots: False writes only the tables (no matplotlib needed).
      at: report the runs as they stood at this many env steps (each seed's last
        evaluation at or before it; seeds that had not reached it are left out), to
        compare runs stopped at different points on an equal budget.
      aggregate: a :class:`powmarl.report.aggregate.Options` to add the aggregate
        statistics (needs rliable), or None.
      page: write ``index.html`` (:func:`powmarl.report.page.write_page`).

    Raises ReportError (a ValueError) on a bad run directory, a seed found in two
    directories or an unknown metric; ImportError if plots are asked for without
    matplotlib (the tables are written first).
    """
    groups = load_groups(run_dirs)
    if at is not None:
        groups = cut_at(groups, at)
    metrics = task_metrics(groups, metric)
    cells = summarise(groups, metrics)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"--out: cannot create {out}: {err.strerror or err}") from None
    atomic_write_text(out / "table.md", to_markdown(cells, metrics, at))
    write_csv(cells, out / "table.csv")
    written = {"table.md": out / "table.md", "table.csv": out / "table.csv"}
    if plots:
        written.update(_write_plots(groups, metrics, out))
    captions: dict[str, str] = {}
    if aggregate is not None:
        from powmarl.report.aggregate_tables import write_aggregate

        files, captions = write_aggregate(groups, metrics, out, aggregate, plots=plots)
        written.update(files)
    if page:
        from powmarl.report.page import write_page

        written.update(write_page(out, groups, written, captions))
    return written
