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


def takes_greedy(ctx: LossContext) -> Array:
    """[B, T] whether each step's taken joint action is the online greedy one."""
    steps = ctx.targets.shape[1]
    return jnp.all(ctx.batch.actions == ctx.greedy_actions[:, :steps], axis=-1)


def central(ctx: LossContext, hp: HParams) -> Array:
    """CW-QMIX: w = 1 if the joint action is the greedy one or y > Q*_target(s, a_hat),
    else alpha. Q*_target(s, a_hat) is the bootstrap value at the current step."""
    larger = ctx.targets > ctx.bootstrap[:, : ctx.targets.shape[1]]
    return jnp.where(takes_greedy(ctx) | larger, 1.0, hp.alpha)


def optimistic(ctx: LossContext, hp: HParams) -> Array:
    """OW-QMIX: w = 1 where Q_tot < y (the target is better than the estimate), else alpha."""
    return jnp.where(ctx.q_tot < ctx.targets, 1.0, hp.alpha)


def recognised(gap: Array, hp: HParams) -> Array:
    """a in A_r iff |gap| < C, gap = Q_r(s, a) - Q_r(s, a_hat) (the reference's strict test
    ``lambda_mut_deltaq.abs() < weighted_qmix_threshold``)."""
    return jnp.abs(gap) < hp.recognition_threshold


def in_set_weight(t_env: Array, hp: HParams) -> Array:
    """The weight inside A_r at t_env: max(finish, w0 - t_env (w0 - finish) / T_anneal), the
    reference's linear anneal, constant with its defaults w0 = finish = 1. As there, the max
    means a w0 below finish jumps to finish at once."""
    delta = (hp.pow_weight - hp.pow_weight_finish) / hp.pow_weight_anneal_time
    return jnp.maximum(hp.pow_weight_finish, hp.pow_weight - t_env * delta)


def potentially_optimal(ctx: LossContext, hp: HParams) -> Array:
    """POW: w = pow_weight (1, annealed by :func:`in_set_weight`) on the recogniser's set
    ``in_set`` (A_r = {a : |Q_r(s, a) - Q_r(s, a_hat)| < C}, or the greedy joint action under
    ``only_optimal_action``), alpha (0) elsewhere; uniform while t_env <= no_weighted_steps
    (the reference warm-up)."""
    inside = ctx.extras_out["recogniser"]["in_set"] & (ctx.mask > 0)
    weighted = jnp.where(inside, in_set_weight(ctx.t_env, hp), hp.alpha)
    return jnp.where(ctx.t_env > hp.no_weighted_steps, weighted, jnp.ones_like(weighted))
