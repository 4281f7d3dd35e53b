"""``intersection``: the paper's 4-way intersection ("Crossroads") as a pure-JAX env.

Modules: ``geometry`` (lanes and lane coordinates), ``vehicle`` (bicycle model,
controllers, routes), ``collision`` (rotated rectangles), ``observe`` (obs, state,
arrival), ``env`` (the env: reset, ``reset_from``, step), ``draw`` (GIF frames).
"""

from powmarl.envs.intersection.env import (
    EPISODE_LIMIT,
    Intersection,
    IntersectionParams,
    IntersectionStart,
    IntersectionState,
    sample_start,
)

__all__ = [
    "EPISODE_LIMIT",
    "Intersection",
    "IntersectionParams",
    "IntersectionStart",
    "IntersectionState",
    "sample_start",
]
