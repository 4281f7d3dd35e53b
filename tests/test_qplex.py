"""QPLEX mixer (``powmarl.networks.qplex``), checked against PyMARL2 ``dmaq_general.py``."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from powmarl.networks.layers import MLP
from powmarl.networks.mixers import MixInput
from powmarl.networks.qplex import QPLEXMixer

pytestmark = pytest.mark.usefixtures("key_reuse_check")

A, U, X = 3, 3, 6  # agents, actions, state dim
JOINT = jnp.asarray(list(itertools.product(range(U), repeat=A)))  # [27, A], row-major


def example(lead=(1,)) -> MixInput:
    return MixInput(
        chosen_qs=jnp.zeros((*lead, A)),
        states=jnp.zeros((*lead, X)),
        actions_onehot=jnp.zeros((*lead, A, U)),
        max_qs=jnp.zeros((*lead, A)),
    )


def random_case(key, num_states=16, scale=3.0):
    """States [S, X], utilities [S, A, U], greedy actions [S, A] and greedy utilities [S, A]."""
    ks, kq = jax.random.split(key)
    states = jax.random.normal(ks, (num_states, X))
    qs = scale * jax.random.normal(kq, (num_states, A, U))
    greedy = qs.argmax(-1)
    return states, qs, greedy, qs.max(-1)


def all_joint_inputs(states, qs, max_qs) -> MixInput:
    """Every joint action for every state: leaves [S, 27, ...]."""
    s = states.shape[0]
    chosen = jnp.take_along_axis(
        qs[:, None], jnp.broadcast_to(JOINT[None, :, :, None], (s, len(JOINT), A, 1)), axis=-1
    )[..., 0]
    return MixInput(
        chosen_qs=chosen,
        states=jnp.broadcast_to(states[:, None], (s, len(JOINT), X)),
        actions_onehot=jnp.broadcast_to(jax.nn.one_hot(JOINT, U)[None], (s, len(JOINT), A, U)),
        max_qs=jnp.broadcast_to(max_qs[:, None], (s, len(JOINT), A)),
    )


def head(params, name, states):
    """A weighted-head hypernet applied straight from its parameters."""
    return MLP((64, A)).apply({"params": params["params"][name]}, states)


@pytest.mark.parametrize("is_minus_one", [True, False])
def test_igm_greedy_joint_action_maximises_q_tot(is_minus_one):
    """Per-agent greedy actions maximise Q_tot over all 27 joint actions (IGM)."""
    mixer = QPLEXMixer(is_minus_one=is_minus_one)
    apply = jax.jit(mixer.apply)
    for seed in range(3):
        kp, kc = jax.random.split(jax.random.PRNGKey(seed))
        params = mixer.init(kp, example())
        states, qs, greedy, max_qs = random_case(kc)
        q_tot = apply(params, all_joint_inputs(states, qs, max_qs))  # [S, 27]
        greedy_index = (greedy * U ** jnp.arange(A - 1, -1, -1)).sum(-1)
        at_greedy = jnp.take_along_axis(q_tot, greedy_index[:, None], axis=1)[:, 0]
        np.testing.assert_array_less(q_tot.max(axis=1) - 1e-5, at_greedy + 1e-12)
        # a non-greedy joint action is strictly worse somewhere (the check is not vacuous)
        assert bool((q_tot.min(axis=1) < at_greedy - 1e-3).all())


def test_q_tot_at_greedy_equals_v_part():
    """At the greedy joint action Q_tot = sum_i (w_i(s) max Q_i + v_i(s)), for any one-hot."""
    mixer = QPLEXMixer()
    kp, kc, ka = jax.random.split(jax.random.PRNGKey(7), 3)
    params = mixer.init(kp, example())
    states, _, greedy, max_qs = random_case(kc)
    w = jnp.abs(head(params, "hyper_w_final", states)) + 1e-10
    v = head(params, "V", states)
    expected = (w * max_qs + v).sum(-1)
    for onehot in (
        jax.nn.one_hot(greedy, U),
        jax.nn.one_hot(jax.random.randint(ka, greedy.shape, 0, U), U),
    ):
        q_tot = mixer.apply(params, MixInput(max_qs, states, onehot, max_qs))
        np.testing.assert_allclose(q_tot, expected, rtol=1e-5, atol=1e-5)


def test_matches_reference_formula():
    """Q_tot = sum Q~_i + sum (lambda_i - 1)(Q~_i - max Q~_i), lambda built from the raw heads."""
    mixer = QPLEXMixer()
    kp, kc, ka = jax.random.split(jax.random.PRNGKey(3), 3)
    params = mixer.init(kp, example())
    states, qs, _, max_qs = random_case(kc)
    actions = jax.random.randint(ka, (states.shape[0], A), 0, U)
    chosen = jnp.take_along_axis(qs, actions[..., None], -1)[..., 0]
    onehot = jax.nn.one_hot(actions, U)
    q_tot = mixer.apply(params, MixInput(chosen, states, onehot, max_qs))

    w = jnp.abs(head(params, "hyper_w_final", states)) + 1e-10
    v = head(params, "V", states)
    sa = jnp.concatenate([states, onehot.reshape(states.shape[0], A * U)], -1)
    si = params["params"]["si_weight"]
    lam = 0.0
    for k in range(4):
        key = MLP((64, 1)).apply({"params": si[f"key_{k}"]}, states)
        agents = MLP((64, A)).apply({"params": si[f"agents_{k}"]}, states)
        action = MLP((64, A)).apply({"params": si[f"action_{k}"]}, sa)
        lam = lam + (jnp.abs(key) + 1e-10) * jax.nn.sigmoid(agents) * jax.nn.sigmoid(action)
    tq, tm = w * chosen + v, w * max_qs + v
    expected = tq.sum(-1) + ((lam - 1.0) * (tq - tm)).sum(-1)
    np.testing.assert_allclose(q_tot, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_shape_and_layer_structure(layers):
    """Q_tot is [B, T] for [B, T] inputs and each extractor has ``layers`` Linear layers."""
    mixer = QPLEXMixer(adv_hypernet_layers=layers)
    params = mixer.init(jax.random.PRNGKey(0), example((2, 5)))
    assert mixer.apply(params, example((2, 5))).shape == (2, 5)
    si = params["params"]["si_weight"]
    assert len(si) == 3 * 4  # key/agents/action x num_kernel
    for name, out in (("key_0", 1), ("agents_3", A), ("action_2", A)):
        kernels = [si[name][f"Linear_{j}"]["kernel"].shape for j in range(layers)]
        assert len(si[name]) == layers
        in_dim = X + A * U if name.startswith("action") else X
        assert kernels[0][0] == in_dim and kernels[-1][1] == out
        assert all(k[1] == 64 for k in kernels[:-1])
    assert params["params"]["hyper_w_final"]["Linear_0"]["kernel"].shape == (X, 64)


def test_bad_layer_count_raises():
    """adv_hypernet_layers outside 1..3 is rejected, as in dmaq_si_weight.py."""
    with pytest.raises(ValueError):
        QPLEXMixer(adv_hypernet_layers=4).init(jax.random.PRNGKey(0), example())


def test_gradients_finite_and_advantage_detached():
    """dQ_tot/dQ_i = w_i (finite), dQ_tot/dmax Q_i = 0, and lambda still gets gradients."""
    mixer = QPLEXMixer(adv_hypernet_layers=3)
    kp, kc, ka = jax.random.split(jax.random.PRNGKey(11), 3)
    params = mixer.init(kp, example())
    states, qs, _, max_qs = random_case(kc)
    actions = jax.random.randint(ka, (states.shape[0], A), 0, U)
    chosen = jnp.take_along_axis(qs, actions[..., None], -1)[..., 0]
    onehot = jax.nn.one_hot(actions, U)

    def total(p, c, m):
        return mixer.apply(p, MixInput(c, states, onehot, m)).sum()

    g_params, g_chosen, g_max = jax.grad(total, argnums=(0, 1, 2))(params, chosen, max_qs)
    parts = mixer.apply(params, MixInput(chosen, states, onehot, max_qs), method="parts")
    assert bool(jnp.isfinite(g_chosen).all())
    np.testing.assert_allclose(g_chosen, parts.w, rtol=1e-6)
    np.testing.assert_array_equal(g_max, jnp.zeros_like(g_max))
    g_si = jax.tree_util.tree_leaves(g_params["params"]["si_weight"])
    assert all(bool(jnp.isfinite(g).all()) for g in g_si)
    assert max(float(jnp.abs(g).max()) for g in g_si) > 0.0


def test_lambda_positive_and_advantage_nonpositive():
    """lambda_i > 0, so with chosen <= max the advantage and Q_tot - V_greedy are <= 0."""
    kc = jax.random.PRNGKey(5)
    states, qs, _, max_qs = random_case(kc, num_states=8)
    inputs = all_joint_inputs(10.0 * states, qs, max_qs)  # large states: saturate heads
    for is_minus_one in (False, True):
        mixer = QPLEXMixer(is_minus_one=is_minus_one)
        for seed in range(3):
            params = mixer.init(jax.random.PRNGKey(100 + seed), example())
            parts = mixer.apply(params, inputs, method="parts")
            assert bool((parts.lambdas > 0).all())
            if not is_minus_one:
                assert bool((parts.adv_tot <= 0).all())
            v_greedy = (parts.w * inputs.max_qs + parts.v).sum(-1)
            assert bool((parts.q_tot <= v_greedy + 1e-4).all())
