"""Checkpoint files: leaf-by-leaf save/load round trip, np.savez compatibility both ways,
and a loaded state that a donating program can consume (no host copy left behind)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from powmarl.io import checkpoint


@pytest.fixture(scope="module")
def state():
    return {
        "key": jax.random.key(3),
        "w": jnp.arange(12, dtype=jnp.float32).reshape(3, 4) / 7,
        "n": jnp.asarray([1, -2, 3], jnp.int32),
        "flag": jnp.asarray([True, False]),
        "h": jnp.ones((2, 5), jnp.float16),
    }


def _template(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _same(a, b):
    if checkpoint._is_key(a):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_round_trip_is_bitwise_and_loads_device_arrays(tmp_path, state):
    checkpoint.save(tmp_path, state, {"iteration": 4})
    ckpt = checkpoint.load_latest(tmp_path, _template(state))
    assert ckpt.meta["iteration"] == 4 and ckpt.meta["num_leaves"] == 5
    assert all(jax.tree.leaves(jax.tree.map(_same, state, ckpt.state)))
    # device arrays, not numpy: a host copy would stay alive beside the program's copy
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(ckpt.state))


def test_loaded_state_is_donated(tmp_path, state):
    """The first run_chunk donates its state; a loaded checkpoint must be donatable."""
    checkpoint.save(tmp_path, state, {"iteration": 1})
    loaded = checkpoint.load_latest(tmp_path, _template(state)).state
    step = jax.jit(lambda t: jax.tree.map(lambda x: x + 1, t), donate_argnums=0)
    step({"w": loaded["w"], "n": loaded["n"]})
    assert loaded["w"].is_deleted() and loaded["n"].is_deleted()


def test_files_are_np_savez_compatible_both_ways(tmp_path, state):
    path = checkpoint.save(tmp_path, state, {"iteration": 2})
    leaves = [jax.random.key_data(x) if checkpoint._is_key(x) else x
              for x in jax.tree.leaves(state)]
    with np.load(path) as npz:  # ours read by numpy
        assert all(_same(npz[f"arr_{i}"], leaf) for i, leaf in enumerate(leaves))
    np.savez(path, *[np.asarray(x) for x in leaves])  # numpy's read by ours
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record.update(sha256=checkpoint._sha256(path), bytes=path.stat().st_size)
    record_path.write_text(json.dumps(record))
    ckpt = checkpoint.load_latest(tmp_path, _template(state))
    assert all(jax.tree.leaves(jax.tree.map(_same, state, ckpt.state)))


def test_an_aligned_leaf_is_copied_not_aliased():
    """On CPU device_put aliases a 64-byte-aligned host array; donation would then free
    nothing, so a loaded leaf must own its memory whatever the file's alignment."""
    raw = np.empty(4096 + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    array = raw[start : start + 4096].view(np.float32)
    array[:] = 1.5
    leaf = checkpoint._device_leaf(array, jax.ShapeDtypeStruct(array.shape, array.dtype), 0, "x")
    assert leaf.unsafe_buffer_pointer() != array.ctypes.data
    assert _same(leaf, array)
