"""Run directories (DESIGN sec. 8): ``config.json`` written atomically, ``metrics.jsonl`` appended.

Nothing already written is ever truncated: files are replaced only by an atomic
rename of a fully written, fsynced temporary file, and metrics rows are appended.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the directory: readers see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def prepare_run_dir(path: str | os.PathLike, config: dict[str, Any]) -> Path:
    """Create ``path`` and write ``config.json``; refuse to overwrite an existing run.
    ``config`` gains ``provenance`` (powmarl version, git commit, package versions:
    :func:`powmarl.provenance.provenance`) unless it has one."""
    from powmarl.provenance import provenance

    run_dir = Path(path)
    if (run_dir / "metrics.jsonl").exists() or (run_dir / "config.json").exists():
        raise ValueError(
            f"run_dir: {run_dir} already holds a run; continue it with `powmarl resume {run_dir}`"
            " or choose a new directory"
        )
    config = config if "provenance" in config else {**config, "provenance": provenance()}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True))
    except OSError as err:
        raise ValueError(f"run_dir: cannot write to {run_dir}: {err.strerror or err}") from None
    return run_dir


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class MetricsWriter:
    """Appends one JSON object per line to ``metrics.jsonl`` and flushes after each batch."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / "metrics.jsonl"

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = "".join(
            json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n" for row in rows
        )
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise OSError(f"metrics: cannot append to {self.path}: {err.strerror or err}") from err

    def close(self) -> None:
        """Nothing to release: every write is appended, flushed and fsynced."""


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete rows of ``metrics.jsonl`` (a last line cut off by a kill is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.endswith("\n") and line.strip()]


#: the format of config.json. 3 (2026-12-03): ``recogniser_clip='reference'`` rescales the
#: stale main-step norm at every Q_r step; records of earlier formats were trained with it
#: constant, so their 'reference' reads as 'stale_constant' and they resume exactly.
RUN_FORMAT = 3


def read_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's ``config.json``, with a clear error when it is missing or unreadable."""
    path = Path(run_dir) / "config.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"run_dir: {run_dir} holds no run (no config.json)") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"run_dir: cannot read {path}: {err}") from None
    if "members" not in record:  # runs written before sweeps existed
        record["members"] = [{"seed": s, "hparams": {}} for s in record["seeds"]]
    config = record.get("config", {})
    if record.get("run_format", 1) < 3 and config.get("recogniser_clip") == "reference":
        config["recogniser_clip"] = "stale_constant"
    return record


def check_resumable(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Refuse a host-env run written by powmarl 0.1, whose host runner trained the members
    one after another (its checkpoints hold a different tree), with what to do instead."""
    if record.get("runner") == "host" and "run_format" not in record:
        version = record.get("versions", {}).get("powmarl", "0.1")
        raise ValueError(
            f"run_dir: {run_dir} is a host-env run written by powmarl {version}, whose host "
            "runner trained members one after another; this version trains them together "
            "and cannot continue or evaluate it. Train it again with `powmarl train` (its "
            "metrics.jsonl still works with `powmarl report`)"
        )


def truncate_metrics(run_dir: str | os.PathLike, keep_rows: int) -> list[dict[str, Any]]:
    """Keep the first ``keep_rows`` complete rows of metrics.jsonl (atomically) and
    return them: rows after the resumed checkpoint are recomputed."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    complete = [ln for ln in lines if ln.endswith("\n") and ln.strip()]
    if len(complete) < keep_rows:
        raise ValueError(
            f"resume: {path} has {len(complete)} rows but the checkpoint expects {keep_rows}"
        )
    kept = complete[:keep_rows]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))
    return [json.loads(ln) for ln in kept]


def run_status(run_dir: str | os.PathLike) -> str:
    """'new' (nothing there), 'finished', or 'partial' (resume it)."""
    from powmarl.io import checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        return "new"
    record = read_record(run_dir)
    checkpoints = checkpoint.list_checkpoints(run_dir)
    if record.get("runner") == "host" and "run_format" not in record and not checkpoints:
        return _old_host_status(run_dir, record)
    for meta_path in reversed(checkpoints):
        try:
            return "finished" if json.loads(meta_path.read_text())["finished"] else "partial"
        except (OSError, ValueError, KeyError):
            continue
    return "partial"


def _old_host_status(run_dir: Path, record: dict[str, Any]) -> str:
    """A powmarl 0.1 host run without checkpoints: finished when every member reached t_max."""
    t_max = record["config"]["t_max"]
    last: dict[tuple[int, str], int] = {}
    for row in read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []:
        last[(row["seed"], row.get("variant", ""))] = row["t_env"]
    done = len(last) == len(record["members"]) and min(last.values()) >= t_max
    return "finished" if done else "partial"
