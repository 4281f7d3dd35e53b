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
    # select before squaring rather than multiply after: padding may hold inf/nan, inf * 0
    # is nan, and selecting the inputs keeps the gradient at padding exactly 0
    real = mask > 0
    diff = jnp.where(real, values - targets, 0.0)
    sq = jnp.square(diff) * jnp.where(real, weights, 0.0)
    return 0.5 * sq.sum() / jnp.maximum(mask.sum(), 1.0)


def global_norm(tree) -> Array:
    """L2 norm of all leaves together (what global-norm clipping measures)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))
