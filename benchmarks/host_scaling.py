"""Host backend scaling: 1 vs 5 members and 1 vs 2 worker processes on a Python env whose
step costs real CPU time (the NumPy matrix game with a busy step, ``--step-ms`` each).

    python benchmarks/host_scaling.py --step-ms 0.5 --t-max 3000 --out host_scaling.json

For each (members, workers) it trains QMIX to ``--t-max`` env steps per member and
reports the steady wall time per evaluation period (the first period, which compiles,
is left out), per env step of all members, and per member env step. With the old host
runner 5 members cost 5x one member (trained one after another) and a second core was
never used.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from powmarl.envs.host.matrix import HostMatrixGame


class BusyMatrixGame(HostMatrixGame):
    """The host matrix game whose ``step`` spins the CPU for ``step_s`` seconds."""

    def __init__(self, step_s: float = 5e-4):
        super().__init__()
        self.step_s = step_s

    def clone(self) -> BusyMatrixGame:
        return BusyMatrixGame(self.step_s)

    def step(self, actions):
        end = time.perf_counter() + self.step_s
        while time.perf_counter() < end:
            pass
        return super().step(actions)


def measure(members: int, workers: int, step_s: float, t_max: int) -> dict:
    import powmarl

    start = time.perf_counter()
    result = powmarl.train(
        "qmix", BusyMatrixGame(step_s), seeds=list(range(members)), t_max=t_max,
        progress=False, num_workers=workers, test_interval=1000, batch_size=32,
        buffer_size=500,
    )  # fmt: skip
    wall = time.perf_counter() - start
    by_t = {}
    for row in result.metrics:
        by_t.setdefault(row["t_env"], []).append(row)
    periods = sorted(by_t)
    elapsed = [by_t[t][0]["time/elapsed_s"] for t in periods]
    steady = float(np.mean(np.diff(elapsed)))  # s per period after the first
    steps_per_period = 1000 * members
    return {
        "members": members,
        "workers": workers,
        "wall_s": wall,
        "s_per_period": steady,
        "ms_per_env_step_all_members": 1e3 * steady / steps_per_period,
        "ms_per_member_env_step": 1e3 * steady / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-ms", type=float, default=0.5)
    parser.add_argument("--t-max", type=int, default=4000)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        for members in args.members:
            row = measure(members, workers, args.step_ms / 1e3, args.t_max)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"step_ms": args.step_ms, "t_max": args.t_max, "cpus": os.cpu_count(), "rows": rows}
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
