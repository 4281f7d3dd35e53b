"""Networks: mixers, the PyTorch-style GRU cell and Linear, the agent unroll and its inputs."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from powmarl.networks.agent import (
    AgentInputs,
    RNNAgent,
    agent_input_dim,
    build_agent_inputs,
    shift_last_actions,
    unroll_agent,
)
from powmarl.networks.layers import GRUCell, Linear
from powmarl.networks.mixers import MixInput, QMixer, VDNMixer

pytestmark = pytest.mark.usefixtures("key_reuse_check")


def keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)


# --------------------------------------------------------------------------- mixers


MIXER = QMixer(embed_dim=8, hypernet_dim=16)


@jax.jit
def mixer_probe(params, qs, states):
    """Q_tot, dQ_tot/dQ_i per row, Q_tot after raising each agent's utility by 2, and Q_tot
    with the states permuted."""

    def q_tot(chosen, s=states):
        return MIXER.apply(params, MixInput(chosen_qs=chosen, states=s))

    out = q_tot(qs)
    # rows are independent, so the gradient of the sum is each row's own dQ_tot/dQ_i
    grads = jax.grad(lambda c: q_tot(c).sum())(qs)
    raised = jnp.stack([q_tot(qs.at[:, i].add(2.0)) for i in range(qs.shape[-1])])
    return out, grads, raised, q_tot(qs, states[::-1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_qmixer_is_monotone_in_every_agent_utility(seed):
    """dQ_tot/dQ_i >= 0 for every agent, state and random parameters (and not all zero)."""
    num_agents, state_dim, n = 3, 5, 64
    init_key, state_key, q_key = keys(seed, 3)
    states = jax.random.normal(state_key, (n, state_dim)) * 3.0
    qs = jax.random.normal(q_key, (n, num_agents)) * 5.0
    params = MIXER.init(init_key, MixInput(chosen_qs=qs, states=states))
    out, grads, raised, permuted = (np.asarray(x) for x in mixer_probe(params, qs, states))
    assert out.shape == (n,) and grads.shape == (n, num_agents)
    assert (grads >= 0.0).all(), f"negative dQ_tot/dQ_i: min {grads.min()}"
    assert (grads > 0.0).mean() > 0.5  # the mixer really depends on the utilities
    # finite version: raising one agent's utility never lowers Q_tot
    assert (raised >= out[None] - 1e-5).all()
    # and Q_tot depends on the state (the hypernetworks are wired in)
    assert not np.allclose(permuted, out)


def test_vdn_mixer_is_the_sum():
    """VDN's Q_tot is the sum of the chosen utilities, with any leading shape."""
    qs = jax.random.normal(jax.random.key(4), (2, 7, 4))
    mixer = VDNMixer()
    x = MixInput(chosen_qs=qs, states=jnp.ones((2, 7, 3)))
    params = mixer.init(jax.random.key(5), x)
    assert jax.tree.leaves(params) == []
    np.testing.assert_allclose(
        np.asarray(mixer.apply(params, x)), np.asarray(qs).sum(-1), rtol=1e-6
    )


# --------------------------------------------------------------------------- GRU cell


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def torch_gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    """torch.nn.GRUCell's documented equations; weights in PyTorch layout [3H, in], rows r|z|n."""
    hd = h.shape[-1]
    w_ir, w_iz, w_in = weight_ih[:hd], weight_ih[hd : 2 * hd], weight_ih[2 * hd :]
    w_hr, w_hz, w_hn = weight_hh[:hd], weight_hh[hd : 2 * hd], weight_hh[2 * hd :]
    b_ir, b_iz, b_in = bias_ih[:hd], bias_ih[hd : 2 * hd], bias_ih[2 * hd :]
    b_hr, b_hz, b_hn = bias_hh[:hd], bias_hh[hd : 2 * hd], bias_hh[2 * hd :]
    r = sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    n = np.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
    return (1.0 - z) * n + z * h


def test_gru_cell_matches_pytorch_equations():
    """GRUCell equals torch.nn.GRUCell's equations written out in numpy (non-zero hidden)."""
    hidden_dim, in_dim, n = 6, 5, 9
    init_key, x_key, h_key = keys(6, 3)
    x = jax.random.normal(x_key, (n, in_dim))
    h = jax.random.normal(h_key, (n, hidden_dim))
    cell = GRUCell(hidden_dim)
    params = cell.init(init_key, h, x)
    p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    assert p["w_input"].shape == (in_dim, 3 * hidden_dim)
    assert p["w_hidden"].shape == (hidden_dim, 3 * hidden_dim)
    want = torch_gru_cell(
        np.asarray(x, np.float64),
        np.asarray(h, np.float64),
        p["w_input"].T,
        p["w_hidden"].T,
        p["b_input"],
        p["b_hidden"],
    )
    got = np.asarray(cell.apply(params, h, x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_gru_cell_none_hidden_equals_zero_hidden():
    """hidden=None gives exactly what an explicit zero hidden state gives."""
    hidden_dim = 7
    init_key, x_key = keys(7, 2)
    x = jax.random.normal(x_key, (4, 3))
    cell = GRUCell(hidden_dim)
    params = cell.init(init_key, jnp.zeros((4, hidden_dim)), x)
    zero = cell.apply(params, jnp.zeros((4, hidden_dim)), x)
    none = cell.apply(params, None, x)
    assert none.shape == (4, hidden_dim)
    np.testing.assert_allclose(np.asarray(none), np.asarray(zero), rtol=1e-6, atol=1e-7)
    # parameters created from hidden=None are the same tree
    params_none = cell.init(jax.random.key(8), None, x)
    assert jax.tree.structure(params_none) == jax.tree.structure(params)


# --------------------------------------------------------------------------- agent unroll


def test_unroll_agent_equals_loop_of_steps():
    """unroll_agent over T steps equals a Python loop of module.apply from a zero hidden state."""
    batch, steps, agents, in_dim, hidden_dim, actions = 3, 5, 2, 4, 8, 3
    init_key, x_key = keys(9, 2)
    agent = RNNAgent(hidden_dim, actions)
    inputs = jax.random.normal(x_key, (batch, steps, agents, in_dim))
    params = agent.init(init_key, jnp.zeros((agents, hidden_dim)), jnp.zeros((agents, in_dim)))
    unroll = jax.jit(lambda p, x: unroll_agent(agent, p, x))
    step = jax.jit(agent.apply)
    got = np.asarray(unroll(params, inputs))
    assert got.shape == (batch, steps, agents, actions)
    hidden = jnp.zeros((batch * agents, hidden_dim))
    want = []
    for t in range(steps):
        hidden, q = step(params, hidden, inputs[:, t].reshape(batch * agents, in_dim))
        want.append(np.asarray(q).reshape(batch, agents, actions))
    np.testing.assert_allclose(got, np.stack(want, axis=1), rtol=1e-5, atol=1e-5)
    # one step (the matrix game) takes the no-scan path and agrees too
    one = np.asarray(unroll(params, inputs[:, :1]))
    np.testing.assert_allclose(one[:, 0], want[0], rtol=1e-5, atol=1e-5)
    # the recurrence matters: the same input at t=1 gives a different Q than at t=0
    two = np.asarray(unroll(params, jnp.repeat(inputs[:, :1], 2, axis=1)))
    assert not np.allclose(two[:, 0], two[:, 1])


def test_shift_last_actions_puts_minus_one_first():
    """Last actions are -1 at t=0 (an all-zero one-hot), then the previous step's action."""
    actions = jnp.asarray([[[2, 0], [1, 1], [0, 2]]], jnp.uint8)  # [B=1, T=3, A=2]
    shifted = shift_last_actions(actions)
    assert shifted.shape == (1, 4, 2) and shifted.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(shifted[0]), [[-1, -1], [2, 0], [1, 1], [0, 2]])
    obs = jnp.zeros((1, 4, 2, 5))
    inputs = build_agent_inputs(obs, shifted, 3, last_action=True, agent_id=False)
    one_hot = np.asarray(inputs[0, :, :, 5:])  # [T+1, A, U]
    assert (one_hot[0] == 0).all()
    np.testing.assert_array_equal(one_hot[1], [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(one_hot[3], [[1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("last_action,agent_id", list(itertools.product([False, True], repeat=2)))
def test_build_agent_inputs_flags(last_action, agent_id):
    """Input width follows agent_input_dim; obs first, then one-hot last action, then agent id."""
    obs_dim, agents, actions = 5, 3, 4
    obs = jnp.arange(2 * 6 * agents * obs_dim, dtype=jnp.uint8).reshape(2, 6, agents, obs_dim)
    last = jnp.ones((2, 6, agents), jnp.int32)
    out = build_agent_inputs(obs, last, actions, last_action, agent_id)
    width = agent_input_dim(obs_dim, agents, actions, last_action, agent_id)
    assert width == obs_dim + actions * last_action + agents * agent_id
    assert out.shape == (2, 6, agents, width) and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out[..., :obs_dim]), np.asarray(obs, np.float32))
    rest = np.asarray(out[..., obs_dim:])
    if last_action:
        np.testing.assert_array_equal(rest[..., :actions].argmax(-1), 1)
        assert (rest[..., :actions].sum(-1) == 1).all()
        rest = rest[..., actions:]
    if agent_id:
        np.testing.assert_array_equal(rest, np.broadcast_to(np.eye(agents), rest.shape))


# --------------------------------------------------------------------------- init


@pytest.mark.parametrize("fan_in", [4, 50, 400])
def test_linear_init_within_pytorch_bounds(fan_in):
    """Linear weights and bias are drawn within +-1/sqrt(fan_in) and fill that range."""
    layer = Linear(64)
    params = layer.init(jax.random.key(fan_in), jnp.zeros((1, fan_in)))["params"]
    bound = 1.0 / np.sqrt(fan_in)
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    assert kernel.shape == (fan_in, 64) and bias.shape == (64,)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(kernel).max() > 0.9 * bound  # uniform over the whole range, not narrower
    assert np.abs(bias).max() > 0.7 * bound
    assert abs(kernel.mean()) < 0.1 * bound  # centred


def test_gru_init_within_hidden_bound():
    """Every GRUCell parameter is within +-1/sqrt(H), PyTorch's nn.GRUCell init."""
    hidden_dim = 16
    params = GRUCell(hidden_dim).init(jax.random.key(11), None, jnp.zeros((1, 40)))["params"]
    bound = 1.0 / np.sqrt(hidden_dim)
    for name, value in params.items():
        value = np.asarray(value)
        assert np.abs(value).max() <= bound, name
        assert np.abs(value).max() > 0.8 * bound, name


def test_unroll_agent_lean_inputs_match_built_tensor():
    """AgentInputs (built per step inside a rematerialised scan) gives the same utilities and
    parameter gradients as the materialised [B, T, A, I] tensor; ``[:, :k]`` keeps k slots."""
    batch, steps, agents, obs_dim, hidden_dim, actions = 3, 5, 2, 4, 8, 3
    init_key, obs_key, act_key = keys(11, 3)
    agent = RNNAgent(hidden_dim, actions)
    obs = jax.random.normal(obs_key, (batch, steps, agents, obs_dim)).astype(jnp.float16)
    taken = jax.random.randint(act_key, (batch, steps - 1, agents), 0, actions)
    last = shift_last_actions(taken)
    dense = build_agent_inputs(obs, last, actions, last_action=True, agent_id=True)
    lean = AgentInputs(obs, last, actions, last_action=True, agent_id=True)
    assert lean.shape == dense.shape and lean[:, :3].shape == dense[:, :3].shape
    params = agent.init(init_key, jnp.zeros((agents, hidden_dim)), dense[0, 0])

    def loss(p, x):
        qs = unroll_agent(agent, p, x)
        return (qs * jnp.arange(qs.size).reshape(qs.shape) / qs.size).sum(), qs

    grad = jax.jit(jax.grad(loss, has_aux=True))
    for k in (steps, 3, 1):
        want_g, want_q = grad(params, dense[:, :k])
        got_g, got_q = grad(params, lean[:, :k])
        assert got_q.shape == (batch, k, agents, actions)
        np.testing.assert_allclose(np.asarray(got_q), np.asarray(want_q), rtol=1e-5, atol=1e-6)
        for g, w in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g), strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(lean[1:].obs), np.asarray(obs[1:]))
