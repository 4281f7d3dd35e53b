"""``make demo``: every registered algorithm on the POW matrix game, 5 seeds at once.

Prints, per algorithm, each seed's greedy joint action and its payoff, and the
learned Q_tot table of one seed next to the true payoff.
"""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console
from rich.table import Table

from powmarl import algos as algo_registry
from powmarl import envs
from powmarl.api import train
from powmarl.presets import ALGOS

LETTERS = "ABCDEFGHIJ"


def _table(title: str, values: np.ndarray, highlight: tuple[int, ...] | None = None) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("")
    for j in range(values.shape[1]):
        table.add_column(LETTERS[j], justify="right")
    for i in range(values.shape[0]):
        cells = []
        for j in range(values.shape[1]):
            text = f"{values[i, j]:.2f}"
            cells.append(f"[bold green]{text}[/]" if highlight == (i, j) else text)
        table.add_row(LETTERS[i], *cells)
    return table


def run_demo(seeds=(0, 1, 2, 3, 4), t_max: int = 50_000, algos=None, env_id="matrix_pow") -> dict:
    console = Console()
    env = envs.make(env_id)
    payoff = np.asarray(env.payoff)
    optimum = float(payoff.max())
    console.print(f"[bold]{env_id}[/]: {len(seeds)} seeds x {t_max} env steps, uniform exploration")
    console.print(
        _table("true payoff", payoff, tuple(np.unravel_index(payoff.argmax(), payoff.shape)))
    )
    summary = {}
    ordered = [a for a in ALGOS if a in algo_registry.registered()]
    ordered += [a for a in algo_registry.registered() if a not in ordered]
    for name in algos or ordered:
        start = time.perf_counter()
        result = train(name, env, seeds=seeds, t_max=t_max, progress=True)
        wall = time.perf_counter() - start
        tables = result.tables()
        rows = []
        for seed, tab in zip(seeds, tables):
            joint = tuple(int(a) for a in tab["greedy_actions"])
            rows.append((seed, joint, float(payoff[joint])))
        found = sum(p == optimum for _, _, p in rows)
        console.print(
            f"\n[bold]{name}[/]  ({wall:.1f} s, optimum {optimum:g} found in {found}/{len(seeds)} seeds)"
        )
        for seed, joint, value in rows:
            action = "".join(LETTERS[a] for a in joint)
            console.print(f"  seed {seed}: greedy joint action {action}  payoff {value:g}")
        greedy = tuple(int(a) for a in tables[0]["greedy_actions"])
        titles = {"q_tot": "learned Q_tot", "recogniser": "recogniser Q_r"}
        for key, title in titles.items():
            if key in tables[0]:
                console.print(_table(f"{name}: {title}, seed {seeds[0]}", tables[0][key], greedy))
        summary[name] = {"found": found, "rows": rows, "wall_s": wall}
    overview = Table(title=f"{env_id}: optimum {optimum:g}, {len(seeds)} seeds, {t_max} steps")
    for column in ("algorithm", "seeds at the optimum", "greedy payoffs", "wall s"):
        overview.add_column(column)
    for name, item in summary.items():
        payoffs = ", ".join(f"{p:g}" for _, _, p in item["rows"])
        overview.add_row(name, f"{item['found']}/{len(seeds)}", payoffs, f"{item['wall_s']:.0f}")
    console.print(overview)
    return summary
