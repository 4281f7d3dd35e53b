"""Collisions between the vehicles' oriented rectangles (separating axis test).

Ports ``RoadObject.handle_collisions`` / ``_is_colliding`` (``vehicle/objects.py``) and
``utils.are_polygons_intersecting`` (highway-env ``utils.py``; the authors' copy of
``utils.py`` is not in the index, and this function is the same in every highway-env
release read: 1.4 to 1.12.1).

For a pair (a, b) with a before b in the vehicle list, after both have moved:

- a sphere pre-check: no contact when |p_b - p_a| > (diag_a + diag_b) / 2 + v_a dt
  (diag = sqrt(L^2 + W^2); only a's speed, as the authors' code);
- on each of the 8 edge normals n of the two rectangles, the projections [min, max] of
  both corner sets (in closed form); ``intersecting``
  unless some axis separates them (interval distance > 0); ``will_intersect`` unless
  some axis separates them after a's interval is swept by n . (v_a - v_b) dt;
- when they will intersect, the translation is the smallest |swept interval distance|
  over the axes (first axis on ties) along the axis oriented from b's centre to a's
  (the corners' mean is the position).

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
    """[..., 4, 2] corners of rectangles centred at ``position`` [..., 2] with ``heading``
    (``RoadObject.polygon`` without the repeated first corner)."""
    corners = jnp.asarray(_CORNERS) * jnp.array([length / LENGTH, width / WIDTH])
    c, s = jnp.cos(heading)[..., None], jnp.sin(heading)[..., None]
    x, y = corners[:, 0], corners[:, 1]
    return jnp.stack([c * x - s * y, s * x + c * y], -1) + position[..., None, :]


def _interval_distance(min_a, max_a, min_b, max_b):
    """``utils.interval_distance``: negative when the intervals overlap."""
    return jnp.where(min_a < min_b, min_b - max_a, min_a - max_b)


def _normals(c, s):
    """[..., 4, 2] unit normals of a rectangle's 4 edges (p0 -> p1, ..., p3 -> p0 of
    ``RoadObject.polygon``) from cos and sin of its heading: two directions and their
    opposites, all needed (the swept interval distance is not symmetric under n -> -n)."""
    return jnp.stack([jnp.stack(n, -1) for n in ((-c, -s), (-s, c), (c, s), (s, -c))], -2)


def _projection(axes, position, c, s):
    """(min, max) [..., K] of a LENGTH x WIDTH rectangle's corners projected on ``axes``
    [..., K, 2]: centre . n -/+ (L/2 |n . u| + W/2 |n . v|), u = (c, s), v = (-s, c)."""
    c, s = c[..., None], s[..., None]
    along = jnp.abs(axes[..., 0] * c + axes[..., 1] * s)
    across = jnp.abs(-axes[..., 0] * s + axes[..., 1] * c)
    radius = LENGTH / 2 * along + WIDTH / 2 * across
    centre = axes[..., 0] * position[..., None, 0] + axes[..., 1] * position[..., None, 1]
    return centre - radius, centre + radius


def rectangles_intersecting(pos_a, head_a, pos_b, head_b, disp_a, disp_b):
    """``are_polygons_intersecting`` of two vehicles' rectangles ([..., 2] positions, [...]
    headings) moving by ``disp`` [..., 2]: (intersecting, will_intersect, translation
    [..., 2], 0 when they will not intersect).

    The 8 edge normals of the two rectangles, in the authors' order (a's 4 edges, then
    b's): an opposite normal gives other swept interval distances when the intervals
    overlap, so the translation needs all 8.
    """
    (ca, sa), (cb, sb) = (jnp.cos(head_a), jnp.sin(head_a)), (jnp.cos(head_b), jnp.sin(head_b))
    axes = jnp.concatenate([_normals(ca, sa), _normals(cb, sb)], -2)  # [..., 8, 2]
    min_a, max_a = _projection(axes, pos_a, ca, sa)
    min_b, max_b = _projection(axes, pos_b, cb, sb)
    intersecting = jnp.all(_interval_distance(min_a, max_a, min_b, max_b) <= 0, -1)
    rel = disp_a - disp_b
    sweep = axes[..., 0] * rel[..., None, 0] + axes[..., 1] * rel[..., None, 1]
    min_a = jnp.where(sweep < 0, min_a + sweep, min_a)
    max_a = jnp.where(sweep < 0, max_a, max_a + sweep)
    distance = _interval_distance(min_a, max_a, min_b, max_b)  # [..., 8]
    will_intersect = jnp.all(distance <= 0, -1)
    gaps = jnp.abs(distance)
    first = jnp.cumsum(gaps == jnp.min(gaps, -1, keepdims=True), -1) == 1
    pick = first & (gaps == jnp.min(gaps, -1, keepdims=True))  # [..., 8] one-hot: first min
    axis = jnp.sum(jnp.where(pick[..., None], axes, 0.0), -2)
    gap = jnp.sum(jnp.where(pick, gaps, 0.0), -1)
    centres = pos_a - pos_b
    axis = jnp.where(jnp.sum(centres * axis, -1, keepdims=True) > 0, axis, -axis)
    translation = jnp.where(will_intersect[..., None], gap[..., None] * axis, 0.0)
    return intersecting, will_intersect, translation


#: [4, 6]: +1 where the vehicle is a pair's first member, -1 its second, 0 not in it.
_MEMBER = np.zeros((4, len(PAIRS)), np.float32)
_MEMBER[PAIRS[:, 0], np.arange(len(PAIRS))] = 1.0
_MEMBER[PAIRS[:, 1], np.arange(len(PAIRS))] = -1.0


def handle_collisions(veh: Vehicles, dt: float) -> Vehicles:
    """``Road.step``'s pairwise ``handle_collisions`` over the 6 pairs: crashed where a
    pair intersects; the impact of a vehicle from the *last* pair (in order) that will
    intersect, as the sequential overwrites leave it."""
    i, j = PAIRS[:, 0], PAIRS[:, 1]
    pos, head = veh.position, veh.heading
    disp = velocity(veh) * dt
    near = jnp.linalg.norm(pos[j] - pos[i], axis=-1) <= DIAGONAL + veh.speed[i] * dt
    hit, will, shift = rectangles_intersecting(pos[i], head[i], pos[j], head[j], disp[i], disp[j])
    member = jnp.asarray(_MEMBER)
    involved = (member != 0) & (will & near)[None, :]  # [4, 6]
    order = jnp.arange(len(PAIRS))
    last = jnp.max(jnp.where(involved, order, -1), axis=1)  # [4]: -1 when none
    chosen = (order[None, :] == last[:, None]) & involved  # [4, 6] one-hot (or empty)
    signed = jnp.where(chosen, member, 0.0)[:, :, None] * shift[None]  # no matmul: exact
    new_impact = jnp.sum(signed, 1) / 2
    impact = jnp.where(involved.any(1)[:, None], new_impact, veh.impact)
    crashed = veh.crashed | jnp.any((member != 0) & (hit & near)[None, :], 1)
    return veh.replace(crashed=crashed, impact=impact, has_impact=veh.has_impact | involved.any(1))
