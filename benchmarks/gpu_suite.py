"""The GPU suite: throughput, compile time and memory of QMIX and POW-QMIX, then training.

    python benchmarks/gpu_suite.py --out DIR            # about 8 minutes on one GPU
    python benchmarks/gpu_suite.py --tiny --out DIR     # a small stag_hunt, for the CPU

Phases, each in its own processes (``suite_jobs.py``) and each watching one clock
(``--budget`` s in all, ``--reserve`` s of it kept for writing the outputs):

1. prewarm: every program below is compiled once, ``--jobs`` at a time, into a
   persistent compilation cache (times a cold compile; later phases load it);
2. measure, one process at a time: whole-training throughput (``throughput.py``'s
   steady state), compile time and device memory of ``qmix`` and ``pow_qmix`` on
   ``stag_hunt`` (the paper instance, punishment -4; 1, 5 and 16 vmapped seeds) and
   ``smax`` 3s_vs_5z, each setting given an equal share of what is left of its phase;
3. train: presets ``pow_qmix_stag_hunt_p4`` and ``qmix_stag_hunt_p4``, seeds 0-4, in
   run dirs under a temporary folder, splitting the time left between them
   (``powmarl.train(stop_when=...)``; a run past its share is killed, its
   metrics.jsonl kept).

Writes to ``--out`` (default ``$OUT``): suite.json, report.md, suite.log (the children's
stderr), runs/<preset>/{config.json,metrics.jsonl}, and powmarl's report of those runs
(table.md, table.csv, curves/*.png). Never the checkpoints.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import throughput
from suite_jobs import SMAX_ENV, SMAX_OVERRIDES, TINY_ENV, TINY_OVERRIDES, TRAIN_PRESETS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JOBS = HERE / "suite_jobs.py"


@dataclasses.dataclass
class Setting:
    """One measured configuration: ``algo`` on ``env`` with ``seeds`` vmapped seeds."""

    label: str  # the task, e.g. "stag_hunt p=-4"
    env: str
    env_args: dict
    algo: str
    seeds: int
    overrides: dict

    @property
    def key(self) -> str:
        return f"{self.label} | {self.algo} | {self.seeds}"

    def job(self, kind: str, **extra) -> dict:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "label"}
        return {"kind": kind, **fields, **extra}


@dataclasses.dataclass
class TrainRun:
    """One training run of a preset; the child resolves its settings
    (``suite_jobs.preset_job``), so this process never imports powmarl before the end."""

    preset: str
    seeds: list[int]
    tiny: bool

    @property
    def key(self) -> str:
        return f"train | {self.preset}"

    def job(self, kind: str, **extra) -> dict:
        return {"kind": kind, **dataclasses.asdict(self), **extra}


@dataclasses.dataclass
class Plan:
    settings: list[Setting]
    runs: list[TrainRun]
    skipped: list[dict]  # settings not measured, with the reason
    args: argparse.Namespace


class Clock:
    """One budget for the whole suite: phase ends as shares of the working time."""

    def __init__(self, budget_s: float, reserve_s: float):
        self.t0 = time.time()
        self.budget_s = budget_s
        self.work_end = self.t0 + max(budget_s - reserve_s, 0.0)

    def at(self, share: float) -> float:
        return self.t0 + share * (self.work_end - self.t0)

    def elapsed(self) -> float:
        return time.time() - self.t0


def settings_for(args) -> tuple[list[Setting], list[dict]]:
    """The measured settings, in the order they run (cheapest first), and those skipped."""
    if args.tiny:
        task, env_args, overrides = "stag_hunt tiny p=-4", TINY_ENV, TINY_OVERRIDES
    else:
        task, env_args, overrides = "stag_hunt p=-4", {"punishment": -4.0}, {}
    stag = [
        Setting(task, "stag_hunt", env_args, algo, n, overrides)
        for n in args.seeds
        for algo in ("qmix", "pow_qmix")
    ]
    smax = [
        Setting("smax 3s_vs_5z", "smax", SMAX_ENV, algo, n, SMAX_OVERRIDES)
        for n in args.smax_seeds
        for algo in ("qmix", "pow_qmix")
    ]
    reason = None
    if smax and args.tiny:
        reason = "not in --tiny"
    elif smax and importlib.util.find_spec("jaxmarl") is None:
        reason = "jaxmarl is not installed (pip install -e '.[smax]')"
    skipped = [
        {"key": s.key, **dataclasses.asdict(s), "status": "skipped", "note": reason}
        for s in smax
        if reason
    ]
    chosen = stag + ([] if reason else smax)
    return sorted(chosen, key=lambda s: s.seeds), skipped  # stable: stag_hunt first


def runs_for(args) -> list[TrainRun]:
    return [TrainRun(name, args.train_seeds, args.tiny) for name in TRAIN_PRESETS]


def child_env(cache_dir: Path, share_device: bool) -> dict:
    """The children's environment: powmarl importable from the checkout, one persistent
    compilation cache; ``share_device`` lets concurrent processes share the GPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    if share_device:  # JAX otherwise takes 75% of the GPU's memory per process
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def run_job(job: dict, timeout: float, env: dict, log, min_s: float = 1.0) -> dict:
    """One child, killed after ``timeout`` s (skipped if that is under ``min_s``); returns
    {status, rows, wall_s, note} (the stderr tail goes to ``log``)."""
    if timeout < min_s:
        log(f"== {_name(job)}: skipped")
        return {"status": "skipped", "rows": [], "wall_s": 0.0, "note": "out of time"}
    cmd = [sys.executable, str(JOBS), json.dumps(job)]
    child = throughput.run_child(cmd, timeout=timeout, env=env)
    log(f"== {_name(job)}: {child.status} in {child.wall_s:.1f} s\n{child.stderr[-4000:]}")
    note = {
        "timeout": f"killed at its limit of {timeout:.0f} s",
        "failed": _last_line(child.stderr),
    }.get(child.status, "")
    return {"status": child.status, "rows": child.rows, "wall_s": child.wall_s, "note": note}


def _name(job: dict) -> str:
    what = job.get("preset") or f"{job['algo']} {job['env']}"
    return f"{job['kind']} {what} seeds={job['seeds']}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no error output"


def prewarm(plan: Plan, clock: Clock, env: dict, log) -> dict[str, dict]:
    """Compile every program into the cache, ``--jobs`` at a time, until the phase ends."""
    end = clock.at(plan.args.prewarm_share)
    jobs = [(s.key, s.job("compile")) for s in plan.settings]
    jobs += [(r.key, r.job("train_compile")) for r in plan.runs]
    jobs.sort(key=lambda kj: not kj[0].count("pow_qmix"))  # the slower compiles first

    def one(job: dict) -> dict:
        return run_job(job, end - time.time(), env, log)

    with concurrent.futures.ThreadPoolExecutor(max_workers=plan.args.jobs) as pool:
        futures = {key: pool.submit(one, job) for key, job in jobs}
        return {key: f.result() for key, f in futures.items()}


def measure(plan: Plan, clock: Clock, env: dict, log) -> list[dict]:
    """Each setting in turn, given an equal share of what is left of the phase (its chunks
    stop at the share; the process is killed at the phase's end)."""
    end = clock.at(plan.args.measure_share)
    results = []
    for i, setting in enumerate(plan.settings):
        left = end - time.time()
        share = left / (len(plan.settings) - i)
        job = setting.job("measure", chunks=plan.args.chunks, deadline=time.time() + share)
        result = run_job(job, left, env, log, plan.args.min_job_s)
        results.append({"key": setting.key, **dataclasses.asdict(setting), **result})
    return results


def train(plan: Plan, clock: Clock, env: dict, work: Path, log) -> list[dict]:
    """Each preset in turn, given an equal share of the time left (the hard limit)."""
    results = []
    for i, run in enumerate(plan.runs):
        left = clock.work_end - time.time()
        share = left / (len(plan.runs) - i)
        run_dir = work / "runs" / run.preset
        job = run.job(
            "train",
            run_dir=str(run_dir),
            deadline=time.time() + share,
            margin=plan.args.checkpoint_margin,
        )
        result = run_job(job, share, env, log, plan.args.min_job_s)
        results.append(
            {
                "key": run.key,
                **dataclasses.asdict(run),
                "run_dir": str(run_dir),
                "share_s": share,
                **result,
            }
        )
    return results


class Log:
    """Appends the children's stderr to out/suite.log (thread-safe: prewarm threads)."""

    def __init__(self, path: Path):
        import threading

        self.path, self.lock = path, threading.Lock()
        path.write_text("")

    def __call__(self, text: str) -> None:
        with self.lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text.rstrip() + "\n")
        print(text.splitlines()[0], file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT"), help="output folder (default $OUT)")
    p.add_argument("--tiny", action="store_true", help="small stag_hunt, few steps (CPU test)")
    p.add_argument("--budget", type=float, help="seconds in all (default 480; --tiny 300)")
    p.add_argument("--reserve", type=float, help="of which kept for the outputs (30; tiny 15)")
    p.add_argument("--seeds", type=int, nargs="+", help="vmapped seeds (1 5 16; tiny 1 2)")
    p.add_argument("--smax-seeds", type=int, nargs="*", default=[1], help="[] skips SMAX")
    p.add_argument("--train-seeds", type=int, nargs="+", help="(0 1 2 3 4; tiny 0 1)")
    p.add_argument("--chunks", type=int, default=2, help="steady-state chunks timed at most")
    p.add_argument("--jobs", type=int, help="compiles at a time (min(8, cores / 2))")
    p.add_argument("--no-prewarm", action="store_true", help="compile in each process")
    p.add_argument("--prewarm-share", type=float, default=0.35, help="phase 1 ends here")
    p.add_argument("--measure-share", type=float, default=0.65, help="phase 2 ends here")
    p.add_argument(
        "--checkpoint-margin", type=float, help="s left for a run's final checkpoint (20; tiny 2)"
    )
    p.add_argument("--min-job-s", type=float, help="skip a job with less time (15; tiny 5)")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary run dirs")
    args = p.parse_args(argv)
    tiny = args.tiny
    defaults = {
        "budget": 300 if tiny else 480,
        "reserve": 15 if tiny else 30,
        "seeds": [1, 2] if tiny else [1, 5, 16],
        "train_seeds": [0, 1] if tiny else [0, 1, 2, 3, 4],
        "jobs": min(8, max(1, (os.cpu_count() or 2) // 2)),
        "checkpoint_margin": 2 if tiny else 20,
        "min_job_s": 5 if tiny else 15,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    _check(args, p)
    return args


def _check(args, parser) -> None:
    if not args.out:
        parser.error("--out: give an output folder (or set OUT)")
    if args.budget <= 0 or not 0 <= args.reserve < args.budget:
        parser.error("--budget/--reserve: need budget > 0 and 0 <= reserve < budget")
    if not 0 < args.prewarm_share <= args.measure_share < 1:
        parser.error("--prewarm-share/--measure-share: need 0 < prewarm <= measure < 1")
    if min(args.seeds + args.smax_seeds + [args.chunks, args.jobs]) < 1:
        parser.error("--seeds/--smax-seeds/--chunks/--jobs: must be >= 1")
    if min(args.train_seeds) < 0 or len(set(args.train_seeds)) != len(args.train_seeds):
        parser.error("--train-seeds: distinct integers >= 0")


def _meta(args, argv, work: Path) -> dict:
    return {
        "argv": sys.argv[1:] if argv is None else argv,
        "tiny": args.tiny,
        "budget_s": args.budget,
        "reserve_s": args.reserve,
        "prewarm": not args.no_prewarm,
        "jobs": 0 if args.no_prewarm else args.jobs,
        "cpu_count": os.cpu_count(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "work_dir": str(work),
    }


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(1, str(ROOT))  # the checkout's powmarl, as in the children
    import suite_report

    args = parse_args(argv)
    clock = Clock(args.budget, args.reserve)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="powmarl-gpu-suite-"))
    log, meta = Log(out / "suite.log"), _meta(args, argv, work)
    try:
        settings, skipped = settings_for(args)
        plan = Plan(settings, runs_for(args), skipped, args)
        cache = work / "jax-cache"
        compiled = {} if args.no_prewarm else prewarm(plan, clock, child_env(cache, True), log)
        meta["prewarm_end_s"] = clock.elapsed()
        measured = measure(plan, clock, child_env(cache, False), log)
        meta["measure_end_s"] = clock.elapsed()
        trained = train(plan, clock, child_env(cache, False), work, log)
        meta["wall_s"] = clock.elapsed()  # training ended; the outputs are written next
        suite_report.write_outputs(out, meta, compiled, measured, skipped, trained)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu_suite: {clock.elapsed():.0f} s; wrote {out}/suite.json, report.md", file=sys.stderr)


if __name__ == "__main__":
    main()
