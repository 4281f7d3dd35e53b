"""The checkpoint of the absolute metric: each member's agent at its best greedy evaluation.

Gorsane et al. (2022) report, beside the learning curve, the "absolute metric": the best
policy found during training, re-evaluated with many more episodes. The loop keeps it here,
beside the newest full checkpoints (:mod:`powmarl.io.checkpoint`), as two files per member
and improvement in ``RUN_DIR/checkpoints/best/``:

- ``m<member>-<iteration>.npz``: the member's agent parameters (no optimiser, buffer or
  key: enough to act greedily), leaves in tree order;
- ``m<member>-<iteration>.json``: seed, variant, iteration, t_env, the metric ranked by
  and its score, and the SHA-256 of the ``.npz`` (written last, checked on load).

The score is the env's main metric (:func:`metric_key`) at each evaluation; a member's
entry is written when it beats every earlier one (ties keep the earlier). Entries are
named by the loop iteration of their evaluation, as checkpoints are, so a resume drops
those after its checkpoint (:func:`truncate`) and the re-run writes them again; pruning
(:func:`prune`) keeps, per member, everything a resume from any kept checkpoint needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from powmarl.io.run_dir import atomic_write, atomic_write_text

_NAME = re.compile(r"^m(\d+)-(\d{9})\.json$")
DEFAULT_METRICS = ("eval/battle_won_mean", "eval/return_mean")


class Entry(NamedTuple):
    member: int  # index in the run's members
    iteration: int  # loop iteration of the evaluation (a checkpoint's label)
    path: Path  # the .json record


def best_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints" / "best"


def metric_key(declared: str | None, names: Iterable[str]) -> str:
    """The metrics key a best evaluation is ranked by: ``eval/<declared>_mean`` (the return
    for ``"return"``) when the env declares its main metric, else the win rate where the
    env reports ``battle_won``, else the greedy test return."""
    names = set(names)
    if declared is not None:
        key = f"eval/{declared}_mean"
        if key not in names:
            reported = sorted(n[5:-5] for n in names if re.fullmatch(r"eval/.+_mean", n))
            raise ValueError(
                f"main_metric: the env declares {declared!r}, which its evaluations do not "
                f"report; allowed: {', '.join(reported)}"
            )
        return key
    win_rate, test_return = DEFAULT_METRICS
    return win_rate if win_rate in names else test_return


def entries(run_dir: str | os.PathLike) -> list[Entry]:
    """Every entry's record, by member then iteration."""
    directory = best_dir(run_dir)
    found = []
    for path in directory.glob("m*-*.json") if directory.is_dir() else ():
        match = _NAME.match(path.name)
        if match:
            found.append(Entry(int(match[1]), int(match[2]), path))
    return sorted(found)


def latest(run_dir: str | os.PathLike) -> dict[int, Entry]:
    """The newest entry of each member: its best evaluation so far."""
    return {e.member: e for e in entries(run_dir)}


def read_meta(entry: Entry) -> dict[str, Any]:
    try:
        return json.loads(entry.path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"best checkpoint: unreadable record {entry.path} ({err})") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(run_dir, index: int, head: dict[str, Any], agent_params: Any) -> Path:
    """Write member ``index``'s entry: ``head`` (seed, variant, iteration, t_env, metric,
    score) and its agent parameters (one member's tree, no member axis)."""
    directory = best_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"m{index:03d}-{int(head['iteration']):09d}"
    data = directory / f"{stem}.npz"
    leaves = [np.asarray(x) for x in jax.tree.leaves(agent_params)]
    atomic_write(data, lambda fh: np.savez(fh, *leaves))
    record = {**head, "member": index, "file": data.name, "sha256": _sha256(data)}
    atomic_write_text(directory / f"{stem}.json", json.dumps(record, indent=1))
    return data


def _remove(entry: Entry) -> None:
    entry.path.unlink(missing_ok=True)  # the record first: a half-removed entry is ignored
    entry.path.with_suffix(".npz").unlink(missing_ok=True)


def truncate(run_dir: str | os.PathLike, iteration: int) -> None:
    """Drop the entries of evaluations after ``iteration`` (the resumed checkpoint's)."""
    for entry in entries(run_dir):
        if entry.iteration > iteration:
            _remove(entry)


def prune(run_dir: str | os.PathLike, oldest_checkpoint: int) -> None:
    """Per member, keep the newest entry at or before the oldest kept checkpoint (the best a
    resume from it starts with) and every later one; drop the rest and stray ``.npz``."""
    keep: dict[int, Entry] = {}
    for entry in entries(run_dir):
        if entry.iteration <= oldest_checkpoint:
            if entry.member in keep:
                _remove(keep[entry.member])
            keep[entry.member] = entry
    live = {e.path.with_suffix(".npz").name for e in entries(run_dir)}
    for data in best_dir(run_dir).glob("m*-*.npz"):
        if data.name not in live:
            data.unlink(missing_ok=True)


class Tracker:
    """Writes a member's entry whenever its evaluation beats its best so far."""

    def __init__(self, run_dir: str | os.PathLike, members: Sequence[Any], declared: str | None):
        self.run_dir, self.members, self.declared = Path(run_dir), list(members), declared
        self.scores = {i: float(read_meta(e)["score"]) for i, e in latest(run_dir).items()}

    def update(self, state: Any, metrics: dict[str, Any], iteration: int) -> list[int]:
        """Record the members whose evaluation in ``metrics`` is their best; their indices."""
        key = metric_key(self.declared, metrics)
        values = np.asarray(metrics[key], dtype=np.float64)
        improved = [
            i
            for i, v in enumerate(values)
            if np.isfinite(v) and (i not in self.scores or v > self.scores[i])
        ]
        if not improved:
            return []
        agent = jax.device_get(state.learner.params["agent"])
        t_env = np.asarray(metrics["t_env"])
        for i in improved:
            member = self.members[i]
            head = {
                "seed": member.seed, "variant": member.variant, "iteration": int(iteration),
                "t_env": int(t_env[i]), "metric": key, "score": float(values[i]),
            }  # fmt: skip
            save(self.run_dir, i, head, jax.tree.map(lambda x, i=i: x[i], agent))
            self.scores[i] = float(values[i])
        return improved


def load(run_dir: str | os.PathLike, template: Any, count: int) -> tuple[Any, list[dict]]:
    """Every member's best agent parameters stacked (leaves [M, ...], matching ``template``,
    a tree of ShapeDtypeStructs with the member axis) and their records."""
    found = latest(run_dir)
    missing = [i for i in range(count) if i not in found]
    if missing:
        raise ValueError(
            f"eval --best: {run_dir} has no best checkpoint for member {missing[0]} (runs "
            "written before the absolute metric was kept have none; evaluate the newest "
            "checkpoint without --best)"
        )
    specs, treedef = jax.tree.flatten(template)
    metas, per_member = [], []
    for i in range(count):
        meta = read_meta(found[i])
        data = found[i].path.with_name(meta["file"])
        if not data.exists() or _sha256(data) != meta["sha256"]:
            raise ValueError(f"best checkpoint: {data} is missing or corrupt (checksum)")
        with np.load(data) as npz:
            arrays = [npz[f"arr_{k}"] for k in range(len(npz.files))]
        shapes = [(a.shape, a.dtype) for a in arrays]
        if shapes != [(s.shape[1:], s.dtype) for s in specs]:
            raise ValueError(f"best checkpoint: {data} does not match this run's agent network")
        metas.append(meta)
        per_member.append(arrays)
    stacked = [np.stack([m[k] for m in per_member]) for k in range(len(specs))]
    return jax.tree.unflatten(treedef, stacked), metas
