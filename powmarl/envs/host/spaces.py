"""Gymnasium spaces to powmarl's arrays: shared by the PettingZoo and gymma adapters.

Value decomposition needs every agent to choose from a finite action set (each agent's Q
is a vector over its actions, and the joint greedy action is each agent's argmax), so only
``Discrete`` action spaces are accepted. Observations of any space are flattened
(``gymnasium.spaces.flatten``: a ``Discrete`` becomes a one-hot, a ``Dict``/``Tuple`` the
concatenation of its parts) and zero-padded to the largest agent's size; actions are
padded to the largest agent's count, the padding never available.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

REWARD_MODES = ("sum", "mean")


def import_gymnasium(who: str, extra: str):
    """The gymnasium module, or an ImportError saying which extra provides it."""
    try:
        import gymnasium
    except ImportError as err:
        raise ImportError(f"{who}: needs gymnasium; pip install 'powmarl[{extra}]'") from err
    return gymnasium


def check_reward_mode(reward: str) -> str:
    if reward not in REWARD_MODES:
        raise ValueError(f"reward: must be one of {', '.join(REWARD_MODES)}, got {reward!r}")
    return reward


def team_reward(rewards: Sequence[float], mode: str) -> float:
    """The team reward r = sum_i r_i ("sum") or (1/n) sum_i r_i ("mean") of n agents' rewards."""
    total = float(np.sum(np.asarray(rewards, np.float64))) if len(rewards) else 0.0
    return total / len(rewards) if mode == "mean" and len(rewards) else total


def discrete_actions(space: Any, who: str) -> tuple[int, int]:
    """(n, start) of a ``Discrete`` action space; a one-line ValueError for anything else."""
    import gymnasium.spaces as gs

    if isinstance(space, gs.Discrete):
        return int(space.n), int(space.start)
    if isinstance(space, gs.Box):
        raise ValueError(  # noqa: TRY004 - the env's choice, not a wrong argument type
            f"{who}: has a continuous action space {space}; value decomposition takes each "
            "agent's argmax over a finite set of Q-values, so it needs Discrete actions (MPE: "
            "continuous_actions=False)"
        )
    raise ValueError(
        f"{who}: has action space {space}; value decomposition needs a Discrete action space "
        "per agent (one Q-value per action)"
    )


def flat_dim(space: Any) -> int:
    import gymnasium.spaces as gs

    return int(gs.flatdim(space))


def flat_obs(space: Any, value: Any, width: int) -> np.ndarray:
    """``value`` of ``space`` flattened to float32 and zero-padded to ``width``. [width]"""
    import gymnasium.spaces as gs

    flat = np.asarray(gs.flatten(space, value), np.float32).reshape(-1)
    out = np.zeros(width, np.float32)
    out[: flat.shape[0]] = flat
    return out


def padded_mask(mask: Any, width: int) -> np.ndarray:
    """An agent's action mask (0/1 or bool, length n <= width) as bool, padded False. [width]"""
    mask = np.asarray(mask).reshape(-1).astype(bool)
    out = np.zeros(width, bool)
    out[: mask.shape[0]] = mask
    return out
