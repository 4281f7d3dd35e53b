"""Matrix-game run directories for the aggregate report of docs/results.md (issue 15).

    nice -n 19 python benchmarks/matrix_aggregate.py --root runs/aggregate \
        [--algos pow_qmix qmix] [--games matrix_pow climbing ...] [--t-max 20000]

Trains every algorithm on every game (``matrix_pow`` and the games of
``benchmarks/other_games.py``), seeds 0-4, uniform exploration (the library defaults), one
training at a time, into ``ROOT/<algo>/<game>``: a finished run directory is kept, a
partial one resumed. Then writes ``ROOT/reference_scores.yaml`` (per task label, the game's
worst payoff as low and its optimum as high; tasks already in the file are kept) and prints
the ``powmarl report`` command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

import powmarl
from powmarl.api import resume
from powmarl.io.run_dir import run_status
from powmarl.report.runs import load_groups

sys.path.insert(0, str(Path(__file__).resolve().parent))
from other_games import GAMES


def make_env(game: str):
    if game == "matrix_pow":
        return powmarl.envs.make("matrix_pow")
    return powmarl.envs.make("matrix", payoff=GAMES[game].tolist())


def payoff_of(game: str) -> np.ndarray:
    return np.asarray(powmarl.envs.POW_PAYOFF if game == "matrix_pow" else GAMES[game])


def train_one(algo: str, game: str, run_dir: Path, t_max: int) -> None:
    """Train (or resume, or keep) one run directory with seeds 0-4."""
    status = run_status(run_dir)
    start = time.perf_counter()
    if status == "finished":
        return
    if status == "partial":
        resume(run_dir, progress=False)
    else:
        powmarl.train(algo, make_env(game), seeds=[0, 1, 2, 3, 4], t_max=t_max,
                      run_dir=run_dir, progress=False)  # fmt: skip
    print(f"{algo} on {game}: {time.perf_counter() - start:.0f} s", flush=True)


def write_reference(root: Path, dirs: list[Path], games: dict[Path, str]) -> Path:
    """reference_scores.yaml: per task label (as the report names it), [worst, best] payoff.

    Tasks already in the file are kept, so a run over some games does not drop the others
    (a report over every game needs all of them)."""
    path = root / "reference_scores.yaml"
    reference = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    for group in load_groups(dirs):
        payoff = payoff_of(games[next(iter(group.dirs.values()))])
        reference[group.task] = {"low": float(payoff.min()), "high": float(payoff.max())}
    path.write_text(yaml.safe_dump(reference, sort_keys=True))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/aggregate")
    parser.add_argument("--algos", nargs="+", default=["pow_qmix", "qmix"])
    parser.add_argument("--games", nargs="+", default=["matrix_pow", *GAMES])
    parser.add_argument("--t-max", type=int, default=20_000)
    args = parser.parse_args()
    root = Path(args.root)
    games: dict[Path, str] = {}
    for game in args.games:
        for algo in args.algos:
            run_dir = (root / algo / game).resolve()
            train_one(algo, game, run_dir, args.t_max)
            games[run_dir] = game
    path = write_reference(root, list(games), games)
    print(f"powmarl report {' '.join(map(str, games))} --aggregate --reference-scores {path}")


if __name__ == "__main__":
    main()
