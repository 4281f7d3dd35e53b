"""The shared GRU agent network (notes sec. 4.1): Linear-ReLU-GRUCell-Linear.

One set of parameters serves every agent; agents are a batch axis.
Input per agent: observation, optionally one-hot last action, optionally one-hot agent id.
"""

from __future__ import annotations

import flax.linen as nn
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


def unroll_agent(
    module: RNNAgent,
    params,
    inputs: Array,  # [B, T, A, I]
) -> Array:  # [B, T, A, U]
    """Run the agent network over whole episodes from a zero hidden state.

    The first step is peeled out of the scan and run without the recurrent matmul
    (its hidden state is zero): half the GRU work of a one-step game.
    """
    batch, num_steps, num_agents, _ = inputs.shape

    def step(hidden, x_t):  # x_t [B, A, I]
        hidden, q = module.apply(params, hidden, x_t.reshape(batch * num_agents, -1))
        return hidden, q.reshape(batch, num_agents, -1)

    hidden, q0 = step(None, inputs[:, 0])
    if num_steps == 1:
        return q0[:, None]
    _, qs = jax.lax.scan(step, hidden, jnp.swapaxes(inputs[:, 1:], 0, 1))
    return jnp.concatenate([q0[:, None], jnp.swapaxes(qs, 0, 1)], axis=1)
