"""The argument parser of the ``powmarl`` command (the handlers are in powmarl/cli.py)."""

from __future__ import annotations

import argparse


def _add_logging_flags(parser) -> None:
    """One ``--<name>`` flag per registered sink (powmarl.io.sinks), the W&B options, and
    ``--num-workers`` (processes stepping a Python env's copies)."""
    from powmarl.io.logging import SINKS

    for name, kind in SINKS.items():
        parser.add_argument(f"--{name}", action="store_true", help=f"also log: {kind.help}")
    parser.add_argument("--wandb-mode", default="offline", choices=["offline", "online"])
    parser.add_argument("--wandb-project", default="powmarl")
    _add_workers_flag(parser)


def _add_workers_flag(parser) -> None:
    parser.add_argument(
        "--num-workers", type=int, default=None, metavar="N",
        help="Python (host) envs: processes stepping the env copies (default: one per core; "
        "1: in this process)",
    )  # fmt: skip


def build(handlers: dict, description: str) -> argparse.ArgumentParser:
    """The parser; ``handlers`` maps each command to the function that runs it."""
    parser = argparse.ArgumentParser(prog="powmarl", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    _train(sub, handlers)
    _run_dir_commands(sub, handlers)
    _grid_and_presets(sub, handlers)
    _report(sub, handlers)
    return parser


def _train(sub, handlers) -> None:
    train = sub.add_parser("train", help="train an algorithm on an environment, many seeds at once")
    train.add_argument("--algo", help="algorithm id (powmarl list)")
    train.add_argument("--env", help="environment id (powmarl list)")
    train.add_argument("--preset", help="a paper experiment: sets algo, env and settings")
    train.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="a YAML file of algo, env, env_args, settings (as `powmarl config show` prints)",
    )
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
    _add_logging_flags(train)
    train.set_defaults(func=handlers["train"])


def _run_dir_commands(sub, handlers) -> None:
    res = sub.add_parser("resume", help="continue a killed run from its last good checkpoint")
    res.add_argument("run_dir")
    res.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_logging_flags(res)
    res.set_defaults(func=handlers["resume"])

    ev = sub.add_parser("eval", help="greedy evaluation of a run's newest checkpoint")
    ev.add_argument("run_dir")
    ev.add_argument(
        "--episodes", type=int, default=None, help="per member (default: test_nepisode)"
    )
    ev.add_argument("--key-seed", type=int, default=0, help="seed of the evaluation key")
    ev.add_argument("--render", default=None, metavar="FILE.gif", help="write an animation")
    ev.add_argument("--member", type=int, default=0, help="which member (seed) to render")
    ev.add_argument(
        "--best", action="store_true",
        help="evaluate each seed's best agent (its best training evaluation by the env's main "
        "metric: the absolute metric) instead of the newest checkpoint",
    )  # fmt: skip
    _add_workers_flag(ev)
    ev.set_defaults(func=handlers["eval"])


def _grid_and_presets(sub, handlers) -> None:
    sw = sub.add_parser("sweep", help="a grid of algorithms, envs, seeds and settings")
    sw.add_argument("grid", help="YAML grid file (see powmarl/sweep.py)")
    sw.add_argument("--out", default="sweeps", help="directory of the runs (default sweeps)")
    sw.add_argument("--workers", type=int, default=1, help="parallel local processes")
    sw.add_argument(
        "--ray", default=None, metavar="ADDRESS", help="run on Ray ('local' starts one)"
    )
    sw.set_defaults(func=handlers["sweep"])

    config = sub.add_parser("config", help="presets as YAML files for train --config")
    actions = config.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="print a preset as YAML (a --config file)")
    show.add_argument("preset", help="a preset name (powmarl list)")
    show.set_defaults(func=handlers["config"])

    lister = sub.add_parser("list", help="algorithms, environments, presets, hyperparameters")
    lister.set_defaults(func=handlers["list"])

    demo = sub.add_parser("demo", help="the matrix-game demo: every algorithm, 5 seeds")
    demo.add_argument("--seeds", default="0-4")
    demo.add_argument("--t-max", type=int, default=10_000, help="env steps per seed (paper: 50000)")
    demo.add_argument("--algos", nargs="*", default=None, help="default: all registered")
    demo.set_defaults(func=handlers["demo"])


def _report(sub, handlers) -> None:
    rep = sub.add_parser("report", help="tables with 95%% CI over seeds, curves, heatmaps")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to pool")
    rep.add_argument("--out", default="report", help="output directory (default: report)")
    rep.add_argument(
        "--metric",
        default=None,
        help="final metric (default: eval/battle_won_mean if logged, else eval/return_mean)",
    )
    rep.add_argument(
        "--at",
        type=float,
        default=None,
        metavar="T",
        help="the runs as they stood at T env steps (runs stopped at different points)",
    )
    rep.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib)")
    rep.add_argument(
        "--marl-eval", default=None, metavar="FILE.json",
        help="also write marl-eval's JSON (per-episode test values of every evaluation, and "
        "absolute metrics of each seed's best agent)",
    )  # fmt: skip
    rep.add_argument(
        "--absolute-episodes", type=int, default=None, metavar="N",
        help="--marl-eval: greedy episodes per seed re-evaluating the best agent (default: "
        "10x the run's test_nepisode; 0: no absolute_metrics)",
    )  # fmt: skip
    rep.add_argument(
        "--aggregate",
        action="store_true",
        help="IQM, mean, median, optimality gap, probability of improvement, performance "
        "profiles with stratified bootstrap intervals over tasks and seeds (needs rliable)",
    )
    rep.add_argument(
        "--reference-scores",
        default=None,
        metavar="FILE",
        help="JSON/YAML {task: {low: L, high: H}} to normalise by (default: min-max over "
        "algorithms)",
    )
    rep.add_argument("--bootstrap-reps", type=int, default=None, metavar="N",
                     help="bootstrap samples of --aggregate (default: 2000)")  # fmt: skip
    rep.set_defaults(func=handlers["report"])
