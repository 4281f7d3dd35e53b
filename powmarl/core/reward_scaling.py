"""Reward standardisation as EPyMARL's ``standardise_rewards`` (its QMIX and VDN default).

EPyMARL keeps running moments of the rewards of every batch the learner samples, updated
before the batch is used, and trains on ``(r - mu) / sqrt(sigma^2)``. The moments merge
by the parallel-variance rule (Chan et al.), with a batch of ``n`` slots of mean ``m`` and
unbiased variance ``v`` (torch.var's default):

    c' = c + n,   mu' = mu + (m - mu) n / c',
    sigma'^2 = (sigma^2 c + v n + (m - mu)^2 c n / c') / c',

starting from mu = 0, sigma^2 = 1, c = 1e-4. Which slots count: EPyMARL cuts a batch to its
longest episode and then counts every slot, padding (zero reward) included; powmarl's batch
may be longer (length buckets, ``Config.length_buckets``), so :func:`epymarl_slots` picks
the slots before the longest episode's end, which gives EPyMARL's numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from powmarl.types import Array

#: EPyMARL's RunningMeanStd starts its count at this (so the first batch all but replaces
#: the initial moments and no division is by zero)
INITIAL_COUNT = 1e-4


class RewardMoments(NamedTuple):
    """Running moments of the learner's rewards (leaves [] per member)."""

    mean: Array  # [] float32
    var: Array  # [] float32
    samples: Array  # [] int32: slots seen; the count is samples + INITIAL_COUNT


def init_moments() -> RewardMoments:
    return RewardMoments(
        mean=jnp.zeros((), jnp.float32),
        var=jnp.ones((), jnp.float32),
        samples=jnp.zeros((), jnp.int32),
    )


def epymarl_slots(filled: Array) -> Array:  # [B, T] bool
    """The slots EPyMARL counts: every slot before the end of the batch's longest episode
    (``filled`` [B, T] marks real transitions; later slots are padding)."""
    longest = filled.sum(axis=1).max()  # [] EPyMARL's max_t_filled
    return jnp.broadcast_to(jnp.arange(filled.shape[1]) < longest, filled.shape)


def update_moments(moments: RewardMoments, rewards: Array, include: Array) -> RewardMoments:
    """Merge the rewards at the ``include``d slots ([B, T] each) into the running moments."""
    rewards = rewards.astype(jnp.float32)
    weight = include.astype(jnp.float32)
    n = weight.sum()  # [] slots in this batch
    batch_mean = (rewards * weight).sum() / jnp.maximum(n, 1.0)
    # unbiased, as torch.var; one slot alone has no spread (torch would give nan)
    batch_var = (jnp.square(rewards - batch_mean) * weight).sum() / jnp.maximum(n - 1.0, 1.0)
    count = moments.samples.astype(jnp.float32) + INITIAL_COUNT
    total = count + n
    delta = batch_mean - moments.mean
    mean = moments.mean + delta * n / total
    m2 = moments.var * count + batch_var * n + jnp.square(delta) * count * n / total
    return RewardMoments(
        mean=mean,
        var=m2 / total,
        samples=moments.samples + n.astype(jnp.int32),
    )


def standardise(moments: RewardMoments, rewards: Array) -> Array:  # [B, T]
    """``(r - mu) / sigma``. EPyMARL adds no epsilon: the initial variance 1 keeps its weight
    1e-4 in the mix, so sigma stays positive (tiny, if every reward so far was equal)."""
    return (rewards - moments.mean) / jnp.sqrt(moments.var)
