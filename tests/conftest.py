"""Suite-wide test setup: JAX's key-reuse checker (DESIGN sec. 7), a compilation cache.

The checker is not switched on for the whole suite because ``tests/test_stag_hunt.py``
replays keys on purpose to test determinism.

Instead, test modules whose library code is expected to be key-clean (core, networks,
learner, runners, CLI) opt in with ``pytestmark = pytest.mark.usefixtures("key_reuse_check")``.
Set ``POWMARL_KEY_REUSE=1`` to turn the checker on for everything.

A per-session JAX compilation cache speeds up tests that compile the same programs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# A compilation cache shared by this test session and the subprocesses it starts: many
# tests compile the same small programs (set before jax is imported; removed at exit).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="powmarl-test-jax-cache-")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax
import pytest

if os.environ.get("POWMARL_KEY_REUSE") == "1":
    jax.config.update("jax_debug_key_reuse", True)


@pytest.fixture
def key_reuse_check():
    """Run the test with JAX's key-reuse checker on: any reused PRNG key raises KeyReuseError."""
    with jax.debug_key_reuse(True):
        yield
