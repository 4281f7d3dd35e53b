"""POW beyond the paper's matrix: other non-monotonic one-step games.

    python benchmarks/other_games.py [--algos pow_qmix qmix] [--t-max 20000] [--out FILE.md]

For each game it trains every algorithm with seeds 0-4 (uniform exploration) and
reports how many seeds end on an optimal joint action, and the payoffs they end on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

import powmarl


def _three_agent_coordination() -> np.ndarray:
    """3 agents x 2 actions: all choose 1 -> 10; exactly two choose 1 -> -20 (miscoordination
    punished); otherwise 0. Monotonic methods retreat to the safe all-0 plateau."""
    table = np.zeros((2, 2, 2), dtype=np.float32)
    for joint in itertools.product(range(2), repeat=3):
        ones = sum(joint)
        table[joint] = 10.0 if ones == 3 else (-20.0 if ones == 2 else 0.0)
    return table


GAMES: dict[str, np.ndarray] = {
    # Claus & Boutilier's climbing game: optimum 11 guarded by -30
    "climbing": np.array([[11, -30, 0], [-30, 7, 6], [0, 0, 5]], np.float32),
    # penalty game (k = -100): two optima 10 on the anti-diagonal corners
    "penalty_k100": np.array([[10, 0, -100], [0, 2, 0], [-100, 0, 10]], np.float32),
    # the POW game scaled by 10: C = 0.1 is now tiny relative to the payoffs
    "pow_x10": 10 * np.asarray(powmarl.envs.POW_PAYOFF, np.float32),
    # a 4x4 game whose optimum sits among heavy penalties, with a close trap 9.5
    "deep_trap_4x4": np.array(
        [[10, -20, -20, -20], [-20, 0, 0, 0], [-20, 0, 5, 0], [-20, 0, 0, 9.5]], np.float32
    ),
    "three_agent_coordination": _three_agent_coordination(),
}


def run(algos, t_max: int, seeds=(0, 1, 2, 3, 4)) -> list[dict]:
    rows = []
    for game, payoff in GAMES.items():
        env = powmarl.envs.make("matrix", payoff=payoff.tolist())
        optimum = float(payoff.max())
        for algo in algos:
            start = time.perf_counter()
            result = powmarl.train(algo, env, seeds=list(seeds), t_max=t_max, progress=False)
            values = [float(payoff[tuple(t["greedy_actions"])]) for t in result.tables()]
            rows.append(
                {
                    "game": game,
                    "algo": algo,
                    "optimum": optimum,
                    "final_payoffs": values,
                    "optimal_seeds": int(sum(v == optimum for v in values)),
                    "wall_s": round(time.perf_counter() - start, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["pow_qmix", "qmix"])
    parser.add_argument("--t-max", type=int, default=20_000)
    parser.add_argument("--out", default=None, help="write a Markdown table here")
    args = parser.parse_args()
    rows = run(args.algos, args.t_max)
    lines = ["| game | algo | optimum | seeds optimal | final payoffs |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['game']} | {r['algo']} | {r['optimum']:g} | {r['optimal_seeds']}/5 | "
            f"{', '.join(f'{v:g}' for v in r['final_payoffs'])} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n")


if __name__ == "__main__":
    main()
