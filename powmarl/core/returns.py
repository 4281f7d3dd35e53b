"""TD(lambda) targets in the PyMARL2 convention (notes sec. 3.5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from powmarl.types import Array


def td_lambda_targets(
    rewards: Array,  # [B, T]
    terminated: Array,  # [B, T] bool
    mask: Array,  # [B, T] real transitions
    bootstrap: Array,  # [B, T+1] target values at the greedy joint actions
    gamma: Array | float,
    lambda_: Array | float,
) -> Array:  # [B, T]
    """PyMARL2 ``build_td_lambda_targets``.

    G_T = Qbar_T (1 - sum_t d_t);
    G_t = lambda gamma G_{t+1} + m_t [r_t + (1 - lambda) gamma (1 - d_t) Qbar_{t+1}].
    ``terminated`` is false on time-limit truncation, so those episodes bootstrap.
    """
    rewards = rewards.astype(jnp.float32)
    done = terminated.astype(jnp.float32)
    mask = mask.astype(jnp.float32)
    last = bootstrap[:, -1] * (1.0 - done.sum(axis=1))

    def backward(g_next, xs):
        r_t, d_t, m_t, q_next = xs
        g_t = lambda_ * gamma * g_next + m_t * (
            r_t + (1.0 - lambda_) * gamma * (1.0 - d_t) * q_next
        )
        return g_t, g_t

    xs = (rewards.T, done.T, mask.T, bootstrap[:, 1:].T)
    _, g = jax.lax.scan(backward, last, xs, reverse=True)
    return g.T
