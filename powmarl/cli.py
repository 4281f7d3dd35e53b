"""The ``powmarl`` command: ``train``, ``list``, ``demo``.

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
        else:
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                raise UsageError(
                    f"--env-arg: {key} must be JSON (e.g. [[1,0],[0,1]]), got {value!r}"
                )
    return out


def cmd_train(args) -> int:
    from powmarl import presets
    from powmarl.api import train
    from powmarl.envs import make as make_env

    algo, env_id, env_args, overrides = args.algo, args.env, {}, {}
    if args.preset:
        preset = presets.get(args.preset)
        algo = algo or preset.algo
        env_id = env_id or preset.env_id
        env_args.update(preset.env_kwargs)
        overrides.update(preset.overrides)
    if not algo:
        raise UsageError("train: give --algo or --preset (see `powmarl list`)")
    if not env_id:
        raise UsageError("train: give --env or --preset (see `powmarl list`)")
    env_args.update(_coerce_env_args(env_id, parse_assignments(args.env_arg, "--env-arg")))
    overrides.update(parse_assignments(args.set, "--set"))
    if args.t_max is not None:
        overrides["t_max"] = args.t_max
    env = make_env(env_id, **env_args)
    result = train(
        algo,
        env,
        seeds=parse_seeds(args.seeds),
        run_dir=args.run_dir,
        progress=not args.no_progress,
        **overrides,
    )
    ret = result.final_eval_return
    print(
        f"{result.algo} on {env_id}: final greedy test return per seed "
        f"{', '.join(f'{r:.3f}' for r in ret)} (mean {ret.mean():.3f})"
    )
    if args.run_dir:
        print(f"run directory: {args.run_dir}")
    return 0


def cmd_list(args) -> int:
    from powmarl import algos, envs, presets
    from powmarl.config import fields_help

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
    return 0


def cmd_demo(args) -> int:
    from powmarl.demo import run_demo

    run_demo(seeds=parse_seeds(args.seeds), t_max=args.t_max, algos=args.algos)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="powmarl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train an algorithm on an environment, many seeds at once")
    train.add_argument("--algo", help="algorithm id (powmarl list)")
    train.add_argument("--env", help="environment id (powmarl list)")
    train.add_argument("--preset", help="a paper experiment: sets algo, env and settings")
    train.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any hyperparameter (powmarl list)",
    )
    train.add_argument("--seeds", default="0", help="e.g. 0-4 or 0,3,7 (default 0)")
    train.add_argument("--t-max", type=int, default=None, help="env steps per seed")
    train.add_argument("--run-dir", default=None, help="write config.json and metrics.jsonl here")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    lister = sub.add_parser("list", help="algorithms, environments, presets, hyperparameters")
    lister.set_defaults(func=cmd_list)

    demo = sub.add_parser("demo", help="the matrix-game demo: every algorithm, 5 seeds")
    demo.add_argument("--seeds", default="0-4")
    demo.add_argument("--t-max", type=int, default=10_000, help="env steps per seed (paper: 50000)")
    demo.add_argument("--algos", nargs="*", default=None, help="default: all registered")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError) as err:
        print(f"powmarl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("powmarl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
