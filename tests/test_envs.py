"""Environments: conformance over the registry, exact matrix payoffs, payoff validation,
``make`` errors, and the conformance checker catching a broken env.

No key-reuse checker here: ``powmarl.envs.check`` reuses keys on purpose (see conftest.py).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from powmarl import envs
from powmarl.envs import ConformanceError, MatrixGame, check
from powmarl.types import EnvSpec, TimeStep

pytestmark = pytest.mark.usefixtures("key_reuse_check")

TINY_STAG = {"grid_size": 5, "num_agents": 2, "num_stags": 1, "episode_limit": 3}


def registry_cases():
    """Every registered id with default arguments; predator-prey also tiny (the default one
    takes minutes un-jitted on the 2-core CI machine, so it runs under ``-m slow``)."""
    cases = []
    for env_id in envs.registered():
        if env_id == "smax" or env_id.startswith("smacv2_"):
            continue  # optional jaxmarl; tests/test_smax.py checks every map
        if env_id in ("jaxmarl", "lbf", "rware"):
            continue  # optional packages: tests/test_jaxmarl_adapter.py, tests/test_jumanji.py
        if env_id in ("matrix_host", "intersection_hw") or env_id.startswith("sc2_"):
            continue  # host (Python) envs: tests/test_host.py, test_host_smac.py, test_intersection_hw.py
        if env_id == "intersection":
            continue  # tests/test_intersection.py runs its check (compiling it costs ~20 s)
        slow = env_id.startswith("stag_hunt")
        marks = (pytest.mark.slow,) if slow else ()
        cases.append(pytest.param(env_id, {}, marks=marks, id=f"{env_id}-default"))
        if slow:
            cases.append(pytest.param(env_id, TINY_STAG, id=f"{env_id}-tiny"))
    return cases


@pytest.mark.parametrize("env_id,kwargs", registry_cases())
def test_registered_env_passes_conformance(env_id, kwargs):
    """check() passes (jit and un-jitted, vmap, shapes, determinism, flags) for each env id."""
    env = envs.make(env_id, **kwargs)
    assert envs.identity(env) == (env_id, kwargs) and not hasattr(env, "env_id")
    check(env)


def test_registry_has_the_paper_envs():
    """The matrix games and predator-prey are registered with descriptions."""
    registered = envs.registered()
    for env_id in ("matrix", "matrix_pow", "matrix_wqmix", "stag_hunt"):
        assert registered.get(env_id), env_id


# --------------------------------------------------------------------------- matrix payoffs

POW = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 7.9]]
WQMIX = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]


def play_once(env, actions, params=None):
    params = env.default_params() if params is None else params
    reset_key, step_key = jax.random.split(jax.random.key(sum(actions)))
    first, state = env.reset(reset_key, params)
    ts, _ = env.step(step_key, state, jnp.asarray(actions, jnp.int32), params)
    return first, ts


@pytest.mark.parametrize("env_id,payoff", [("matrix_pow", POW), ("matrix_wqmix", WQMIX)])
def test_matrix_payoffs_exact(env_id, payoff):
    """All 9 joint actions pay exactly the paper's table and end the episode (terminated)."""
    env = envs.make(env_id)
    assert env.spec == EnvSpec(num_agents=2, num_actions=3, obs_dim=2, state_dim=2, episode_limit=1)
    step = jax.jit(env.step)
    params = env.default_params()
    first, state = env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(np.asarray(first.obs), [[1, 0], [1, 0]])
    np.testing.assert_array_equal(np.asarray(first.state), [1, 0])
    assert not bool(first.terminated) and not bool(first.truncated)
    assert np.asarray(first.avail_actions).all()
    keys = jax.random.split(jax.random.key(1), 9)
    for k, (a1, a2) in zip(keys, itertools.product(range(3), repeat=2)):
        ts, _ = step(k, state, jnp.asarray([a1, a2], jnp.int32), params)
        assert float(ts.reward) == pytest.approx(payoff[a1][a2], abs=1e-6), (a1, a2)
        assert bool(ts.terminated) and not bool(ts.truncated)
        np.testing.assert_array_equal(np.asarray(ts.state), [0, 1])


def test_matrix_optimum_and_trap():
    """POW game: unique optimum (A,A) = 8 and the near-optimal trap (C,C) = 7.9."""
    table = np.asarray(envs.make("matrix_pow").default_params())
    assert np.unravel_index(table.argmax(), table.shape) == (0, 0)
    assert table[2, 2] == pytest.approx(7.9)
    assert sorted(table.ravel())[-2] == pytest.approx(7.9)


def test_matrix_three_agents_two_actions():
    """A 2x2x2 payoff gives 3 agents with 2 actions; each joint action pays its entry."""
    payoff = np.arange(8, dtype=np.float32).reshape(2, 2, 2) - 3.0
    env = envs.make("matrix", payoff=payoff.tolist())
    assert env.spec.num_agents == 3 and env.spec.num_actions == 2
    check(env)
    for joint in itertools.product(range(2), repeat=3):
        first, ts = play_once(env, joint)
        assert first.obs.shape == (3, 2) and first.avail_actions.shape == (3, 2)
        assert float(ts.reward) == pytest.approx(payoff[joint]), joint


def test_matrix_payoff_is_a_vmappable_param():
    """The payoff lives in the env params: a different table changes rewards without a new env."""
    env = envs.make("matrix_pow")
    tables = jnp.stack([env.default_params(), -env.default_params()])
    _, state = env.reset(jax.random.key(2), tables[0])
    keys = jax.random.split(jax.random.key(3), 2)
    ts, _ = jax.vmap(env.step, in_axes=(0, None, None, 0))(
        keys, state, jnp.asarray([2, 2], jnp.int32), tables
    )
    np.testing.assert_allclose(np.asarray(ts.reward), [7.9, -7.9], rtol=1e-6)


@pytest.mark.parametrize(
    "payoff",
    [
        [[1.0, 2.0], [3.0]],  # ragged
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],  # 2x3: agents need the same number of actions
        [[1.0, float("nan")], [0.0, 1.0]],  # non-finite
        [[1.0, float("inf")], [0.0, 1.0]],
        [[5.0]],  # one action
        "abc",
    ],
    ids=["ragged", "2x3", "nan", "inf", "1x1", "string"],
)
def test_bad_payoff_raises_naming_payoff(payoff):
    """Malformed payoffs raise ValueError whose message names ``payoff``."""
    with pytest.raises(ValueError, match="payoff"):
        MatrixGame(payoff)
    with pytest.raises(ValueError, match="payoff"):
        envs.make("matrix", payoff=payoff)


# --------------------------------------------------------------------------- make errors


def test_make_unknown_id_lists_allowed_ids():
    """An unknown env id raises ValueError listing the registered ids."""
    with pytest.raises(ValueError) as err:
        envs.make("stag_hunting")
    message = str(err.value)
    assert "stag_hunting" in message
    for env_id in envs.registered():
        assert env_id in message


def test_make_unknown_kwarg_lists_allowed_kwargs():
    """An unknown keyword argument raises ValueError naming it and the allowed ones."""
    with pytest.raises(ValueError) as err:
        envs.make("stag_hunt", n_agents=4)
    message = str(err.value)
    assert "n_agents" in message
    for name in ("grid_size", "num_agents", "num_stags", "punishment", "episode_limit"):
        assert name in message
    with pytest.raises(ValueError, match="payoff"):
        envs.make("matrix_pow", payoff=POW)  # the fixed games take no arguments


# --------------------------------------------------------------------------- broken envs


class BrokenGame:
    """A 2-agent, 3-action, 3-step game with switchable contract violations."""

    obs_last_action = False
    obs_agent_id = True

    def __init__(self, wrong_obs=False, early_truncation=False, no_action=False):
        self.spec = EnvSpec(num_agents=2, num_actions=3, obs_dim=4, state_dim=3, episode_limit=3)
        self.wrong_obs, self.early_truncation, self.no_action = (
            wrong_obs,
            early_truncation,
            no_action,
        )

    def default_params(self):
        return jnp.float32(1.0)

    def _timestep(self, t, reward):
        obs_dim = 5 if self.wrong_obs else 4
        avail = jnp.ones((2, 3), bool)
        if self.no_action:
            avail = avail.at[1].set(False)  # agent 1 can do nothing
        limit = 1 if self.early_truncation else 3
        return TimeStep(
            obs=jnp.full((2, obs_dim), t, jnp.float32),
            state=jnp.full((3,), t, jnp.float32),
            avail_actions=avail,
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=t >= limit,
            info={},
        )

    def reset(self, key, params):
        t = jnp.zeros((), jnp.int32)
        return self._timestep(t, 0.0), t

    def step(self, key, state, actions, params):
        t = state + 1
        return self._timestep(t, params * actions.sum()), t


def test_correct_game_passes():
    """Control: the broken game with no fault switched on passes the checker."""
    check(BrokenGame())


@pytest.mark.parametrize(
    "fault,expected",
    [
        ("wrong_obs", "obs has shape (2, 5), spec says (2, 4)"),
        ("early_truncation", "truncated before episode_limit 3"),
        ("no_action", "some agent has no available action"),
    ],
)
def test_each_fault_is_reported(fault, expected):
    """Each contract violation alone makes check() raise ConformanceError naming it."""
    with pytest.raises(ConformanceError) as err:
        check(BrokenGame(**{fault: True}))
    assert expected in str(err.value)


def test_all_faults_listed_together():
    """An env with all three faults gets one ConformanceError listing every one of them."""
    with pytest.raises(ConformanceError) as err:
        check(BrokenGame(wrong_obs=True, early_truncation=True, no_action=True))
    message = str(err.value)
    assert "obs has shape (2, 5), spec says (2, 4)" in message
    assert "truncated before episode_limit 3" in message
    assert "some agent has no available action" in message
    assert isinstance(err.value, AssertionError)


def test_bad_spec_is_reported():
    """A non-positive spec field is reported by name."""
    game = BrokenGame()
    game.spec = game.spec._replace(obs_dim=0)
    with pytest.raises(ConformanceError, match="spec.obs_dim"):
        check(game)
