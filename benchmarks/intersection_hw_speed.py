"""Env steps per second of ``intersection_hw`` (highway-env) under random actions.

    python benchmarks/intersection_hw_speed.py --copies 8 --workers 1 2 --seconds 20

Measures, each for about ``--seconds``:

- ``single``: one env in this process, stepped and reset in a plain loop;
- ``vector, W workers``: ``--copies`` copies played as the host backend plays them (all
  reset, the running ones stepped together until every episode has ended, again), in this
  process for W = 1 (``HostVectorEnv``) or in W spawned worker processes
  (``WorkerVectorEnv``).

A step is one env step of one copy (all 4 agents); building the copies and starting the
workers is not counted. Prints a table and, with ``--out``, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def single(seconds: float, seed: int = 0) -> dict:
    from powmarl.envs.host.intersection_hw import IntersectionHW

    env, rng = IntersectionHW(), np.random.default_rng(seed)
    steps, episodes, episode_seed = 0, 0, seed
    env.reset(episode_seed)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, terminated, truncated, _ = env.step(rng.integers(0, 3, 4))
        steps += 1
        if terminated or truncated:
            episodes += 1
            episode_seed += 1
            env.reset(episode_seed)
    wall = time.perf_counter() - start
    return {"mode": "single", "workers": 1, "copies": 1, "steps": steps, "episodes": episodes,
            "wall_s": wall, "steps_per_s": steps / wall}  # fmt: skip


def vector(copies: int, workers: int, seconds: float, seed: int = 0) -> dict:
    import powmarl
    from powmarl.envs import contract
    from powmarl.envs.host.vector import HostVectorEnv, make_copies
    from powmarl.runners.host_workers import WorkerVectorEnv

    env = powmarl.envs.make("intersection_hw")
    if workers == 1:
        vec = HostVectorEnv(make_copies(env, copies))
    else:
        vec = WorkerVectorEnv(contract.copy_factory(env), copies, workers)
    rng, steps, episodes, wave = np.random.default_rng(seed), 0, 0, 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            vec.reset([seed + wave * copies + i for i in range(copies)])
            active = np.ones(copies, bool)
            while active.any():
                actions = rng.integers(0, 3, (copies, 4))
                _, terminated, truncated, _, _ = vec.step(actions, active)
                steps += int(active.sum())
                active &= ~(terminated | truncated)
            episodes += copies
            wave += 1
    finally:
        wall = time.perf_counter() - start
        vec.close()
    return {"mode": "vector", "workers": workers, "copies": copies, "steps": steps,
            "episodes": episodes, "wall_s": wall, "steps_per_s": steps / wall}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = [single(args.seconds)]
    rows += [vector(args.copies, w, args.seconds) for w in args.workers]
    print(f"intersection_hw, random actions; {os.cpu_count()} cores")
    print(f"{'mode':8} {'workers':>7} {'copies':>6} {'steps':>7} {'episodes':>8} {'steps/s':>8}")
    for r in rows:
        print(f"{r['mode']:8} {r['workers']:7d} {r['copies']:6d} {r['steps']:7d} "
              f"{r['episodes']:8d} {r['steps_per_s']:8.0f}")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
