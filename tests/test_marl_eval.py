"""Per-episode test values, the absolute metric's best checkpoint, and the marl-eval export.

The export's shape and values are checked on run directories written by hand with known
per-episode values; the best checkpoint on a tracker fed chosen scores, then on one tiny
training of the matrix game (shared by the module) with ``eval --best`` and the export's
``absolute_metrics``. Resume of both files is checked in test_backends.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from powmarl.cli import main
from powmarl.io import best, episodes
from powmarl.io.run_dir import read_metrics
from powmarl.report.marl_eval import build, export, keys_of
from powmarl.report.runs import Group, ReportError, load_groups
from powmarl.runners.members import Member

# ------------------------------------------------------------------ run directories by hand


def write_run(path: Path, algo: str, evals: dict, env_id="matrix_pow", env_kwargs=None):
    """A run directory by hand. ``evals``: seed -> [(t_env, returns, wins), ...], one per
    evaluation, with per-episode lists; metrics.jsonl gets their means."""
    path.mkdir(parents=True)
    config = {"algo": algo, "env_id": env_id, "env_kwargs": env_kwargs or {},
              "seeds": list(evals), "config": {"test_nepisode": 2}}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    rows, lines = [], []
    for seed, points in evals.items():
        for k, (t_env, returns, wins) in enumerate(points):
            rows.append({"seed": seed, "t_env": t_env, "eval/return_mean": float(np.mean(returns)),
                         "eval/battle_won_mean": float(np.mean(wins)),
                         "time/elapsed_s": 5.0 + 2.0 * k})  # fmt: skip
            per_episode = {"return": np.float32(returns), "battle_won": np.float32(wins),
                           "ep_length": np.ones(len(returns))}  # fmt: skip
            lines.append(episodes.line({"seed": seed, "t_env": t_env}, per_episode))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / episodes.FILE).write_text("".join(lines))
    return path


def evals_of(offset: float, seeds=(0, 1), count=3) -> dict:
    """Known per-episode values: return offset + seed + k/10 + [0, 1], wins [1, 0]."""
    return {
        s: [(1000 * (k + 1), [offset + s + k / 10, offset + s + k / 10 + 1], [1, 0])
            for k in range(count)]
        for s in seeds
    }  # fmt: skip


@pytest.fixture
def four_runs(tmp_path):
    """qmix and pow_qmix on two tasks, seeds 0 and 1, three evaluations each."""
    dirs = []
    for i, algo in enumerate(("qmix", "pow_qmix")):
        dirs.append(write_run(tmp_path / f"{algo}_pow", algo, evals_of(10 * i)))
        dirs.append(write_run(tmp_path / f"{algo}_hunt", algo, evals_of(100 + 10 * i),
                              env_id="stag_hunt", env_kwargs={"punishment": -4.0}))  # fmt: skip
    return dirs


def check_marl_eval_format(data: dict) -> None:
    """The nesting of marl-eval's README and JsonLogger: env/task/algo/seed_<n>/step_<k>
    (consecutive from 0) with an int step_count, elapsed_time and per-episode lists; the
    same metrics and episode count in every step; lower-case keys; no commas in algos."""
    for tasks in data.values():
        for algos in tasks.values():
            for algo, seeds in algos.items():
                assert "," not in algo
                for seed, steps in seeds.items():
                    assert re.fullmatch(r"seed_\d+", seed)
                    names = [k for k in steps if k != "absolute_metrics"]
                    assert names == [f"step_{k}" for k in range(len(names))]
                    for step in names:
                        entry = steps[step]
                        assert isinstance(entry["step_count"], int)
                        assert isinstance(entry["elapsed_time"], float)
                        lists = {k: v for k, v in entry.items() if isinstance(v, list)}
                        assert set(lists) == set(entry) - {"step_count", "elapsed_time"}
                        assert len({len(v) for v in lists.values()}) == 1
    keys = json.dumps(data)
    assert all(k == k.lower() for k in re.findall(r'"([^"]+)":', keys))


def test_export_nests_the_per_episode_values(four_runs, tmp_path):
    out = tmp_path / "marl_eval.json"
    data = export(four_runs, out, absolute_episodes=0)
    assert json.loads(out.read_text()) == data
    check_marl_eval_format(data)
    assert sorted(data) == ["matrix_pow", "stag_hunt"]
    assert sorted(data["stag_hunt"]) == ["p=-4"]
    assert sorted(data["matrix_pow"]["matrix_pow"]) == ["pow_qmix", "qmix"]
    seed_1 = data["stag_hunt"]["p=-4"]["pow_qmix"]["seed_1"]
    assert list(seed_1) == ["step_0", "step_1", "step_2"]  # no absolute_metrics asked for
    step = seed_1["step_2"]  # return 100 + 10 + seed 1 + 0.2, then one more
    assert step == {"step_count": 3000, "elapsed_time": 4.0, "return": [111.2, 112.2],
                    "win_rate": [1, 0]}  # fmt: skip
    assert data["matrix_pow"]["matrix_pow"]["qmix"]["seed_0"]["step_0"]["return"] == [0, 1]


def test_keys_are_lower_case_without_commas():
    group = Group("POW_QMIX", "alpha=0.5,lr=0.001", "stag_hunt p=-4", "stag_hunt", {})
    assert keys_of(group) == ("stag_hunt", "p=-4", "pow_qmix [alpha=0.5 lr=0.001]")


def test_export_refuses_different_seeds(four_runs, tmp_path):
    write_run(tmp_path / "vdn", "vdn", evals_of(0, seeds=(0,)))
    with pytest.raises(ReportError, match=r"^marl-eval: vdn on matrix_pow has seeds 0 but qmix "
                       r"on matrix_pow has seeds 0, 1; every algorithm and task needs"):
        export([*four_runs, tmp_path / "vdn"], tmp_path / "x.json", absolute_episodes=0)


def test_export_refuses_different_evaluation_counts(four_runs, tmp_path):
    write_run(tmp_path / "vdn", "vdn", evals_of(0, count=2))
    message = (r"^marl-eval: seed 0 of vdn on matrix_pow has 2 evaluations but seed 0 of qmix "
               r"on matrix_pow has 3; every run needs the same number \(--at T cuts")
    with pytest.raises(ReportError, match=message):
        export([*four_runs, tmp_path / "vdn"], tmp_path / "x.json", absolute_episodes=0)
    cut = export([*four_runs, tmp_path / "vdn"], tmp_path / "x.json", at=2000,
                 absolute_episodes=0)  # fmt: skip
    assert list(cut["matrix_pow"]["matrix_pow"]["vdn"]["seed_0"]) == ["step_0", "step_1"]


def test_export_refuses_runs_without_per_episode_values(four_runs, tmp_path, capsys):
    (four_runs[0] / episodes.FILE).unlink()
    args = ["report", *map(str, four_runs), "--out", str(tmp_path / "rep"), "--no-plots",
            "--marl-eval", str(tmp_path / "x.json"), "--absolute-episodes", "0"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("powmarl: error: marl-eval: ") and "\n" not in err
    assert f"{four_runs[0]} has no eval_episodes.jsonl" in err


def test_marl_eval_loader_reads_the_export(four_runs, tmp_path):
    """marl-eval's own loader, where installed (PyPI's id-marl-eval 0.0.4 pins pandas
    1.4.4, which does not build beside numpy 2, so it is not a dependency)."""
    processing = pytest.importorskip(
        "marl_eval.utils.data_processing_utils",
        reason="id-marl-eval is not installed (it pins pandas==1.4.4, which does not build "
        "beside numpy 2)",
    )
    diagnose = pytest.importorskip("marl_eval.utils.diagnose_data_errors")

    def absolute(group, seed):
        return {"return": [1.0] * 20, "win_rate": [1] * 20}

    data = build(load_groups(four_runs), absolute)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    raw = json.loads(path.read_text())
    checks = diagnose.DiagnoseData(raw).check_data()
    for check in checks.values():  # its metric check also fails JsonLogger's own files:
        check.pop("valid_metrics")  # absolute_metrics have no elapsed_time
        assert all(check.values()), checks
    processed = processing.data_process_pipeline(raw, metrics_to_normalize=["return"])
    assert processed["extra"]["number_of_runs"] == 2
    assert processed["extra"]["number_of_steps"] == 3
    matrices, _ = processing.create_matrices_for_rliable(processed, "stag_hunt", ["return"])
    assert matrices["mean_norm_return"]["qmix"].shape == (2, 1)  # seeds x tasks


# ------------------------------------------------------------------ the best checkpoint


def _state(values) -> SimpleNamespace:
    """A stand-in runner state whose agent params are {"w": [M, 2]}."""
    agent = {"w": np.asarray(values, np.float32)}
    return SimpleNamespace(learner=SimpleNamespace(params={"agent": agent}))


def best_records(run_dir) -> list[tuple]:
    """(member, iteration, t_env, score) of every kept best entry."""
    out = []
    for entry in best.entries(run_dir):
        meta = best.read_meta(entry)
        out.append((entry.member, entry.iteration, meta["t_env"], meta["score"]))
    return out


def test_tracker_keeps_each_members_best_through_prune_and_truncate(tmp_path):
    members = [Member(0), Member(7)]
    tracker = best.Tracker(tmp_path, members, None)
    scores = {10: [1.0, 5.0], 20: [3.0, 4.0], 30: [2.0, 9.0], 40: [3.0, float("nan")]}
    for it, values in scores.items():
        metrics = {"eval/return_mean": np.asarray(values), "t_env": np.asarray([it * 10] * 2)}
        tracker.update(_state([[it, 0], [it, 1]]), metrics, it)
    assert best_records(tmp_path) == [(0, 10, 100, 1.0), (0, 20, 200, 3.0), (1, 10, 100, 5.0),
                                      (1, 30, 300, 9.0)]  # fmt: skip (ties keep the earlier)
    best.prune(tmp_path, oldest_checkpoint=20)  # a resume from 20 needs member 1's entry 10
    assert [r[:2] for r in best_records(tmp_path)] == [(0, 20), (1, 10), (1, 30)]
    template = {"w": jax.ShapeDtypeStruct((2, 2), np.float32)}
    params, metas = best.load(tmp_path, template, 2)
    np.testing.assert_array_equal(params["w"], [[20, 0], [30, 1]])
    assert [m["seed"] for m in metas] == [0, 7]
    best.truncate(tmp_path, 20)  # resumed from the checkpoint at iteration 20
    assert best.Tracker(tmp_path, members, None).scores == {0: 3.0, 1: 5.0}
    assert sorted(p.name for p in best.best_dir(tmp_path).iterdir()) == [
        "m000-000000020.json", "m000-000000020.npz", "m001-000000010.json",
        "m001-000000010.npz"]  # fmt: skip


def test_main_metric_is_the_win_rate_the_declared_one_or_the_return():
    names = ["eval/return_mean", "eval/battle_won_mean", "t_env"]
    assert best.metric_key(None, names) == "eval/battle_won_mean"
    assert best.metric_key(None, names[:1]) == "eval/return_mean"
    assert best.metric_key("return", names) == "eval/return_mean"
    with pytest.raises(ValueError, match="^main_metric: the env declares 'arrived'.*allowed: "
                       "battle_won, return$"):  # fmt: skip
        best.metric_key("arrived", names)


def test_episode_file_truncates_to_the_kept_rows(tmp_path):
    text = "".join(episodes.line({"seed": 0, "t_env": t}, {"return": [t]}) for t in (1, 2, 3))
    (tmp_path / episodes.FILE).write_text(text + '{"seed": 0, "t_e')  # cut off by a kill
    episodes.truncate(tmp_path, 2)
    assert [ln["t_env"] for ln in episodes.read(tmp_path)] == [1, 2]
    episodes.truncate(tmp_path, 5)  # fewer lines than rows (an older run): all kept
    assert len(episodes.read(tmp_path)) == 2


# ------------------------------------------------------------------ one tiny training

TINY = {"batch_size": 8, "buffer_size": 50, "test_interval": 100, "rnn_hidden_dim": 8,
        "mixing_embed_dim": 4, "hypernet_embed": 8, "test_nepisode": 2,
        "checkpoint_interval": 0, "keep_checkpoints": 1, "t_max": 600}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import powmarl

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    powmarl.train("qmix", "matrix_pow", seeds=[0, 1], run_dir=run_dir, progress=False, **TINY)
    return run_dir


def test_every_evaluation_is_logged_per_episode(tiny_run):
    rows, lines = read_metrics(tiny_run), episodes.read(tiny_run)
    assert [(r["seed"], r["t_env"]) for r in rows] == [(ln["seed"], ln["t_env"]) for ln in lines]
    for row, line in zip(rows, lines):
        assert sorted(line) == ["ep_length", "return", "seed", "t_env"]
        assert len(line["return"]) == TINY["test_nepisode"]
        assert np.float32(np.mean(line["return"])) == np.float32(row["eval/return_mean"])
        assert "eval_episodes/return" not in row


def test_best_checkpoint_is_the_best_evaluation_and_survives_pruning(tiny_run, capsys):
    rows = read_metrics(tiny_run)
    assert len(list((tiny_run / "checkpoints").glob("ckpt-*.json"))) == 1  # the rest pruned
    latest = {e.member: best.read_meta(e) for e in best.latest(tiny_run).values()}
    for i, seed in enumerate((0, 1)):
        curve = [r for r in rows if r["seed"] == seed]
        top = max(curve, key=lambda r: r["eval/return_mean"])  # the first of the best
        assert (latest[i]["t_env"], latest[i]["score"]) == (top["t_env"], top["eval/return_mean"])
    assert main(["eval", str(tiny_run), "--best", "--episodes", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    for i, line in enumerate(out):  # greedy play of a one-step game is deterministic
        t_env, score = latest[i]["t_env"], latest[i]["score"]
        assert f"greedy return {score:.3f} +- 0.000 over 3 episodes" in line
        assert f"(best checkpoint at {t_env} env steps, eval/return_mean {score:.3f}" in line


def test_absolute_metrics_reevaluate_the_best_agent(tiny_run, tmp_path):
    data = export([tiny_run], tmp_path / "m.json")
    check_marl_eval_format(data)
    seeds = data["matrix_pow"]["matrix_pow"]["qmix"]
    latest = {e.member: best.read_meta(e) for e in best.latest(tiny_run).values()}
    for i in (0, 1):
        absolute = seeds[f"seed_{i}"]["absolute_metrics"]
        assert list(absolute) == ["return"]
        assert len(absolute["return"]) == 10 * TINY["test_nepisode"]
        np.testing.assert_allclose(absolute["return"], latest[i]["score"], rtol=1e-6)
