"""Weighting rules w(s, a) for the Q_tot loss (notes sec. 3.4, 6.4)."""

from __future__ import annotations

import jax.numpy as jnp

from powmarl.algos.base import LossContext
from powmarl.config import HParams
from powmarl.types import Array


def uniform(ctx: LossContext, hp: HParams) -> Array:
    """w = 1 everywhere: plain QMIX/VDN/QPLEX regression."""
    del hp
    return jnp.ones_like(ctx.targets)
