"""Running experiments: checkpoints, exact resume after kill -9, faults, evaluation and
rendering, hyperparameter members, sweeps (local and Ray), and sharding over devices."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import powmarl
from powmarl.api import evaluate, run_status, truncate_metrics
from powmarl.cli import main
from powmarl.io import checkpoint
from powmarl.io.run_dir import read_metrics
from powmarl.runners.loop import TrainingFault, check_finite
from powmarl.runners.members import Member

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "batch_size": 32,
    "buffer_size": 200,
    "test_interval": 1000,
    "rnn_hidden_dim": 16,
    "mixing_embed_dim": 8,
    "hypernet_embed": 16,
}


def learning_rows(rows):
    """Metrics without the wall-clock columns, which legitimately differ between runs."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def train_matrix(run_dir=None, seeds=(0, 1), t_max=3000, **kwargs):
    return powmarl.train(
        "qmix",
        "matrix_pow",
        seeds=seeds,
        run_dir=run_dir,
        progress=False,
        **{**SMALL, "t_max": t_max, **kwargs},
    )


# ----------------------------------------------------------------------------- checkpoints


def _tree(value):
    return {
        "w": jnp.full((2, 3), value, jnp.float32),
        "n": jnp.arange(2, dtype=jnp.int32),
        "key": jax.random.split(jax.random.key(7), 2),
    }


def test_checkpoint_roundtrip_prune_and_corruption(tmp_path):
    template = jax.eval_shape(lambda: _tree(0.0))
    (tmp_path / "checkpoints").mkdir()
    stale = tmp_path / "checkpoints" / ".ckpt-000000009.npz.tmp-1"  # a killed write
    stale.write_bytes(b"partial")
    for i in range(1, 5):
        checkpoint.save(tmp_path, _tree(float(i)), {"iteration": i}, keep=3)
    assert not stale.exists()
    names = [p.stem for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["ckpt-000000002", "ckpt-000000003", "ckpt-000000004"]
    assert len(list((tmp_path / "checkpoints").glob("*.npz"))) == 3
    ck = checkpoint.load_latest(tmp_path, template)
    assert ck.meta["iteration"] == 4 and float(ck.state["w"][0, 0]) == 4.0
    np.testing.assert_array_equal(
        jax.random.key_data(ck.state["key"]), jax.random.key_data(_tree(0.0)["key"])
    )
    # flip bytes in the newest and truncate the one before: both are reported, never loaded
    newest = tmp_path / "checkpoints" / "ckpt-000000004.npz"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    middle = tmp_path / "checkpoints" / "ckpt-000000003.npz"
    middle.write_bytes(middle.read_bytes()[:50])
    notices = []
    ck = checkpoint.load_latest(tmp_path, template, log=notices.append)
    assert ck.meta["iteration"] == 2 and float(ck.state["w"][0, 0]) == 2.0
    assert len(notices) == 2 and all("checksum mismatch" in n for n in notices)
    (tmp_path / "checkpoints" / "ckpt-000000002.json").write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="no valid checkpoint"):
        checkpoint.load_latest(tmp_path, template, log=notices.append)


def test_checkpoint_of_other_shapes_is_refused(tmp_path):
    checkpoint.save(tmp_path, _tree(1.0), {"iteration": 1})
    other = jax.eval_shape(lambda: {**_tree(0.0), "w": jnp.zeros((4, 3))})
    with pytest.raises(checkpoint.CheckpointError, match="config changed"):
        checkpoint.load_latest(tmp_path, other, log=lambda m: None)


def test_checkpoint_write_failure_keeps_previous(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, _tree(1.0), {"iteration": 1})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)  # mid-file, as a full disk
    with pytest.raises(checkpoint.CheckpointError, match="No space left.*ckpt-000000001 is kept"):
        checkpoint.save(tmp_path, _tree(2.0), {"iteration": 2})
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["ckpt-000000001.json", "ckpt-000000001.npz"]


def test_truncate_metrics_drops_partial_and_extra_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n{"a": 4')
    assert truncate_metrics(tmp_path, 2) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    with pytest.raises(ValueError, match="has 2 rows but the checkpoint expects 5"):
        truncate_metrics(tmp_path, 5)


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    result = train_matrix(run_dir, t_max=4000, checkpoint_interval=2000, loggers=["tensorboard"])
    return run_dir, result


def test_run_dir_logs_to_tensorboard_per_seed(reference_run):
    run_dir, _ = reference_run
    for seed in (0, 1):
        assert list((run_dir / "tensorboard" / f"seed{seed}").glob("events.out.tfevents.*"))


def test_resume_of_missing_run_is_a_usage_error(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "nothing")]) == 2
    assert "holds no run" in capsys.readouterr().err


# ----------------------------------------------------------------------------- faults


def test_fault_message_names_the_last_good_checkpoint(tmp_path):
    checkpoint.save(tmp_path, _tree(1.0), {"iteration": 1})
    metrics = {"t_env": np.array([500, 500]), "train/loss": np.array([1.0, np.inf])}
    members = [Member(0), Member(1, {"lr": 0.1})]
    with pytest.raises(TrainingFault) as err:
        check_finite(metrics, members, tmp_path)
    assert str(err.value) == (
        "training: train/loss is inf for seed 1 (lr=0.1) in the evaluation period ending at "
        "env step 500; the last good checkpoint ckpt-000000001 is kept"
    )


def test_unwritable_run_dir_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["train", "--algo", "qmix", "--env", "matrix_pow", "--run-dir",
                 str(blocker / "run"), "--no-progress"])  # fmt: skip
    assert code == 2
    assert "run_dir: cannot write to" in capsys.readouterr().err


def test_failing_metrics_write_names_the_file(tmp_path, monkeypatch):
    from powmarl.io import run_dir as run_dir_mod

    def broken_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = run_dir_mod.MetricsWriter(tmp_path)
    monkeypatch.setattr(run_dir_mod.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="metrics: cannot append to .*No space left"):
        writer.write([{"a": 1}])


# ----------------------------------------------------------------------------- eval, render


def test_eval_cli_and_matrix_render(reference_run, tmp_path, capsys):
    from PIL import Image

    ref_dir, result = reference_run
    gif = tmp_path / "episode.gif"
    assert main(["eval", str(ref_dir), "--episodes", "3", "--render", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "seed 0: greedy return" in out and "over 3 episodes" in out
    rows = evaluate(ref_dir, episodes=3)
    # greedy play of a one-step game is deterministic: equals the training-time evaluation
    np.testing.assert_allclose([r["return_mean"] for r in rows], result.final_eval_return)
    with Image.open(gif) as img:
        assert img.size[0] > 0 and img.n_frames == 1


def test_stag_hunt_episode_renders(tmp_path):
    from PIL import Image

    from powmarl import render
    from powmarl.api import resolve_settings
    from powmarl.runners.jax_runner import make_runner

    env = powmarl.envs.make("stag_hunt", grid_size=5, num_agents=2, num_stags=1, episode_limit=6)
    algo = powmarl.algos.make("qmix")
    cfg, _ = resolve_settings(env, {**SMALL, "batch_size": 2, "buffer_size": 2}, algo)
    runner = make_runner(cfg, env, algo, seed_axis=None)
    init_key, play_key = jax.random.split(jax.random.key(3))
    state = jax.jit(runner.init)(init_key, env.default_params())
    frames = render.play_episode(
        runner.learner, env, state.learner.params["agent"], env.default_params(), play_key
    )
    assert 2 <= len(frames) <= 7 and frames[-1]["actions"] is None
    path = render.write_gif(
        render.draw_frames(env, frames, env.default_params()), tmp_path / "s.gif"
    )
    with Image.open(path) as img:
        assert img.n_frames == len(frames)


# ----------------------------------------------------------------------------- members, sweeps


def test_hparam_members_equal_separate_runs():
    swept = train_matrix(seeds=(0,), t_max=2000, hparam_grid={"lr": [1e-3, 3e-4]})
    assert [m.variant for m in swept.members] == ["lr=0.001", "lr=0.0003"]
    alone = train_matrix(seeds=(0,), t_max=2000, lr=3e-4)
    rows = [r for r in swept.metrics if r["variant"] == "lr=0.0003"]
    strip = ("seed", "variant", "hp/lr")
    a = [{k: v for k, v in r.items() if k not in strip} for r in learning_rows(rows)]
    b = [{k: v for k, v in r.items() if k != "seed"} for r in learning_rows(alone.metrics)]
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        np.testing.assert_allclose([x[k] for k in x], [y[k] for k in x], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"batch_size": [8]}, "batch_size is a static setting"),
        ({"nope": [1]}, "unknown hyperparameter 'nope'"),
        ({"lr": []}, "lr needs a non-empty list"),
    ],
)
def test_bad_hparam_grid(grid, message):
    with pytest.raises(ValueError, match=message):
        train_matrix(hparam_grid=grid)


def test_sweep_expand_splits_static_and_traced(tmp_path):
    from powmarl.sweep import expand

    grid = {
        "algos": ["qmix", "pow_qmix"],
        "envs": [{"id": "stag_hunt", "punishment": -4}, "matrix_pow"],
        "seeds": "0-4",
        "t_max": 1000,
        "grid": {"recognition_threshold": [0.1, 1.0], "rnn_hidden_dim": [32, 64]},
    }
    runs = expand(grid, tmp_path)
    assert len(runs) == 2 * 2 * 2
    run = runs[0]
    assert run.name == "qmix__stag_hunt_punishment-4__rnn_hidden_dim32"
    assert run.seeds == (0, 1, 2, 3, 4)
    assert run.hparam_grid == {"recognition_threshold": [0.1, 1.0]}
    assert run.overrides == {"t_max": 1000, "rnn_hidden_dim": 32}


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"algos": ["qmix"], "envs": ["matrix_pow"], "color": 1}, "unknown key 'color'"),
        ({"algos": ["nope"], "envs": ["matrix_pow"]}, "unknown algo 'nope'"),
        ({"algos": ["qmix"], "envs": ["moon"]}, "unknown env 'moon'"),
        ({"algos": ["qmix"], "envs": [{"id": "matrix_pow", "x": 1}]}, "has no argument 'x'"),
        ({"algos": ["qmix"], "envs": ["matrix_pow"], "seeds": [1, 1]}, "seeds must be"),
        ({"algos": ["qmix"], "envs": ["matrix_pow"], "grid": {"zz": [1]}}, "grid.zz is not"),
    ],
)
def test_bad_sweep_grid(grid, message, tmp_path):
    from powmarl.sweep import expand

    with pytest.raises(ValueError, match=message):
        expand(grid, tmp_path)


SWEEP_GRID = {
    "algos": ["qmix"],
    "envs": ["matrix_pow"],
    "seeds": [0, 1],
    "t_max": 2000,
    "set": {**SMALL, "checkpoint_interval": 1000},
    "grid": {"lr": [0.001, 0.0005], "rnn_hidden_dim": [8, 16]},
}


def test_sweep_runs_skips_and_resumes(tmp_path, capsys):
    import yaml

    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump(SWEEP_GRID))
    out = tmp_path / "sweep"
    # first pass: two runs in two local processes
    assert main(["sweep", str(grid_file), "--out", str(out), "--workers", "2"]) == 0
    assert capsys.readouterr().out.count(": trained, 4 members") == 2
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in runs] == [
        "qmix__matrix_pow__rnn_hidden_dim16",
        "qmix__matrix_pow__rnn_hidden_dim8",
    ]
    finished = read_metrics(runs[1])
    # make one run look killed after its first checkpoint
    checkpoint.list_checkpoints(runs[1])[-1].unlink()
    assert run_status(runs[1]) == "partial"
    assert main(["sweep", str(grid_file), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rnn_hidden_dim16: skipped (finished)" in text
    assert "rnn_hidden_dim8: resumed" in text
    assert learning_rows(read_metrics(runs[1])) == learning_rows(finished)
    assert json.loads((out / "sweep.json").read_text())["grid"]["seeds"] == [0, 1]


def test_sweep_on_local_ray(tmp_path):
    pytest.importorskip("ray", reason="ray is an optional extra (pip install 'powmarl[ray]')")
    from powmarl.sweep import run_sweep

    # one grid point: each Ray task is a fresh process that imports jax and compiles its
    # run (the local sweep tests above cover several points)
    grid = {**SWEEP_GRID, "t_max": 1000, "grid": {"rnn_hidden_dim": [8]}}
    summaries = run_sweep(grid, tmp_path, ray_address="local")
    assert [s["action"] for s in summaries] == ["trained"]
    for s in summaries:
        assert run_status(s["run_dir"]) == "finished"
        assert len(read_metrics(s["run_dir"])) == 2  # 2 seeds x 1 evaluation


# ----------------------------------------------------------------------------- devices


def test_members_sharded_over_two_devices_match_one_device(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, jax, powmarl
        assert jax.local_device_count() == 2, jax.devices()
        r = powmarl.train("qmix", "matrix_pow", seeds=[0, 1], progress=False,
                          **{{**{SMALL!r}, "t_max": 2000}})
        leaf = jax.tree.leaves(r.params)[0]
        print(json.dumps({{"devices": len(leaf.sharding.device_set),
                          "rows": [{{k: v for k, v in x.items() if not k.startswith("time/")}}
                                   for x in r.metrics]}}))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    sharded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sharded["devices"] == 2
    alone = train_matrix(t_max=2000)
    a, b = sharded["rows"], learning_rows(alone.metrics)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose([x[k] for k in y], [y[k] for k in y], rtol=1e-5, atol=1e-6)


def test_sweep_skips_finished_host_runs_and_resumes_partial_ones(tmp_path):
    from powmarl.sweep import run_sweep

    grid = {**SWEEP_GRID, "envs": ["matrix_host"], "seeds": [0], "t_max": 400, "grid": {}}
    grid["set"] = {**SMALL, "test_interval": 200, "batch_size": 16}
    (first,) = run_sweep(grid, tmp_path)
    assert first["action"] == "trained" and run_status(first["run_dir"]) == "finished"
    reference = learning_rows(read_metrics(first["run_dir"]))
    (again,) = run_sweep(grid, tmp_path)
    assert again["action"] == "skipped (finished)"
    assert again["final_return_mean"] == first["final_return_mean"]
    newest = checkpoint.list_checkpoints(first["run_dir"])[-1]  # as if killed before it
    newest.with_suffix(".npz").unlink()
    newest.unlink()
    assert run_status(first["run_dir"]) == "partial"
    (third,) = run_sweep(grid, tmp_path)
    assert third["action"] == "resumed"
    assert learning_rows(read_metrics(first["run_dir"])) == reference


def test_sweep_runs_log_to_the_named_sinks(tmp_path):
    """``loggers: [tensorboard]`` in a grid: every run writes TensorBoard events per seed."""
    pytest.importorskip("tensorboardX", reason="needs the 'tensorboard' extra")
    from powmarl.sweep import run_sweep

    grid = {**SWEEP_GRID, "seeds": [0], "t_max": 1000, "grid": {}, "loggers": ["tensorboard"]}
    (summary,) = run_sweep(grid, tmp_path)
    assert list((Path(summary["run_dir"]) / "tensorboard" / "seed0").glob("events.out.*"))
    with pytest.raises(ValueError, match="sweep: loggers must be a list of tensorboard, wandb"):
        run_sweep({**grid, "loggers": ["mlflow"]}, tmp_path / "bad")
