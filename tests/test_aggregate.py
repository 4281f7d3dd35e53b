"""Aggregate statistics (powmarl.report.aggregate, rliable): hand-computed IQM, probability
of improvement, normalisation, refusals of inconsistent runs, files and captions, CLI.

Run directories are written by hand (config.json + metrics.jsonl); no training runs here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from powmarl.cli import main
from powmarl.report import aggregate as agg
from powmarl.report import make_report
from powmarl.report.runs import ReportError, load_groups

pytest.importorskip("rliable.library", reason="rliable is not installed (powmarl[aggregate])")

TASKS = ("matrix_a", "matrix_b")
REPS = 200  # bootstrap samples: enough for the checks, cheap


def write_runs(root: Path, algo: str, finals: dict, t_end=1000, seeds=None) -> list[Path]:
    """One run directory per task; finals: task -> per-seed final eval/return_mean (the
    curve rises linearly to it from 0 at t_env 0 over 5 evaluations)."""
    dirs = []
    for task, values in finals.items():
        path = root / f"{algo}_{task}"
        path.mkdir(parents=True)
        seed_ids = seeds or list(range(len(values)))
        config = {"algo": algo, "env_id": task, "env_kwargs": {}, "seeds": seed_ids}
        (path / "config.json").write_text(json.dumps(config))
        rows = [
            {"seed": s, "t_env": t_end * k / 4, "eval/return_mean": v * k / 4}
            for s, v in zip(seed_ids, values)
            for k in range(5)
        ]
        (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        dirs.append(path)
    return dirs


def identity_reference(tasks=TASKS):
    return {t: (0.0, 1.0) for t in tasks}


def scores_of(dirs, reference=None):
    groups = load_groups(dirs)
    metrics = dict.fromkeys({g.task for g in groups}, "eval/return_mean")
    return groups, metrics, agg.normalise(agg.collect(groups, metrics), reference)


def test_iqm_and_friends_by_hand(tmp_path):
    # 8 scores 0.0 .. 0.7 over 2 tasks x 4 seeds: the middle 50% is 0.2 .. 0.5, IQM 0.35
    finals = {"matrix_a": [0.0, 0.2, 0.4, 0.6], "matrix_b": [0.1, 0.3, 0.5, 0.7]}
    dirs = write_runs(tmp_path, "a", finals)
    _, _, scores = scores_of(dirs, identity_reference())
    est = agg.interval_estimates(scores, agg.Options(reps=REPS))["a"]  # [3, 4]
    iqm, mean, median, gap = est[0]
    assert iqm == pytest.approx(0.35)
    assert mean == pytest.approx(0.35)
    assert median == pytest.approx(np.median([0.3, 0.4]))  # median of the two task means
    assert gap == pytest.approx(1 - 0.35)
    assert np.all(est[1] <= est[0] + 1e-12) and np.all(est[0] <= est[2] + 1e-12)
    assert est[2, 0] > est[1, 0]  # a real interval, not a point


def test_probability_of_improvement_identical_and_dominated(tmp_path):
    same = {"matrix_a": [1.0, 2.0, 3.0], "matrix_b": [4.0, 0.0, 2.0]}
    dirs = write_runs(tmp_path, "x", same) + write_runs(tmp_path, "y", same)
    dirs += write_runs(tmp_path, "z", {"matrix_a": [-5.0, -6.0, -7.0], "matrix_b": [-3, -2, -1]})
    _, _, scores = scores_of(dirs)
    probs = agg.improvement_probabilities(scores, agg.Options(reps=REPS))
    p, low, high = probs[("x", "y")]
    assert p == 0.5 and low <= 0.5 <= high
    assert probs[("x", "z")] == pytest.approx((1.0, 1.0, 1.0))
    assert probs[("z", "y")] == pytest.approx((0.0, 0.0, 0.0))
    assert set(probs) == {(a, b) for a in "xyz" for b in "xyz" if a != b}


def test_normalisation_min_max_and_reference(tmp_path):
    dirs = write_runs(tmp_path, "x", {"matrix_a": [2.0, 4.0], "matrix_b": [10.0, 30.0]})
    dirs += write_runs(tmp_path, "y", {"matrix_a": [0.0, 1.0], "matrix_b": [20.0, 20.0]})
    _, _, minmax = scores_of(dirs)
    assert minmax.bounds == {"matrix_a": (0.0, 4.0), "matrix_b": (10.0, 30.0)}
    np.testing.assert_allclose(minmax.normalised["x"], [[0.5, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(minmax.normalised["y"], [[0.0, 0.5], [0.25, 0.5]])
    reference = {"matrix_a": (-4.0, 4.0), "matrix_b": (0.0, 40.0), "other": (0.0, 1.0)}
    _, _, ref = scores_of(dirs, reference)
    np.testing.assert_allclose(ref.normalised["x"], [[0.75, 0.25], [1.0, 0.75]])
    assert "reference" in ref.how and "min-max" in minmax.how


def test_reference_file(tmp_path):
    good = tmp_path / "ref.yaml"
    good.write_text("matrix_a: {low: -12, high: 8}\nmatrix_b: [0, 1]\n")
    assert agg.load_reference(good) == {"matrix_a": (-12.0, 8.0), "matrix_b": (0.0, 1.0)}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"matrix_a": {"low": 3, "high": 1}}))
    with pytest.raises(ReportError, match=r"--reference-scores: task 'matrix_a' needs"):
        agg.load_reference(bad)
    with pytest.raises(ReportError, match="cannot read"):
        agg.load_reference(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_task", r"y has no runs on matrix_b; every algorithm needs runs on every task"),
        ("seeds", r"seeds differ: y on matrix_a has 0, 1, 2, x on matrix_a has 0, 1"),
        ("budget", r"env steps \(y on matrix_b seed 1: 2000; x on matrix_a seed 0: 1000\)"),
        ("constant", r"every score on matrix_a is 1, so min-max normalisation is undefined"),
        ("reference", r"--reference-scores: no entry for matrix_b; the file has matrix_a"),
    ],
)
def test_inconsistent_runs_are_refused(tmp_path, case, message):
    x = {"matrix_a": [1.0, 2.0], "matrix_b": [3.0, 4.0]}
    dirs = write_runs(tmp_path, "x", x if case != "constant" else {"matrix_a": [1.0, 1.0]})
    y = {
        "missing_task": {"matrix_a": [1.0, 2.0]},
        "seeds": {"matrix_a": [1.0, 2.0, 3.0], "matrix_b": [3.0, 4.0, 5.0]},
        "constant": {"matrix_a": [1.0, 1.0]},
    }.get(case, x)
    dirs += write_runs(tmp_path, "y", y, t_end=2000 if case == "budget" else 1000)
    reference = {"matrix_a": (0.0, 1.0)} if case == "reference" else None
    with pytest.raises(ReportError, match=message):
        scores_of(dirs, reference)


def test_report_files_captions_and_csv(tmp_path):
    dirs = write_runs(tmp_path, "pow_qmix", {"matrix_a": [8.0, 8.0, 7.0], "matrix_b": [1, 2, 3]})
    dirs += write_runs(tmp_path, "qmix", {"matrix_a": [7.0, 7.0, 6.0], "matrix_b": [0, 2, 1]})
    out = tmp_path / "report"
    written = make_report(dirs, out, aggregate=agg.Options(reps=REPS))
    for name in ("intervals", "improvement", "profiles", "sample_efficiency"):
        path = out / "aggregate" / f"{name}.png"
        assert f"aggregate/{name}.png" in written
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "aggregate.md").read_text()
    assert "95% percentile stratified bootstrap" in text and f"{REPS} bootstrap samples" in text
    assert "2 task(s) x 3 seeds (0, 1, 2)" in text and "min-max" in text
    rows = list(csv.DictReader((out / "aggregate.csv").open()))
    iqm = {r["algo"]: float(r["point"]) for r in rows if r["statistic"] == "IQM"}
    assert iqm["pow_qmix"] > iqm["qmix"]
    poi = [r for r in rows if r["kind"] == "improvement"]
    assert [{r["algo"], r["other"]} for r in poi] == [{"pow_qmix", "qmix"}]  # one line a pair
    assert "index.html" in written


def test_cli_aggregate_and_its_errors(tmp_path, capsys, monkeypatch):
    dirs = write_runs(tmp_path, "a", {"matrix_a": [1.0, 2.0]})
    dirs += write_runs(tmp_path, "b", {"matrix_a": [0.0, 3.0]})
    args = ["report", *map(str, dirs), "--out", str(tmp_path / "r"), "--no-plots"]
    assert main([*args, "--aggregate", "--bootstrap-reps", "50"]) == 0
    assert "50 bootstrap samples" in (tmp_path / "r" / "aggregate.md").read_text()
    assert main([*args, "--bootstrap-reps", "50"]) == 2
    assert "only with --aggregate" in capsys.readouterr().err
    assert main([*args, "--aggregate", "--bootstrap-reps", "3"]) == 2
    assert "--bootstrap-reps: must be an integer >= 10" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "rliable", None)
    assert main([*args, "--aggregate"]) == 1
    assert "pip install 'powmarl[aggregate]'" in capsys.readouterr().err


def test_probability_of_improvement_equals_rliables():
    from rliable import metrics

    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(5, 3)).astype(float)  # ties on purpose
    y = rng.integers(0, 4, size=(4, 3)).astype(float)
    expected = metrics.probability_of_improvement(x, y)
    assert agg.probability_of_improvement(x, y) == pytest.approx(expected, abs=1e-12)
    assert agg.probability_of_improvement(x, x) == 0.5


def test_bootstrap_is_reproducible_and_leaves_the_global_rng_alone(tmp_path):
    # rliable 1.2 resamples with np.random.choice and ignores its random_state argument
    rng = np.random.default_rng(1)
    finals = {t: list(rng.normal(size=6)) for t in TASKS}
    dirs = write_runs(tmp_path, "x", finals)
    dirs += write_runs(tmp_path, "y", {t: list(rng.normal(size=6)) for t in TASKS})
    _, _, scores = scores_of(dirs)

    def intervals(seed):
        opts = agg.Options(reps=50, seed=seed)
        est = agg.interval_estimates(scores, opts)
        return np.stack([est["x"], est["y"]]), agg.improvement_probabilities(scores, opts)

    np.random.seed(123)
    before = np.random.get_state()
    first, first_poi = intervals(0)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert before[2:] == after[2:]
    np.random.rand()  # the caller's draws between calls must not matter either
    second, second_poi = intervals(0)
    np.testing.assert_array_equal(first, second)
    assert first_poi == second_poi
    alone = dataclasses.replace(scores, algos=["y"], normalised={"y": scores.normalised["y"]})
    np.testing.assert_array_equal(agg.interval_estimates(alone, agg.Options(reps=50))["y"], first[1])
    other, other_poi = intervals(1)
    np.testing.assert_array_equal(first[:, 0], other[:, 0])  # same point estimates
    assert not np.array_equal(first[:, 1:], other[:, 1:])
    assert first_poi[("x", "y")][1:] != other_poi[("x", "y")][1:]


def test_improvement_title_fits_with_nine_algorithms(tmp_path, monkeypatch):
    from itertools import combinations

    from matplotlib.text import Text

    from powmarl.report import aggregate_plots as figs

    drawn = []
    monkeypatch.setattr(figs, "_save", lambda fig, path: drawn.append(fig) or path)
    names = ["pow_qmix", "pow_vdn", "pow_qplex", "cw_qmix", "ow_qmix", "qmix", "vdn", "qplex"]
    for algos in (names + ["resq_with_a_rather_long_name"], names[:2]):
        pairs = list(combinations(algos, 2))
        probs = dict.fromkeys(pairs, (0.5, 0.3, 0.7))
        figs.plot_improvement(probs, pairs, "95% stratified bootstrap intervals", tmp_path)
        fig = drawn[-1]
        renderer = fig.canvas.get_renderer()
        fig.draw(renderer)  # lays the figure out as savefig would
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
        titles = [t for t in texts if "probability of improvement and" in t.get_text()]
        assert len(titles) == 1 and "bootstrap intervals" in titles[0].get_text()
        rows = fig.axes[0].get_yticklabels()
        assert len(rows) == len(pairs)
        for artist in (*titles, *rows):  # the title and every row label lie inside the image
            extent, box = artist.get_window_extent(renderer), fig.bbox
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1, artist.get_text()
            assert box.y0 <= extent.y0 and extent.y1 <= box.y1, artist.get_text()
        figs.pyplot().close(fig)
