"""The data contract shared by environments, buffer, learner and runners.

Shape letters: S seeds, E parallel envs, B episodes in a batch, T time steps
(= episode_limit), A agents, U actions per agent, O obs dim, X state dim.
Agents are an array axis; stored data is batch-major ``[B, T(+1), A, ...]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax

Array = jax.Array
PRNGKey = jax.Array
EnvParams = Any
EnvState = Any


class EnvSpec(NamedTuple):
    """Static, hashable sizes of an environment."""

    num_agents: int
    num_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int


@flax.struct.dataclass
class TimeStep:
    """What one environment returns for all agents after reset or step.

    ``terminated`` is a natural end (no bootstrap past it); ``truncated`` is the
    time limit (bootstrap through it). Observations and states may use a compact
    dtype (e.g. uint8 grids); the networks cast to float32.
    """

    obs: Array  # [A, O]
    state: Array  # [X]
    avail_actions: Array  # [A, U] bool, at least one True per agent
    reward: Array  # [] float32
    terminated: Array  # [] bool
    truncated: Array  # [] bool
    info: dict[str, Array]  # fixed keys per env, scalar float32 values


@flax.struct.dataclass
class EpisodeBatch:
    """Whole episodes, batch-major. Leading dims [B] (or none for one episode).

    ``filled[t]`` marks a real transition t (the loss mask); after the episode
    ends every later slot is padding. ``obs``/``state``/``avail_actions`` hold
    T+1 slots: slot t+1 is what follows action t, so the last slot serves the
    bootstrap.
    """

    obs: Array  # [B, T+1, A, O]
    state: Array  # [B, T+1, X]
    avail_actions: Array  # [B, T+1, A, U] bool
    actions: Array  # [B, T, A] uint8/int32
    reward: Array  # [B, T] float32
    terminated: Array  # [B, T] bool
    filled: Array  # [B, T] bool
