"""The paper's matrix-game results (notes sec. 5.1), fixed seeds 0-4, uniform exploration.

Every check is made on the greedy joint action of each seed (its payoff in the game).

The ``slow`` tests make every check at the paper's settings (networks, batch 128, 50k
steps; POW's greedy action also at 8k: docs/results.md). They run by hand
(``pytest -m slow tests/test_matrix_results.py``): the three POW checks at 8k alone took
~650 s of CPU in the last recorded run.

The central checks are also made with ``SMALL`` networks (a quarter of the paper's batch,
half its agent and mixer widths, a 64-wide Q*); in the recorded runs the outcomes are those
of the paper's settings. The default suite makes all four:

- POW-QMIX: the optimum (A,A) in every seed, held for ``HELD`` evaluations within 50k
  steps, and Q_r within 0.5 of the payoff where the run ended. Recorded (2026-12-03, with
  the reference's Q_r clip rescaling the stale gradients at every inner step): every seed
  at the optimum from 9k steps on (seed 1 still flipped to 7.9 at 8k, where the check used
  to end), so the run ends at 18k; Q_r was within 0.002 of the payoff at 20k.
- CW-QMIX, which must find the optimum, ends at the first evaluation (one per 1000 steps)
  at which every seed's greedy action has been the optimum for ``HELD`` evaluations in a
  row, or at 50k steps, and asserts on the action where it ended: "every seed reaches the
  optimum and holds it for HELD evaluations within the 50k budget" (the slow version
  checks every seed at 50k). Recorded: every seed at the optimum from 5k steps on.
- QMIX, which must *miss* it (on the POW game in at least three seeds, on the WQMIX game
  in at least four), ends at the first evaluation at which every seed's greedy action has
  stayed the same for ``HELD`` evaluations and those actions pass, or at 50k. An untrained
  network misses the optimum too, so the first evaluations settle nothing; ``HELD``
  unchanged evaluations (10k steps of uniform exploration, whose data do not change as
  training goes on) do. Recorded: QMIX holds 7.9 (POW game) and 0 (WQMIX game) in every
  seed from the first evaluation, so both end at 10k.

POW-VDN, POW-QPLEX, OW-QMIX, VDN and ResQ are checked by the slow tests only (small
networks, recorded: POW-VDN's Q_r is 1.6 from the payoff in seed 1 at 8k, and ResQ's
actions keep flipping until the end of the 50k steps, as at the paper's settings; recorded
before its residual agent started as a copy of the agent, ``resq_residual_init``). With the
copy, the slow paper-settings ResQ check passes (optimum in every seed at 50k, 2026-12-03).
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


#: the default suite's networks: batch 32 (paper 128), GRU 32 (64), hypernet 32 (64),
#: mixer 16 (32), Q* 64 (CW/OW-QMIX 256; POW's own default is 64)
SMALL = {
    "batch_size": 32,
    "rnn_hidden_dim": 32,
    "hypernet_embed": 32,
    "mixing_embed_dim": 16,
    "central_mixing_embed_dim": 64,
}


def _train(algo: str, env_id: str, t_max: int, stop_when=None, **overrides):
    """Train the five seeds; return the result, each seed's one-step tables, and the payoff
    of each seed's greedy joint action [5]."""
    result = powmarl.train(
        algo, powmarl.envs.make(env_id), seeds=SEEDS, t_max=t_max, progress=False,
        stop_when=stop_when, **overrides,
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
#: the miss checks made with small networks: QMIX on the POW game (the default suite's
#: contrast with POW-QMIX) and on the WQMIX game
SMALL_MISS_CASES = [case for case in MISS_CASES if case[0] == "qmix"]


def _case_id(case) -> str:
    return f"{case[0]}-{case[1]}"


def assert_pow_result(tables, payoffs):
    """Greedy joint action (A,A) = 8 in every seed; Q_r within 0.5 of the payoff table."""
    assert all_optimal(payoffs), payoffs
    for t in tables:
        assert np.abs(t["recogniser"] - TABLES["matrix_pow"]).max() < 0.5, t["recogniser"]


# ------------------------------------------------------------- default suite: small networks


def test_pow_qmix_finds_the_optimum_and_recognises_the_payoff():
    """POW-QMIX, small networks: (A,A) in every seed, held for HELD evaluations within 50k
    steps, and Q_r ~ payoff where it ended (module docstring)."""
    result, tables, payoffs = _train(
        "pow_qmix", "matrix_pow", t_max=50_000, stop_when=held_optimum, **SMALL
    )
    assert all_optimal(payoffs), (payoffs, f"ended at {result.t_env.max():.0f} steps")
    assert_pow_result(tables, payoffs)


def test_cw_qmix_finds_the_optimum():
    """CW-QMIX, small networks: (A,A) in every seed, held for HELD evaluations within 50k
    steps (module docstring)."""
    result, _, payoffs = _train(
        "cw_qmix", "matrix_pow", t_max=50_000, stop_when=held_optimum, **SMALL
    )
    assert all_optimal(payoffs), (payoffs, f"ended at {result.t_env.max():.0f} steps")


@pytest.mark.parametrize("case", SMALL_MISS_CASES, ids=_case_id)
def test_qmix_misses_the_optimum(case):
    """QMIX, small networks, misses (A,A) in most seeds of the POW game and settles
    sub-optimally in >= 4 of 5 of the WQMIX game, once settled (module docstring)."""
    algo, env_id, check = case
    result, _, payoffs = _train(algo, env_id, t_max=50_000, stop_when=settled_and(check), **SMALL)
    assert check(payoffs), (payoffs, f"ended at {result.t_env.max():.0f} steps")


# ------------------------------------------------------------- slow: the paper's settings


@pytest.mark.slow
@pytest.mark.parametrize("t_max", [8_000, 50_000])
@pytest.mark.parametrize("algo", ["pow_qmix", "pow_vdn", "pow_qplex"])
def test_pow_family_at_the_paper_settings(algo, t_max):
    """POW on QMIX, VDN, QPLEX: optimum in every seed at 8k and at the paper's 50k steps;
    Q_r reproduces the payoff at 50k. (With the reference's exact Q_r clip, POW-QMIX's
    greedy action was optimal in every seed at 8k but one seed's Q_r was still 10.8 from
    the payoff there; at 50k every check passed: 2026-12-03.)"""
    _, tables, payoffs = _train(algo, "matrix_pow", t_max=t_max)
    if t_max < 50_000:
        assert all_optimal(payoffs), payoffs
    else:
        assert_pow_result(tables, payoffs)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["cw_qmix", "resq"])
def test_weighted_baselines_find_the_optimum_at_the_paper_settings(algo):
    """CW-QMIX and ResQ: (A,A) in every seed of the POW game at the end of 50k steps."""
    _, _, payoffs = _train(algo, "matrix_pow", t_max=50_000)
    assert all_optimal(payoffs), payoffs


@pytest.mark.slow
@pytest.mark.parametrize("case", MISS_CASES, ids=_case_id)
def test_misses_the_optimum_at_the_paper_settings(case):
    """QMIX and OW-QMIX miss (A,A) in most seeds of the POW game; QMIX and VDN settle
    sub-optimally in >= 4 of 5 seeds of the WQMIX game: at the end of 50k steps."""
    algo, env_id, check = case
    _, _, payoffs = _train(algo, env_id, t_max=50_000)
    assert check(payoffs), payoffs
