"""Grids of runs: ``powmarl sweep GRID.yaml [--out DIR] [--workers N] [--ray ADDRESS]``.

A grid file names algorithms, environments, seeds and settings::

    algos: [qmix, pow_qmix]
    envs: [{id: stag_hunt, punishment: -4}, {id: stag_hunt, punishment: -5}]
    seeds: [0, 1, 2, 3, 4]          # or "0-4"
    t_max: 1000000
    set: {batch_size: 64}           # fixed settings for every run
    grid: {recognition_threshold: [0.1, 1.0], rnn_hidden_dim: [64, 128]}
    loggers: [tensorboard]          # sinks besides metrics.jsonl, for every run

Grid values of traced hyperparameters (``HParams``: lr, C, alpha, ...) share one compiled
program: they become members of the same run, next to the seeds. Values of static
settings (``Config``: network sizes, batch size, ...) change the program, so each becomes
a separate run. Runs execute one after another in this process, in ``--workers`` local
processes, or as Ray tasks (``--ray ADDRESS``, ``--ray local`` starts a local instance).

Each run has its own directory under ``--out``; a sweep started again skips finished
runs, resumes unfinished ones from their last checkpoint and starts the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from pathlib import Path
from typing import Any

ALLOWED_KEYS = ("algos", "envs", "seeds", "t_max", "set", "grid", "loggers")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: everything ``powmarl.train`` needs, and where it goes."""

    name: str
    algo: str
    env_id: str
    env_kwargs: dict[str, Any]
    seeds: tuple[int, ...]
    overrides: dict[str, Any]
    hparam_grid: dict[str, list[float]]
    run_dir: str
    loggers: tuple[str, ...] = ()


def load_grid(path: str | Path) -> dict[str, Any]:
    """Read a grid file (YAML, or JSON which is YAML too)."""
    try:
        import yaml
    except ImportError:
        raise ImportError("sweep: grid files need PyYAML; pip install pyyaml") from None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"sweep: grid file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ValueError(f"sweep: {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(  # noqa: TRY004 (a user's file, reported as a usage error)
            f"sweep: {path} must hold a mapping with keys {', '.join(ALLOWED_KEYS)}"
        )
    return data


def _seeds(value) -> tuple[int, ...]:
    from powmarl.cli import parse_seeds

    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        return tuple(parse_seeds(value))
    valid = isinstance(value, list) and value and len(set(value)) == len(value)
    if valid and all(isinstance(s, int) and s >= 0 for s in value):
        return tuple(value)
    raise ValueError(
        f"sweep: seeds must be a list of distinct integers >= 0 or '0-4', got {value!r}"
    )


def _env_entries(value) -> list[tuple[str, dict[str, Any]]]:
    from powmarl.envs import env_kwargs, registered

    if not isinstance(value, list) or not value:
        raise ValueError("sweep: envs must be a non-empty list of ids or {id: ..., arg: ...}")
    out = []
    for entry in value:
        if isinstance(entry, str):
            entry = {"id": entry}
        if not isinstance(entry, dict) or "id" not in entry:
            raise ValueError(f"sweep: each env needs an id, got {entry!r}")
        env_id = entry["id"]
        if env_id not in registered():
            raise ValueError(f"sweep: unknown env {env_id!r}; allowed: {', '.join(registered())}")
        kwargs = {k: v for k, v in entry.items() if k != "id"}
        unknown = set(kwargs) - set(env_kwargs(env_id))
        if unknown:
            raise ValueError(
                f"sweep: env {env_id} has no argument {min(unknown)!r}; allowed: "
                f"{', '.join(env_kwargs(env_id)) or 'none'}"
            )
        out.append((env_id, kwargs))
    return out


def _label(env_id: str, kwargs: dict[str, Any]) -> str:
    parts = [env_id] + [f"{k}{v}" for k, v in sorted(kwargs.items())]
    return "_".join(str(p).replace("/", "-").replace(" ", "") for p in parts)


def expand(grid: dict[str, Any], out_dir: str | Path) -> list[RunSpec]:
    """The runs of a grid: algos x envs x static grid points; traced grid values and
    seeds stay inside each run."""
    from powmarl import algos

    unknown = set(grid) - set(ALLOWED_KEYS)
    if unknown:
        raise ValueError(f"sweep: unknown key {min(unknown)!r}; allowed: {', '.join(ALLOWED_KEYS)}")
    algo_ids = grid.get("algos")
    if not isinstance(algo_ids, list) or not algo_ids:
        raise ValueError("sweep: algos must be a non-empty list of algorithm ids")
    for a in algo_ids:
        if a not in algos.registered():
            raise ValueError(f"sweep: unknown algo {a!r}; allowed: {', '.join(algos.registered())}")
    envs = _env_entries(grid.get("envs"))
    seeds = _seeds(grid.get("seeds", [0]))
    fixed = dict(grid.get("set") or {})
    if "t_max" in grid:
        fixed["t_max"] = grid["t_max"]
    traced, static = _split_grid(grid.get("grid") or {}, algo_ids)
    loggers = _loggers(grid.get("loggers", []))
    names = sorted(static)
    runs = []
    for algo, (env_id, kwargs), point in itertools.product(
        algo_ids, envs, itertools.product(*[static[n] for n in names])
    ):
        variant = "_".join(f"{n}{v}" for n, v in zip(names, point))
        name = "__".join(p for p in (algo, _label(env_id, kwargs), variant) if p)
        runs.append(
            RunSpec(
                name=name,
                algo=algo,
                env_id=env_id,
                env_kwargs=kwargs,
                seeds=seeds,
                overrides={**fixed, **dict(zip(names, point))},
                hparam_grid=traced,
                run_dir=str(Path(out_dir) / name),
                loggers=loggers,
            )
        )
    return runs


def _loggers(value) -> tuple[str, ...]:
    """The sinks every run logs to (names registered in ``powmarl.io.sinks``)."""
    from powmarl.io.logging import BACKENDS

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or any(v not in BACKENDS for v in value):
        raise ValueError(
            f"sweep: loggers must be a list of {', '.join(BACKENDS)}, got {value!r}"
        )
    return tuple(value)


def _setting_names(algo_ids) -> tuple[set[str], set[str]]:
    """(traced, static) setting names of the grid's algorithms: the library's fields and
    every hyperparameter one of them declares."""
    from powmarl import algos, settings

    traced, static = set(), set()
    for algo_id in algo_ids:
        cfg, hp = settings.base_settings(algos.make(algo_id))
        traced.update(settings.traced_names(hp))
        static.update(settings.static_names(cfg))
    return traced, static


def _split_grid(
    grid: dict[str, Any], algo_ids
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    if not isinstance(grid, dict):
        raise ValueError("sweep: grid must map setting names to lists of values")  # noqa: TRY004
    traced_names, static_names = _setting_names(algo_ids)
    traced, static = {}, {}
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep: grid.{name} must be a non-empty list of values")
        if name in traced_names:
            traced[name] = [float(v) for v in values]
        elif name in static_names:
            static[name] = values
        else:
            allowed = ", ".join(sorted(traced_names | static_names))
            raise ValueError(f"sweep: grid.{name} is not a setting; allowed: {allowed}")
    return traced, static


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train, resume or skip one run (by the state of its directory); a summary dict."""
    from powmarl.api import resume, run_status, train
    from powmarl.envs import make as make_env

    status = run_status(spec.run_dir)
    if status == "finished":
        return _summary(spec, "skipped (finished)")
    if status == "partial":
        resume(spec.run_dir, progress=False, loggers=spec.loggers)
        return _summary(spec, "resumed")
    train(
        spec.algo,
        make_env(spec.env_id, **spec.env_kwargs),
        seeds=spec.seeds,
        run_dir=spec.run_dir,
        progress=False,
        hparam_grid=spec.hparam_grid or None,
        loggers=spec.loggers,
        **spec.overrides,
    )
    return _summary(spec, "trained")


def _summary(spec: RunSpec, action: str) -> dict[str, Any]:
    """What a run ended with, read back from its metrics (the last row of each member)."""
    from powmarl.io.run_dir import read_metrics

    last: dict[tuple[int, str], float] = {}
    for row in read_metrics(spec.run_dir):
        last[(row["seed"], row.get("variant", ""))] = row["eval/return_mean"]
    returns = [v for v in last.values() if v is not None]
    return {
        "name": spec.name,
        "run_dir": spec.run_dir,
        "action": action,
        "members": len(last),
        "final_return_mean": float(sum(returns) / len(returns)) if returns else float("nan"),
    }


def run_sweep(
    grid: dict[str, Any], out_dir: str | Path, workers: int = 1, ray_address: str | None = None
) -> list[dict[str, Any]]:
    """Run every run of ``grid``; write ``sweep.json`` (the specs and outcomes) to ``out_dir``."""
    from powmarl.io.run_dir import atomic_write_text

    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    specs = expand(grid, out_dir)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"sweep: cannot create {out}: {err.strerror or err}") from None
    if ray_address is not None:
        summaries = _run_ray(specs, ray_address)
    elif workers > 1:
        summaries = _run_processes(specs, workers)
    else:
        summaries = [run_one(s) for s in specs]
    record = {"grid": grid, "runs": [dataclasses.asdict(s) for s in specs], "outcomes": summaries}
    atomic_write_text(out / "sweep.json", json.dumps(record, indent=1, default=str))
    return summaries


def _run_processes(specs: list[RunSpec], workers: int) -> list[dict[str, Any]]:
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(run_one, specs))


def _run_ray(specs: list[RunSpec], address: str) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ImportError(
            "sweep: --ray needs ray; install with pip install 'powmarl[ray]'"
        ) from None
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(run_one)
        return ray.get([remote.remote(s) for s in specs])
    finally:
        if started:
            ray.shutdown()


def print_summary(summaries: list[dict[str, Any]], file=None) -> None:
    file = file or sys.stdout
    for s in summaries:
        print(
            f"{s['name']}: {s['action']}, {s['members']} members, final greedy return "
            f"{s['final_return_mean']:.3f} (mean) -> {s['run_dir']}",
            file=file,
        )
