"""Pure building blocks: TD(lambda) targets, masked loss, epsilon-greedy, episode buffer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from powmarl.core import buffer as buffer_lib
from powmarl.core.exploration import epsilon_greedy, linear_epsilon, masked_argmax
from powmarl.core.losses import masked_weighted_mse
from powmarl.core.returns import td_lambda_targets
from powmarl.types import EpisodeBatch

pytestmark = pytest.mark.usefixtures("key_reuse_check")

# jitted once: eager op-by-op dispatch is slow on the shared CI machine
buffer_init = buffer_lib.buffer_init
buffer_insert = jax.jit(buffer_lib.buffer_insert)
buffer_sample = jax.jit(buffer_lib.buffer_sample, static_argnums=2)


# --------------------------------------------------------------------------- TD(lambda)


def pymarl2_td_lambda(rewards, terminated, mask, target_qs, gamma, td_lambda):
    """PyMARL2 ``build_td_lambda_targets`` transcribed as a plain float64 loop.

    target_qs has T+1 slots; returns [B, T].
    """
    rewards, terminated, mask, target_qs = (
        np.asarray(x, np.float64) for x in (rewards, terminated, mask, target_qs)
    )
    batch, num_slots = target_qs.shape
    ret = np.zeros((batch, num_slots))
    for b in range(batch):
        ret[b, -1] = target_qs[b, -1] * (1.0 - terminated[b].sum())
        for t in range(num_slots - 2, -1, -1):
            ret[b, t] = td_lambda * gamma * ret[b, t + 1] + mask[b, t] * (
                rewards[b, t]
                + (1.0 - td_lambda) * gamma * target_qs[b, t + 1] * (1.0 - terminated[b, t])
            )
    return ret[:, :-1]


def random_episodes(rng, batch, steps, lengths, terminated_flags):
    """Rewards/terminated/mask/bootstrap for episodes of given lengths; padding holds garbage
    in the bootstrap (as the target network's values on padding would be)."""
    rewards = np.zeros((batch, steps), np.float32)
    terminated = np.zeros((batch, steps), bool)
    mask = np.zeros((batch, steps), np.float32)
    for b, (length, term) in enumerate(zip(lengths, terminated_flags)):
        rewards[b, :length] = rng.normal(size=length)
        mask[b, :length] = 1.0
        terminated[b, length - 1] = term
    bootstrap = rng.normal(size=(batch, steps + 1)).astype(np.float32) * 5.0
    return rewards, terminated, mask, bootstrap


def test_td_lambda_hand_computed_three_steps():
    """A 3-step example worked out by hand (gamma = lambda = 0.5, so lambda*gamma = 0.25)."""
    rewards = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 0.0]], np.float32)
    terminated = np.array([[0, 0, 1], [0, 0, 0], [0, 1, 0]], bool)
    mask = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]], np.float32)
    bootstrap = np.array([[10.0, 20.0, 30.0, 40.0]] * 3, np.float32)
    # Row 0, terminates at t=2:  G3 = 40*(1-1) = 0
    #   G2 = .25*0 + (3 + .25*(1-1)*40) = 3
    #   G1 = .25*3 + (2 + .25*30) = 0.75 + 9.5 = 10.25
    #   G0 = .25*10.25 + (1 + .25*20) = 2.5625 + 6 = 8.5625
    # Row 1, time limit (no termination): G3 = 40
    #   G2 = .25*40 + (3 + .25*40) = 23
    #   G1 = .25*23 + (2 + .25*30) = 5.75 + 9.5 = 15.25
    #   G0 = .25*15.25 + (1 + .25*20) = 3.8125 + 6 = 9.8125
    # Row 2, terminates at t=1, t=2 is padding: G3 = 0, G2 = .25*0 + 0 = 0
    #   G1 = 0 + (2 + 0) = 2;  G0 = .25*2 + (1 + .25*20) = 6.5
    expected = np.array([[8.5625, 10.25, 3.0], [9.8125, 15.25, 23.0], [6.5, 2.0, 0.0]], np.float32)
    got = td_lambda_targets(rewards, terminated, mask, bootstrap, 0.5, 0.5)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.6), (0.9, 0.0), (0.95, 1.0), (0.5, 0.3)])
def test_td_lambda_matches_pymarl2_loop(gamma, lam):
    """Random data with early terminations, padding and time-limit episodes equals the loop."""
    rng = np.random.default_rng(0)
    steps = 7
    lengths = [7, 3, 7, 1, 5, 7, 2, 6]
    terms = [False, True, True, True, True, False, True, False]  # False+full = truncated
    rewards, terminated, mask, bootstrap = random_episodes(rng, 8, steps, lengths, terms)
    # row 7 is not terminated but shorter than T: the recursion must still match the loop
    got = td_lambda_targets(
        jnp.asarray(rewards),
        jnp.asarray(terminated),
        jnp.asarray(mask),
        jnp.asarray(bootstrap),
        gamma,
        lam,
    )
    want = pymarl2_td_lambda(rewards, terminated, mask, bootstrap, gamma, lam)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    # the time-limit episodes really do bootstrap: at t = T-1 their target moves by gamma * 100
    bumped = bootstrap.copy()
    bumped[:, -1] += 100.0
    got2 = td_lambda_targets(rewards, terminated, mask, bumped, gamma, lam)
    diff = np.asarray(got2) - np.asarray(got)
    np.testing.assert_allclose(diff[[0, 5], -1], 100.0 * gamma, rtol=1e-4)
    # terminated episodes (and their padding) never see Qbar_T
    assert np.all(diff[[1, 2, 3, 4, 6]] == 0.0)


def test_td_lambda_ignores_padding_values():
    """Garbage rewards and bootstrap values after termination never change real targets."""
    rng = np.random.default_rng(1)
    rewards, terminated, mask, bootstrap = random_episodes(
        rng, 4, 6, [2, 4, 6, 1], [True, True, True, True]
    )
    base = np.asarray(td_lambda_targets(rewards, terminated, mask, bootstrap, 0.99, 0.6))
    noisy_r, noisy_b = rewards.copy(), bootstrap.copy()
    for b, length in enumerate([2, 4, 6, 1]):
        noisy_r[b, length:] = 1e4
        noisy_b[b, length + 1 :] = -1e4
    noisy = np.asarray(td_lambda_targets(noisy_r, terminated, mask, noisy_b, 0.99, 0.6))
    np.testing.assert_allclose(noisy * mask, base * mask, rtol=1e-5, atol=1e-4)


def test_td_lambda_zero_is_one_step_target():
    """lambda = 0 gives r_t + gamma (1 - d_t) Qbar_{t+1} at every real step."""
    rng = np.random.default_rng(2)
    rewards, terminated, mask, bootstrap = random_episodes(
        rng, 5, 6, [6, 3, 6, 2, 4], [False, True, True, True, False]
    )
    gamma = 0.9
    got = np.asarray(td_lambda_targets(rewards, terminated, mask, bootstrap, gamma, 0.0))
    want = rewards + gamma * (1.0 - terminated) * bootstrap[:, 1:]
    np.testing.assert_allclose(got * mask, want * mask, rtol=1e-5, atol=1e-5)


def test_td_lambda_one_is_discounted_return_plus_bootstrap():
    """lambda = 1 without termination: sum_k gamma^k r_{t+k} + gamma^(T-t) Qbar_T."""
    rng = np.random.default_rng(3)
    steps, gamma = 5, 0.8
    rewards = rng.normal(size=(3, steps)).astype(np.float32)
    bootstrap = rng.normal(size=(3, steps + 1)).astype(np.float32)
    terminated = np.zeros((3, steps), bool)
    mask = np.ones((3, steps), np.float32)
    got = np.asarray(td_lambda_targets(rewards, terminated, mask, bootstrap, gamma, 1.0))
    want = np.zeros((3, steps))
    for t in range(steps):
        disc = gamma ** np.arange(steps - t)
        want[:, t] = (rewards[:, t:] * disc).sum(axis=1) + gamma ** (steps - t) * bootstrap[:, -1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- masked loss


def test_masked_mse_hand_value_half_factor_and_mask_sum():
    """L = 1/2 sum(m w (Q-y)^2) / sum(m), worked out by hand."""
    values = jnp.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    targets = jnp.zeros((2, 3))
    weights = jnp.ones((2, 3))
    mask = jnp.array([[1, 1, 1], [1, 1, 0]], jnp.float32)
    # (1 + 4 + 9 + 0 + 1) / 5 * 1/2 = 1.5
    assert float(masked_weighted_mse(values, targets, weights, mask)) == pytest.approx(1.5)
    # one real entry of error 2 among four: 1/2 * 4 / 4 = 0.5 (divided by sum(mask), not size)
    one = jnp.array([[2.0, 0.0], [0.0, 0.0]])
    assert float(
        masked_weighted_mse(one, jnp.zeros((2, 2)), jnp.ones((2, 2)), jnp.ones((2, 2)))
    ) == (pytest.approx(0.5))
    half_mask = jnp.array([[1.0, 1.0], [0.0, 0.0]])
    assert float(masked_weighted_mse(one, jnp.zeros((2, 2)), jnp.ones((2, 2)), half_mask)) == (
        pytest.approx(1.0)
    )


def test_masked_mse_weights_scale_entries():
    """Each weight multiplies its own squared error; zero weights give zero loss."""
    values = jnp.array([[1.0, 2.0, 3.0]])
    targets = jnp.zeros((1, 3))
    mask = jnp.array([[1.0, 1.0, 0.0]])
    weights = jnp.array([[1.0, 3.0, 100.0]])
    # 1/2 * (1*1 + 3*4) / 2 = 3.25; the weight 100 sits on padding
    assert float(masked_weighted_mse(values, targets, weights, mask)) == pytest.approx(3.25)
    assert float(masked_weighted_mse(values, targets, jnp.zeros((1, 3)), mask)) == 0.0
    doubled = masked_weighted_mse(values, targets, 2.0 * weights, mask)
    assert float(doubled) == pytest.approx(6.5)


@pytest.mark.parametrize(
    "junk",
    [1e6, -3e7, 1e30, np.nan],
)
def test_masked_mse_padding_never_counts(junk):
    """Values, targets and weights at mask-0 slots never change the loss, however large."""
    rng = np.random.default_rng(4)
    values = rng.normal(size=(4, 5)).astype(np.float32)
    targets = rng.normal(size=(4, 5)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, size=(4, 5)).astype(np.float32)
    mask = (rng.uniform(size=(4, 5)) < 0.6).astype(np.float32)
    mask[0, 0] = 1.0
    base = float(masked_weighted_mse(values, targets, weights, mask))
    pad = mask == 0
    v2, t2, w2 = values.copy(), targets.copy(), weights.copy()
    v2[pad], t2[pad], w2[pad] = junk, -junk, abs(junk)  # huge, or nan from a diverged net
    got = float(masked_weighted_mse(v2, t2, w2, mask))
    assert np.isfinite(got)
    assert got == pytest.approx(base, rel=1e-6)
    # and the gradient w.r.t. padded values is exactly zero
    grad = jax.grad(lambda v: masked_weighted_mse(v, t2, w2, mask))(jnp.asarray(v2))
    assert np.all(np.asarray(grad)[pad] == 0.0)


# --------------------------------------------------------------------------- exploration


# one compilation each, shared by the tests below (epsilon is a traced argument)
batched_epsilon_greedy = jax.jit(jax.vmap(epsilon_greedy, in_axes=(0, 0, 0, None)))
shared_epsilon_greedy = jax.jit(jax.vmap(epsilon_greedy, in_axes=(0, None, None, None)))
N_DRAWS, AGENTS_EG, ACTIONS_EG = 500, 4, 6


def random_avail(rng, shape):
    avail = rng.uniform(size=shape) < 0.5
    first = rng.integers(0, shape[-1], size=shape[:-1])  # at least one available per agent
    np.put_along_axis(avail, first[..., None], True, axis=-1)
    return avail


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0])
def test_epsilon_greedy_never_picks_unavailable(epsilon):
    """Over many keys and random masks, every chosen action is available."""
    rng = np.random.default_rng(5)
    n_keys, agents, actions = N_DRAWS, AGENTS_EG, ACTIONS_EG
    avail = random_avail(rng, (n_keys, agents, actions))
    q = rng.normal(size=(n_keys, agents, actions)).astype(np.float32)
    q = np.where(avail, q, q + 100.0)  # unavailable actions have the largest utilities
    keys = jax.random.split(jax.random.key(0), n_keys)
    acts = batched_epsilon_greedy(keys, jnp.asarray(q), jnp.asarray(avail), jnp.float32(epsilon))
    acts = np.asarray(acts)
    assert acts.shape == (n_keys, agents) and acts.dtype == np.int32
    assert np.take_along_axis(avail, acts[..., None], axis=-1).all()


def test_epsilon_zero_is_masked_argmax():
    """epsilon = 0 picks argmax over available actions, even when the true argmax is masked."""
    rng = np.random.default_rng(6)
    shape = (N_DRAWS, AGENTS_EG, ACTIONS_EG)
    avail = random_avail(rng, shape)
    q = rng.normal(size=shape).astype(np.float32)
    q = np.where(avail, q, q + 100.0)
    want = np.argmax(np.where(avail, q, -np.inf), axis=-1)
    keys = jax.random.split(jax.random.key(1), N_DRAWS)
    acts = batched_epsilon_greedy(keys, q, avail, jnp.float32(0.0))
    np.testing.assert_array_equal(np.asarray(acts), want)
    np.testing.assert_array_equal(np.asarray(masked_argmax(q, avail)), want)


def test_epsilon_one_is_uniform_over_available():
    """epsilon = 1 draws each available action about equally often (chi-square test)."""
    avail = jnp.array([True, False, True, True, False, True])
    q = jnp.array([5.0, 9.0, 0.0, 0.0, 0.0, 0.0])
    n = 20_000
    keys = jax.random.split(jax.random.key(2), n)
    acts = np.asarray(shared_epsilon_greedy(keys, q, avail, jnp.float32(1.0)))
    counts = np.bincount(acts, minlength=6)
    assert counts[1] == 0 and counts[4] == 0
    observed = counts[[0, 2, 3, 5]]
    expected = n / 4
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 25.0, f"counts {observed} far from uniform (chi2 {chi2:.1f}, 3 dof)"


def test_epsilon_half_mixes_greedy_and_uniform():
    """epsilon = 0.5 picks the greedy action with prob. 1/2 + 1/2 * 1/#available."""
    avail = jnp.array([True, True, False, True, False, False])
    q = jnp.array([0.0, 1.0, 9.0, 0.0, 9.0, 9.0])  # greedy among available: action 1
    n = 20_000
    keys = jax.random.split(jax.random.key(3), n)
    acts = np.asarray(shared_epsilon_greedy(keys, q, avail, jnp.float32(0.5)))
    frac = (acts == 1).mean()
    assert frac == pytest.approx(0.5 + 0.5 / 3, abs=0.02)
    assert set(np.unique(acts)) == {0, 1, 3}


def test_linear_epsilon_schedule():
    """Linear decay from start to finish over anneal_time, then flat."""
    start, finish, anneal = 1.0, 0.05, 100.0
    f = lambda t: float(linear_epsilon(jnp.float32(t), start, finish, anneal))
    assert f(0) == pytest.approx(1.0)
    assert f(50) == pytest.approx(0.525)
    assert f(25) == pytest.approx(1.0 - 0.95 * 0.25)
    assert f(100) == pytest.approx(0.05)
    assert f(1e6) == pytest.approx(0.05)
    # the matrix-game setting: start == finish keeps epsilon fixed
    assert float(linear_epsilon(jnp.float32(10), 1.0, 1.0, 500.0)) == pytest.approx(1.0)


# --------------------------------------------------------------------------- buffer

STEPS, AGENTS, OBS, STATE, ACTIONS = 3, 2, 4, 5, 3


def episodes(ids) -> EpisodeBatch:
    """Episodes whose every leaf is filled with the episode's id (uint8 obs, like stag hunt)."""
    ids = np.asarray(ids)
    n = len(ids)

    def full(shape, dtype):
        return jnp.asarray(np.broadcast_to(ids.reshape(n, *[1] * len(shape)), (n, *shape)), dtype)

    return EpisodeBatch(
        obs=full((STEPS + 1, AGENTS, OBS), jnp.uint8),
        state=full((STEPS + 1, STATE), jnp.uint8),
        avail_actions=jnp.ones((n, STEPS + 1, AGENTS, ACTIONS), bool),
        actions=full((STEPS, AGENTS), jnp.uint8),
        reward=full((STEPS,), jnp.float32) + 0.5,
        terminated=jnp.zeros((n, STEPS), bool).at[:, -1].set(True),
        filled=jnp.ones((n, STEPS), bool),
    )


def empty_buffer(capacity):
    template = jax.tree.map(lambda x: x[0], episodes([0]))
    return buffer_init(template, capacity)


def row_ids(buf):
    return np.asarray(buf.data.obs[:, 0, 0, 0]).tolist()


def test_buffer_insert_wraps_around():
    """Capacity 5, three inserts of 3 rows: contents, insert_pos and size after each."""
    buf = empty_buffer(5)
    assert int(buf.size) == 0 and int(buf.insert_pos) == 0
    buf = buffer_insert(buf, episodes([1, 2, 3]))
    assert row_ids(buf) == [1, 2, 3, 0, 0]
    assert (int(buf.insert_pos), int(buf.size)) == (3, 3)
    buf = buffer_insert(buf, episodes([4, 5, 6]))
    assert row_ids(buf) == [6, 2, 3, 4, 5]
    assert (int(buf.insert_pos), int(buf.size)) == (1, 5)
    buf = buffer_insert(buf, episodes([7, 8, 9]))
    assert row_ids(buf) == [6, 7, 8, 9, 5]
    assert (int(buf.insert_pos), int(buf.size)) == (4, 5)
    # every leaf of a row moved together
    np.testing.assert_array_equal(np.asarray(buf.data.actions[:, 0, 0]), [6, 7, 8, 9, 5])
    np.testing.assert_allclose(np.asarray(buf.data.reward[:, 0]), [6.5, 7.5, 8.5, 9.5, 5.5])


def test_buffer_preserves_dtypes():
    """uint8 obs/state/actions and bool flags keep their dtypes in the buffer and in samples."""
    buf = buffer_insert(empty_buffer(8), episodes([1, 2, 3, 4]))
    sample = buffer_sample(buf, jax.random.key(4), 2)
    for stored in (buf.data, sample):
        assert stored.obs.dtype == jnp.uint8
        assert stored.state.dtype == jnp.uint8
        assert stored.actions.dtype == jnp.uint8
        assert stored.reward.dtype == jnp.float32
        assert stored.terminated.dtype == jnp.bool_ and stored.filled.dtype == jnp.bool_
        assert stored.avail_actions.dtype == jnp.bool_
    assert sample.obs.shape == (2, STEPS + 1, AGENTS, OBS)
    # int32 actions are written into the uint8 store
    wide = episodes([200]).replace(actions=jnp.full((1, STEPS, AGENTS), 200, jnp.int32))
    buf = buffer_insert(buf, wide)
    assert buf.data.actions.dtype == jnp.uint8 and int(buf.data.actions[4, 0, 0]) == 200


def test_buffer_sample_distinct_filled_rows_uniform():
    """With size < capacity: samples are distinct, only filled rows, and uniform over them."""
    buf = buffer_insert(empty_buffer(10), episodes([1, 2, 3, 4, 5, 6]))  # rows 6..9 empty (id 0)
    n, batch = 3000, 4
    keys = jax.random.split(jax.random.key(5), n)
    samples = jax.jit(jax.vmap(lambda k: buffer_sample(buf, k, batch)))(keys)
    ids = np.asarray(samples.obs[:, :, 0, 0, 0])  # [n, batch]
    assert ids.min() >= 1 and ids.max() <= 6, "sampled an empty row"
    assert all(len(set(row)) == batch for row in ids), "a batch repeats an episode"
    # the other leaves come from the same rows
    np.testing.assert_allclose(np.asarray(samples.reward[:, :, 0]), ids + 0.5)
    counts = np.bincount(ids.ravel(), minlength=7)[1:]
    expected = n * batch / 6
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 30.0, f"row counts {counts} far from uniform (chi2 {chi2:.1f}, 5 dof)"


def test_buffer_sample_whole_buffer_is_permutation():
    """Sampling exactly ``size`` episodes returns each stored episode once."""
    buf = buffer_insert(empty_buffer(7), episodes([3, 1, 4]))
    ids = np.asarray(buffer_sample(buf, jax.random.key(6), 3).obs[:, 0, 0, 0])
    assert sorted(ids.tolist()) == [1, 3, 4]
