"""The paper's matrix-game results (notes sec. 5.1), fixed seeds 0-4, uniform exploration.

Every check is made on the greedy joint action of each seed (its payoff in the game).
The ``slow`` versions train every algorithm to the paper's 50k-step budget and check the
action at its end. The CI versions are cheaper:

- POW runs 8k steps (it settles within ~4k env steps; see docs/results.md).
- CW-QMIX, which must find the optimum, ends at the first evaluation (one per 1000 steps)
  at which every seed's greedy action has been the optimum (A,A) for ``HELD``
  evaluations in a row, or at 50k steps; it then asserts on the action where it ended.
  Stopped early, it checks "every seed reaches the optimum and holds it for HELD
  evaluations within the 50k budget", not "every seed is there at 50k" (the slow version
  checks that). In the recorded run every seed holds the optimum from 6k steps to 50k, so
  it ends at 15k.
- ResQ trains the full 50k steps: its greedy actions keep flipping between 8, 7.9 and
  -12 in some seed until ~47k (seed 1 is at 7.9 at 47k), so no earlier point settles it.
- QMIX, OW-QMIX and VDN, which must *miss* it, end at the first evaluation at which every
  seed's greedy action has stayed the same for ``HELD`` evaluations in a row and those
  actions pass the check, or at 50k steps; they then assert on the action where they
  ended. An untrained network misses the optimum too, so the first evaluations settle
  nothing; ``HELD`` unchanged evaluations (10k steps of uniform exploration, whose data do
  not change as training goes on) do. Stopped early, the check reads "every seed settles
  on an action that passes within the 50k budget"; the slow versions check at 50k. In the
  recorded runs QMIX on the POW game holds 7.9 in every seed from the first evaluation to
  50k, so it ends at 10k.
"""

import numpy as np
import pytest

import powmarl
from powmarl.envs import POW_PAYOFF, WQMIX_PAYOFF

SEEDS = [0, 1, 2, 3, 4]
TABLES = {
    "matrix_pow": np.asarray(POW_PAYOFF, dtype=np.float32),
    "matrix_wqmix": np.asarray(WQMIX_PAYOFF, dtype=np.float32),
}
OPTIMUM = 8.0
#: these runs cost running, not compiling: optimised programs run ~3x faster
pytestmark = pytest.mark.optimized
#: consecutive evaluations (1000 env steps apart) at the optimum that end a CI run early
HELD = 10


def _train(algo: str, env_id: str, t_max: int, stop_when=None):
    """Train the five seeds; return the result, each seed's one-step tables, and the payoff
    of each seed's greedy joint action [5]."""
    result = powmarl.train(
        algo, powmarl.envs.make(env_id), seeds=SEEDS, t_max=t_max, progress=False,
        stop_when=stop_when,
    )  # fmt: skip
    tables = result.tables()
    payoffs = np.asarray([TABLES[env_id][tuple(t["greedy_actions"])] for t in tables])
    return result, tables, payoffs


def held_optimum(rows) -> bool:
    """``stop_when``: every seed's greedy test return (= its payoff: the game is one step
    and deterministic) was the optimum at each of the last HELD evaluations."""
    last = rows[-HELD * len(SEEDS) :]
    return len(last) == HELD * len(SEEDS) and all(
        abs(row["eval/return_mean"] - OPTIMUM) < 1e-3 for row in last
    )


def settled_and(check):
    """``stop_when`` for a check on the greedy payoffs: every seed's greedy test return (its
    payoff) was the same at each of the last HELD evaluations, and those payoffs pass."""

    def stop(rows) -> bool:
        last = rows[-HELD * len(SEEDS) :]
        if len(last) < HELD * len(SEEDS):
            return False
        seen = {seed: {round(r["eval/return_mean"], 3) for r in last if r["seed"] == seed}
                for seed in SEEDS}  # fmt: skip
        if any(len(values) != 1 for values in seen.values()):
            return False
        return check(np.asarray([seen[seed].pop() for seed in SEEDS]))

    return stop


def all_optimal(payoffs) -> bool:
    return payoffs.tolist() == [OPTIMUM] * len(SEEDS)


def at_most_two_optimal(payoffs) -> bool:
    return int((payoffs == OPTIMUM).sum()) <= 2


def at_least_four_suboptimal(payoffs) -> bool:
    return int((payoffs < OPTIMUM).sum()) >= 4


#: (algo, env id, check on the greedy payoffs at the end of training)
MISS_CASES = [
    ("qmix", "matrix_pow", at_most_two_optimal),  # monotonic QMIX misses (A,A) in most
    ("ow_qmix", "matrix_pow", at_most_two_optimal),  # so do OW-QMIX's optimistic weights
    ("qmix", "matrix_wqmix", at_least_four_suboptimal),  # the classic failure: QMIX and VDN
    ("vdn", "matrix_wqmix", at_least_four_suboptimal),  # settle sub-optimally (>= 4 of 5)
]


def _case_id(case) -> str:
    return f"{case[0]}-{case[1]}"


@pytest.mark.parametrize("algo", ["pow_qmix", "pow_vdn", "pow_qplex"])
def test_pow_family_finds_the_optimum_and_recognises_the_payoff(algo):
    """POW on QMIX, VDN, QPLEX: greedy joint action (A,A) = 8 in every seed; Q_r ~ payoff."""
    _result, tables, payoffs = _train(algo, "matrix_pow", t_max=8_000)
    assert all_optimal(payoffs), payoffs
    for t in tables:
        assert np.abs(t["recogniser"] - TABLES["matrix_pow"]).max() < 0.5, t["recogniser"]


def test_cw_qmix_finds_the_optimum():
    """CW-QMIX reaches (A,A) = 8 in every seed of the POW game: at 50k steps, or earlier
    once every seed has held it for HELD evaluations (module docstring)."""
    result, _, payoffs = _train("cw_qmix", "matrix_pow", t_max=50_000, stop_when=held_optimum)
    assert all_optimal(payoffs), (payoffs, f"ended at {result.t_env.max():.0f} steps")


def test_resq_finds_the_optimum():
    """ResQ reaches (A,A) = 8 in every seed of the POW game (at 50k steps)."""
    _, _, payoffs = _train("resq", "matrix_pow", t_max=50_000)
    assert all_optimal(payoffs), payoffs


@pytest.mark.parametrize("case", MISS_CASES, ids=_case_id)
def test_misses_the_optimum(case):
    """QMIX (monotonic) and OW-QMIX (optimistic weights) miss (A,A) in most seeds of the POW
    game; QMIX and VDN settle sub-optimally in >= 4 of 5 seeds of the WQMIX game: at 50k
    steps, or once every seed's action has settled on a passing outcome (module docstring)."""
    algo, env_id, check = case
    result, _, payoffs = _train(algo, env_id, t_max=50_000, stop_when=settled_and(check))
    assert check(payoffs), (payoffs, f"ended at {result.t_env.max():.0f} steps")


@pytest.mark.slow
@pytest.mark.parametrize("case", MISS_CASES, ids=_case_id)
def test_misses_the_optimum_at_the_paper_budget(case):
    """The miss checks at the end of the full 50k steps."""
    algo, env_id, check = case
    _, _, payoffs = _train(algo, env_id, t_max=50_000)
    assert check(payoffs), payoffs


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["pow_qmix", "pow_vdn", "pow_qplex"])
def test_pow_family_at_the_paper_budget(algo):
    """POW at the paper's 50k steps: optimum in every seed, Q_r reproduces the payoff."""
    _, tables, payoffs = _train(algo, "matrix_pow", t_max=50_000)
    assert all_optimal(payoffs), payoffs
    for t in tables:
        assert np.abs(t["recogniser"] - TABLES["matrix_pow"]).max() < 0.5, t["recogniser"]


@pytest.mark.slow
def test_cw_qmix_finds_the_optimum_at_the_paper_budget():
    """CW-QMIX: (A,A) in every seed at the end of the full 50k steps."""
    _, _, payoffs = _train("cw_qmix", "matrix_pow", t_max=50_000)
    assert all_optimal(payoffs), payoffs
