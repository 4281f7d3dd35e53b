"""Road geometry of the authors' 4-way intersection: 20 lanes and their lane coordinates.

Built as ``IntersectionEnv._make_road`` builds it in the authors' copy of highway-env
(``src/envs/highway_env/envs/intersection_env.py``), with the lane classes of
``road/lane.py``. World coordinates: x east, y south, origin at the centre. Arm ``a``
(0 south, 1 west, 2 north, 3 east; the road nodes ``o{a}``, ``ir{a}``, ``il{a}``) is arm 0
rotated by ``a * 90`` degrees. Per arm, five lanes, numbered ``lane = 5 * a + kind``:

=====  ==================  ================================  ==========================
kind   nodes               shape                             length [m]
=====  ==================  ================================  ==========================
0      o{a} -> ir{a}        straight, entering (incoming)    100
1      ir{a} -> il{a-1}     right turn: arc, radius 9        9 pi / 2
2      ir{a} -> il{a+1}     left turn: arc, radius 13        13 pi / 2
3      ir{a} -> il{a+2}     straight through                 22
4      il{a} -> o{a}        straight, leaving (exit)          100
=====  ==================  ================================  ==========================

A lane has coordinates (longitudinal s, lateral r): for a straight lane from ``start``
with unit ``direction`` d, s = (p - start) . d and r = (p - start) . (-d_y, d_x); for an
arc with centre c, radius R, start phase phi0 and direction k (+1 clockwise in the
authors' sense, -1 otherwise), phi = phi0 + wrap(atan2(p - c) - phi0), s = k (phi - phi0) R,
r = k (R - |p - c|). ``position``, ``heading_at`` and ``local_coordinates`` below are
those of ``StraightLane`` and ``CircularLane``, vectorised over lane ids.

The tables are computed once in float64 NumPy (the same arithmetic as the authors'
constructor, rotations included) and enter the JAX functions as constants.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from powmarl.types import Array

LANE_WIDTH = 4.0  # AbstractLane.DEFAULT_WIDTH (road/lane.py)
RIGHT_TURN_RADIUS = LANE_WIDTH + 5  # intersection_env.py _make_road
LEFT_TURN_RADIUS = RIGHT_TURN_RADIUS + LANE_WIDTH
OUTER_DISTANCE = RIGHT_TURN_RADIUS + LANE_WIDTH / 2  # 11 m: centre to the lane ends
ACCESS_LENGTH = 50.0 + 50.0  # entry and exit lane length
SPEED_LIMIT = 10.0  # speed_limit of every lane
VEHICLE_LENGTH_LANE = 5.0  # AbstractLane.VEHICLE_LENGTH: after_end is s > length - 2.5
NUM_ARMS = 4
KINDS = ("entry", "right", "left", "straight", "exit")
ENTRY, RIGHT, LEFT, STRAIGHT, EXIT = range(5)
NUM_LANES = NUM_ARMS * len(KINDS)


class LaneTable(NamedTuple):
    """Parameters of every lane, [NUM_LANES, ...] float64 (circular fields unused on
    straight lanes and vice versa)."""

    circular: np.ndarray  # [L] bool
    start: np.ndarray  # [L, 2] straight: first point
    end: np.ndarray  # [L, 2] straight: last point (for drawing)
    direction: np.ndarray  # [L, 2] straight: unit direction
    heading: np.ndarray  # [L] straight: heading atan2(d_y, d_x)
    center: np.ndarray  # [L, 2] arc centre
    radius: np.ndarray  # [L]
    start_phase: np.ndarray  # [L]
    end_phase: np.ndarray  # [L]
    turn: np.ndarray  # [L] +1 (clockwise=True) or -1
    length: np.ndarray  # [L]


def lane_id(arm, kind):
    """The lane number of ``kind`` (ENTRY ... EXIT) on ``arm``: ``5 * arm + kind``."""
    return arm * len(KINDS) + kind


def connector_kind(entry_arm, exit_arm):
    """ENTRY-arm -> EXIT-arm connector kind: RIGHT (exit = entry - 1), LEFT (entry + 1) or
    STRAIGHT (entry + 2), as the authors' lanes ``ir{a} -> il{(a -/+ 1, + 2) % 4}``."""
    turn = (exit_arm - entry_arm) % NUM_ARMS
    return jnp.where(turn == 3, RIGHT, jnp.where(turn == 1, LEFT, STRAIGHT))


def _rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def build_lanes() -> LaneTable:
    """The 20 lanes, as ``_make_road`` builds them (the exit lane of arm ``a`` is built in
    the loop pass of corner ``a + 1``, as there)."""
    rows: dict[int, dict] = {}
    w, r_right, r_left = LANE_WIDTH, RIGHT_TURN_RADIUS, LEFT_TURN_RADIUS
    outer, access = OUTER_DISTANCE, ACCESS_LENGTH
    for corner in range(NUM_ARMS):
        angle = np.radians(90 * corner)
        rot = _rotation(angle)
        rows[lane_id(corner, ENTRY)] = _straight(
            rot @ np.array([w / 2, access + outer]), rot @ np.array([w / 2, outer])
        )
        rows[lane_id(corner, RIGHT)] = _arc(
            rot @ np.array([outer, outer]), r_right, angle + np.radians(180),
            angle + np.radians(270), clockwise=True,
        )  # fmt: skip
        rows[lane_id(corner, LEFT)] = _arc(
            rot @ np.array([-r_left + w / 2, r_left - w / 2]), r_left, angle + np.radians(0),
            angle + np.radians(-90), clockwise=False,
        )  # fmt: skip
        rows[lane_id(corner, STRAIGHT)] = _straight(
            rot @ np.array([w / 2, outer]), rot @ np.array([w / 2, -outer])
        )
        far = rot @ np.flip([w / 2, access + outer], axis=0)
        near = rot @ np.flip([w / 2, outer], axis=0)
        rows[lane_id((corner - 1) % NUM_ARMS, EXIT)] = _straight(near, far)
    fields = LaneTable._fields
    return LaneTable(*(np.array([rows[i][f] for i in range(NUM_LANES)]) for f in fields))


def _straight(start, end) -> dict:
    start, end = np.array(start, np.float64), np.array(end, np.float64)
    length = np.linalg.norm(end - start)
    return {
        "circular": False, "start": start, "end": end, "direction": (end - start) / length,
        "heading": np.arctan2(end[1] - start[1], end[0] - start[0]), "center": np.zeros(2),
        "radius": 1.0, "start_phase": 0.0, "end_phase": 0.0, "turn": 1.0, "length": length,
    }  # fmt: skip


def _arc(center, radius, start_phase, end_phase, clockwise: bool) -> dict:
    turn = 1.0 if clockwise else -1.0
    return {
        "circular": True, "start": np.zeros(2), "end": np.zeros(2),
        "direction": np.array([1.0, 0.0]), "heading": 0.0,
        "center": np.array(center, np.float64), "radius": float(radius),
        "start_phase": float(start_phase), "end_phase": float(end_phase), "turn": turn,
        "length": radius * (end_phase - start_phase) * turn,
    }  # fmt: skip


LANES = build_lanes()


def wrap_to_pi(x):
    """``((x + pi) mod 2 pi) - pi`` (utils.wrap_to_pi; floor modulo as Python's %)."""
    return jnp.mod(x + jnp.pi, 2 * jnp.pi) - jnp.pi


#: The lane table as one [L, 13] array, for one gather per lookup: circular, start (2),
#: direction (2), heading, center (2), radius, start phase, turn, length, end phase.
_COLUMNS = ("circular", "start", "direction", "heading", "center", "radius", "start_phase",
            "turn", "length", "end_phase")  # fmt: skip
_TABLE = np.concatenate(
    [np.asarray(getattr(LANES, c), np.float64).reshape(NUM_LANES, -1) for c in _COLUMNS], 1
)


class Lane(NamedTuple):
    """The parameters of lanes ``lane`` [...], each [...] (or [..., 2])."""

    circular: Array
    start: Array
    direction: Array
    heading: Array
    center: Array
    radius: Array
    start_phase: Array
    turn: Array
    length: Array


def lanes(lane) -> Lane:
    """Parameters of the lanes numbered ``lane`` [...] (ints in 0..19), one gather."""
    row = jnp.take(jnp.asarray(_TABLE), lane, axis=0, mode="clip")  # [..., 13]
    col = [row[..., k] for k in range(_TABLE.shape[1])]
    return Lane(
        circular=col[0] > 0.5, start=row[..., 1:3], direction=row[..., 3:5], heading=col[5],
        center=row[..., 6:8], radius=col[8], start_phase=col[9], turn=col[10], length=col[11],
    )  # fmt: skip


def _lane(lane) -> Lane:
    return lane if isinstance(lane, Lane) else lanes(lane)


def local_coordinates(lane, position):
    """(s, r) of world ``position`` [..., 2] on lanes ``lane`` [...] (ids or a :class:`Lane`)."""
    ln = _lane(lane)
    delta = position - ln.start  # straight
    d = ln.direction
    s_line = delta[..., 0] * d[..., 0] + delta[..., 1] * d[..., 1]
    r_line = -delta[..., 0] * d[..., 1] + delta[..., 1] * d[..., 0]
    rel = position - ln.center  # arc
    phi = ln.start_phase + wrap_to_pi(jnp.arctan2(rel[..., 1], rel[..., 0]) - ln.start_phase)
    s_arc = ln.turn * (phi - ln.start_phase) * ln.radius
    r_arc = ln.turn * (ln.radius - jnp.sqrt(rel[..., 0] ** 2 + rel[..., 1] ** 2))
    return jnp.where(ln.circular, s_arc, s_line), jnp.where(ln.circular, r_arc, r_line)


def straight_coordinates(lane, position):
    """(s, r) on lanes known to be straight (entry and exit lanes): the straight branch of
    :func:`local_coordinates` alone, without the arc's atan2 and sqrt."""
    ln = _lane(lane)
    delta, d = position - ln.start, ln.direction
    s = delta[..., 0] * d[..., 0] + delta[..., 1] * d[..., 1]
    return s, -delta[..., 0] * d[..., 1] + delta[..., 1] * d[..., 0]


def position(lane, s, r=0.0):
    """World point [..., 2] at lane coordinates (s, r) of lanes ``lane`` (arcs extrapolate
    past their ends, straight lanes continue the line, as the authors' classes do)."""
    ln = _lane(lane)
    d = ln.direction
    lateral = jnp.stack([-d[..., 1], d[..., 0]], -1)
    line = ln.start + s[..., None] * d + jnp.asarray(r)[..., None] * lateral
    phi = ln.turn * s / ln.radius + ln.start_phase
    ring = (ln.radius - r * ln.turn)[..., None] * jnp.stack([jnp.cos(phi), jnp.sin(phi)], -1)
    return jnp.where(ln.circular[..., None], ln.center + ring, line)


def heading_at(lane, s):
    """Lane heading [rad] at longitudinal ``s`` (arcs: phi + k pi / 2, not wrapped)."""
    ln = _lane(lane)
    phi = ln.turn * s / ln.radius + ln.start_phase
    return jnp.where(ln.circular, phi + jnp.pi / 2 * ln.turn, ln.heading)


def lane_length(lane) -> Array:
    return _lane(lane).length
