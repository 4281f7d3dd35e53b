"""Reward standardisation (``Config.standardise_rewards``, ``core/reward_scaling.py``): the
running moments against EPyMARL's RunningMeanStd as it is used in its q_learner, and the
learner training on the standardised rewards."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_learner import CFG, HP, env_and_batch, learner_fns, registered_algo, terminate_early

from powmarl.core.reward_scaling import (
    epymarl_slots,
    init_moments,
    standardise,
    update_moments,
)
from powmarl.learner import make_learner


class EpymarlRunningMeanStd:
    """What EPyMARL's q_learner does with ``standardise_rewards``, in float64: cut the batch to
    its longest episode, flatten every slot (padding included), merge the batch's mean and
    unbiased variance into the running moments, then scale."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update_and_scale(self, rewards, filled):
        cut = rewards[:, : int(filled.sum(axis=1).max())]
        values = cut.reshape(-1).astype(np.float64)
        m, v, n = values.mean(), values.var(ddof=1), values.size
        delta, total = m - self.mean, self.count + n
        m2 = self.var * self.count + v * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total
        return (rewards - self.mean) / np.sqrt(self.var)


def random_batches(seed=0, count=6, b=5, t=7):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        lengths = rng.integers(1, t + 1, size=b)
        filled = np.arange(t)[None] < lengths[:, None]
        reward = np.where(filled, rng.choice([0.0, 0.0, 1.0, -0.5, 3.0], size=(b, t)), 0.0)
        yield reward.astype(np.float32), filled


def test_epymarl_slots_are_the_slots_before_the_longest_episode_ends():
    filled = jnp.asarray([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], bool)
    expected = [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]]
    np.testing.assert_array_equal(epymarl_slots(filled), np.asarray(expected, bool))


def test_running_moments_and_scaled_rewards_equal_epymarl():
    reference, moments = EpymarlRunningMeanStd(), init_moments()
    step = jax.jit(lambda m, r, f: update_moments(m, r, epymarl_slots(f)))
    for reward, filled in random_batches():
        expected = reference.update_and_scale(reward, filled)
        moments = step(moments, jnp.asarray(reward), jnp.asarray(filled))
        np.testing.assert_allclose(float(moments.mean), reference.mean, rtol=1e-5)
        np.testing.assert_allclose(float(moments.var), reference.var, rtol=1e-5)
        np.testing.assert_allclose(standardise(moments, reward), expected, rtol=1e-4, atol=1e-5)
    assert int(moments.samples) == round(reference.count - 1e-4)


def test_the_first_batch_all_but_replaces_the_initial_moments():
    reward = jnp.asarray([[1.0, 3.0]])
    moments = update_moments(init_moments(), reward, jnp.ones((1, 2), bool))
    assert float(moments.mean) == pytest.approx(2.0, rel=1e-3)
    assert float(moments.var) == pytest.approx(2.0, rel=1e-3)  # unbiased: ((1-2)^2+(3-2)^2)/1


# on test_learner's worker: its un-jitted learners share the per-primitive kernels compiled
# there (24 s CPU on a worker of its own, most of it compiling them again)
@pytest.mark.xdist_group("test_learner")
def test_learner_trains_on_the_standardised_rewards():
    """One update with the option on equals one update with it off on the rewards scaled by
    the moments it keeps, and the moments land in the learner state."""
    algo = registered_algo("qmix")
    env, raw = env_and_batch("stag_tiny")
    batch = terminate_early(raw, [2, 6, 4, 5])
    cfg = dataclasses.replace(CFG, standardise_rewards=True)
    learner = make_learner(cfg, env.spec, algo, env.obs_last_action, env.obs_agent_id)
    args = (HP, jnp.float32(1000.0), jnp.asarray(True), jnp.asarray(False))
    state0 = learner.init(jax.random.key(0), batch)
    state1, metrics = learner.update(state0, batch, *args)

    moments = state1.reward_moments
    expected = update_moments(init_moments(), batch.reward, epymarl_slots(batch.filled))
    for got, want in zip(moments, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert float(metrics["train/reward_std_running"]) == pytest.approx(float(jnp.sqrt(moments.var)))

    _, plain_init, plain_update = learner_fns(algo, "stag_tiny")
    scaled = batch.replace(reward=standardise(moments, batch.reward))
    plain_state1, plain_metrics = plain_update(plain_init(jax.random.key(0), batch), scaled, *args)
    for x, y in zip(jax.tree.leaves(state1.params), jax.tree.leaves(plain_state1.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert float(metrics["train/loss"]) == pytest.approx(float(plain_metrics["train/loss"]), 1e-5)


@pytest.mark.xdist_group("test_learner")
def test_without_the_option_the_state_has_no_moments():
    """Off (the default), the learner state has the leaves it always had, so run dirs written
    before the option resume unchanged."""
    algo = registered_algo("qmix")
    _, batch = env_and_batch("stag_tiny")
    state = learner_fns(algo, "stag_tiny")[1](jax.random.key(0), batch)
    assert state.reward_moments is None
