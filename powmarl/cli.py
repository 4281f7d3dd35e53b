"""The powmarl command: train, resume, eval, sweep, report, config, list, demo.

Bad input gives a one-line error naming what is allowed, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


class UsageError(Exception):
    """A user mistake: reported in one line with exit status 2."""


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]; '2' -> [2]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UsageError(f"--seeds: expected a list like 0-4 or 0,3,7 of seeds >= 0, got {text!r}")
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: seeds must be distinct and >= 0, got {text!r}")
    return seeds


def parse_assignments(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"{flag}: expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _coerce_env_args(env_id: str, raw: dict[str, str]) -> dict[str, Any]:
    """Convert --env-arg strings to the types of the env factory's defaults."""
    import json

    from powmarl.config import parse_value
    from powmarl.envs import env_kwargs

    allowed = env_kwargs(env_id)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise UsageError(
                f"--env-arg: env {env_id} has no argument {key!r}; allowed: "
                f"{', '.join(allowed) or 'none'}"
            )
        default = allowed[key]
        if isinstance(default, (int, float, bool)):
            out[key] = parse_value(key, value, default)
        elif isinstance(default, str):  # e.g. smax's map_name=3s_vs_5z
            out[key] = value
        else:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                raise UsageError(
                    f"--env-arg: {key} must be JSON (e.g. [[1,0],[0,1]]), got {value!r}"
                )
    return out


def _train_preset(args):
    """The preset of --preset or --config (None without either), checked against --algo,
    --env and its algorithm's settings."""
    from powmarl import algos, presets

    if args.preset and args.config:
        raise UsageError("train: give --preset or --config, not both")
    if not (args.preset or args.config):
        return None
    if args.preset:
        preset, source = presets.get(args.preset), f"preset {args.preset}"
    else:
        source = f"--config {args.config}"
        preset = presets.load(args.config, source)
    for flag, given, fixed in (
        ("--algo", args.algo, preset.algo),
        ("--env", args.env, preset.env_id),
    ):
        if given and given != fixed:
            raise UsageError(
                f"{flag}: {source} is for {fixed!r} and its settings are {fixed}'s; drop {flag} "
                "or write a --config file for your choice"
            )
    presets.check_settings(preset, algos.make(preset.algo), source)
    return preset


def cmd_train(args) -> int:
    from powmarl.api import train
    from powmarl.envs import make as make_env

    preset = _train_preset(args)
    algo = args.algo or (preset.algo if preset else None)
    env_id = args.env or (preset.env_id if preset else None)
    if not algo:
        raise UsageError("train: give --algo, --preset or --config (see `powmarl list`)")
    if not env_id:
        raise UsageError("train: give --env, --preset or --config (see `powmarl list`)")
    env_args = dict(preset.env_kwargs) if preset else {}
    env_args.update(_coerce_env_args(env_id, parse_assignments(args.env_arg, "--env-arg")))
    overrides: dict[str, Any] = parse_assignments(args.set, "--set")
    if "num_workers" in overrides:  # an argument of train, not a setting of the run
        raise UsageError("--set num_workers: not a run setting; use --num-workers N")
    if args.t_max is not None:
        overrides["t_max"] = args.t_max
    env = make_env(env_id, **env_args)
    result = train(
        algo,
        env,
        seeds=parse_seeds(args.seeds),
        run_dir=args.run_dir,
        progress=not args.no_progress,
        loggers=_loggers(args),
        logger_options=_logger_options(args),
        num_workers=args.num_workers,
        preset=preset,
        **overrides,
    )
    _print_result(result, env_id)
    return 0


def cmd_config(args) -> int:
    """``powmarl config show PRESET``: the preset as YAML (a valid --config file)."""
    from powmarl import presets

    print(presets.get(args.preset).to_yaml(), end="")
    return 0


def _loggers(args) -> list[str]:
    from powmarl.io.logging import SINKS

    return [name for name in SINKS if getattr(args, name, False)]


def _logger_options(args) -> dict[str, Any]:
    if not getattr(args, "wandb", False):
        return {}
    return {"mode": args.wandb_mode, "project": args.wandb_project}


def _print_result(result, env_id) -> None:
    ret = result.final_eval_return
    print(
        f"{result.algo} on {env_id}: final greedy test return per seed "
        f"{', '.join(f'{r:.3f}' for r in ret)} (mean {ret.mean():.3f})"
    )
    if result.run_dir:
        print(f"run directory: {result.run_dir}")


def cmd_resume(args) -> int:
    from powmarl.api import read_record, resume, run_status

    status = run_status(args.run_dir)
    if status == "new":
        raise UsageError(f"resume: {args.run_dir} holds no run (no config.json)")
    if status == "finished":
        print(f"{args.run_dir}: already finished; nothing to do")
    result = resume(
        args.run_dir,
        progress=not args.no_progress,
        loggers=_loggers(args),
        logger_options=_logger_options(args),
        num_workers=args.num_workers,
    )
    _print_result(result, read_record(args.run_dir)["env_id"])
    return 0


def cmd_sweep(args) -> int:
    from powmarl.sweep import load_grid, print_summary, run_sweep

    summaries = run_sweep(
        load_grid(args.grid), args.out, workers=args.workers, ray_address=args.ray
    )
    print_summary(summaries)
    print(f"sweep record: {args.out}/sweep.json")
    return 0


def cmd_eval(args) -> int:
    from powmarl.api import evaluate

    rows = evaluate(
        args.run_dir,
        episodes=args.episodes,
        key_seed=args.key_seed,
        render=args.render,
        member=args.member,
        num_workers=args.num_workers,
        best=args.best,
    )
    for row in rows:
        who = f"seed {row['seed']}" + (f" ({row['variant']})" if row["variant"] else "")
        extra = "".join(
            f", {k} {v:.3f}"
            for k, v in row.items()
            if k.endswith("_mean") and k not in ("return_mean", "ep_length_mean")
        )
        print(
            f"{who}: greedy return {row['return_mean']:.3f} +- {row['return_std']:.3f} over "
            f"{row['episodes']} episodes, length {row['ep_length_mean']:.1f}{extra} "
            f"({'best ' if args.best else ''}checkpoint at {row['t_env']} env steps"
            + (f", {row['best_metric']} {row['best_score']:.3f} in training)" if args.best else ")")
        )
    if args.render:
        print(f"animation: {args.render}")
    return 0


def cmd_list(args) -> int:
    from powmarl import algos, envs, presets
    from powmarl.config import declared_help, fields_help

    print("algorithms:")
    for name, desc in algos.registered().items():
        print(f"  {name:14s} {desc}")
    print("environments:")
    for name, desc in envs.registered().items():
        kwargs = ", ".join(f"{k}={v!r}" for k, v in envs.env_kwargs(name).items())
        print(f"  {name:14s} {desc}" + (f"\n  {'':14s} args: {kwargs}" if kwargs else ""))
    print("presets:")
    for name, p in sorted(presets.PRESETS.items()):
        print(f"  {name:24s} {p.description}")
    print("hyperparameters (--set KEY=VALUE):")
    for name, text in fields_help().items():
        print(f"  {name:24s} {text}")
    declared = [(a, d) for a in algos.registered() for d in algos.make(a).hparams]
    if declared:
        print("hyperparameters declared by an algorithm (--set KEY=VALUE with it):")
        for algo, spec in declared:
            print(f"  {spec.name:24s} [{algo}] {declared_help(spec)}")
    return 0


def cmd_demo(args) -> int:
    from powmarl.demo import run_demo

    run_demo(seeds=parse_seeds(args.seeds), t_max=args.t_max, algos=args.algos)
    return 0


def cmd_report(args) -> int:
    """Tables (mean and 95% t-interval over seeds), curves and heatmaps of run directories."""
    from powmarl.report import make_report
    from powmarl.report.aggregate import aggregate_options

    written = make_report(
        args.run_dirs, args.out, metric=args.metric, plots=not args.no_plots, at=args.at,
        aggregate=aggregate_options(args),
    )  # fmt: skip
    print(written["table.md"].read_text(encoding="utf-8"))
    print(f"wrote {len(written)} files under {args.out}:")
    for name in written:
        print(f"  {name}")
    if args.marl_eval:
        from powmarl.report.marl_eval import export

        export(args.run_dirs, args.marl_eval, at=args.at, absolute_episodes=args.absolute_episodes)
        print(f"marl-eval JSON: {args.marl_eval}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``powmarl`` parser (powmarl/cli_parser.py), each command bound to its handler."""
    from powmarl.cli_parser import build

    handlers = {
        "train": cmd_train, "resume": cmd_resume, "eval": cmd_eval, "sweep": cmd_sweep,
        "config": cmd_config, "list": cmd_list, "demo": cmd_demo, "report": cmd_report,
    }  # fmt: skip
    return build(handlers, __doc__.splitlines()[0])


def main(argv: Sequence[str] | None = None) -> int:
    from powmarl.io.checkpoint import CheckpointError
    from powmarl.runners.loop import TrainingFault

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError) as err:
        print(f"powmarl: error: {err}", file=sys.stderr)
        return 2
    except (TrainingFault, CheckpointError, OSError, ImportError) as err:
        print(f"powmarl: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("powmarl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
