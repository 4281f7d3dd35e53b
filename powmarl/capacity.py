"""Parameter counts of an algorithm's networks, and widths that match another's count.

The paper's capacity ablation (notes sec. 7.2, Fig. 7) enlarges the baselines to POW's
parameter count, to show that POW's gain is not its extra networks. The paper does not
give the enlarged configurations, so powmarl makes the rule explicit:
:func:`match_count` widens (or narrows) chosen Config widths together, in a fixed ratio,
until the total is as close as it gets to the target.

Counts are of the trained parameters (agent, mixer and every extra, e.g. Q* and Q_r); the
target copies and optimiser moments are not counted. Nothing is initialised:
``jax.eval_shape`` traces the learner's init.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax

from powmarl import algos
from powmarl.learner import learner_for_env


def parameter_counts(algo: str | algos.Algorithm, env, **overrides: Any) -> dict[str, int]:
    """{network: number of parameters} of ``algo`` on ``env`` with its resolved settings
    (algorithm < env defaults < ``overrides``): "agent", "mixer" and one entry per extra."""
    from powmarl.api import resolve_settings

    algorithm = algos.make(algo) if isinstance(algo, str) else algo
    cfg, _ = resolve_settings(env, overrides, algorithm)
    learner = learner_for_env(cfg, env, algorithm)
    params = jax.eval_shape(learner.init, jax.random.key(0), None).params

    def size(tree) -> int:
        return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))

    counts = {name: size(tree) for name, tree in params.items() if name != "extras"}
    counts.update({name: size(tree) for name, tree in params["extras"].items()})
    return counts


def match_count(
    algo: str | algos.Algorithm,
    env,
    target: int,
    widths: Mapping[str, int],
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, int], int]:
    """(widths, total): ``widths`` (Config field -> its base width) scaled together so that
    ``algo``'s total parameter count is as close to ``target`` as it gets. The first field
    takes every integer width (found by bisection, as counts grow with width); the others
    keep their ratio to it, rounded, at least 1."""
    overrides = dict(overrides or {})
    lead_base = next(iter(widths.values()))

    def at(width: int) -> tuple[dict[str, int], int]:
        scaled = {name: max(1, round(base * width / lead_base)) for name, base in widths.items()}
        return scaled, sum(parameter_counts(algo, env, **overrides, **scaled).values())

    low, high = 1, lead_base
    while at(high)[1] < target:
        low, high = high, high * 2
    while high - low > 1:  # invariant: count(low) < target <= count(high), or low = 1
        mid = (low + high) // 2
        low, high = (mid, high) if at(mid)[1] < target else (low, mid)
    below, above = at(low), at(high)
    return min((below, above), key=lambda c: abs(c[1] - target))
