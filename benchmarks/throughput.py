"""Throughput, compile time and peak memory of whole training (rollouts + learning).

Each configuration runs in its own subprocess so its peak memory is its own.

    python benchmarks/throughput.py                       # stag_hunt QMIX, 1 and 5 seeds
    python benchmarks/throughput.py --env matrix_pow --full-run --t-max 50000 --seeds 5
    python benchmarks/throughput.py --algo vdn --seeds 1 5 --chunks 3 --json out.json
    python benchmarks/throughput.py --env smax --env-arg 'map_name="27m_vs_30m"' \
        --set test_interval=1440 --set test_nepisode=8 --seeds 1 5 --chunks 2

Steady-state numbers are measured after the buffer holds a batch (the learner runs
every iteration), over ``--chunks`` chunks, excluding compilation, which is timed
separately (ahead-of-time ``lower().compile()``). ``--full-run`` instead times a whole
``powmarl.train`` call, compilation included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from typing import Any


def _tree_bytes(tree) -> int:
    import jax

    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


@dataclasses.dataclass
class Bench:
    """A compiled whole-training program for ``num_seeds`` vmapped seeds, ready to time.

    ``state`` is donated to each chunk call and replaced by its result; ``it`` is the
    iteration index the next chunk starts at.
    """

    env_id: str
    env_args: dict
    algo: str
    num_seeds: int
    cfg: Any
    runner: Any
    hp_arrays: Any
    env_params: Any
    chunk: Any  # the compiled vmapped run_chunk
    state: Any
    init_compile_s: float  # compile + first run of init
    chunk_compile_s: float
    scratch: Any  # memory_analysis() of the compiled chunk (None if unknown)
    it: int = 0


def compile_bench(env_id: str, env_args: dict, algo: str, num_seeds: int, overrides) -> Bench:
    """Build, compile (ahead of time) and initialise the vmapped training program."""
    import jax
    import jax.numpy as jnp

    import powmarl
    from powmarl.api import resolve_settings
    from powmarl.runners.jax_runner import make_runner

    env = powmarl.envs.make(env_id, **env_args)
    algorithm = powmarl.algos.make(algo)
    cfg, hp = resolve_settings(env, overrides, algorithm)
    runner = make_runner(cfg, env, algorithm)
    env_params = env.default_params()
    keys = jax.vmap(jax.random.key)(jnp.arange(num_seeds, dtype=jnp.uint32))
    hp_arrays = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), hp)
    start = time.perf_counter()
    init = jax.jit(jax.vmap(runner.init, in_axes=(0, None))).lower(keys, env_params).compile()
    state = init(keys, env_params)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    chunk_fn = jax.jit(
        jax.vmap(runner.run_chunk, in_axes=(0, None, None, None), axis_name="seed"),
        donate_argnums=0,
    )
    start = time.perf_counter()
    compiled = chunk_fn.lower(state, hp_arrays, env_params, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    return Bench(
        env_id,
        env_args,
        algo,
        num_seeds,
        cfg,
        runner,
        hp_arrays,
        env_params,
        compiled,
        state,
        init_s,
        compile_s,
        compiled.memory_analysis(),
    )


def run_chunk(bench: Bench):
    """Run one chunk of ``bench`` (advancing its state); returns the chunk's metrics."""
    import jax.numpy as jnp

    bench.state, metrics = bench.chunk(
        bench.state, bench.hp_arrays, bench.env_params, jnp.int32(bench.it)
    )
    bench.it += bench.runner.iters_per_chunk
    return metrics


def warm_up(bench: Bench):
    """Run chunks until every iteration of one called the learner (the buffer holds a
    batch); returns that chunk's metrics."""
    import jax

    while True:
        metrics = run_chunk(bench)
        calls = jax.device_get(metrics["train/learner_calls"])
        if float(calls.min()) == bench.runner.iters_per_chunk:
            return metrics


def time_chunks(bench: Bench, chunks: int, last_metrics, deadline: float | None = None) -> dict:
    """Time up to ``chunks`` steady-state chunks (at least one), fewer when the next one
    would end after ``deadline`` (``time.time()``). Returns steps (all seeds), wall, chunks."""
    import jax

    t0 = jax.device_get(last_metrics["t_env"]).astype(float)
    start = time.perf_counter()
    done = 0
    while done < chunks:
        metrics = run_chunk(bench)
        done += 1
        if deadline is not None:  # block only when the clock is watched (sync per chunk)
            jax.block_until_ready(metrics)
            per_chunk = (time.perf_counter() - start) / done
            if time.time() + per_chunk > deadline:
                break
    metrics = jax.device_get(metrics)
    wall = time.perf_counter() - start
    steps = float((metrics["t_env"].astype(float) - t0).sum())
    return {"steps": steps, "wall": wall, "chunks": done}


def steady_row(bench: Bench, timing: dict) -> dict:
    """The benchmark row of ``bench`` after :func:`time_chunks` gave ``timing``."""
    import jax

    n, cfg, scratch = bench.num_seeds, bench.cfg, bench.scratch
    steps, wall = timing["steps"], timing["wall"]
    return {
        "env": bench.env_id,
        "env_args": bench.env_args,
        "algo": bench.algo,
        "seeds": n,
        "num_envs": cfg.num_envs,
        "batch_size": cfg.batch_size,
        "buffer_size": cfg.buffer_size,
        "env_steps_per_s_per_seed": steps / n / wall,
        "env_steps_per_s_total": steps / wall,
        "s_per_learner_call_all_seeds": wall / (timing["chunks"] * bench.runner.iters_per_chunk),
        "init_compile_s": bench.init_compile_s,
        "chunk_compile_s": bench.chunk_compile_s,
        "buffer_mib_per_seed": _tree_bytes(bench.state.buffer) / n / 2**20,
        "xla_temp_mib_per_seed": (
            scratch.temp_size_in_bytes / 2**20 / n if scratch is not None else None
        ),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
    }


def measure_steady(env_id: str, env_args: dict, algo: str, num_seeds: int, chunks: int, overrides):
    bench = compile_bench(env_id, env_args, algo, num_seeds, overrides)
    last = warm_up(bench)
    return steady_row(bench, time_chunks(bench, chunks, last))


def measure_full(env_id: str, env_args: dict, algo: str, num_seeds: int, t_max: int, overrides):
    start = time.perf_counter()
    import powmarl

    env = powmarl.envs.make(env_id, **env_args)
    result = powmarl.train(
        algo, env, seeds=range(num_seeds), t_max=t_max, progress=False, **overrides
    )
    wall = time.perf_counter() - start
    return {
        "env": env_id,
        "algo": algo,
        "seeds": num_seeds,
        "t_max": t_max,
        "wall_s_including_import_and_compile": wall,
        "final_eval_return": result.final_eval_return.tolist(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


@dataclasses.dataclass
class Child:
    """What a benchmark subprocess left: its JSON stdout lines, how it ended, its stderr."""

    rows: list  # every stdout line that parses as a JSON object, in order
    status: str  # "ok", "failed" (nonzero exit) or "timeout" (killed at the limit)
    returncode: int | None
    stderr: str
    wall_s: float


def _json_lines(text: str | bytes | None) -> list:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    rows = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut off by a kill
    return rows


def run_child(cmd: list[str], timeout: float | None = None, env: dict | None = None) -> Child:
    """Run ``cmd``, killed after ``timeout`` s; the JSON lines it printed before are kept."""
    start = time.perf_counter()
    try:
        out = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else ""
        wall = time.perf_counter() - start  # the kill included
        return Child(_json_lines(err.stdout), "timeout", None, stderr or "", wall)
    status = "ok" if out.returncode == 0 else "failed"
    wall = time.perf_counter() - start
    return Child(_json_lines(out.stdout), status, out.returncode, out.stderr, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="stag_hunt")
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--algo", default="qmix")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--chunks", type=int, default=2, help="steady-state chunks to time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--full-run", action="store_true", help="time a whole train() call")
    parser.add_argument("--t-max", type=int, default=50_000)
    parser.add_argument("--json", default=None, help="append results as JSON lines here")
    parser.add_argument(
        "--smax-decode-chunk",
        type=int,
        default=None,
        help="SMAX replay records decoded at once (powmarl.envs.smax.REPLAY_DECODE_CHUNK)",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    env_args = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.env_arg)}
    overrides = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.set)}
    if args.one:
        if args.smax_decode_chunk is not None:
            import powmarl.envs.smax

            powmarl.envs.smax.REPLAY_DECODE_CHUNK = args.smax_decode_chunk
        fn = measure_full if args.full_run else measure_steady
        extra = args.t_max if args.full_run else args.chunks
        print(json.dumps(fn(args.env, env_args, args.algo, args.seeds[0], extra, overrides)))
        return
    for num_seeds in args.seeds:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            "--env",
            args.env,
            "--algo",
            args.algo,
            "--seeds",
            str(num_seeds),
            "--chunks",
            str(args.chunks),
            "--t-max",
            str(args.t_max),
        ]
        cmd += [f"--env-arg={a}" for a in args.env_arg] + [f"--set={a}" for a in args.set]
        cmd += ["--full-run"] if args.full_run else []
        if args.smax_decode_chunk is not None:
            cmd += ["--smax-decode-chunk", str(args.smax_decode_chunk)]
        child = run_child(cmd)
        if child.status != "ok":
            print(child.stderr[-3000:], file=sys.stderr)
            sys.exit(child.returncode or 1)
        row = child.rows[-1]
        if args.smax_decode_chunk is not None:
            row["smax_decode_chunk"] = args.smax_decode_chunk
        print(json.dumps(row, indent=1))
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
