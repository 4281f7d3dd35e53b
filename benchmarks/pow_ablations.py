"""The reviewers' questions on the POW matrix game (issue 14), 5 seeds each:

    python benchmarks/pow_ablations.py [--pow-t-max 20000] [--t-max 50000] \
        [--parts sensitivity only_optimal capacity] [--out FILE.md] [--json FILE.jsonl]

- sensitivity of POW-QMIX to C (0.01, 0.1, 1, 10, alpha 0) and to alpha (0, 0.1, 0.5,
  C 0.1): the grid points are hyperparameter members of one compiled program per part;
- the ablation that weights only the greedy joint action (``only_optimal_action``);
- capacity: QMIX and OW-QMIX with widths scaled to POW-QMIX's parameter count
  (:func:`powmarl.capacity.match_count`), beside their defaults.

Each row: how many seeds end on the optimal joint action (payoff 8), the greedy payoffs
per seed, their mean with a 95% t interval, and for POW the share of sampled transitions
inside the weighted set at the end. The settings are matrix_pow's (uniform exploration).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import powmarl
from powmarl.capacity import match_count, parameter_counts
from powmarl.report.stats import mean_ci

SEEDS = (0, 1, 2, 3, 4)
C_VALUES = (0.01, 0.1, 1.0, 10.0)
ALPHA_VALUES = (0.0, 0.1, 0.5)
#: The widths scaled for the capacity rows: QMIX's mixer (hypernet and mixing widths in
#: their default ratio 2:1) and OW-QMIX's Q* mixer.
QMIX_WIDTHS = {"hypernet_embed": 64, "mixing_embed_dim": 32}
OW_WIDTHS = {"central_mixing_embed_dim": 256}


def _rows(label, algo, env, t_max, grid=None, **overrides) -> list[dict]:
    """Train ``algo`` (5 seeds, and ``grid``'s points as members) and one row per point."""
    start = time.perf_counter()
    result = powmarl.train(
        algo, env, seeds=SEEDS, t_max=t_max, progress=False, hparam_grid=grid, **overrides
    )
    wall = time.perf_counter() - start
    payoff = np.asarray(env.payoff)
    values = [float(payoff[tuple(t["greedy_actions"])]) for t in result.tables()]
    last = {}
    for row in result.metrics:  # the last row of each member
        last[(row["seed"], row.get("variant", ""))] = row
    points: dict[str, list[int]] = {}
    for i, member in enumerate(result.members):
        points.setdefault(member.variant or "-", []).append(i)
    total = sum(parameter_counts(algo, env, **overrides).values())
    rows = []
    for point, index in points.items():
        vals = [values[i] for i in index]
        members = [result.members[i] for i in index]
        inside = [last[(m.seed, m.variant)].get("pow/in_set_fraction") for m in members]
        ci = mean_ci(vals)
        rows.append({
            "part": label, "algo": algo, "point": point, "settings": overrides,
            "t_max": t_max, "params": total, "optimal_seeds": int(sum(v == payoff.max() for v in vals)),
            "payoffs": vals, "mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high,
            "in_set_fraction": None if inside[0] is None else float(np.mean(inside)),
            "wall_s": round(wall, 1),
        })  # fmt: skip
    return rows


def run(parts, pow_t_max: int, t_max: int, emit) -> None:
    env = powmarl.envs.make("matrix_pow")
    if "sensitivity" in parts:
        grid_c = {"recognition_threshold": list(C_VALUES)}
        for row in _rows("C (alpha 0)", "pow_qmix", env, pow_t_max, grid_c):
            emit(row)
        grid_a = {"alpha": list(ALPHA_VALUES)}
        for row in _rows("alpha (C 0.1)", "pow_qmix", env, pow_t_max, grid_a):
            emit(row)
    if "only_optimal" in parts:
        for row in _rows("only_optimal_action", "pow_qmix", env, pow_t_max,
                         only_optimal_action=True):  # fmt: skip
            emit(row)
    if "capacity" in parts:
        target = sum(parameter_counts("pow_qmix", env).values())
        qmix_large, _ = match_count("qmix", env, target, QMIX_WIDTHS)
        ow_matched, _ = match_count("ow_qmix", env, target, OW_WIDTHS)
        for algo, widths in (("qmix", {}), ("qmix", qmix_large), ("ow_qmix", {}),
                             ("ow_qmix", ow_matched)):  # fmt: skip
            for row in _rows("capacity", algo, env, t_max, **widths):
                emit(row)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| part | algo | settings | params | t_max | optimum found | greedy payoff per seed"
        + " | mean (95% CI) | in A_r at the end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        settings = ", ".join(s for s in (r["point"] if r["point"] != "-" else "", settings) if s)
        inside = "" if r["in_set_fraction"] is None else f"{r['in_set_fraction']:.2f}"
        lines.append(
            f"| {r['part']} | {r['algo']} | {settings or 'defaults'} | {r['params']:,} | "
            f"{r['t_max'] / 1000:g}k | {r['optimal_seeds']}/5 | "
            f"{', '.join(f'{v:g}' for v in r['payoffs'])} | {r['mean']:.2f} "
            f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}] | {inside} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["sensitivity", "only_optimal", "capacity"],
                        choices=["sensitivity", "only_optimal", "capacity"])  # fmt: skip
    parser.add_argument("--pow-t-max", type=int, default=20_000, help="POW rows' env steps")
    parser.add_argument("--t-max", type=int, default=50_000, help="capacity rows' env steps")
    parser.add_argument("--out", default=None, help="write the Markdown table here")
    parser.add_argument("--json", default=None, help="append one JSON line per row here")
    args = parser.parse_args()
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    run(args.parts, args.pow_t_max, args.t_max, emit)
    table = markdown(rows)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table)


if __name__ == "__main__":
    main()
