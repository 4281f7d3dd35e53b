"""benchmarks/gpu_suite.py: its pieces, its clock, and a whole --tiny run on the CPU.

The whole run (with one seed count measured) compiles four training programs, two
measured and two trained, minutes of CPU: it is marked slow. The budget test runs the whole
suite with a budget too small for any job and checks that it still ends in time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_suite
import suite_jobs
import suite_report
import throughput


def test_run_child_keeps_the_rows_of_a_killed_job():
    code = "import json, time; print(json.dumps({'stage': 'compiled'}), flush=True); time.sleep(60)"
    start = time.perf_counter()
    # -I: without the suite's PYTHONPATH, whose sitecustomize imports jax (seconds on a busy
    # 2-core machine, long enough for the kill to come before the child printed anything)
    child = throughput.run_child([sys.executable, "-I", "-c", code], timeout=5)
    assert time.perf_counter() - start < 20
    assert child.status == "timeout"
    assert child.rows == [{"stage": "compiled"}]
    failed = throughput.run_child([sys.executable, "-I", "-c", "import sys; sys.exit('bad input')"])
    assert (failed.status, failed.returncode, failed.rows) == ("failed", 1, [])
    assert "bad input" in failed.stderr


def test_clock_stop_leaves_room_for_one_more_chunk(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(suite_jobs.time, "time", lambda: now[0])
    stop = suite_jobs.ClockStop(deadline=130.0, margin=5.0)
    assert not stop([])  # first evaluation: chunk length unknown, 100 + 5 < 130
    now[0] = 110.0  # a 10 s chunk: 110 + 10 + 5 < 130
    assert not stop([])
    now[0] = 117.0  # a 7 s chunk: 117 + 7 + 5 < 130
    assert not stop([])
    now[0] = 120.0  # a 3 s chunk: 120 + 3 + 5 < 130
    assert not stop([])
    now[0] = 124.0  # a 4 s chunk: 124 + 4 + 5 > 130
    assert stop([]) and stop.fired
    late = suite_jobs.ClockStop(deadline=104.0, margin=5.0)
    now[0] = 100.0
    assert late([])  # 100 + 0 + 5 > 104: even the first evaluation stops


def _entry(label, seeds, algo, rate, call_s):
    return {
        "label": label,
        "seeds": seeds,
        "algo": algo,
        "env_steps_per_s_per_seed": rate,
        "s_per_learner_call_all_seeds": call_s,
    }


def test_cost_ratios_per_setting():
    entries = [
        _entry("stag", 1, "qmix", 1200.0, 0.1),
        _entry("stag", 1, "pow_qmix", 1000.0, 0.12),
        _entry("stag", 5, "qmix", 800.0, 0.5),
        _entry("stag", 5, "pow_qmix", 400.0, 1.0),
        _entry("smax", 1, "qmix", 900.0, 0.2),
    ]
    ratios = {(r["label"], r["seeds"]): r for r in suite_report.cost_ratios(entries)}
    assert list(ratios) == [("stag", 1), ("stag", 5), ("smax", 1)]
    assert ratios["stag", 1]["pow_over_qmix_time_per_env_step"] == pytest.approx(1.2)
    assert ratios["stag", 1]["pow_over_qmix_time_per_learner_call"] == pytest.approx(1.2)
    assert ratios["stag", 1]["meets_target"] is True
    assert ratios["stag", 5]["pow_over_qmix_time_per_env_step"] == pytest.approx(2.0)
    assert ratios["stag", 5]["meets_target"] is False
    assert ratios["smax", 1]["pow_over_qmix_time_per_env_step"] is None
    assert ratios["smax", 1]["meets_target"] is None


def test_training_entry_reads_the_last_evaluation(tmp_path):
    rows = []
    for t, (rate, ret) in enumerate([(10.0, 0.0), (100.0, 1.0), (120.0, 3.0)], start=1):
        for seed in (0, 1):
            rows.append(
                {
                    "seed": seed,
                    "t_env": 1000 * t,
                    "eval/return_mean": ret + seed,
                    "time/env_steps_per_s": rate,
                    "time/elapsed_s": 5.0 * t,
                }
            )
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(lines + '{"seed": 0, "t_env"')  # a cut line
    result = {
        "key": "train | x",
        "preset": "x",
        "seeds": [0, 1],
        "status": "timeout",
        "run_dir": str(tmp_path),
        "rows": [],
    }
    entry = suite_report.training_entry(result)
    assert entry["t_env_per_seed"] == {"0": 3000, "1": 3000}
    assert entry["eval_return_mean_per_seed"] == {"0": 3.0, "1": 4.0}
    assert entry["eval_return_mean"] == pytest.approx(3.5)
    assert entry["evaluations_per_seed"] == 3
    assert entry["env_steps_per_s_per_seed"] == pytest.approx(110.0)  # first chunk left out
    assert entry["elapsed_s"] == 15.0
    assert entry["stopped_by"] == "killed at its share"


def test_plans():
    full = gpu_suite.parse_args(["--out", "x"])
    settings, skipped = gpu_suite.settings_for(full)
    stag = [(s.algo, s.seeds) for s in settings if s.env == "stag_hunt"]
    assert sorted(stag) == sorted((a, n) for a in ("qmix", "pow_qmix") for n in (1, 5, 16))
    assert all(s.env_args == {"punishment": -4.0} for s in settings if s.env == "stag_hunt")
    smax = [s for s in settings if s.env == "smax"] + skipped
    assert sorted(s["algo"] if isinstance(s, dict) else s.algo for s in smax) == [
        "pow_qmix",
        "qmix",
    ]
    assert [s.seeds for s in settings] == sorted(s.seeds for s in settings)
    runs = gpu_suite.runs_for(full)
    assert [(r.preset, r.seeds) for r in runs] == [
        ("pow_qmix_stag_hunt_p4", [0, 1, 2, 3, 4]),
        ("qmix_stag_hunt_p4", [0, 1, 2, 3, 4]),
    ]
    for run in runs:
        job = suite_jobs.preset_job(run.preset, tiny=False)
        assert (job["env"], job["env_args"]["punishment"]) == ("stag_hunt", -4.0)
        assert job["overrides"]["checkpoint_interval"] > 10_050_000  # only the final one
    tiny_job = suite_jobs.preset_job("qmix_stag_hunt_p4", tiny=True)
    assert tiny_job["env_args"] == suite_jobs.TINY_ENV and tiny_job["overrides"]["t_max"] == 3000
    tiny = gpu_suite.parse_args(["--out", "x", "--tiny"])
    settings, skipped = gpu_suite.settings_for(tiny)
    assert [(s.algo, s.seeds) for s in settings] == [
        ("qmix", 1),
        ("pow_qmix", 1),
        ("qmix", 2),
        ("pow_qmix", 2),
    ]
    assert [s["note"] for s in skipped] == ["not in --tiny"] * 2
    assert all(r.seeds == [0, 1] for r in gpu_suite.runs_for(tiny))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tiny"], "--out: give an output folder"),
        (["--out", "x", "--budget", "10", "--reserve", "20"], "--budget/--reserve"),
        (["--out", "x", "--seeds", "0"], "must be >= 1"),
        (["--out", "x", "--train-seeds", "1", "1"], "--train-seeds"),
    ],
)
def test_bad_arguments_name_the_option(argv, message, monkeypatch, capsys):
    monkeypatch.delenv("OUT", raising=False)
    with pytest.raises(SystemExit):
        gpu_suite.parse_args(argv)
    assert message in capsys.readouterr().err


def _suite(out: Path, *args: str, timeout: float) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, str(BENCH / "gpu_suite.py"), "--tiny", "--out", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return time.perf_counter() - start


def test_the_budget_ends_every_phase_in_time(tmp_path):
    """A 24 s budget: compiles are killed, nothing is timed or trained, the outputs come."""
    wall = _suite(tmp_path, "--budget", "24", "--reserve", "8", timeout=180)
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert suite["suite"]["wall_s"] <= 24 - 8 + 1  # the phases end by budget - reserve
    assert wall < 24 + 60  # Python's start-up and the outputs (imports powmarl) on a busy CPU
    statuses = {m["status"] for m in suite["measurements"]}
    assert statuses <= {"timeout", "skipped", "failed"} and "failed" not in statuses
    assert all(t["status"] in ("timeout", "skipped") for t in suite["training"])
    assert "no training run logged an evaluation" in suite["notes"]
    assert "No measurement ran" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.md").exists()
    assert not list(tmp_path.rglob("*.npz"))


@pytest.mark.slow
def test_tiny_suite_writes_every_output(tmp_path):
    _suite(tmp_path, "--seeds", "1", "--budget", "2400", "--jobs", "2", timeout=2600)
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert {
        "suite",
        "versions",
        "device",
        "units",
        "measurements",
        "pow_over_qmix",
        "training",
        "files",
        "notes",
    } <= set(suite)
    assert suite["versions"]["jax"] and suite["versions"]["jaxlib"]
    assert suite["device"]["backend"] == "cpu" and suite["device"]["device"]
    measured = [m for m in suite["measurements"] if m["env"] == "stag_hunt"]
    assert [(m["algo"], m["seeds"], m["status"]) for m in measured] == [
        ("qmix", 1, "ok"),
        ("pow_qmix", 1, "ok"),
    ]
    for m in measured:
        assert m["env_steps_per_s_per_seed"] > 0
        assert m["env_steps_per_s_total"] == pytest.approx(
            m["seeds"] * m["env_steps_per_s_per_seed"]
        )
        assert m["init_compile_s"] > 0 and m["chunk_compile_s"] > 0
        assert m["cold_compile_status"] == "ok" and m["cold_chunk_compile_s"] > 0
        assert m["xla_temp_bytes"] > 0 and m["device_peak_bytes"] is None  # CPU: no stats
    ratios = suite["pow_over_qmix"]
    assert [r["seeds"] for r in ratios] == [1]
    assert all(math.isfinite(r["pow_over_qmix_time_per_env_step"]) for r in ratios)
    assert all(r["pow_over_qmix_time_per_env_step"] > 0 for r in ratios)
    assert [t["algo"] for t in suite["training"]] == ["pow_qmix", "qmix"]
    for t in suite["training"]:
        assert t["status"] == "ok" and t["stopped_by"] == "t_max"
        assert t["env_args"]["punishment"] == -4.0 and t["cold_program_status"] == "ok"
        assert t["t_env_per_seed"].keys() == {"0", "1"}
        assert min(t["t_env_per_seed"].values()) >= 3000
        assert math.isfinite(t["eval_return_mean"]) and t["env_steps_per_s_per_seed"] > 0
    for name in suite["files"] + ["suite.json", "report.md", "suite.log"]:
        assert (tmp_path / name).is_file(), name
    pngs = [f for f in suite["files"] if f.endswith(".png")]
    assert len(pngs) == 1 and "runs/qmix_stag_hunt_p4/metrics.jsonl" in suite["files"]
    metrics = (tmp_path / "runs/pow_qmix_stag_hunt_p4/metrics.jsonl").read_text()
    rows = [json.loads(x) for x in metrics.splitlines()]
    assert {r["seed"] for r in rows} == {0, 1}
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("checkpoints"))
    report = (tmp_path / "report.md").read_text()
    assert "Not a GPU run" in report and "POW / QMIX time per env step" in report
    assert "pow_qmix_stag_hunt_p4" in report
