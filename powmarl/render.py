"""Animations of greedy episodes (GIF) for the grid and matrix environments.

The episode is played step by step in Python with the same agent network and greedy
action choice as the compiled rollout, keeping every environment state; frames are
drawn with Pillow (installed with ``pip install 'powmarl[report]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.core.exploration import masked_argmax

CELL = 40  # pixels per grid cell
COLOURS = {
    "background": (250, 250, 250),
    "grid": (210, 210, 210),
    "agent": (40, 100, 220),
    "frozen": (150, 170, 200),
    "stag": (200, 120, 30),
    "text": (20, 20, 20),
    "chosen": (60, 180, 90),
}


def _pil():
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError(
            "render: animations need Pillow; install with pip install 'powmarl[report]'"
        ) from None
    return Image, ImageDraw


def play_episode(runner, env, agent_params, env_params, key) -> list[dict[str, Any]]:
    """One greedy episode; returns per step the env state before it, the joint action
    taken and the reward, plus a final entry with the last state."""
    learner = runner.learner
    spec = env.spec
    reset_key, run_key = jax.random.split(key)
    ts, env_state = jax.jit(env.reset)(reset_key, env_params)

    @jax.jit
    def act(hidden, obs, last_actions, avail):
        hidden, q = learner.agent.apply(
            agent_params, hidden, learner.agent_inputs(obs, last_actions)
        )
        return hidden, masked_argmax(q, avail)

    step = jax.jit(env.step)
    hidden = jnp.zeros((spec.num_agents, learner.agent.hidden_dim), jnp.float32)
    last = jnp.full((spec.num_agents,), -1, jnp.int32)
    frames, total = [], 0.0
    step_keys = jax.random.split(run_key, spec.episode_limit)
    for t in range(spec.episode_limit):
        hidden, actions = act(hidden, ts.obs, last, ts.avail_actions)
        next_ts, next_state = step(step_keys[t], env_state, actions, env_params)
        total += float(next_ts.reward)
        frames.append(
            {
                "state": env_state,
                "actions": np.asarray(actions),
                "reward": float(next_ts.reward),
                "return": total,
                "t": t,
            }
        )
        ts, env_state, last = next_ts, next_state, actions
        if bool(next_ts.terminated) or bool(next_ts.truncated):
            break
    frames.append(
        {"state": env_state, "actions": None, "reward": 0.0, "return": total, "t": len(frames)}
    )
    return frames


def _draw_stag_hunt(env, frame):
    Image, ImageDraw = _pil()
    n = env.grid_size
    header = 24
    img = Image.new("RGB", (n * CELL, n * CELL + header), COLOURS["background"])
    draw = ImageDraw.Draw(img)
    for i in range(n + 1):
        draw.line([(0, header + i * CELL), (n * CELL, header + i * CELL)], fill=COLOURS["grid"])
        draw.line([(i * CELL, header), (i * CELL, header + n * CELL)], fill=COLOURS["grid"])
    state = jax.device_get(frame["state"])
    for (row, col), alive in zip(np.asarray(state.stag_pos), np.asarray(state.stag_alive)):
        if alive:
            box = [
                col * CELL + 6,
                header + row * CELL + 6,
                (col + 1) * CELL - 6,
                header + (row + 1) * CELL - 6,
            ]
            draw.rectangle(box, fill=COLOURS["stag"])
    for i, ((row, col), frozen) in enumerate(
        zip(np.asarray(state.agent_pos), np.asarray(state.frozen))
    ):
        box = [
            col * CELL + 4,
            header + row * CELL + 4,
            (col + 1) * CELL - 4,
            header + (row + 1) * CELL - 4,
        ]
        draw.ellipse(box, fill=COLOURS["frozen" if frozen else "agent"])
        draw.text((col * CELL + 14, header + row * CELL + 12), str(i), fill=(255, 255, 255))
    draw.text((4, 4), f"t={frame['t']}  return={frame['return']:.1f}", fill=COLOURS["text"])
    return img


def _draw_matrix(env, frame, payoff):
    Image, ImageDraw = _pil()
    table = np.asarray(payoff)
    if table.ndim != 2:
        raise ValueError("render: matrix games are drawn for two agents only")
    rows, cols = table.shape
    header = 24
    img = Image.new("RGB", (cols * CELL * 2, rows * CELL + header), COLOURS["background"])
    draw = ImageDraw.Draw(img)
    chosen = frame["actions"]
    for r in range(rows):
        for c in range(cols):
            box = [
                c * CELL * 2,
                header + r * CELL,
                (c + 1) * CELL * 2 - 1,
                header + (r + 1) * CELL - 1,
            ]
            hit = chosen is not None and (r, c) == tuple(int(a) for a in chosen)
            draw.rectangle(
                box,
                fill=COLOURS["chosen"] if hit else COLOURS["background"],
                outline=COLOURS["grid"],
            )
            draw.text((box[0] + 10, box[1] + 12), f"{table[r, c]:g}", fill=COLOURS["text"])
    label = "joint action " + (str(tuple(int(a) for a in chosen)) if chosen is not None else "-")
    draw.text((4, 4), f"{label}  return={frame['return']:g}", fill=COLOURS["text"])
    return img


def draw_frames(env, frames, env_params) -> list:
    """Pillow images of the frames; raises ValueError for environments without a drawer."""
    from powmarl.envs.matrix import MatrixGame
    from powmarl.envs.stag_hunt import StagHunt

    if isinstance(env, StagHunt):
        return [_draw_stag_hunt(env, f) for f in frames]
    if isinstance(env, MatrixGame):
        return [_draw_matrix(env, f, env_params) for f in frames[:-1]] or []
    raise ValueError(
        f"render: no drawer for {type(env).__name__}; supported: matrix games, stag_hunt"
    )


def write_gif(images, path: str | Path, frame_ms: int = 300) -> Path:
    """Write the images as a looping GIF (atomically)."""
    import os

    path = Path(path)
    if not images:
        raise ValueError("render: the episode produced no frames")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0
        )
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(f"render: cannot write {path}: {err.strerror or err}") from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
