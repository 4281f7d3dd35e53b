"""Learning curves with 95% CI bands, and the one-step-game heatmaps of the paper's Fig. 2.

matplotlib is an optional extra (``pip install 'powmarl[report]'``), imported only here and
only when a plot is drawn, with the non-interactive Agg backend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from powmarl.io.run_dir import atomic_write
from powmarl.report.runs import Group
from powmarl.report.stats import band

MISSING_MATPLOTLIB = "report: plots need matplotlib; install with pip install 'powmarl[report]'"

#: Tables of tables.json drawn as heatmaps, in panel order, with their paper symbols.
HEATMAP_TITLES = {"payoff": "payoff R", "q_tot": "Q_tot", "central": "Q*", "recogniser": "Q_r"}
_NOT_HEATMAPS = frozenset({"greedy_actions", "q_i"})


def pyplot():
    """matplotlib.pyplot on the Agg backend, or ImportError with the install command."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB, name="matplotlib") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def file_stem(text: str) -> str:
    """A file-name-safe version of a label: ``"stag_hunt p=-4"`` -> ``"stag_hunt_p=-4"``."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "task"


def common_grid(times: Sequence[np.ndarray]) -> np.ndarray:
    """Env-step grid over the range every seed covers (latest start to earliest end).

    As many points as the densest seed has evaluations, so no detail is invented.
    """
    lo = max(float(t[0]) for t in times)
    hi = min(float(t[-1]) for t in times)
    if hi <= lo:
        return np.asarray([hi])
    return np.linspace(lo, hi, max(2, max(len(t) for t in times)))


def aligned_curves(group: Group, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(grid [G], values [S, G]): each seed's ``metric`` interpolated (np.interp) onto the
    common grid, as seeds' evaluation points need not share t_env. None if no seed logs it."""
    times, values = [], []
    for rows in group.curves.values():
        points = [(r["t_env"], r[metric]) for r in rows if isinstance(r.get(metric), (int, float))]
        if points:
            t, v = np.asarray(points, dtype=np.float64).T
            times.append(t)
            values.append(v)
    if not times:
        return None
    grid = common_grid(times)
    return grid, np.stack([np.interp(grid, t, v) for t, v in zip(times, values)])


def plot_curves(groups: Sequence[Group], metric: str, title: str, path: Path) -> Path | None:
    """One line per algorithm (+ variant): mean over seeds, shaded 95% t-interval band."""
    curves = [(g, aligned_curves(g, metric)) for g in groups]
    curves = [(g, c) for g, c in curves if c is not None]
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for group, (grid, values) in curves:
        mean, half = band(values)
        (line,) = ax.plot(grid, mean, label=f"{group.label} (n={values.shape[0]})")
        if values.shape[0] > 1:
            ax.fill_between(grid, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps (t_env)")
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: mean and 95% t-interval over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    plt.close(fig)
    return path


def heatmap_panels(tables: dict[str, Any], payoff: Any = None) -> list[tuple[str, np.ndarray]]:
    """(title, [U, U] table) of every two-agent table: payoff, Q_tot, Q*, Q_r, then others."""
    named = dict(tables)
    if payoff is not None and "payoff" not in named:
        named["payoff"] = payoff
    order = [k for k in HEATMAP_TITLES if k in named]
    order += sorted(k for k in named if k not in HEATMAP_TITLES and k not in _NOT_HEATMAPS)
    panels = []
    for key in order:
        table = np.asarray(named[key], dtype=np.float64)
        if table.ndim == 2 and table.shape[0] == table.shape[1]:
            panels.append((HEATMAP_TITLES.get(key, key), table))
    return panels


def _draw_heatmap(ax, title: str, table: np.ndarray, greedy: Sequence[int] | None) -> None:
    """One annotated heatmap; the greedy joint action is outlined."""
    ax.imshow(table, cmap="viridis")
    spread = float(np.nanmax(table) - np.nanmin(table)) or 1.0
    for (i, j), value in np.ndenumerate(table):
        dark = (value - np.nanmin(table)) / spread < 0.5
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=9,
                color="white" if dark else "black")  # fmt: skip
    if greedy is not None and len(greedy) == 2:
        ax.add_patch(_outline(greedy))
    labels = [chr(ord("A") + k) if k < 26 else str(k) for k in range(table.shape[0])]
    ax.set_xticks(range(table.shape[1]), labels)
    ax.set_yticks(range(table.shape[0]), labels)
    ax.set_xlabel("agent 2")
    ax.set_ylabel("agent 1")
    ax.set_title(title)


def _outline(greedy: Sequence[int]):
    from matplotlib.patches import Rectangle

    i, j = int(greedy[0]), int(greedy[1])
    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)


def plot_heatmaps(
    tables: dict[str, Any], title: str, path: Path, payoff: Any = None
) -> Path | None:
    """Side-by-side annotated heatmaps of a two-agent one-step game (paper Fig. 2).

    Args: tables: one seed's entry of tables.json (``q_tot``, ``central`` = Q*,
    ``recogniser`` = Q_r, ``greedy_actions``, ...); payoff: the game's [U, U] payoff.
    Returns the path written, or None if no table is two-agent.
    """
    panels = heatmap_panels(tables, payoff)
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False, layout="constrained"
    )
    for ax, (name, table) in zip(axes[0], panels):
        _draw_heatmap(ax, name, table, tables.get("greedy_actions"))
    fig.suptitle(f"{title} (red: greedy joint action)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"))
    plt.close(fig)
    return path
