"""Reports: t quantiles, confidence intervals, pooling of run directories, tables, plots, CLI.

Run directories are written by hand (config.json + metrics.jsonl), so no training runs here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from powmarl.cli import main
from powmarl.report import make_report
from powmarl.report.plots import aligned_curves, common_grid, heatmap_panels, plot_heatmaps
from powmarl.report.runs import ReportError, load_groups, task_label
from powmarl.report.stats import band, mean_ci, t_central_probability, t_quantile
from powmarl.report.tables import format_cell


def write_run(path: Path, algo: str, curves: dict, env_id="stag_hunt", env_kwargs=None, **extra):
    """A run directory by hand. curves: seed -> [(t_env, value), ...] of eval/return_mean;
    ``extra`` rows keys (e.g. variant) are added to every row."""
    path.mkdir(parents=True)
    config = {"algo": algo, "env_id": env_id, "env_kwargs": env_kwargs or {}, "seeds": list(curves)}
    (path / "config.json").write_text(json.dumps(config))
    rows = []
    for seed, points in curves.items():
        for t_env, value in points:
            rows.append({"seed": seed, "t_env": t_env, "eval/return_mean": value, **extra})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- statistics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "df, expected",
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452), (30, 2.0423),
     (100, 1.9840), (5000, 1.9604)],
)  # fmt: skip
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.95, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_other_levels_and_cdf():
    assert t_quantile(0.99, 4) == pytest.approx(4.6041, abs=1e-4)
    assert t_quantile(0.90, 9) == pytest.approx(1.8331, abs=1e-4)
    for df in (1, 2, 3, 6, 7):
        assert t_central_probability(t_quantile(0.95, df), df) == pytest.approx(0.95, abs=1e-10)
    with pytest.raises(ValueError, match="df"):
        t_quantile(0.95, 0)
    with pytest.raises(ValueError, match="confidence"):
        t_quantile(1.5, 3)


def test_mean_ci_by_hand():
    # values 1..5: mean 3, s = sqrt(2.5), half = 2.7764 * sqrt(2.5) / sqrt(5) = 1.9632
    iv = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert iv.n == 5 and iv.mean == 3.0
    assert iv.half_width == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert (iv.low, iv.high) == pytest.approx((3.0 - iv.half_width, 3.0 + iv.half_width))
    one = mean_ci([7.0])
    assert one.n == 1 and one.mean == 7.0 and math.isnan(one.half_width)
    assert format_cell(one) == "7.00 (n=1)"
    assert format_cell(mean_ci([30.0, 40.0])) == "35.0 ± 63.5 (n=2)"


def test_band_matches_mean_ci_pointwise():
    values = np.asarray([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]])
    mean, half = band(values)
    for j in range(2):
        iv = mean_ci(values[:, j])
        assert mean[j] == pytest.approx(iv.mean) and half[j] == pytest.approx(iv.half_width)


# --- loading and grouping -------------------------------------------------------------------


def test_task_label():
    assert task_label("stag_hunt", {"punishment": -4.0}) == "stag_hunt p=-4"
    assert task_label("matrix_pow", {}) == "matrix_pow"
    label = task_label("matrix", {"payoff": [[1, 0], [0, 1]]})
    assert label.startswith("matrix payoff#") and label == task_label(
        "matrix", {"payoff": [[1, 0], [0, 1]]}
    )


def test_pooling_over_dirs_variants_and_tasks(tmp_path):
    a = write_run(
        tmp_path / "a", "qmix", {0: [(10, 1.0)], 1: [(10, 3.0)]}, env_kwargs={"punishment": -4.0}
    )
    b = write_run(tmp_path / "b", "qmix", {2: [(10, 5.0)]}, env_kwargs={"punishment": -4.0})
    c = write_run(tmp_path / "c", "pow_qmix", {0: [(10, 9.0)]}, env_kwargs={"punishment": 0.0})
    d = write_run(tmp_path / "d", "pow_qmix", {0: [(10, 2.0)]}, variant="recognition_threshold=0.1")
    groups = load_groups([a, b, c, d, a])  # a repeated directory is read once
    summary = {(g.label, g.task): g.seeds for g in groups}
    assert summary == {
        ("qmix", "stag_hunt p=-4"): [0, 1, 2],
        ("pow_qmix", "stag_hunt p=0"): [0],
        # d gave no punishment: the env default (0) fills in, so it shares c's column
        ("pow_qmix [recognition_threshold=0.1]", "stag_hunt p=0"): [0],
    }


def test_duplicate_seed_across_dirs_is_an_error(tmp_path):
    a = write_run(tmp_path / "a", "qmix", {0: [(10, 1.0)], 1: [(10, 3.0)]})
    b = write_run(tmp_path / "b", "qmix", {1: [(10, 5.0)]})
    with pytest.raises(ReportError, match=r"seed 1 of qmix.*both") as err:
        load_groups([a, b])
    assert str(a.resolve()) in str(err.value) and str(b.resolve()) in str(err.value)


def test_missing_run_dir_is_an_error(tmp_path):
    with pytest.raises(ReportError, match=r"nope is not a run directory \(no config.json\)"):
        load_groups([tmp_path / "nope"])
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text(json.dumps({"algo": "qmix", "env_id": "matrix_pow"}))
    with pytest.raises(ReportError, match="no metrics.jsonl"):
        load_groups([half])


def test_final_metric_is_last_row_and_non_finite_decoded(tmp_path):
    run = write_run(tmp_path / "r", "qmix", {0: [(20, 5.0), (10, 1.0)], 1: [(10, 2.0)]})
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"seed": 1, "t_env": 20, "eval/return_mean": None}) + "\n")
        fh.write(json.dumps({"seed": 1, "t_env": 30, "train/loss": "inf"}) + "\n")
    (group,) = load_groups([run])
    assert group.curves[1][-1]["train/loss"] == math.inf
    from powmarl.report.runs import final_values

    values = final_values(group, "eval/return_mean")
    assert values[0] == 5.0 and math.isnan(values[1])  # a NaN seed is not hidden


def test_unknown_metric_lists_available(tmp_path):
    run = write_run(tmp_path / "r", "qmix", {0: [(10, 1.0)]})
    with pytest.raises(ReportError, match=r"'eval/nope'.*available: eval/return_mean"):
        make_report([run], tmp_path / "out", metric="eval/nope", plots=False)


def test_default_metric_prefers_win_rate(tmp_path):
    runs = []
    for name, env_id in (("r", "smax"), ("v2", "smacv2_zerg_5v5")):
        run = write_run(tmp_path / name, "qmix", {0: [(10, 1.0)], 1: [(10, 2.0)]}, env_id=env_id)
        lines = (run / "metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) | {"eval/battle_won_mean": 0.5} for line in lines]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(run)
    other = write_run(tmp_path / "m", "qmix", {0: [(10, 8.0)]}, env_id="matrix_pow")
    make_report([*runs, other], tmp_path / "out", plots=False)
    with open(tmp_path / "out" / "table.csv") as fh:
        metrics = {r["task"]: r["metric"] for r in csv.DictReader(fh)}
    # SMAC maps: test win rate; SMACv2: mean test return (the paper's metrics)
    assert metrics == {
        "smax": "eval/battle_won_mean",
        "smacv2_zerg_5v5": "eval/return_mean",
        "matrix_pow": "eval/return_mean",
    }


# --- tables and plots -----------------------------------------------------------------------


def test_tables_written(tmp_path):
    a = write_run(tmp_path / "a", "qmix", {s: [(10, 0.0), (20, float(s))] for s in range(5)})
    b = write_run(tmp_path / "b", "pow_qmix", {0: [(10, 7.0)]})
    written = make_report([a, b], tmp_path / "out", plots=False)
    assert set(written) == {"table.md", "table.csv", "index.html"}
    md = written["table.md"].read_text()
    assert "95% Student-t confidence interval" in md
    assert "| qmix | 2.00 ± 1.96 (n=5) |" in md  # 0..4: s = 1.5811, 2.7764 * s / sqrt(5)
    assert "| pow_qmix | 7.00 (n=1) |" in md
    assert md.index("| qmix") < md.index("| pow_qmix")  # rows in the paper's order
    with open(written["table.csv"]) as fh:
        rows = list(csv.DictReader(fh))
    qmix = next(r for r in rows if r["algo"] == "qmix")
    assert qmix["n"] == "5" and float(qmix["mean"]) == 2.0 and qmix["seeds"] == "0 1 2 3 4"
    assert float(qmix["ci_high"]) - float(qmix["mean"]) == pytest.approx(float(qmix["half_width"]))
    single = next(r for r in rows if r["algo"] == "pow_qmix")
    assert single["half_width"] == "" and single["ci_low"] == ""


def test_curves_interpolate_misaligned_evaluations(tmp_path):
    run = write_run(
        tmp_path / "r",
        "qmix",
        {0: [(0, 0.0), (100, 10.0), (200, 20.0)], 1: [(50, 0.0), (250, 20.0)]},
    )
    (group,) = load_groups([run])
    grid, values = aligned_curves(group, "eval/return_mean")
    np.testing.assert_allclose(grid, [50.0, 125.0, 200.0])  # the range both seeds cover
    np.testing.assert_allclose(values[0], [5.0, 12.5, 20.0])
    np.testing.assert_allclose(values[1], [0.0, 7.5, 15.0])
    assert common_grid([np.asarray([5.0]), np.asarray([0.0, 5.0])]).tolist() == [5.0]


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib", reason="report plots need the 'report' extra")
    curves = {s: [(t, t / 100 + s) for t in range(0, 1000, 100 + 7 * s)] for s in range(3)}
    a = write_run(tmp_path / "a", "qmix", curves, env_kwargs={"punishment": -4.0})
    b = write_run(
        tmp_path / "b", "pow_qmix", {0: [(0, 1.0), (900, 2.0)]}, env_kwargs={"punishment": -4.0}
    )
    written = make_report([a, b], tmp_path / "out")
    png = written["curves/stag_hunt_p=-4.png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_heatmaps_from_tables_json(tmp_path):
    pytest.importorskip("matplotlib", reason="report plots need the 'report' extra")
    run = write_run(
        tmp_path / "r", "pow_qmix", {0: [(10, 8.0)], 1: [(10, 8.0)]}, env_id="matrix_pow"
    )
    table = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 7.9]]
    seed_tables = {"greedy_actions": [0, 0], "q_i": [[0.1] * 3] * 2, "q_tot": table,
                   "central": table, "recogniser": table}  # fmt: skip
    (run / "tables.json").write_text(json.dumps({"0": seed_tables, "1": seed_tables}))
    written = make_report([run], tmp_path / "out")
    for seed in (0, 1):
        png = written[f"heatmaps/pow_qmix_matrix_pow_seed{seed}.png"]
        assert png.stat().st_size > 5000
    titles = [name for name, _ in heatmap_panels(seed_tables, payoff=table)]
    assert titles == ["payoff R", "Q_tot", "Q*", "Q_r"]
    three_agents = {"q_tot": np.zeros((2, 2, 2)).tolist(), "greedy_actions": [0, 0, 0]}
    assert plot_heatmaps(three_agents, "x", tmp_path / "none.png") is None


def test_missing_matplotlib_message_tables_still_written(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = write_run(tmp_path / "r", "qmix", {0: [(10, 1.0)]})
    with pytest.raises(ImportError, match=r"pip install 'powmarl\[report\]'"):
        make_report([run], tmp_path / "out")
    assert (tmp_path / "out" / "table.md").exists()


# --- CLI ------------------------------------------------------------------------------------


def test_cli_report(tmp_path, capsys):
    a = write_run(tmp_path / "a", "qmix", {0: [(10, 1.0)], 1: [(10, 3.0)]})
    out = tmp_path / "rep"
    assert main(["report", str(a), "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "| qmix | 2.00 ± 12.71 (n=2) |" in printed and "table.csv" in printed
    assert (out / "table.md").exists() and (out / "table.csv").exists()
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_heatmaps_of_sweep_members(tmp_path):
    pytest.importorskip("matplotlib", reason="report plots need the 'report' extra")
    variant = "recognition_threshold=0.1"
    run = write_run(
        tmp_path / "r", "pow_qmix", {3: [(10, 8.0)]}, env_id="matrix_pow", variant=variant
    )
    tables = {"greedy_actions": [0, 0], "q_tot": np.eye(3).tolist()}
    (run / "tables.json").write_text(json.dumps({f"3 {variant}": tables}))  # "seed variant"
    written = make_report([run], tmp_path / "out")
    assert "heatmaps/pow_qmix_recognition_threshold=0.1_matrix_pow_seed3.png" in written


def test_report_at_compares_runs_stopped_at_different_points(tmp_path, capsys):
    """--at T: each seed's last evaluation at or before T; seeds short of T left out."""
    fast = write_run(tmp_path / "fast", "qmix", {0: [(10, 1.0), (20, 2.0), (30, 9.0)],
                                                 1: [(10, 3.0), (25, 4.0)]})  # fmt: skip
    slow = write_run(tmp_path / "slow", "pow_qmix", {0: [(10, 5.0), (21, 6.0)], 1: [(12, 7.0)]})
    out = tmp_path / "rep"
    argv = ["report", str(fast), str(slow), "--out", str(out), "--no-plots", "--at", "20"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| qmix | 2.50 ± 6.35 (n=2) |" in printed  # seed 0: 2.0 (not 9.0), seed 1: 3.0
    assert "| pow_qmix | 5.00 (n=1) |" in printed  # seed 1 stopped at 12 < 20
    assert "at or before 20 env steps" in printed
    assert main([*argv[:-1], "40"]) == 2
    assert "no seed of these runs reached 40 env steps" in capsys.readouterr().err
    assert main([*argv[:-1], "0"]) == 2
    assert "--at: must be a positive" in capsys.readouterr().err


def test_report_at_keeps_tables_only_of_runs_that_ended_there(tmp_path):
    from powmarl.report.runs import cut_at

    run = write_run(tmp_path / "r", "qmix", {0: [(10, 1.0), (20, 2.0)], 1: [(10, 3.0)]},
                    env_id="matrix_pow")  # fmt: skip
    tables = {"greedy_actions": [0, 0], "q_tot": np.eye(3).tolist()}
    (run / "tables.json").write_text(json.dumps({"0": tables, "1": tables}))
    (group,) = load_groups([run])
    assert sorted(group.tables) == [0, 1]
    (at10,) = cut_at([group], 10)
    assert sorted(at10.curves) == [0, 1] and sorted(at10.tables) == [1]  # seed 0 went on
    (at20,) = cut_at([group], 20)
    assert sorted(at20.curves) == [0] and sorted(at20.tables) == [0]
