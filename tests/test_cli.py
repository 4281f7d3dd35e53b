"""The ``powmarl`` command: one-line errors with status 2, seed parsing, ``list``, a real
tiny ``train``."""

from __future__ import annotations

import json

import pytest

from powmarl import algos, envs, presets
from powmarl.cli import UsageError, main, parse_seeds

pytestmark = pytest.mark.usefixtures("key_reuse_check")

TRAIN = ["train", "--no-progress"]


def assert_usage_error(capsys, argv, *needles):
    """main(argv) returns 2 and prints exactly one 'powmarl: error:' line, no traceback."""
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (status, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("powmarl: error: "), err
    assert "Traceback" not in err and "Traceback" not in out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_unknown_algo(capsys):
    """An unknown --algo names it and the allowed algorithms."""
    line = assert_usage_error(
        capsys, [*TRAIN, "--algo", "qmixx", "--env", "matrix_pow"], "qmixx", "qmix", "vdn"
    )
    for name in algos.registered():
        assert name in line


def test_unknown_env(capsys):
    """An unknown --env names it and the registered environments."""
    assert_usage_error(
        capsys,
        [*TRAIN, "--algo", "qmix", "--env", "matrix_foo"],
        "matrix_foo",
        "matrix_pow",
        "stag_hunt",
    )


@pytest.mark.parametrize(
    "env_arg,needles",
    [
        ("grid_size", ("--env-arg", "KEY=VALUE")),  # no '='
        ("=5", ("--env-arg", "KEY=VALUE")),  # no key
        ("n_agents=4", ("n_agents", "grid_size", "num_agents")),  # unknown argument
        ("grid_size=big", ("grid_size", "'big'")),  # not an integer
        ("grid_size=4.5", ("grid_size",)),  # not an integer either
    ],
)
def test_bad_env_arg(capsys, env_arg, needles):
    """A malformed, unknown or mistyped --env-arg is a one-line error naming the problem."""
    assert_usage_error(
        capsys, [*TRAIN, "--algo", "qmix", "--env", "stag_hunt", "--env-arg", env_arg], *needles
    )


def test_bad_matrix_payoff_env_arg(capsys):
    """--env-arg payoff must be JSON, and a valid JSON table still has to be a valid payoff."""
    base = [*TRAIN, "--algo", "qmix", "--env", "matrix"]
    assert_usage_error(capsys, [*base, "--env-arg", "payoff=[[1,2],[3"], "payoff", "JSON")
    assert_usage_error(capsys, [*base, "--env-arg", "payoff=[[1,2,3],[4,5,6]]"], "payoff")


@pytest.mark.parametrize(
    "assignment,needles",
    [
        ("lr", ("--set", "KEY=VALUE")),
        ("learning_rate=0.1", ("learning_rate", "allowed", "lr")),
        ("lr=fast", ("lr", "'fast'")),
        ("lr=0", ("lr",)),
        ("batch_size=2.5", ("batch_size",)),
        ("gamma=2", ("gamma",)),
        ("num_workers=1", ("num_workers", "--num-workers")),  # train's argument, not a setting
    ],
)
def test_bad_set(capsys, assignment, needles):
    """A malformed, unknown, mistyped or out-of-range --set is a one-line error naming it."""
    assert_usage_error(
        capsys, [*TRAIN, "--algo", "qmix", "--env", "matrix_pow", "--set", assignment], *needles
    )


@pytest.mark.parametrize("seeds", ["a-b", "3-1", "1,1", "-1", "0-", "1,,2"])
def test_bad_seeds(capsys, seeds):
    """Unparsable, reversed, repeated or negative --seeds are a one-line error naming --seeds."""
    assert_usage_error(
        capsys, [*TRAIN, "--algo", "qmix", "--env", "matrix_pow", f"--seeds={seeds}"], "--seeds"
    )


def test_missing_algo_or_env(capsys):
    """train without --algo/--preset or without --env says what to give."""
    assert_usage_error(capsys, [*TRAIN, "--env", "matrix_pow"], "--algo", "--preset")
    assert_usage_error(capsys, [*TRAIN, "--algo", "qmix"], "--env", "--preset")


def test_unknown_preset(capsys):
    """An unknown --preset names the allowed presets."""
    line = assert_usage_error(capsys, [*TRAIN, "--preset", "pow_qmix_nowhere"], "pow_qmix_nowhere")
    assert next(iter(presets.PRESETS)) in line


@pytest.mark.parametrize(
    "text,seeds",
    [
        ("0-4", [0, 1, 2, 3, 4]),
        ("0,3,7", [0, 3, 7]),
        ("2", [2]),
        ("0-2,5", [0, 1, 2, 5]),
        (" 4 , 6-7 ", [4, 6, 7]),
        ("3-3", [3]),
    ],
)
def test_parse_seeds(text, seeds):
    """Ranges, lists and single seeds."""
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "x", "4-2", "1,1", "0-2,2", "-3"])
def test_parse_seeds_rejects(text):
    """Empty, non-numeric, reversed, repeated or negative seed lists raise UsageError."""
    with pytest.raises(UsageError, match="--seeds"):
        parse_seeds(text)


def test_list_prints_everything(capsys):
    """`powmarl list` names every algorithm, environment, preset and hyperparameter."""
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*algos.registered(), *envs.registered(), *presets.PRESETS]:
        assert name in out, name
    for field in ("lr", "gamma", "td_lambda", "batch_size", "buffer_size", "t_max"):
        assert field in out, field


def test_real_tiny_train_writes_run_dir(capsys, tmp_path):
    """A real tiny training through main() returns 0, prints the result and writes metrics."""
    run_dir = tmp_path / "run"
    status = main(
        [
            *TRAIN,
            "--algo",
            "qmix",
            "--env",
            "matrix_pow",
            "--t-max",
            "2000",
            "--set",
            "batch_size=16",
            "--set",
            "buffer_size=100",
            "--set",
            "test_interval=1000",
            "--set",
            "rnn_hidden_dim=8",
            "--set",
            "mixing_embed_dim=8",
            "--set",
            "hypernet_embed=16",
            "--run-dir",
            str(run_dir),
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "qmix on matrix_pow" in out and str(run_dir) in out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "qmix" and config["seeds"] == [0]
    assert config["config"]["batch_size"] == 16 and config["config"]["t_max"] == 2000
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["t_env"] for row in rows] == [1000, 2000]
    assert all(row["seed"] == 0 and "eval/return_mean" in row for row in rows)
    # training again into the same directory is refused in one line
    assert_usage_error(
        capsys,
        [
            *TRAIN,
            "--algo",
            "qmix",
            "--env",
            "matrix_pow",
            "--t-max",
            "2000",
            "--run-dir",
            str(run_dir),
        ],
        "run_dir",
    )
