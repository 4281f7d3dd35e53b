"""Per-episode values of every greedy evaluation: ``eval_episodes.jsonl`` in the run directory.

One line per member per evaluation, in the order of ``metrics.jsonl``'s rows (the loop
appends both at the same evaluation)::

    {"seed": 0, "t_env": 1000, "return": [8, 8, -12], "ep_length": [1, 1, 1],
     "battle_won": [1, 1, 0]}

with ``variant`` after ``seed`` in a sweep, and one list per info counter of the env (each
value summed over its episode: a win or arrival flag, stags captured, ...). Numbers are
written in the shortest form that reads back to the same float32 (integral values as
integers), so the file stays small. On resume the lines after the checkpoint are dropped
as :func:`powmarl.io.run_dir.truncate_metrics` drops metrics rows.

The backends hand these values to the loop as extra entries of a chunk's metrics, named
``eval_episodes/<name>`` with [M, test_nepisode] leaves; :func:`split` takes them out
before the metrics become rows, so ``metrics.jsonl`` keeps its columns.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from powmarl.io.run_dir import atomic_write_text

FILE = "eval_episodes.jsonl"
PREFIX = "eval_episodes/"


def outputs(stats) -> dict[str, Any]:
    """The per-episode entries of a chunk's metrics from the greedy evaluation's EpisodeStats
    (leaves [..., episodes]): return, episode length and every info counter."""
    out = {f"{PREFIX}return": stats.returns, f"{PREFIX}ep_length": stats.lengths}
    out.update({f"{PREFIX}{k}": v for k, v in stats.info.items()})
    return out


def split(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the metrics without the per-episode entries, {name: [M, episodes]} of those)."""
    kept = {k: v for k, v in metrics.items() if not k.startswith(PREFIX)}
    episodes = {k[len(PREFIX) :]: np.asarray(v) for k, v in metrics.items() if k.startswith(PREFIX)}
    return kept, episodes


def compact(values) -> list[Any]:
    """Per-episode values as JSON numbers: integral ones as ints, others as the shortest
    float that reads back to the same float32; non-finite ones as MetricsWriter writes them."""
    out: list[Any] = []
    for v in np.asarray(values, dtype=np.float64).reshape(-1):
        if not math.isfinite(v):
            out.append(None if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        elif v.is_integer() and abs(v) < 2**53:
            out.append(int(v))
        else:
            out.append(float(str(np.float32(v))))
    return out


def line(head: dict[str, Any], values: dict[str, np.ndarray]) -> str:
    """One JSON line: ``head``'s fields, then the return, then each other name's values."""
    names = sorted(values, key=lambda n: (n != "return", n))
    return json.dumps({**head, **{n: compact(values[n]) for n in names}}) + "\n"


def lines(episodes: dict[str, np.ndarray], members: Sequence[Any], t_env) -> str:
    """The lines of one evaluation, one per member (``members``: seed and variant)."""
    t_env = np.asarray(t_env)
    out = []
    for i, member in enumerate(members):
        head: dict[str, Any] = {"seed": member.seed}
        if member.variant:
            head["variant"] = member.variant
        head["t_env"] = int(t_env[i])
        out.append(line(head, {name: vals[i] for name, vals in episodes.items()}))
    return "".join(out)


def append(run_dir: str | os.PathLike, text: str) -> None:
    """Append ``text`` to the run's file, flushed and fsynced (as metrics rows are)."""
    path = Path(run_dir) / FILE
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise OSError(f"eval episodes: cannot append to {path}: {err.strerror or err}") from err


def _complete_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [ln for ln in text.splitlines(keepends=True) if ln.endswith("\n") and ln.strip()]


def truncate(run_dir: str | os.PathLike, keep_rows: int) -> None:
    """Keep the first ``keep_rows`` complete lines (those of the metrics rows a resumed
    checkpoint keeps), atomically. A run started before this file existed has fewer lines
    than rows; it keeps them all, and its later evaluations are appended after them."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return
    complete = _complete_lines(path)
    kept = complete[:keep_rows]
    if "".join(kept) != path.read_text(encoding="utf-8"):
        atomic_write_text(path, "".join(kept))


def read(run_dir: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The lines of a run's file as dicts (a last line cut off by a kill is skipped), or
    None when the run has no file (trained before per-episode values were logged)."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    out = []
    for lineno, text in enumerate(_complete_lines(path), start=1):
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError as err:
            raise ValueError(f"eval episodes: {path}:{lineno} is not valid JSON ({err.msg})")
    return out
