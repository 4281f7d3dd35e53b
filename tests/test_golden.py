"""Results that must not change (issue 11): for fixed seeds, the metrics rows (every column
but ``time/*``) and the final parameters of qmix and pow_qmix on ``matrix_pow`` and a small
``stag_hunt`` equal, bitwise on CPU, those recorded with the code before the redesign
(``tests/golden_runs.py``). The default suite checks one of the four runs and the resume of a
POW-QMIX run dir written before the redesign; ``pytest -m slow tests/test_golden.py`` the rest."""

import json

import pytest
from golden_runs import DATA, RUNS, comparable_rows, param_digests, train

#: recorded with XLA's optimisations on, as users compile (tests/conftest.py)
pytestmark = pytest.mark.optimized


#: in the default suite: QMIX on the matrix game (POW-QMIX's recorded rows are checked there
#: by the resume test below); the three others are minutes of optimised compiling (~210 s CPU
#: of the 2-core suite) and run with ``-m slow``
DEFAULT_RUNS = ("qmix_matrix_pow",)


@pytest.mark.parametrize(
    "name",
    [n if n in DEFAULT_RUNS else pytest.param(n, marks=pytest.mark.slow) for n in sorted(RUNS)],
)
def test_metrics_and_params_equal_the_recorded_run(name):
    result = train(name)
    expected_rows = json.loads((DATA / f"{name}.json").read_text())
    assert comparable_rows(result.metrics) == expected_rows
    expected_params = json.loads((DATA / f"{name}.params.json").read_text())
    digests = param_digests(result.params)
    changed = sorted(k for k in expected_params if digests.get(k) != expected_params[k])
    assert sorted(digests) == sorted(expected_params)
    assert not changed, f"parameters differ from the recorded run: {changed[:5]}"


def test_a_jax_run_dir_written_before_the_redesign_resumes_exactly(tmp_path):
    """``tests/data/runs_v0.1/jax_pow_qmix``: pow_qmix on matrix_pow (seeds 0-1, 3000 steps,
    buffer 256) written by powmarl 0.1 before issue 11, cut back to its first checkpoint
    (1000 steps); resuming it must give the rows of the uninterrupted run."""
    import shutil

    from powmarl.api import resume

    run = tmp_path / "run"
    shutil.copytree(DATA.parent / "runs_v0.1" / "jax_pow_qmix", run)
    expected = [json.loads(line) for line in (run / "expected_metrics.jsonl").open()]
    result = resume(run, progress=False)
    assert comparable_rows(result.metrics) == comparable_rows(expected)
