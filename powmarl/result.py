"""What ``powmarl.train`` and ``powmarl.resume`` return: :class:`TrainResult`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from powmarl.config import Config, HParams
from powmarl.runners.backend import Backend
from powmarl.runners.evaluate import one_step_tables
from powmarl.runners.members import Member


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: per-member metrics and the trained parameters.

    A member is a seed, or in a hyperparameter sweep a (grid point, seed) pair; per-member
    arrays follow the order of ``members``.
    """

    algo: str
    env: Any
    members: list[Member]
    config: Config
    hparams: HParams  # leaves [M]
    metrics: list[dict[str, Any]]  # one row per member per evaluation
    params: Any  # learner parameters, leaves [M, ...]
    env_params: Any
    backend: Backend
    run_dir: Path | None = None

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members]

    @property
    def labels(self) -> list[str]:
        """'seed' or 'seed variant' per member (keys of tables.json)."""
        return [m.label for m in self.members]

    def _member_rows(self) -> list[list[dict[str, Any]]]:
        index = {(m.seed, m.variant): i for i, m in enumerate(self.members)}
        out: list[list[dict[str, Any]]] = [[] for _ in self.members]
        for row in self.metrics:
            out[index[(row["seed"], row.get("variant", ""))]].append(row)
        return out

    def _column(self, name: str) -> np.ndarray:
        return np.asarray([rows[-1][name] for rows in self._member_rows()], dtype=np.float64)

    @property
    def final_eval_return(self) -> np.ndarray:
        """Greedy test return at the end of training, [num_members]."""
        return self._column("eval/return_mean")

    @property
    def t_env(self) -> np.ndarray:
        return self._column("t_env")

    def curve(self, name: str = "eval/return_mean") -> tuple[np.ndarray, np.ndarray]:
        """(t_env [M, N], values [M, N]) of a logged metric."""
        rows = self._member_rows()
        t = np.asarray([[r["t_env"] for r in rs] for rs in rows], dtype=np.float64)
        v = np.asarray([[r[name] for r in rs] for rs in rows], dtype=np.float64)
        return t, v

    def seed_params(self, i: int):
        """Parameters of member ``i``."""
        return jax.tree.map(lambda x: x[i], self.params)

    def tables(self, key: jax.Array | None = None) -> list[dict[str, np.ndarray]]:
        """One-step games, per member: greedy joint action, Q_i, and the tables of Q_tot and
        of the extras that have one ("central" = Q*, "recogniser" = Q_r). ``key`` resets
        the game (a one-step game's reset is deterministic; default ``key(0)``)."""
        if self.env.spec.episode_limit != 1:
            raise ValueError("tables: only defined for one-step games (episode_limit 1)")
        if self.backend.kind != "jax":
            raise ValueError("tables: not available for host envs (use the JAX 'matrix' game)")
        key = jax.random.key(0) if key is None else key
        learner = self.backend.learner
        return [
            one_step_tables(learner, self.env, self.seed_params(i), self.env_params, key)
            for i in range(len(self.members))
        ]

    def greedy_actions(self) -> np.ndarray:
        """One-step games: the greedy joint action of each member, [M, num_agents]."""
        return np.stack([t["greedy_actions"] for t in self.tables()])
