"""Members: the trained copies of one run (a seed, and in a sweep one grid point)."""

from __future__ import annotations

import dataclasses
import os
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


def init_program(init):
    """The members' initialisation as it runs: one compiled program, or op by op when
    ``POWMARL_COMPILE_INIT=0``.

    Both give bitwise the same state (tests/test_backends.py checks). Compiling it is
    cheaper for a single run; op by op is cheaper when many runs start in one process (the
    test suite), because its small kernels are compiled once and shared by all of them: a
    vmapped POW-QMIX init on the matrix game costs ~20 s CPU compiled and ~4-9 s op by op
    once another algorithm's init has run.
    """
    if os.environ.get("POWMARL_COMPILE_INIT", "1") != "0":
        return jax.jit(init)
    return lambda *args: _distinct_buffers(init(*args))


def _distinct_buffers(tree):
    """Copy every leaf that is the same array as an earlier one: run op by op, an init
    hands back the same array for, e.g., the parameters and their target copy, and a
    compiled step that donates its state must not receive one buffer twice."""
    seen: set[int] = set()

    def distinct(x):
        if id(x) not in seen:
            seen.add(id(x))
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                jnp.copy(jax.random.key_data(x)), impl=jax.random.key_impl(x)
            )
        return jnp.copy(x)

    return jax.tree.map(distinct, tree)


def member_keys(members: Sequence[Member]):
    """Member i's run key: ``jax.random.key(seed_i)``, the same as the seed alone."""
    return jax.vmap(jax.random.key)(jnp.asarray([m.seed for m in members], dtype=jnp.uint32))


def from_record(record: dict) -> list[Member]:
    """The members (seed, sweep hyperparameters) a run's ``config.json`` lists."""
    return [Member(int(m["seed"]), dict(m["hparams"])) for m in record["members"]]
