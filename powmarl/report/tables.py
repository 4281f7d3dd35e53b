"""Final-performance tables: algorithms by tasks, mean and 95% Student-t CI over seeds.

``table.md`` is laid out like the paper's Table 1; ``table.csv`` is the same numbers in
long format (one line per algorithm, variant and task).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path

from powmarl.io.run_dir import atomic_write_text
from powmarl.report.runs import Group, final_values
from powmarl.report.stats import Interval, mean_ci

CONFIDENCE = 0.95

CSV_FIELDS = (
    "algo",
    "variant",
    "task",
    "metric",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "half_width",
    "seeds",
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One table entry: the final ``metric`` of one group over its seeds."""

    group: Group
    metric: str
    seeds: tuple[int, ...]
    interval: Interval


def summarise(groups: Sequence[Group], metrics: dict[str, str]) -> list[Cell]:
    """A cell per group that logs its task's metric (``metrics``: task -> metric name)."""
    cells = []
    for group in groups:
        values = final_values(group, metrics[group.task])
        if values:
            interval = mean_ci(values.values(), CONFIDENCE)
            cells.append(Cell(group, metrics[group.task], tuple(values), interval))
    return cells


def _decimals(x: float) -> int:
    """Decimals that show about three significant digits of ``x``."""
    if not math.isfinite(x) or abs(x) >= 100:
        return 0 if math.isfinite(x) else 2
    return 1 if abs(x) >= 10 else 2


def format_cell(interval: Interval) -> str:
    """``"38.1 ± 2.4 (n=5)"``; one seed: ``"38.1 (n=1)"``."""
    digits = _decimals(interval.mean)
    if interval.n < 2:
        return f"{interval.mean:.{digits}f} (n=1)"
    return f"{interval.mean:.{digits}f} ± {interval.half_width:.{digits}f} (n={interval.n})"


def _caption(metrics: dict[str, str], at: float | None = None) -> str:
    names = sorted(set(metrics.values()))
    if len(names) == 1:
        what = f"`{names[0]}`"
    else:
        what = ", ".join(f"`{metrics[t]}` on {t}" for t in sorted(metrics))
    when = (
        "each seed's last evaluation"
        if at is None
        else f"each seed's last evaluation at or before {at:g} env steps; seeds that had "
        "not reached it left out"
    )
    return (
        f"{'Final ' if at is None else ''}{what} ({when}): mean ± half-width of the 95% "
        "Student-t confidence interval over seeds, t_{0.975, n-1} · s / √n "
        "(s the sample standard deviation, n the number of seeds)."
    )


def to_markdown(cells: Sequence[Cell], metrics: dict[str, str], at: float | None = None) -> str:
    """Markdown table, rows = algorithm (+ variant), columns = tasks, with a caption."""
    tasks = sorted({cell.group.task for cell in cells})
    rows: dict[str, dict[str, str]] = {}
    for cell in cells:
        rows.setdefault(cell.group.label, {})[cell.group.task] = format_cell(cell.interval)
    lines = [
        _caption(metrics, at),
        "",
        "| algorithm | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for label, by_task in rows.items():
        lines.append(f"| {label} | " + " | ".join(by_task.get(t, "–") for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def _number(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def write_csv(cells: Sequence[Cell], path: Path) -> None:
    """Long format: one line per (algo, variant, task); empty CI fields when n = 1.
    Written atomically (a reader sees the old file or the whole new one)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(CSV_FIELDS)
    for cell in cells:
        iv = cell.interval
        writer.writerow(
            [
                cell.group.algo,
                cell.group.variant,
                cell.group.task,
                cell.metric,
                iv.n,
                _number(iv.mean),
                _number(iv.low),
                _number(iv.high),
                _number(iv.half_width),
                " ".join(str(s) for s in cell.seeds),
            ]
        )
    atomic_write_text(path, text.getvalue())
