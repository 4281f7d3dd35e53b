"""Whole-training speed of QMIX on LBF Foraging-8x8-2p-2f-coop: the gymnasium env through
``gymma`` (host path, 1 and 2 worker processes) beside Jumanji's ``lbf`` (JAX path, 1 and 5
seeds), in one run.

    python benchmarks/lbf_speed.py --t-max 20000 --out lbf_speed.json

Each row trains QMIX from scratch to ``--t-max`` env steps per seed with the same settings
and reports env steps per second of all seeds together, over the whole run (compiling
included: what a user waits for) and over the steady periods (the first evaluation period,
which compiles, left out). ``--only gymma`` or ``--only lbf`` runs one half.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

TASK = "Foraging-8x8-2p-2f-coop"

#: (label, env id, env kwargs, seeds, worker processes or None for the JAX path)
ROWS = [
    ("gymma, 1 worker", "gymma", {"key": f"lbforaging:{TASK}-v3", "time_limit": 50}, 1, 1),
    ("gymma, 2 workers", "gymma", {"key": f"lbforaging:{TASK}-v3", "time_limit": 50}, 1, 2),
    # the JAX half: Jumanji's LBF (powmarl/envs/jumanji_envs.py)
    ("lbf (JAX), 1 seed", "lbf", {"task": TASK}, 1, None),
    ("lbf (JAX), 5 seeds", "lbf", {"task": TASK}, 5, None),
]


def measure(
    env_id: str, env_kwargs: dict, seeds: int, workers: int | None, t_max: int, test_interval: int
) -> dict:
    """Train QMIX on ``env_id`` and time it: env steps/s of all seeds, whole and steady."""
    import powmarl

    env = powmarl.envs.make(env_id, **env_kwargs)
    extra = {} if workers is None else {"num_workers": workers}
    start = time.perf_counter()
    result = powmarl.train("qmix", env, seeds=list(range(seeds)), t_max=t_max,
                           test_interval=test_interval, progress=False, **extra)  # fmt: skip
    wall = time.perf_counter() - start
    by_t: dict[int, list] = {}
    for row in result.metrics:
        by_t.setdefault(row["t_env"], []).append(row)
    periods = sorted(by_t)
    elapsed = [by_t[t][0]["time/elapsed_s"] for t in periods]
    steps = int(np.sum(result.t_env))
    steady = (periods[-1] - periods[0]) * seeds / (elapsed[-1] - elapsed[0])
    return {
        "env": env_id,
        "seeds": seeds,
        "workers": workers,
        "wall_s": round(wall, 1),
        "env_steps": steps,
        "steps_per_s_whole": round(steps / wall, 1),
        "steps_per_s_steady": round(float(steady), 1) if len(periods) > 1 else None,
        "eval_return_mean": float(np.mean(result.final_eval_return)),
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| run | seeds | workers | env steps/s (whole run) | (steady) | wall s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        workers = "-" if r["workers"] is None else r["workers"]
        lines.append(f"| {r['label']} | {r['seeds']} | {workers} | {r['steps_per_s_whole']} "
                     f"| {r['steps_per_s_steady']} | {r['wall_s']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t-max", type=int, default=20000)
    parser.add_argument("--test-interval", type=int, default=5000)
    parser.add_argument("--only", choices=("gymma", "lbf"), default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from powmarl.envs import registered

    rows = []
    for label, env_id, kwargs, seeds, workers in ROWS:
        if args.only not in (None, env_id):
            continue
        if env_id not in registered():
            print(json.dumps({"label": label, "skipped": f"env {env_id!r} is not registered"}))
            continue
        row = {"label": label, **measure(env_id, kwargs, seeds, workers, args.t_max,
                                         args.test_interval)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(markdown(rows))
    out = {"task": TASK, "t_max": args.t_max, "cpus": os.cpu_count(),
           "machine": platform.processor() or platform.machine(), "rows": rows}  # fmt: skip
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
