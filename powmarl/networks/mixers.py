"""Mixers: Q_tot from per-agent utilities (notes sec. 6.1, 6.2).

Every mixer takes a :class:`MixInput` so that mixers needing more than the chosen
utilities (QPLEX needs the joint action and the greedy utilities) share one call.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from powmarl.networks.layers import MLP, Linear
from powmarl.types import Array


class MixInput(NamedTuple):
    chosen_qs: Array  # [..., A] utility of the joint action being valued
    states: Array  # [..., X]
    actions_onehot: Array | None = None  # [..., A, U] the joint action being valued
    max_qs: Array | None = None  # [..., A] greedy (available-masked) utilities, stop-gradient


class VDNMixer(nn.Module):
    """Q_tot = sum_i Q_i."""

    @nn.compact
    def __call__(self, x: MixInput) -> Array:
        return x.chosen_qs.sum(axis=-1)


class QMixer(nn.Module):
    """QMIX (PyMARL2 ``nmix``): Q_tot = |W2(s)|^T ELU(|W1(s)|^T Q + b1(s)) + b2(s).

    W1: s->hyper->ReLU->A*embed, W2: s->hyper->ReLU->embed, b1: Linear(s->embed),
    b2: s->embed->ReLU->1. Absolute weights make dQ_tot/dQ_i >= 0.
    """

    embed_dim: int = 32
    hypernet_dim: int = 64

    @nn.compact
    def __call__(self, x: MixInput) -> Array:
        qs, states = x.chosen_qs, x.states.astype(jnp.float32)
        num_agents = qs.shape[-1]
        w1 = jnp.abs(MLP((self.hypernet_dim, num_agents * self.embed_dim))(states))
        w1 = w1.reshape(*states.shape[:-1], num_agents, self.embed_dim)
        b1 = Linear(self.embed_dim)(states)
        hidden = nn.elu(jnp.einsum("...a,...ae->...e", qs, w1) + b1)
        w2 = jnp.abs(MLP((self.hypernet_dim, self.embed_dim))(states))
        b2 = MLP((self.embed_dim, 1))(states)[..., 0]
        return (hidden * w2).sum(axis=-1) + b2
