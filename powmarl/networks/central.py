"""The unrestricted joint value Q* of WQMIX, used by CW/OW-QMIX, ResQ and POW (notes sec. 6.4).

Q*(s, tau, a) = FF([s; q_1(tau_1, a_1) .. q_n(tau_n, a_n)]) + V(s), where the q_i come
from a separate GRU agent network (``central_rnn``: same inputs and width as the agents,
``central_action_embed`` = 1 output per action) and FF has three ReLU hidden layers of
width E (256 for CW/OW, 128 for ResQ, 64 for POW); V(s) has one hidden layer of E.
No monotonicity constraint.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from powmarl.networks.layers import MLP
from powmarl.types import Array


class CentralMixer(nn.Module):
    """PyMARL ``QMixerCentralFF``: (agent utilities [..., A], states [..., X]) -> [...]."""

    embed_dim: int

    @nn.compact
    def __call__(self, agent_qs: Array, states: Array) -> Array:
        states = states.astype(jnp.float32)
        inputs = jnp.concatenate([states, agent_qs], axis=-1)
        e = self.embed_dim
        advantage = MLP((e, e, e, 1))(inputs)[..., 0]
        value = MLP((e, 1))(states)[..., 0]
        return advantage + value
