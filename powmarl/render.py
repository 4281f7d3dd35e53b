"""Animations of greedy episodes (GIF) for environments that draw themselves.

The episode is played step by step in Python with the same agent network and greedy
action choice as the compiled rollout, keeping every environment state; each frame is
drawn by the env's ``render_frame`` hook (:func:`powmarl.envs.contract.renderer`; the
built-in ones use Pillow, installed with ``pip install 'powmarl[report]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from powmarl.envs.contract import renderer


def play_episode(learner, env, agent_params, env_params, key) -> list[dict[str, Any]]:
    """One greedy episode; returns per step the env state before it, the joint action
    taken and the reward, plus a final entry with the last state."""
    from powmarl.runners.acting import agent_step, initial_hidden, no_last_actions

    spec = env.spec
    reset_key, run_key = jax.random.split(key)
    ts, env_state = jax.jit(env.reset)(reset_key, env_params)

    @jax.jit
    def act(hidden, obs, last_actions, avail):
        hidden, actions, _ = agent_step(learner, agent_params, hidden, obs, last_actions, avail)
        return hidden, actions

    step = jax.jit(env.step)
    hidden = initial_hidden(learner, spec.num_agents)
    last = no_last_actions(spec.num_agents)
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


def draw_frames(env, frames, env_params) -> list:
    """Images of the frames by the env's ``render_frame(frame, env_params)`` (frames it
    answers None for are left out); ValueError naming the env when it cannot be drawn."""
    draw = renderer(env)
    images = (draw(frame, env_params) for frame in frames)
    return [image for image in images if image is not None]


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
