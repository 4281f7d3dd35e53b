"""Checkpoints of the whole training state, written atomically and verified on load.

A checkpoint is two files in ``RUN_DIR/checkpoints/``:

- ``ckpt-<iteration>.npz``: every leaf of the (seed-stacked) runner state, or of a host
  run's {finished members' params, current state} tree, in tree order;
- ``ckpt-<iteration>.json``: the SHA-256 of the ``.npz``, its size, and the loop position
  (iteration index, metrics rows written, elapsed time, whether training finished).

Both are written to a temporary file, fsynced and renamed; the ``.json`` goes last, so a
checkpoint without its ``.json`` (a kill during the write) is ignored. On load the hash
is checked: a corrupt or truncated checkpoint is reported and never loaded, and the
previous good one is used. The newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.io.run_dir import atomic_write, atomic_write_text

_NAME = re.compile(r"^ckpt-(\d{9})\.json$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or none could be loaded."""


class Checkpoint(NamedTuple):
    state: Any  # the runner state, leaves stacked over members
    meta: dict[str, Any]
    path: Path


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def save(run_dir: str | os.PathLike, state: Any, meta: dict[str, Any], keep: int = 3) -> Path:
    """Write a checkpoint of ``state`` labelled by ``meta["iteration"]``; prune to ``keep``.

    Raises :class:`CheckpointError` naming the file when the write fails (disk full,
    permissions); earlier checkpoints are left untouched.
    """
    directory = checkpoint_dir(run_dir)
    stem = f"ckpt-{int(meta['iteration']):09d}"
    data_path = directory / f"{stem}.npz"
    leaves = jax.tree.leaves(state)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(data_path, lambda fh: _write_leaves(fh, leaves))
        record = {
            **meta,
            "file": data_path.name,
            "sha256": _sha256(data_path),
            "bytes": data_path.stat().st_size,
            "num_leaves": len(leaves),
        }
        atomic_write_text(directory / f"{stem}.json", json.dumps(record, indent=1))
    except OSError as err:
        previous = [p.stem for p in list_checkpoints(run_dir) if p.stem != stem]
        kept = f"; the previous checkpoint {previous[-1]} is kept" if previous else ""
        raise CheckpointError(
            f"checkpoint: cannot write {data_path}: {err.strerror or err}{kept}"
        ) from err
    _prune(directory, keep)
    return data_path


def _host(leaf) -> np.ndarray:
    """One leaf as a host array (a key as its raw data)."""
    return np.asarray(jax.device_get(jax.random.key_data(leaf) if _is_key(leaf) else leaf))


def _write_leaves(fh, leaves) -> None:
    """Write ``leaves`` as ``np.savez`` does (entries ``arr_<i>.npy``, stored, zip64), one
    leaf at a time: only one leaf is ever copied to the host, never the whole state (on
    an accelerator ``device_get`` of the tree would hold a second full copy)."""
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for i, leaf in enumerate(leaves):
            with zf.open(f"arr_{i}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, _host(leaf), allow_pickle=False)


def _prune(directory: Path, keep: int) -> None:
    metas = sorted(p for p in directory.glob("ckpt-*.json") if _NAME.match(p.name))
    for meta_path in metas[: max(0, len(metas) - keep)]:
        meta_path.unlink(missing_ok=True)  # meta first: a half-pruned one is then ignored
        meta_path.with_suffix(".npz").unlink(missing_ok=True)
    live = {p.with_suffix(".npz").name for p in metas[-keep:]} if keep else set()
    for data in directory.glob("ckpt-*.npz"):
        if data.name not in live:  # data of a write killed before its .json
            data.unlink(missing_ok=True)
    own = f".tmp-{os.getpid()}"
    for tmp in directory.glob(".ckpt-*.tmp-*"):  # temporaries of killed processes
        if not tmp.name.endswith(own):
            tmp.unlink(missing_ok=True)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The ``.json`` records of the checkpoints in ``run_dir``, oldest first."""
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("ckpt-*.json") if _NAME.match(p.name))


def _load_one(meta_path: Path, template: Any) -> Checkpoint:
    """Load one checkpoint against ``template`` (a tree of ShapeDtypeStructs); raise
    :class:`CheckpointError` saying what is wrong with it."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        data_path = meta_path.with_name(meta["file"])
        expected = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{meta_path.name}: unreadable record ({err})") from None
    if not data_path.exists():
        raise CheckpointError(f"{data_path.name}: missing")
    if data_path.stat().st_size != meta.get("bytes") or _sha256(data_path) != expected:
        raise CheckpointError(f"{data_path.name}: checksum mismatch (corrupt or truncated)")
    if callable(template):  # the tree's shape depends on the record (host runs)
        try:
            template = template(meta)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{meta_path.name}: unreadable record ({err!r})") from None
    specs, treedef = jax.tree.flatten(template)
    with np.load(data_path) as npz:
        if len(npz.files) != len(specs):
            raise CheckpointError(
                f"{data_path.name}: holds {len(npz.files)} arrays, this configuration needs "
                f"{len(specs)} (was the run's config changed?)"
            )
        leaves = [_device_leaf(npz[f"arr_{i}"], spec, i, data_path.name)
                  for i, spec in enumerate(specs)]
    return Checkpoint(jax.tree.unflatten(treedef, leaves), meta, data_path)


def _device_leaf(array: np.ndarray, spec, i: int, name: str):
    """Leaf ``i`` read from the file, checked against ``spec`` and copied into a device
    array that owns its memory. Reading and placing leaf by leaf keeps at most one leaf on
    the host; a state of host arrays would stay alive beside the device copy the first
    (donating) ``run_chunk`` makes of it, and numpy memory cannot be donated. The copy must
    be real: on CPU ``device_put`` aliases a 64-byte-aligned numpy array (even with
    ``may_alias=False``, jax 0.10) and donating such a buffer frees nothing (the step then
    holds two states); ``jnp.array(copy=True)`` copies twice, so it is the fallback only."""
    if not _is_key(spec) and (array.shape != spec.shape or array.dtype != spec.dtype):
        raise CheckpointError(
            f"{name}: leaf {i} is {array.dtype}{list(array.shape)}, expected "
            f"{spec.dtype}{list(spec.shape)} (was the run's config changed?)"
        )
    leaf = jax.device_put(array)
    if array.size and leaf.unsafe_buffer_pointer() == array.ctypes.data:  # aliased
        leaf = jnp.array(array, copy=True)
    return jax.random.wrap_key_data(leaf) if _is_key(spec) else leaf


def load_latest(run_dir: str | os.PathLike, template: Any, log=None) -> Checkpoint | None:
    """The newest checkpoint that verifies, or None when there is none at all.

    ``template`` is a tree of ShapeDtypeStructs, or a function of the record giving one.

    Corrupt ones are reported through ``log`` (default: stderr) and skipped. Raises
    :class:`CheckpointError` when checkpoints exist but none verifies.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    candidates = list_checkpoints(run_dir)
    problems = []
    for meta_path in reversed(candidates):
        try:
            return _load_one(meta_path, template)
        except CheckpointError as err:
            problems.append(str(err))
            log(f"powmarl: checkpoint {err}; not loaded, trying the previous one")
    if problems:
        raise CheckpointError(
            f"checkpoint: no valid checkpoint in {checkpoint_dir(run_dir)}: " + "; ".join(problems)
        )
    return None
