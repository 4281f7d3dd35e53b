"""What both backends share about one evaluation period: the schedule of learner calls and
target copies, the bucketed learner update, and the metrics a period reduces to.

A period (a *chunk*) is ``iterations_per_chunk`` iterations, each rolling out E whole
episodes per member and calling the learner once the buffer holds a batch, then a greedy
evaluation. The functions work on JAX arrays (inside the compiled chunk) and on stacked
host arrays alike: reductions run over the leading iteration axis.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from powmarl.config import Config
from powmarl.io import episodes as eval_episodes
from powmarl.learner import Learner
from powmarl.types import Array, EpisodeBatch


def iterations_per_chunk(cfg: Config, episode_limit: int) -> int:
    """Iterations between evaluations: test_interval env steps at full episode length."""
    return max(1, math.ceil(cfg.test_interval / (cfg.num_envs * episode_limit)))


def schedule(it, cfg: Config):
    """(can_learn, first_call, update_targets) of iteration ``it`` (a Python int or a traced
    int32), as PyMARL's run loop has it. It depends on the iteration index alone, which all
    members share, so the ``lax.cond`` it drives stays a real branch under vmap."""
    seen_before, seen_after = it * cfg.num_envs, (it + 1) * cfg.num_envs
    interval = cfg.target_update_interval
    update_targets = (seen_before >= interval) & (
        seen_before // interval > (seen_before - cfg.num_envs) // interval
    )
    return seen_after >= cfg.batch_size, seen_before < cfg.batch_size, update_targets


def length_ladder(episode_limit: int, buckets: int, spacing: str = "halving") -> tuple[int, ...]:
    """Lengths of the truncated learner branches (each also drops the bootstrap tail).

    ``halving``: T, T/2, T/4, ... (rounded up); ``even``: T/(n-1), 2T/(n-1), ..., T. With
    several vmapped members the branch is the one of the member with the longest episode
    (``bucket_index``), so a finer ``even`` ladder wastes less on the other members.
    """
    if spacing == "even":
        steps = buckets - 1
        return tuple(sorted({math.ceil(episode_limit * j / steps) for j in range(1, steps + 1)}))
    return tuple(sorted({math.ceil(episode_limit / 2**j) for j in range(buckets - 1)}))


def truncate_batch(batch: EpisodeBatch, length: int) -> EpisodeBatch:
    """The first ``length`` transitions and observation slots (no bootstrap tail)."""
    return jax.tree.map(lambda x: x[:, :length], batch)


def bucket_index(batch: EpisodeBatch, ladder: tuple[int, ...], member_axis: str | None) -> Array:
    """Branch to run: the shortest ladder length holding every episode, or the full batch
    (index ``len(ladder)``) when some episode ran into the time limit and needs its tail.

    Shared by all members (max over the member axis), so the ``lax.switch`` stays a real
    branch under vmap; truncation only removes padding, so the choice does not change the
    result.
    """
    episode_limit = batch.reward.shape[1]
    longest = batch.filled.sum(axis=1).max()
    last = episode_limit - 1
    needs_tail = (batch.filled[:, last] & ~batch.terminated[:, last]).any()
    index = jnp.searchsorted(jnp.asarray(ladder), longest)  # first K >= longest
    index = jnp.where(needs_tail, len(ladder), index).astype(jnp.int32)
    if member_axis is not None:
        index = jax.lax.pmax(index, member_axis)
    return index


def bucketed_update(learner: Learner, ladder, member_axis: str | None, expand=lambda b: b):
    """``update(learner_state, batch, hp, t_env, first_call, update_targets)``: the learner
    on ``batch`` truncated to its bucket (a ``lax.switch`` over the ladder lengths, then the
    full batch); ``expand`` restores compact replay records before the learner sees them."""

    def update(learner_state, batch, hp, t_env, first_call, update_targets):
        def on(b):
            return learner.update(learner_state, expand(b), hp, t_env, first_call, update_targets)

        branches = [lambda b, k=k: on(truncate_batch(b, k)) for k in ladder] + [on]
        return jax.lax.switch(bucket_index(batch, ladder, member_axis), branches, batch)

    return update


def episode_metrics(prefix: str, stats, with_std: bool = False) -> dict[str, Array]:
    """``<prefix>/return_mean``, ``ep_length_mean`` (and ``return_std``) and one
    ``<prefix>/<info key>_mean`` per info counter, averaged over the last (episode) axis of
    ``stats`` (an EpisodeStats)."""
    out = {f"{prefix}/return_mean": stats.returns.mean(axis=-1)}
    if with_std:
        out[f"{prefix}/return_std"] = stats.returns.std(axis=-1)
    out[f"{prefix}/ep_length_mean"] = stats.lengths.mean(axis=-1).astype(jnp.float32)
    out.update({f"{prefix}/{k}_mean": v.mean(axis=-1) for k, v in stats.info.items()})
    return out


def _masked_mean(values: Array, weights: Array) -> Array:
    return (values * weights).sum(axis=0) / jnp.maximum(weights.sum(axis=0), 1.0)


def reduce_period(per_iter: dict[str, Any], eval_stats, t_env: Array, episodes: Array):
    """The metrics of one period from its per-iteration outputs (leading axis: iterations):
    ``learned`` [I] (1 where the learner ran), ``epsilon`` [I], ``rollout`` and ``learn``
    dicts of [I] values; then the greedy evaluation's EpisodeStats and the counters. Its
    per-episode values ride along as ``eval_episodes/*`` entries, which the loop writes to
    ``eval_episodes.jsonl`` instead of the rows (:mod:`powmarl.io.episodes`)."""
    learned = per_iter["learned"]
    metrics = {k: v.mean(axis=0) for k, v in per_iter["rollout"].items()}
    metrics.update({k: _masked_mean(v, learned) for k, v in per_iter["learn"].items()})
    metrics["train/epsilon"] = per_iter["epsilon"][-1]
    metrics["train/learner_calls"] = learned.sum(axis=0)
    metrics.update(episode_metrics("eval", eval_stats, with_std=True))
    metrics["t_env"] = t_env
    metrics["episodes"] = episodes
    metrics.update(eval_episodes.outputs(eval_stats))
    return metrics
