"""Collisions between the vehicles' oriented rectangles (separating axis test).

Ports ``RoadObject.handle_collisions`` / ``_is_colliding`` (``vehicle/objects.py``) and
``utils.are_polygons_intersecting`` (highway-env ``utils.py``; the authors' copy of
``utils.py`` is not in the index, and this function is the same in every highway-env
release read: 1.4 to 1.12.1).

For a pair (a, b) with a before b in the vehicle list, after both have moved:

- a sphere pre-check: no contact when |p_b - p_a| > (diag_a + diag_b) / 2 + v_a dt
  (diag = sqrt(L^2 + W^2); only a's speed, as the authors' code);
- on each of the 8 edge normals n of the two rectangles, the projections [min, max] of
  both corner sets; ``intersecting`` unless some axis separates them (interval distance
  > 0); ``will_intersect`` unless some axis separates them after a's interval is swept by
  n . (v_a - v_b) dt;
- when they will intersect, the translation is the smallest |swept interval distance|
  over the axes (first axis on ties) along the axis oriented from b's centre to a's.

Intersecting marks both crashed now; will-intersect sets impact +t/2 on a and -t/2 on b
(a later pair overwrites an earlier one's impact), applied, with the crash, in the next
step's integration.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from powmarl.envs.intersection.vehicle import LENGTH, WIDTH, Vehicles, velocity

DIAGONAL = float(np.sqrt(LENGTH**2 + WIDTH**2))
#: The vehicle pairs in the order Road.step checks them: (0, 1), (0, 2), ..., (2, 3).
PAIRS = np.array(list(itertools.combinations(range(4), 2)), np.int32)
_CORNERS = np.array(
    [[-LENGTH / 2, -WIDTH / 2], [-LENGTH / 2, WIDTH / 2], [LENGTH / 2, WIDTH / 2],
     [LENGTH / 2, -WIDTH / 2]]
)  # fmt: skip  # RoadObject.polygon, before rotation


def polygons(position, heading, length: float = LENGTH, width: float = WIDTH):
    """[..., 4, 2] corners of rectangles centred at ``position`` [..., 2] with ``heading``."""
    corners = jnp.asarray(_CORNERS) * jnp.array([length / LENGTH, width / WIDTH])
    c, s = jnp.cos(heading)[..., None], jnp.sin(heading)[..., None]
    x, y = corners[:, 0], corners[:, 1]
    return jnp.stack([c * x - s * y, s * x + c * y], -1) + position[..., None, :]


def _interval_distance(min_a, max_a, min_b, max_b):
    """``utils.interval_distance``: negative when the intervals overlap."""
    return jnp.where(min_a < min_b, min_b - max_a, min_a - max_b)


def polygons_intersecting(a, b, disp_a, disp_b):
    """``are_polygons_intersecting`` for rectangles a, b [..., 4, 2] moving by disp [..., 2]:
    (intersecting [...], will_intersect [...], translation [..., 2] (0 when not))."""
    edges = jnp.concatenate([jnp.roll(a, -1, -2) - a, jnp.roll(b, -1, -2) - b], -2)  # [..., 8, 2]
    normal = jnp.stack([-edges[..., 1], edges[..., 0]], -1)
    normal = normal / jnp.linalg.norm(normal, axis=-1, keepdims=True)
    proj_a = jnp.einsum("...kd,...nd->...kn", normal, a)  # [..., 8, 4]
    proj_b = jnp.einsum("...kd,...nd->...kn", normal, b)
    min_a, max_a = proj_a.min(-1), proj_a.max(-1)
    min_b, max_b = proj_b.min(-1), proj_b.max(-1)
    intersecting = jnp.all(_interval_distance(min_a, max_a, min_b, max_b) <= 0, -1)
    sweep = jnp.einsum("...kd,...d->...k", normal, disp_a - disp_b)
    min_a = jnp.where(sweep < 0, min_a + sweep, min_a)
    max_a = jnp.where(sweep < 0, max_a, max_a + sweep)
    distance = _interval_distance(min_a, max_a, min_b, max_b)  # [..., 8]
    will_intersect = jnp.all(distance <= 0, -1)
    best = jnp.argmin(jnp.abs(distance), -1)
    axis = jnp.take_along_axis(normal, best[..., None, None], -2)[..., 0, :]
    gap = jnp.take_along_axis(jnp.abs(distance), best[..., None], -1)[..., 0]
    centres = a.mean(-2) - b.mean(-2)
    axis = jnp.where(jnp.sum(centres * axis, -1, keepdims=True) > 0, axis, -axis)
    translation = jnp.where(will_intersect[..., None], gap[..., None] * axis, 0.0)
    return intersecting, will_intersect, translation


def handle_collisions(veh: Vehicles, dt: float) -> Vehicles:
    """``Road.step``'s pairwise ``handle_collisions`` over the 6 pairs, in order."""
    i, j = PAIRS[:, 0], PAIRS[:, 1]
    rects = polygons(veh.position, veh.heading)  # [4, 4, 2]
    disp = velocity(veh) * dt
    near = jnp.linalg.norm(veh.position[j] - veh.position[i], axis=-1) <= (
        DIAGONAL + veh.speed[i] * dt
    )
    hit, will, shift = polygons_intersecting(rects[i], rects[j], disp[i], disp[j])
    hit, will = hit & near, will & near
    crashed = veh.crashed
    impact, has_impact = veh.impact, veh.has_impact
    for k in range(len(PAIRS)):  # in order: a later pair's impact overwrites
        a, b = int(PAIRS[k, 0]), int(PAIRS[k, 1])
        impact = impact.at[a].set(jnp.where(will[k], shift[k] / 2, impact[a]))
        impact = impact.at[b].set(jnp.where(will[k], -shift[k] / 2, impact[b]))
        has_impact = has_impact.at[jnp.array([a, b])].set(has_impact[jnp.array([a, b])] | will[k])
        crashed = crashed.at[jnp.array([a, b])].set(crashed[jnp.array([a, b])] | hit[k])
    return veh.replace(crashed=crashed, impact=impact, has_impact=has_impact)
