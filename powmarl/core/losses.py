"""Masked, weighted squared TD loss (notes sec. 3.5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from powmarl.types import Array


def masked_weighted_mse(
    values: Array,  # [B, T]
    targets: Array,  # [B, T]
    weights: Array,  # [B, T]
    mask: Array,  # [B, T]
) -> Array:
    """L = 1/2 * sum(m * w * (Q - y)^2) / sum(m); padding (m = 0) never counts."""
    mask = mask.astype(jnp.float32)
    sq = jnp.square(values - targets) * weights * mask
    return 0.5 * sq.sum() / jnp.maximum(mask.sum(), 1.0)


def global_norm(tree) -> Array:
    """L2 norm of all leaves together (what global-norm clipping measures)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))
