"""The shared GRU agent network (notes sec. 4.1): Linear-ReLU-GRUCell-Linear.

One set of parameters serves every agent; agents are a batch axis.
Input per agent: observation, optionally one-hot last action, optionally one-hot agent id.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from powmarl.networks.layers import GRUCell, Linear
from powmarl.types import Array


class RNNAgent(nn.Module):
    """One step of the agent network: (hidden [N, H] or None for zeros, inputs [N, I])
    -> (hidden [N, H], q [N, U])."""

    hidden_dim: int
    num_actions: int

    @nn.compact
    def __call__(self, hidden, inputs):
        x = nn.relu(Linear(self.hidden_dim)(inputs))
        hidden = GRUCell(self.hidden_dim)(hidden, x)
        return hidden, Linear(self.num_actions)(hidden)


def agent_input_dim(
    obs_dim: int, num_agents: int, num_actions: int, last_action: bool, agent_id: bool
) -> int:
    return obs_dim + num_actions * last_action + num_agents * agent_id


def build_agent_inputs(
    obs: Array,  # [..., A, O]
    last_actions: Array,  # [..., A] int, ignored unless last_action
    num_actions: int,
    last_action: bool,
    agent_id: bool,
) -> Array:  # [..., A, I] float32
    """Concatenate observation, one-hot last action and one-hot agent id, per flags."""
    parts = [obs.astype(jnp.float32)]
    if last_action:
        parts.append(jax.nn.one_hot(last_actions, num_actions, dtype=jnp.float32))
    if agent_id:
        num_agents = obs.shape[-2]
        eye = jnp.eye(num_agents, dtype=jnp.float32)
        parts.append(jnp.broadcast_to(eye, (*obs.shape[:-1], num_agents)))
    return jnp.concatenate(parts, axis=-1)


def shift_last_actions(actions: Array) -> Array:
    """Last action at each of the T+1 slots: zeros (action 0 one-hot is not used) at t=0.

    PyMARL feeds a zero vector as the 'last action' at t=0; we mark it with -1,
    whose one-hot is all zeros.
    """
    first = jnp.full_like(actions[:, :1], -1, dtype=jnp.int32)
    return jnp.concatenate([first, actions.astype(jnp.int32)], axis=1)  # [B, T+1, A]


@flax.struct.dataclass
class AgentInputs:
    """Agent inputs kept as their parts and built one time step at a time (``remat_agent``).

    Stands in for the [B, N, A, I] float32 tensor of :func:`build_agent_inputs`, which on
    large maps is the learner's biggest temporary (27m_vs_30m at batch 128: 1.1 GiB, kept
    up to three times). Indexing slices the B and N axes; ``inputs[:, :steps]`` only
    shortens ``length`` (slicing the obs would copy them).
    """

    obs: Array  # [B, N, A, O] as stored (float16 on SMAX)
    last_actions: Array  # [B, N, A] int32, -1 before the first action
    num_actions: int = flax.struct.field(pytree_node=False)
    last_action: bool = flax.struct.field(pytree_node=False)
    agent_id: bool = flax.struct.field(pytree_node=False)
    length: int | None = flax.struct.field(pytree_node=False, default=None)  # slots used

    @property
    def shape(self) -> tuple[int, ...]:  # [B, N, A, I] of the tensor it stands for
        batch, slots, num_agents, obs_dim = self.obs.shape
        extra = self.num_actions * self.last_action + num_agents * self.agent_id
        length = slots if self.length is None else self.length
        return (batch, length, num_agents, obs_dim + extra)

    def __getitem__(self, index) -> AgentInputs:
        if isinstance(index, tuple) and len(index) == 2 and _is_head(index[0], index[1]):
            return self.replace(length=min(index[1].stop, self.shape[1]))
        length = self.shape[1]
        obs, last = self.obs[:, :length][index], self.last_actions[:, :length][index]
        return self.replace(obs=obs, last_actions=last, length=None)

    def at(self, t) -> Array:  # [B, A, I] float32, the inputs of slot t (t may be traced)
        obs = jax.lax.dynamic_index_in_dim(self.obs, t, axis=1, keepdims=False)
        last = jax.lax.dynamic_index_in_dim(self.last_actions, t, axis=1, keepdims=False)
        return build_agent_inputs(obs, last, self.num_actions, self.last_action, self.agent_id)


def _is_head(first, second) -> bool:
    """The index is ``[:, :k]`` (all episodes, the first k slots)."""
    return (
        first == slice(None)
        and isinstance(second, slice)
        and second.start is None
        and second.step is None
        and isinstance(second.stop, int)
        and second.stop >= 0
    )


def unroll_agent(
    module: RNNAgent,
    params,
    inputs: Array | AgentInputs,  # [B, T, A, I]
) -> Array:  # [B, T, A, U]
    """Run the agent network over whole episodes from a zero hidden state.

    The first step is peeled out of the scan and run without the recurrent matmul
    (its hidden state is zero): half the GRU work of a one-step game.

    With :class:`AgentInputs` the inputs of each step are built inside the scan and the
    step is rematerialised (``jax.checkpoint``): the backward pass keeps only the hidden
    state per step and recomputes the rest, instead of the inputs and ~11 GRU activations
    per step. Same values up to float rounding; about one more forward pass of compute.
    """
    if isinstance(inputs, AgentInputs):
        return _unroll_lean(module, params, inputs)
    batch, num_steps, num_agents, _ = inputs.shape

    def step(hidden, x_t):  # x_t [B, A, I]
        hidden, q = module.apply(params, hidden, x_t.reshape(batch * num_agents, -1))
        return hidden, q.reshape(batch, num_agents, -1)

    hidden, q0 = step(None, inputs[:, 0])
    if num_steps == 1:
        return q0[:, None]
    _, qs = jax.lax.scan(step, hidden, jnp.swapaxes(inputs[:, 1:], 0, 1))
    return jnp.concatenate([q0[:, None], jnp.swapaxes(qs, 0, 1)], axis=1)


def _apply_step(module: RNNAgent, params, hidden, x_t: Array) -> tuple[Array, Array]:
    """One agent step on x_t [B, A, I] -> (hidden [B*A, H], q [B, A, U])."""
    batch, num_agents, _ = x_t.shape
    hidden, q = module.apply(params, hidden, x_t.reshape(batch * num_agents, -1))
    return hidden, q.reshape(batch, num_agents, -1)


def _unroll_lean(module: RNNAgent, params, inputs: AgentInputs) -> Array:
    """:func:`unroll_agent` building inputs per step, with a rematerialised scan step."""
    num_steps = inputs.shape[1]

    @jax.checkpoint  # saves (params, hidden, t); everything else is recomputed
    def cell(p, hidden, t):
        return _apply_step(module, p, hidden, inputs.at(t))

    def step(hidden, t):
        return cell(params, hidden, t)

    hidden, q0 = _apply_step(module, params, None, inputs.at(0))
    if num_steps == 1:
        return q0[:, None]
    _, qs = jax.lax.scan(step, hidden, jnp.arange(1, num_steps))
    return jnp.concatenate([q0[:, None], jnp.swapaxes(qs, 0, 1)], axis=1)
