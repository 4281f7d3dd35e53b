"""Members: the trained copies of one run (a seed, and in a sweep one grid point)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from powmarl.config import HParams


@dataclasses.dataclass(frozen=True)
class Member:
    """One trained copy: its seed, and its hyperparameter overrides in a sweep."""

    seed: int
    hparams: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def variant(self) -> str:
        """'' alone; 'name=value,...' for a sweep member (sorted by name)."""
        return ",".join(f"{k}={v:g}" for k, v in sorted(self.hparams.items()))

    @property
    def label(self) -> str:
        """'seed' or 'seed variant' (the keys of tables.json)."""
        return f"{self.seed} {self.variant}".strip()

    def describe(self) -> str:
        """'seed 3' or 'seed 3 (alpha=0.5)', for messages."""
        return f"seed {self.seed}" + (f" ({self.variant})" if self.variant else "")


def stack_hparams(hps: Sequence[HParams]) -> HParams:
    """One HParams whose leaves are [M] float32, member i's values at index i."""
    return jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *hps)


def member_keys(members: Sequence[Member]):
    """Member i's run key: ``jax.random.key(seed_i)``, the same as the seed alone."""
    return jax.vmap(jax.random.key)(jnp.asarray([m.seed for m in members], dtype=jnp.uint32))


def from_record(record: dict) -> list[Member]:
    """The members (seed, sweep hyperparameters) a run's ``config.json`` lists."""
    return [Member(int(m["seed"]), dict(m["hparams"])) for m in record["members"]]
