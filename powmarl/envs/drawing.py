"""Frames of greedy episodes drawn with Pillow, for the envs' ``render_frame`` hooks.

Pillow comes with ``pip install 'powmarl[report]'``; it is imported only when drawing.
A frame is one entry of :func:`powmarl.render.play_episode`: a dict with "state" (the env
state before the step), "actions" ([A] ints, None on the final entry), "reward",
"return" and "t".
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

CELL = 40  # pixels per grid cell
HEADER = 24  # pixels of the caption strip above the picture
COLOURS = {
    "background": (250, 250, 250),
    "grid": (210, 210, 210),
    "agent": (40, 100, 220),
    "frozen": (150, 170, 200),
    "stag": (200, 120, 30),
    "text": (20, 20, 20),
    "chosen": (60, 180, 90),
}


def pil():
    """(PIL.Image, PIL.ImageDraw), or ImportError saying how to install Pillow."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError(
            "render: animations need Pillow; install with pip install 'powmarl[report]'"
        ) from None
    return Image, ImageDraw


def _cell_box(row: int, col: int, inset: int) -> list[int]:
    """Pixel box [x0, y0, x1, y1] of grid cell (row, col), shrunk by ``inset`` pixels."""
    x, y = col * CELL, HEADER + row * CELL
    return [x + inset, y + inset, x + CELL - inset, y + CELL - inset]


def draw_grid_hunt(grid_size: int, frame: dict[str, Any]):
    """A predator-prey frame: grid lines, live stags (squares), agents (numbered discs,
    pale when frozen) and the time and return so far."""
    Image, ImageDraw = pil()
    n = grid_size
    img = Image.new("RGB", (n * CELL, n * CELL + HEADER), COLOURS["background"])
    draw = ImageDraw.Draw(img)
    for i in range(n + 1):
        draw.line([(0, HEADER + i * CELL), (n * CELL, HEADER + i * CELL)], fill=COLOURS["grid"])
        draw.line([(i * CELL, HEADER), (i * CELL, HEADER + n * CELL)], fill=COLOURS["grid"])
    state = jax.device_get(frame["state"])
    for (row, col), alive in zip(np.asarray(state.stag_pos), np.asarray(state.stag_alive)):
        if alive:
            draw.rectangle(_cell_box(row, col, 6), fill=COLOURS["stag"])
    agents = zip(np.asarray(state.agent_pos), np.asarray(state.frozen))
    for i, ((row, col), frozen) in enumerate(agents):
        draw.ellipse(_cell_box(row, col, 4), fill=COLOURS["frozen" if frozen else "agent"])
        draw.text((col * CELL + 14, HEADER + row * CELL + 12), str(i), fill=(255, 255, 255))
    draw.text((4, 4), f"t={frame['t']}  return={frame['return']:.1f}", fill=COLOURS["text"])
    return img


def draw_payoff_table(payoff, frame: dict[str, Any]):
    """A two-agent matrix-game frame: the payoff table with the chosen joint action
    highlighted, or None for the final entry (no action: the game is over)."""
    chosen = frame["actions"]
    if chosen is None:
        return None
    Image, ImageDraw = pil()
    table = np.asarray(payoff)
    if table.ndim != 2:
        raise ValueError("render: matrix games are drawn for two agents only")
    rows, cols = table.shape
    img = Image.new("RGB", (cols * CELL * 2, rows * CELL + HEADER), COLOURS["background"])
    draw = ImageDraw.Draw(img)
    joint = tuple(int(a) for a in chosen)
    for r in range(rows):
        for c in range(cols):
            box = [
                c * CELL * 2,
                HEADER + r * CELL,
                (c + 1) * CELL * 2 - 1,
                HEADER + (r + 1) * CELL - 1,
            ]
            fill = COLOURS["chosen"] if (r, c) == joint else COLOURS["background"]
            draw.rectangle(box, fill=fill, outline=COLOURS["grid"])
            draw.text((box[0] + 10, box[1] + 12), f"{table[r, c]:g}", fill=COLOURS["text"])
    draw.text((4, 4), f"joint action {joint}  return={frame['return']:g}", fill=COLOURS["text"])
    return img
