"""Where a run's code came from, for ``config.json``: the powmarl version, the git commit of
the checkout it was imported from (where there is one) and the package versions.

The versions are the pins of the lock file (``requirements-lock.txt`` beside
``pyproject.toml``, written by ``make lock``) when powmarl runs from a checkout that has one,
with the installed versions that differ from it; elsewhere (an installed wheel) the
installed versions of the packages results depend on. Nothing here fails: what cannot be
found is recorded as unknown (None).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
import subprocess
from pathlib import Path
from typing import Any

#: The lock file's name, at the repository root (beside pyproject.toml).
LOCK_FILE = "requirements-lock.txt"

#: Packages whose installed versions are recorded when no lock file is found.
KEY_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "numpy")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def _canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def source_root() -> Path | None:
    """The checkout powmarl is imported from: the directory above the package when it holds
    powmarl's pyproject.toml (an editable install or a run from the source tree)."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(r'^name\s*=\s*"powmarl"', text, re.MULTILINE) else None


def _git(root: Path, *args: str) -> str | None:
    """Output of a git command in ``root`` (None without git, outside a work tree, on error)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def git_state(root: Path | None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``root``; dirty
    means tracked files differ from the commit (the run may not be reproducible from it).
    Asked once per process and root (three git calls: every new run directory needs it)."""
    if root is None or Path(_git(root, "rev-parse", "--show-toplevel") or "/") != root:
        return {"commit": None, "dirty": None}
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def read_lock(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of a lock file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[tuple[str, str], ...]:
    """Read once per process: scanning every distribution's metadata takes ~0.4 s."""
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(_canonical(name), dist.version)
    return tuple(out.items())


def installed_versions() -> dict[str, str]:
    """``{canonical name: version}`` of every distribution importable here."""
    return dict(_installed())


def package_versions(root: Path | None) -> dict[str, Any]:
    """The lock's pins (with its SHA-256 and the installed versions that differ from it), or
    the installed versions of :data:`KEY_PACKAGES` when there is no lock file."""
    installed = installed_versions()
    lock = root / LOCK_FILE if root is not None else None
    if lock is None or not lock.is_file():
        return {"lock_file": None, "installed": {p: installed.get(p) for p in KEY_PACKAGES}}
    pins = read_lock(lock)
    differs = {
        name: {"locked": version, "installed": installed.get(name)}
        for name, version in pins.items()
        if installed.get(name) != version
    }
    return {
        "lock_file": LOCK_FILE,
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(),
        "locked": pins,
        "differs_from_lock": differs,
    }


def provenance() -> dict[str, Any]:
    """What config.json records under ``provenance``: powmarl's version, the git state of its
    checkout and the package versions (see the module docstring)."""
    from powmarl import __version__

    root = source_root()
    return {"powmarl": __version__, "git": dict(git_state(root)), **package_versions(root)}
