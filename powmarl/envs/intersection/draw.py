"""GIF frames of the intersection (``Intersection.render_frame``), drawn with Pillow.

The road (two 4 m lanes per arm, the centre square), the 4 vehicles as their 5 x 2 m
rectangles (agent colour; red once crashed, a white outline once arrived; numbered), each
vehicle's destination as a ring on its exit lane, and the step and
return so far. North (y < 0) is up.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from powmarl.envs.drawing import COLOURS, HEADER, pil
from powmarl.envs.intersection import geometry as geo
from powmarl.envs.intersection import vehicle as vh
from powmarl.envs.intersection.observe import ARRIVE_DISTANCE

SCALE = 4.0  # pixels per metre
EXTENT = 60.0  # m from the centre to the picture's edge (starts are 31..81 m out)
SIZE = int(2 * EXTENT * SCALE)
AGENT_COLOURS = ((40, 100, 220), (230, 150, 20), (40, 170, 90), (150, 60, 200))
ROAD, MARKING, CRASHED = (120, 120, 120), (235, 235, 235), (220, 30, 30)


def _px(points) -> list[tuple[float, float]]:
    """World points [..., 2] (m) -> pixel tuples (x right, y down, below the caption)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return [((x + EXTENT) * SCALE, HEADER + (y + EXTENT) * SCALE) for x, y in pts]


def _draw_road(draw) -> None:
    half = geo.LANE_WIDTH
    for box in ([-half, -EXTENT, half, EXTENT], [-EXTENT, -half, EXTENT, half]):
        (x0, y0), (x1, y1) = _px([box[:2], box[2:]])
        draw.rectangle([x0, y0, x1, y1], fill=ROAD)
    edge = geo.OUTER_DISTANCE
    for sign in (-1, 1):  # dashed centre lines on the four arms
        for start in np.arange(edge, EXTENT, 6.0):
            seg = sign * np.array([start, min(start + 3.0, EXTENT)])
            draw.line(_px([[0, seg[0]], [0, seg[1]]]), fill=MARKING, width=1)
            draw.line(_px([[seg[0], 0], [seg[1], 0]]), fill=MARKING, width=1)


def _rectangle(position, heading) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    corners = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]]) * [vh.LENGTH / 2, vh.WIDTH / 2]
    return corners @ np.array([[c, s], [-s, c]]) + position


def draw_intersection(frame: dict[str, Any]):
    """One frame: road, destinations, vehicles, caption."""
    Image, ImageDraw = pil()
    img = Image.new("RGB", (SIZE, SIZE + HEADER), COLOURS["background"])
    draw = ImageDraw.Draw(img)
    _draw_road(draw)
    veh = jax.device_get(frame["state"].vehicles)
    exit_lanes = geo.lane_id(np.asarray(veh.destination), geo.EXIT)
    exits = np.asarray(geo.position(exit_lanes, np.full(4, 0.75 * EXTENT), 0.0))
    for i, point in enumerate(exits):  # destination: a disc at the far end of the exit lane
        (x, y), r = _px(point)[0], 6 + 3 * i
        draw.ellipse([x - r, y - r, x + r, y + r], outline=AGENT_COLOURS[i], width=2)
    arrived = _arrived(veh)
    for i in range(len(veh.speed)):
        corners = _px(_rectangle(np.asarray(veh.position[i]), float(veh.heading[i])))
        fill = CRASHED if bool(veh.crashed[i]) else AGENT_COLOURS[i]
        draw.polygon(corners, fill=fill, outline=(255, 255, 255) if arrived[i] else None)
        x, y = _px(veh.position[i])[0]
        draw.text((x - 3, y - 6), str(i), fill=(255, 255, 255))
    speeds = " ".join(f"{float(v):.0f}" for v in veh.speed)
    caption = f"t={frame['t']}  return={frame['return']:.0f}  speeds {speeds}"
    draw.text((4, 4), caption, fill=COLOURS["text"])
    return img


def _arrived(veh) -> np.ndarray:
    """[4] ``observe.arrived`` in NumPy (exit lanes are straight): no JAX call per frame."""
    lanes = geo.lane_id(np.asarray(veh.destination), geo.EXIT)
    along = np.sum(
        (np.asarray(veh.position) - geo.LANES.start[lanes]) * geo.LANES.direction[lanes], -1
    )
    return np.asarray(veh.on_exit_lane) & (along >= ARRIVE_DISTANCE)
