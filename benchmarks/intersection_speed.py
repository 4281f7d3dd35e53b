"""Env steps per second of the intersection: the JAX port, vmapped, and whole training.

    python benchmarks/intersection_speed.py                     # port: 1k and 4k envs
    python benchmarks/intersection_speed.py --train --chunks 2  # + QMIX, POW-QMIX training
    python benchmarks/intersection_speed.py --hw --seconds 20   # + intersection_hw rows

Rows:

- ``intersection`` random actions, N envs: ``jit(vmap(step))`` of N envs inside a
  ``lax.scan`` of 101 steps (one episode length) from N resets, uniform random actions,
  best of ``--repeats`` timed runs after a compiling one. ``steps/s`` counts every env step
  executed (N x 101 per run: the training rollout also steps an env to the episode limit
  after its end); ``live steps/s`` counts only steps of episodes still running.
- ``intersection`` training (``--train``): ``benchmarks/throughput.py``'s steady state of
  QMIX and POW-QMIX with the paper's settings (8 envs, batch 128, buffer 5000, one seed),
  compilation excluded, in a subprocess each.
- ``intersection_hw`` (``--hw``, needs ``powmarl[highway]``): the rows of
  ``benchmarks/intersection_hw_speed.py`` (one env in a loop; 8 copies in 1 and 2 worker
  processes), for the side-by-side table.

``--json FILE`` writes every row. Record the machine's load with the numbers: the rates
scale with free cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def random_rollouts(num_envs: int, repeats: int, seed: int = 0) -> dict:
    """Steps/s of ``num_envs`` vmapped envs under random actions (see the docstring)."""
    import jax
    import jax.numpy as jnp

    import powmarl

    env = powmarl.envs.make("intersection")
    params, horizon = env.default_params(), env.spec.episode_limit

    def scan_step(carry, key):
        state, done = carry
        act_key, step_key = jax.random.split(key)
        actions = jax.random.randint(act_key, (num_envs, 4), 0, 3)
        keys = jax.random.split(step_key, num_envs)
        ts, state = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, actions, params)
        live = jnp.sum(~done)
        return (state, done | ts.terminated | ts.truncated), live

    @jax.jit
    def rollout(key):
        reset_key, run_key = jax.random.split(key)
        keys = jax.random.split(reset_key, num_envs)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
        done = jnp.zeros((num_envs,), bool)
        _, live = jax.lax.scan(scan_step, (state, done), jax.random.split(run_key, horizon))
        return live.sum()

    start = time.perf_counter()
    jax.block_until_ready(rollout(jax.random.key(seed)))
    compile_s = time.perf_counter() - start
    best, live = float("inf"), 0
    for r in range(repeats):
        start = time.perf_counter()
        live = int(jax.block_until_ready(rollout(jax.random.key(seed + 1 + r))))
        best = min(best, time.perf_counter() - start)
    steps = num_envs * horizon
    return {"env": "intersection", "mode": f"random actions, {num_envs} envs (vmap)",
            "envs": num_envs, "steps": steps, "wall_s": best, "steps_per_s": steps / best,
            "live_steps_per_s": live / best, "compile_and_first_run_s": compile_s,
            "backend": jax.default_backend()}  # fmt: skip


def training_rows(algos, chunks: int) -> list[dict]:
    """Steady-state whole-training rows of ``benchmarks/throughput.py``, one seed each."""
    throughput = _load("throughput")
    rows = []
    for algo in algos:
        cmd = [sys.executable, str(HERE / "throughput.py"), "--one", "--env", "intersection",
               "--algo", algo, "--seeds", "1", "--chunks", str(chunks)]  # fmt: skip
        child = throughput.run_child(cmd)
        if child.status != "ok" or not child.rows:
            print(child.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"training benchmark of {algo} failed ({child.status})")
        row = child.rows[-1]
        row.update(mode=f"training, {algo}, 1 seed", steps_per_s=row["env_steps_per_s_total"])
        rows.append(row)
    return rows


def hw_rows(seconds: float, workers: list[int]) -> list[dict]:
    """``intersection_hw`` rows (the other half of the table), or a note when absent."""
    if importlib.util.find_spec("highway_env") is None:
        return [{"env": "intersection_hw", "mode": "not measured: highway-env not installed"}]
    hw = _load("intersection_hw_speed")
    rows = [hw.single(seconds)] + [hw.vector(8, w, seconds) for w in workers]
    for row in rows:
        row["env"] = "intersection_hw"
        if row["mode"] == "vector":
            row["mode"] = f"random actions, {row['copies']} copies, {row['workers']} worker(s)"
        else:
            row["mode"] = "random actions, 1 env"
    return rows


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def table(rows: list[dict]) -> str:
    lines = ["| env | what | steps/s | live steps/s |", "|---|---|---|---|"]
    for row in rows:
        rate, live = row.get("steps_per_s"), row.get("live_steps_per_s")
        cells = [f"{rate:,.0f}" if rate else "-", f"{live:,.0f}" if live else "-"]
        lines.append(f"| {row['env']} | {row['mode']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="also time QMIX and POW-QMIX")
    parser.add_argument("--algos", nargs="+", default=["qmix", "pow_qmix"])
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--hw", action="store_true", help="also time intersection_hw")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = [random_rollouts(n, args.repeats) for n in args.envs]
    if args.train:
        rows += training_rows(args.algos, args.chunks)
    if args.hw:
        rows += hw_rows(args.seconds, args.workers)
    print(f"load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f}")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
