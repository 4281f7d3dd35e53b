"""Suite-wide test setup: JAX's key-reuse checker (DESIGN sec. 7).

The checker is not switched on for the whole suite because ``tests/test_stag_hunt.py``
replays keys on purpose to test determinism.

Instead, test modules whose library code is expected to be key-clean (core, networks,
learner, runners, CLI) opt in with ``pytestmark = pytest.mark.usefixtures("key_reuse_check")``.
Set ``POWMARL_KEY_REUSE=1`` to turn the checker on for everything.
"""

from __future__ import annotations

import os

import jax
import pytest

if os.environ.get("POWMARL_KEY_REUSE") == "1":
    jax.config.update("jax_debug_key_reuse", True)


@pytest.fixture
def key_reuse_check():
    """Run the test with JAX's key-reuse checker on: any reused PRNG key raises KeyReuseError."""
    with jax.debug_key_reuse(True):
        yield
