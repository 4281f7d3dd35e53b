"""The GPU suite's child processes (benchmarks/gpu_suite.py): one job per process.

    python benchmarks/suite_jobs.py '{"kind": "measure", "env": "stag_hunt", ...}'

A job prints JSON lines to stdout as it goes (flushed), so one killed at its time limit
still leaves what it had measured. Kinds:

- ``measure``: compile (or load from the persistent compilation cache) one vmapped
  whole-training program (``throughput.compile_bench``), warm it up until the learner runs
  every iteration, time steady-state chunks until ``chunks`` are done or ``deadline``
  (``time.time()``) would pass; then the device's memory statistics.
- ``compile``: only the compilation of ``measure`` (fills the cache; times a cold compile).
- ``train``: ``powmarl.train`` one preset's settings into ``run_dir`` until ``deadline``
  (``stop_when``: no evaluation is started that would end after it, less ``margin`` s left
  for the final checkpoint).
- ``train_compile``: the same program for one chunk and no run dir (fills the cache).
"""

from __future__ import annotations

import json
import sys
import time

import throughput

#: The tiny instance (CPU tests): the golden runs' small predator-prey at p = -4; its
#: training ends at t_max (3 evaluations) unless the budget ends it first.
TINY_ENV = {
    "grid_size": 5,
    "num_agents": 3,
    "num_stags": 1,
    "punishment": -4.0,
    "episode_limit": 20,
}
TINY_OVERRIDES = {
    "test_interval": 1000,
    "batch_size": 16,
    "buffer_size": 64,
    "num_envs": 4,
    "test_nepisode": 4,
    "length_buckets": 1,
    "t_max": 3000,
}
#: SMAX as in docs/benchmarks.md: one rollout iteration and 8 test episodes per chunk.
SMAX_ENV = {"map_name": "3s_vs_5z"}
SMAX_OVERRIDES = {"test_interval": 2000, "test_nepisode": 8}
TRAIN_PRESETS = ("pow_qmix_stag_hunt_p4", "qmix_stag_hunt_p4")
#: Training writes only its final checkpoint (gigabytes; never copied out).
NO_CHECKPOINTS = {"checkpoint_interval": 10**12, "keep_checkpoints": 1}


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def compile_fields(bench: throughput.Bench) -> dict:
    """Compile times and XLA's memory analysis of the compiled chunk (all seeds, bytes)."""
    import jax

    scratch = bench.scratch
    fields = {
        "init_compile_s": bench.init_compile_s,
        "chunk_compile_s": bench.chunk_compile_s,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "device_count": len(jax.devices()),
    }
    for name in ("temp", "argument", "output", "generated_code"):
        value = getattr(scratch, f"{name}_size_in_bytes", None) if scratch is not None else None
        fields[f"xla_{name}_bytes"] = value
    fields["xla_peak_bytes"] = getattr(scratch, "peak_memory_in_bytes", None)
    return fields


def device_memory() -> dict:
    """The first device's allocator statistics (None where the backend keeps none: CPU)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return {
        "device_peak_bytes": stats.get("peak_bytes_in_use"),
        "device_bytes_in_use": stats.get("bytes_in_use"),
        "device_bytes_limit": stats.get("bytes_limit"),
    }


def measure(job: dict, compile_only: bool = False) -> None:
    bench = throughput.compile_bench(
        job["env"], job["env_args"], job["algo"], job["seeds"], job["overrides"]
    )
    emit({"stage": "compiled", **compile_fields(bench), **device_memory()})
    if compile_only:
        return
    last = throughput.warm_up(bench)
    timing = throughput.time_chunks(bench, job["chunks"], last, job.get("deadline"))
    row = throughput.steady_row(bench, timing)
    row.update(compile_fields(bench))
    row.update(device_memory())
    row.update(stage="done", timed_chunks=timing["chunks"], timed_s=timing["wall"])
    emit(row)


class ClockStop:
    """``stop_when`` predicate: true at the first evaluation after which one more chunk, as
    long as the last one, and ``margin`` s would end after ``deadline`` (``time.time()``).

    The first chunk's length is unknown (its wall time holds the compilation), so the
    first evaluation stops only if the deadline minus ``margin`` has passed.
    """

    def __init__(self, deadline: float, margin: float):
        self.deadline, self.margin = deadline, margin
        self.last: float | None = None
        self.fired = False

    def __call__(self, rows) -> bool:
        now = time.time()
        chunk = 0.0 if self.last is None else now - self.last
        self.last = now
        self.fired = now + chunk + self.margin > self.deadline
        return self.fired


def preset_job(name: str, tiny: bool) -> dict:
    """The suite's training of preset ``name``: its algo, env and settings, but with no
    checkpoint before the last (and with ``tiny``, the tiny instance and sizes)."""
    from powmarl import presets

    preset = presets.get(name)
    # a preset's settings: ``.settings`` (YAML presets) or ``.overrides`` (before them)
    settings = getattr(preset, "settings", None) or getattr(preset, "overrides", {})
    return {
        "algo": preset.algo,
        "env": preset.env_id,
        "env_args": dict(TINY_ENV if tiny else preset.env_kwargs),
        "overrides": {**settings, **NO_CHECKPOINTS, **(TINY_OVERRIDES if tiny else {})},
    }


def train(job: dict, one_chunk: bool = False) -> None:
    import powmarl

    job = {**job, **preset_job(job["preset"], job["tiny"])}
    emit({"stage": "started", **{k: job[k] for k in ("algo", "env", "env_args", "overrides")}})
    env = powmarl.envs.make(job["env"], **job["env_args"])
    stop = ClockStop(job.get("deadline", 0.0), job.get("margin", 0.0))
    start = time.perf_counter()
    result = powmarl.train(
        job["algo"],
        env,
        seeds=job["seeds"],
        run_dir=None if one_chunk else job["run_dir"],
        progress=False,
        stop_when=(lambda rows: True) if one_chunk else stop,
        **job["overrides"],
    )
    emit(
        {
            "stage": "done",
            "wall_s": time.perf_counter() - start,
            "t_env": result.t_env.tolist(),
            "final_eval_return": result.final_eval_return.tolist(),
            "stopped_by": "one chunk" if one_chunk else ("clock" if stop.fired else "t_max"),
            **device_memory(),
        }
    )


def main(argv: list[str]) -> None:
    job = json.loads(argv[0])
    kind = job["kind"]
    if kind in ("measure", "compile"):
        measure(job, compile_only=kind == "compile")
    elif kind in ("train", "train_compile"):
        train(job, one_chunk=kind == "train_compile")
    else:
        raise SystemExit(f"kind: unknown {kind!r}; allowed: measure, compile, train, train_compile")


if __name__ == "__main__":
    main(sys.argv[1:])
