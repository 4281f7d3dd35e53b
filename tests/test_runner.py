"""The compiled, seed-vmapped training loop through ``powmarl.train``: seeds, run directory,
read-outs, settings validation, and the XLA:CPU hang regression."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import powmarl

pytestmark = pytest.mark.usefixtures("key_reuse_check")

REPO = Path(__file__).resolve().parents[1]
SMALL_NETS = {"rnn_hidden_dim": 16, "mixing_embed_dim": 8, "hypernet_embed": 16}
SETTINGS = {
    "t_max": 3000,
    "batch_size": 32,
    "buffer_size": 200,
    "test_interval": 1000,
    **SMALL_NETS,
}


def train_matrix(seeds, **kwargs):
    # module-scoped fixtures run outside the function-scoped checker fixture: switch it on here
    with jax.debug_key_reuse(True):
        return powmarl.train(
            "qmix",
            powmarl.envs.make("matrix_pow"),
            seeds=seeds,
            progress=False,
            **{**SETTINGS, **kwargs},
        )


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    """QMIX on the POW matrix game, seeds 0, 1, 2 in one vmapped program, with a run dir."""
    run_dir = tmp_path_factory.mktemp("runs") / "r"
    return train_matrix([0, 1, 2], run_dir=run_dir)


@pytest.fixture(scope="module")
def seed_one():
    """The same training with seed 1 alone."""
    return train_matrix([1])


def rows_of(result, seed):
    return [row for row in result.metrics if row["seed"] == seed]


# --------------------------------------------------------------------------- seeds


def test_vmapped_seed_equals_seed_alone(three_seeds, seed_one):
    """Seed 1 trained beside seeds 0 and 2 logs the same numbers as seed 1 trained alone."""
    together, alone = rows_of(three_seeds, 1), rows_of(seed_one, 1)
    assert len(together) == len(alone) == 3  # t_max 3000 / test_interval 1000
    for name in ("eval/return_mean", "train/loss", "t_env"):
        a = np.array([row[name] for row in together], np.float64)
        b = np.array([row[name] for row in alone], np.float64)
        assert np.allclose(a, b, rtol=1e-4, atol=1e-6), f"{name}: vmapped {a} vs alone {b}"
    np.testing.assert_array_equal([r["t_env"] for r in alone], [1000, 2000, 3000])


def test_different_seeds_differ(three_seeds):
    """Seeds do not share randomness: their training losses differ."""
    losses = {s: [row["train/loss"] for row in rows_of(three_seeds, s)] for s in (0, 1, 2)}
    assert not np.allclose(losses[0], losses[1])
    assert not np.allclose(losses[1], losses[2])
    assert not np.allclose(losses[0], losses[2])


# --------------------------------------------------------------------------- run directory


def test_run_dir_holds_config_and_metrics(three_seeds):
    """config.json records algo, env, seeds and settings; metrics.jsonl one row per seed per
    evaluation with the documented metric names."""
    run_dir = three_seeds.run_dir
    assert run_dir is not None and run_dir.is_dir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "qmix"
    assert config["env_id"] == "matrix_pow"
    assert config["seeds"] == [0, 1, 2]
    assert config["config"]["batch_size"] == 32 and config["config"]["buffer_size"] == 200
    assert config["config"]["t_max"] == 3000 and config["config"]["rnn_hidden_dim"] == 16
    assert config["hparams"]["lr"] == pytest.approx(1e-3)
    assert config["hparams"]["epsilon_finish"] == pytest.approx(1.0)  # matrix-family default
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 3 * 3
    assert sorted((r["seed"], r["t_env"]) for r in rows) == sorted(
        (s, t) for s in (0, 1, 2) for t in (1000, 2000, 3000)
    )
    for row in rows:
        for key in (
            "seed",
            "t_env",
            "eval/return_mean",
            "train/loss_q_tot",
            "time/env_steps_per_s",
        ):
            assert key in row, key
        assert np.isfinite(row["train/loss_q_tot"]) and row["time/env_steps_per_s"] > 0
        assert -12.0 <= row["eval/return_mean"] <= 8.0  # a payoff of the game
    # the file holds what the result holds
    assert rows == [json.loads(json.dumps(r)) for r in three_seeds.metrics]


def test_existing_run_dir_is_refused(three_seeds):
    """Training into a directory that already holds a run raises ValueError naming run_dir."""
    before = (three_seeds.run_dir / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="run_dir"):
        powmarl.train(
            "qmix", "matrix_pow", seeds=[0], run_dir=three_seeds.run_dir, progress=False, **SETTINGS
        )
    assert (three_seeds.run_dir / "metrics.jsonl").read_text() == before  # untouched


# --------------------------------------------------------------------------- read-outs


def test_greedy_actions_and_tables(three_seeds):
    """greedy_actions() is [S, A] of valid actions; tables() give Q_i [A, U] and Q_tot [U^A]."""
    greedy = three_seeds.greedy_actions()
    assert greedy.shape == (3, 2)
    assert np.issubdtype(greedy.dtype, np.integer)
    assert ((greedy >= 0) & (greedy < 3)).all()
    tables = three_seeds.tables()
    assert len(tables) == 3
    for seed_table, seed_greedy in zip(tables, greedy):
        assert seed_table["q_tot"].shape == (3, 3)
        assert seed_table["q_i"].shape == (2, 3)
        assert np.isfinite(seed_table["q_tot"]).all()
        # the greedy joint action is each agent's argmax utility
        np.testing.assert_array_equal(seed_table["q_i"].argmax(-1), seed_greedy)
    assert three_seeds.final_eval_return.shape == (3,)


# --------------------------------------------------------------------------- settings


def test_unknown_hyperparameter_lists_allowed_names():
    """An unknown override raises ValueError naming it and listing the allowed names."""
    with pytest.raises(ValueError) as err:
        powmarl.train("qmix", "matrix_pow", seeds=[0], progress=False, learning_rate=1e-3)
    message = str(err.value)
    assert "learning_rate" in message
    for allowed in ("lr", "gamma", "batch_size", "buffer_size", "td_lambda", "rnn_hidden_dim"):
        assert allowed in message


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"lr": 0.0}, "lr"),
        ({"gamma": 2.0}, "gamma"),
        ({"td_lambda": -0.1}, "td_lambda"),
        ({"batch_size": 300, "buffer_size": 200}, "batch_size"),
        ({"num_envs": 0}, "num_envs"),
    ],
)
def test_out_of_range_setting_names_the_field(overrides, field):
    """An out-of-range value raises ValueError whose message starts with the field's name."""
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        powmarl.train("qmix", "matrix_pow", seeds=[0], progress=False, **overrides)


def test_repeated_seeds_are_refused():
    """seeds=[1, 1] raises ValueError naming seeds."""
    with pytest.raises(ValueError, match="seeds"):
        powmarl.train("qmix", "matrix_pow", seeds=[1, 1], progress=False)


# --------------------------------------------------------------------------- hang regression

HANG_SCRIPT = textwrap.dedent(
    """
    import powmarl
    result = powmarl.train(
        "qmix", powmarl.envs.make("matrix_pow"), seeds=[0, 1, 2], t_max=300, batch_size=8,
        buffer_size=32, num_envs=4, rnn_hidden_dim=8, mixing_embed_dim=8, hypernet_embed=16,
        test_interval=100, test_nepisode=2, progress=False,
    )
    assert len(result.metrics) == 3 * 3, len(result.metrics)
    print("FINISHED", result.final_eval_return.tolist())
    """
)


def test_vmapped_training_does_not_hang(tmp_path):
    """Three fresh processes each run a 3-seed vmapped training (3 chunks) to completion.

    known-pitfalls.md: a jit(vmap(...)) training program that also initialises the GRU can
    hang XLA:CPU at execution (0% CPU, never returns) in about half of the processes. A hang
    must fail this test within minutes instead of eating CI's time budget.
    """
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        # runs 2 and 3 load the executables compiled by run 1; the hang is at execution
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    timeout = 120
    for attempt in range(1, 4):
        try:
            proc = subprocess.run(
                [sys.executable, "-c", HANG_SCRIPT],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"vmapped training run {attempt}/3 did not finish within {timeout} s: the "
                "XLA:CPU hang of known-pitfalls.md is back (is a GRU initialised inside the "
                "vmapped training program again?)"
            )
        assert proc.returncode == 0, f"run {attempt} failed:\n{proc.stderr[-3000:]}"
        assert "FINISHED" in proc.stdout, proc.stdout


def test_length_ladder_spacing():
    """``halving`` keeps the reference ladder; ``even`` spaces lengths evenly up to T."""
    from powmarl.config import Config
    from powmarl.runners.period import length_ladder

    assert length_ladder(250, 4) == (63, 125, 250)
    assert length_ladder(250, 4, "halving") == (63, 125, 250)
    assert length_ladder(250, 9, "even") == (32, 63, 94, 125, 157, 188, 219, 250)
    assert length_ladder(250, 1, "even") == length_ladder(250, 1) == ()
    assert length_ladder(3, 9, "even") == (1, 2, 3)
    assert Config().length_spacing == "halving"
    with pytest.raises(ValueError, match="length_spacing"):
        Config(length_spacing="linear").validate()
