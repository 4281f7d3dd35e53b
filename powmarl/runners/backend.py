"""The interface between the one training loop and what trains the members.

A backend owns the compiled pieces for one (algorithm, environment, config, members) and
a state stacked over members (leaves ``[M, ...]``: learner, buffer, keys, counters), which
the loop checkpoints as one tree whatever the backend. :func:`backend_for` is the only
place that tells JAX environments from Python (host) ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from powmarl.algos.base import Algorithm
from powmarl.config import Config, HParams
from powmarl.runners.members import Member


class Backend(Protocol):
    kind: str  # "jax" or "host": recorded in each checkpoint
    members: list[Member]
    iters_per_chunk: int
    learner: Any  # the bound Learner (networks, for read-outs)

    def init(self) -> Any:
        """A fresh state stacked over members, member i from ``jax.random.key(seed_i)``."""

    def template(self) -> Any:
        """The state's tree of ShapeDtypeStructs (what a checkpoint must match)."""

    def prepare(self, state: Any) -> Any:
        """Place a state (fresh or loaded from a checkpoint) where ``run_chunk`` wants it."""

    def run_chunk(self, state: Any, iteration: int) -> tuple[Any, dict[str, np.ndarray]]:
        """``iters_per_chunk`` iterations from loop iteration ``iteration``, then a greedy
        evaluation: (new state, metrics {name: [M]} with the names of ``period``)."""

    def evaluate(self, agent_params: Any, episodes: int, keys: Any) -> Any:
        """Greedy episodes of every member: EpisodeStats with [M, episodes] leaves."""

    def close(self) -> None:
        """Release what the backend started (worker processes)."""


def backend_for(
    env,
    cfg: Config,
    algo: Algorithm,
    members: Sequence[Member],
    hparams: HParams,
    env_params: Any = None,
    num_workers: int | None = None,
    log=None,
) -> Backend:
    """The backend that trains ``members`` of ``algo`` on ``env``: compiled and vmapped for a
    JAX env, worker processes and vmapped learner calls for a host env. ``hparams`` has
    [M] leaves; ``env_params`` (JAX envs) defaults to the env's own; ``num_workers`` (host
    envs) defaults to one process per core."""
    from powmarl.envs.contract import checked, env_kind

    env = checked(env)
    if env_kind(env) == "host":
        from powmarl.runners.host_backend import HostBackend

        return HostBackend(env, cfg, algo, list(members), hparams, num_workers, log)
    from powmarl.runners.jax_backend import JaxBackend

    env_params = env.default_params() if env_params is None else env_params
    return JaxBackend(env, cfg, algo, list(members), hparams, env_params, log)
