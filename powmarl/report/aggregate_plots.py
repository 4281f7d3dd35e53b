"""PNG figures of the aggregate statistics (:mod:`powmarl.report.aggregate`): interval
estimates, probabilities of improvement, performance profiles, sample-efficiency curves.

Every figure says in its title which interval it shows; the report's captions add how many
bootstrap samples were drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from powmarl.io.run_dir import atomic_write
from powmarl.report.aggregate import STATISTICS
from powmarl.report.plots import pyplot


def _save(fig, path: Path) -> Path:
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    plt.close(fig)
    return path


def plot_intervals(estimates: dict[str, np.ndarray], level: str, path: Path) -> Path:
    """One panel per statistic: each algorithm's point estimate and interval.

    estimates: algo -> [3 (point, low, high), 4 statistics]."""
    plt = pyplot()
    algos = list(estimates)
    fig, axes = plt.subplots(
        1, len(STATISTICS), figsize=(3.0 * len(STATISTICS), 0.45 * len(algos) + 1.4),
        sharey=True, squeeze=False, layout="constrained",
    )  # fmt: skip
    for k, (ax, name) in enumerate(zip(axes[0], STATISTICS)):
        for i, algo in enumerate(algos):
            point, low, high = estimates[algo][:, k]
            ax.plot([low, high], [i, i], color=f"C{i % 10}", linewidth=6, alpha=0.5)
            ax.plot([point], [i], "|", color="black", markersize=12)
        ax.set_title(name)
        ax.set_xlabel("normalised score")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(algos)), algos)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"point estimates and {level}", fontsize=10)
    return _save(fig, path)


def plot_improvement(
    probabilities: dict[tuple[str, str], tuple], pairs: Sequence[tuple[str, str]], level: str,
    path: Path,
) -> Path:  # fmt: skip
    """One row per pair (x, y): P(X > Y) and its interval, with the line of no difference.

    The figure widens with the longest row label (about 0.08 inch a character at 10 pt)
    so the axes keep about 3.5 inches, and the title, centred on the figure rather than
    on the axes that the labels push right, wraps to the figure's width."""
    plt = pyplot()
    labels = [f"P({x} > {y})" for x, y in pairs]
    width = max(6.4, 3.5 + 0.08 * max(len(label) for label in labels))
    fig, ax = plt.subplots(figsize=(width, 0.4 * len(pairs) + 1.6), layout="constrained")
    for i, pair in enumerate(pairs):
        p, low, high = probabilities[pair]
        ax.plot([low, high], [i, i], color="C0", linewidth=6, alpha=0.5)
        ax.plot([p], [i], "|", color="black", markersize=12)
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(pairs)), labels)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("probability of improvement")
    title = f"probability of improvement and {level}"
    fig.suptitle(textwrap.fill(title, width=int(width * 72 / 6)), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_bands(
    x: np.ndarray, estimates: dict[str, np.ndarray], labels: tuple[str, str, str], path: Path
) -> Path:
    """One line per algorithm with a shaded interval band (performance profiles and
    sample-efficiency curves). estimates: algo -> [3 (point, low, high), len(x)];
    labels: (x label, y label, title)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for i, (algo, est) in enumerate(estimates.items()):
        point, low, high = est
        (line,) = ax.plot(x, point, label=algo, color=f"C{i % 10}")
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2], fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
