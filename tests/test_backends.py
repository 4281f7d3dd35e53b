"""Behaviour every backend must have, checked once per backend from one parametrised test:
exact resume after SIGKILL, falling back from a corrupt checkpoint, a finished run left
alone, the NaN stop, evaluation equal to the final training evaluation, metric names.

``jax``: the POW matrix game as a JAX env; ``host``: the same game as a NumPy env
(``matrix_host``) trained by the host backend with its copies in 2 worker processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from test_experiments import SMALL as EXPERIMENT_SMALL
from test_experiments import learning_rows

import powmarl
from powmarl.api import evaluate, resolve_settings, resume, run_status
from powmarl.cli import main
from powmarl.io import checkpoint
from powmarl.io.episodes import FILE as EPISODES
from powmarl.io.run_dir import read_metrics
from powmarl.runners.backend import backend_for
from powmarl.runners.members import Member, stack_hparams

REPO = Path(__file__).resolve().parents[1]
ENVS = {"jax": "matrix_pow", "host": "matrix_host"}
SMALL = {**EXPERIMENT_SMALL, "checkpoint_interval": 2000}
T_MAX = 8000
#: Every run's rows carry these names, whatever the backend.
METRICS = (
    "seed", "t_env", "episodes", "eval/return_mean", "eval/return_std", "eval/ep_length_mean",
    "train/return_mean", "train/ep_length_mean", "train/epsilon", "train/learner_calls",
    "train/loss", "train/loss_q_tot", "train/grad_norm", "time/env_steps_per_s",
    "time/elapsed_s",
)  # fmt: skip


def train_args(backend: str, run_dir: Path) -> list[str]:
    return [
        "train", "--algo", "qmix", "--env", ENVS[backend], "--seeds", "0-1", "--t-max",
        str(T_MAX), "--run-dir", str(run_dir), "--no-progress",
        *[a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")],
    ]  # fmt: skip


@pytest.fixture(scope="module", params=sorted(ENVS))
def reference(request, tmp_path_factory):
    """(backend, run dir, result) of an uninterrupted run."""
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    result = powmarl.train(
        "qmix", ENVS[request.param], seeds=[0, 1], run_dir=run_dir, progress=False,
        num_workers=2, **{**SMALL, "t_max": T_MAX},
    )  # fmt: skip
    return request.param, run_dir, result


def test_rows_have_the_shared_metric_names(reference):
    backend, _, result = reference
    assert result.backend.kind == backend
    rows = [r for r in result.metrics if r["seed"] == 0]
    assert [r["t_env"] for r in rows] == list(range(1000, T_MAX + 1, 1000))
    for name in METRICS:
        assert name in rows[0], name
    assert rows[1]["train/learner_calls"] == 125 and rows[0]["episodes"] == 1000


def test_kill_9_then_resume_matches_uninterrupted(reference, tmp_path):
    backend, ref_dir, result = reference
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "powmarl.cli", *train_args(backend, run_dir)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    metrics = run_dir / "metrics.jsonl"
    # kill between checkpoints: after 3 evaluations (of 2 seeds) have been logged
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 2 * 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert run_status(run_dir) == "partial"
    resumed = resume(run_dir, progress=False)
    assert run_status(run_dir) == "finished"
    assert learning_rows(read_metrics(run_dir)) == learning_rows(read_metrics(ref_dir))
    for a, b in zip(jax_leaves(resumed.params), jax_leaves(result.params)):
        np.testing.assert_array_equal(a, b)
    same_episodes_and_best(run_dir, ref_dir)


def same_episodes_and_best(run_dir, ref_dir):
    """The per-episode test values and the kept best entries equal the uninterrupted run's."""
    from test_marl_eval import best_records

    assert (run_dir / EPISODES).read_text() == (ref_dir / EPISODES).read_text()
    assert best_records(run_dir) == best_records(ref_dir) != []


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_resume_with_corrupt_newest_checkpoint_falls_back(reference, tmp_path, capsys):
    _, ref_dir, _ = reference
    run_dir = tmp_path / "copy"
    shutil.copytree(ref_dir, run_dir)
    checkpoint.list_checkpoints(run_dir)[-1].with_suffix(".npz").write_bytes(b"truncated")
    assert main(["resume", str(run_dir), "--no-progress"]) == 0
    assert "checksum mismatch" in capsys.readouterr().err
    assert learning_rows(read_metrics(run_dir)) == learning_rows(read_metrics(ref_dir))
    same_episodes_and_best(run_dir, ref_dir)


def test_resume_of_a_finished_run_does_nothing(reference, capsys):
    _, ref_dir, _ = reference
    before = (ref_dir / "metrics.jsonl").read_text()
    assert main(["resume", str(ref_dir), "--no-progress"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert (ref_dir / "metrics.jsonl").read_text() == before


def test_eval_equals_the_final_training_evaluation(reference):
    """Greedy play of a one-step game is deterministic: ``evaluate`` of the last checkpoint
    gives each member's final training-time evaluation."""
    _, ref_dir, result = reference
    rows = evaluate(ref_dir, episodes=3)
    assert [(r["seed"], r["t_env"]) for r in rows] == [(0, T_MAX), (1, T_MAX)]
    np.testing.assert_allclose([r["return_mean"] for r in rows], result.final_eval_return)


@pytest.mark.parametrize("backend", sorted(ENVS))
def test_nan_loss_stops_with_step_and_metric(backend, tmp_path, capsys):
    args = train_args(backend, tmp_path / "nan")
    code = main([*args, "--t-max", "3000", "--set", "lr=1e30"])
    err = capsys.readouterr().err
    assert code == 1
    assert "train/loss" in err and "is nan" in err and "env step 1000" in err
    assert "no checkpoint had been written yet" in err


@pytest.mark.optimized  # as users compile: with most optimisations off they differ by an ulp
# POW-QMIX, whose Q* and Q_r add the most initialisers, is ~45 s of optimised compiling
@pytest.mark.parametrize("algo_name", ["qmix", pytest.param("pow_qmix", marks=pytest.mark.slow)])
def test_init_op_by_op_equals_the_compiled_init(algo_name, monkeypatch):
    """``POWMARL_COMPILE_INIT=0`` (the suite's setting) starts every member from bitwise the
    same state as the compiled init users get, two seeds. The JAX backend only: the host
    backend's init goes through the same ``init_program`` (66 s CPU more for the same
    check)."""
    env = powmarl.envs.make(ENVS["jax"])
    algo = powmarl.algos.make(algo_name)
    cfg, hp = resolve_settings(env, SMALL, algo)
    members = [Member(0), Member(1)]
    hps = stack_hparams([hp, hp])
    states = {}
    for compiled in ("1", "0"):
        monkeypatch.setenv("POWMARL_COMPILE_INIT", compiled)
        backend = backend_for(env, cfg, algo, members, hps, num_workers=1)
        states[compiled] = [np.asarray(x) for x in jax.tree.leaves(key_data(backend.init()))]
        backend.close()
    assert len(states["1"]) == len(states["0"])
    for compiled_leaf, eager_leaf in zip(states["1"], states["0"]):
        np.testing.assert_array_equal(compiled_leaf, eager_leaf)


def key_data(tree):
    """PRNG keys as their uint32 data, so every leaf compares as an array."""
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
        else x, tree)  # fmt: skip
