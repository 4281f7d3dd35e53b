"""Regenerate the lock file: the exact versions of a clean install of ``.[dev]``.

    python scripts/make_lock.py [--out requirements-lock.txt] [--python python3.11]

Creates a fresh virtual environment in a temporary directory, installs the checkout with
its ``dev`` extra (everything the tests use) from the package index, checks that pip finds
the install consistent, and writes ``pip freeze --all`` of it (pip and setuptools included,
powmarl itself excluded) with a header saying how it was made. ``make lock`` runs this;
``make test``/``make demo`` (and so CI) install from the file, then powmarl with
``pip install --no-deps -e .``. The lock is for Linux x86_64 and Python 3.11, the platform
the project is tested on; other platforms install from the ranges in pyproject.toml.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = ("Linux", "x86_64", (3, 11))

HEADER = """\
# Exact versions powmarl is tested with: pip freeze of a clean install of '.[dev]'
# on {system} {machine}, Python {python}, written by `make lock` (scripts/make_lock.py).
# Install: pip install -r requirements-lock.txt && pip install --no-deps -e .
# Do not edit by hand: change the ranges in pyproject.toml and run `make lock` again.
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def _interpreter_facts(python: str) -> tuple[str, str, tuple[int, int]]:
    """(system, machine, (major, minor)) of the interpreter that will build the venv."""
    code = "import platform,sys;print(platform.system(),platform.machine(),*sys.version_info[:2])"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    system, machine, major, minor = out.stdout.split()
    return system, machine, (int(major), int(minor))


def freeze_clean_install(python: str, workdir: Path, extras: str) -> str:
    """``pip freeze --all`` of a fresh venv (in ``workdir``) with ``.[extras]`` installed."""
    venv = workdir / "venv"
    _run([python, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([*pip, "install", "--quiet", "--upgrade", "pip"], env=env)
    _run([*pip, "install", "--quiet", f"{ROOT}[{extras}]"], env=env)
    _run([*pip, "check"], env=env)
    frozen = _run([*pip, "freeze", "--all", "--exclude", "powmarl"], env=env,
                  capture_output=True, text=True)  # fmt: skip
    lines = [ln for ln in frozen.stdout.splitlines() if ln.strip()]
    unpinned = [ln for ln in lines if "==" not in ln]
    if unpinned:
        raise SystemExit(f"make_lock: these installs are not plain pins: {unpinned}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "requirements-lock.txt"))
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venv")
    parser.add_argument("--extras", default="dev", help="extras to lock (default: dev)")
    parser.add_argument(
        "--any-platform", action="store_true", help="lock on a platform other than Linux x86_64"
    )
    args = parser.parse_args(argv)
    system, machine, version = _interpreter_facts(args.python)
    if (system, machine, version) != PLATFORM and not args.any_platform:
        raise SystemExit(
            f"make_lock: the lock is for Linux x86_64 with Python 3.11; {args.python} is "
            f"{system} {machine} Python {version[0]}.{version[1]} (pass --python or "
            "--any-platform)"
        )
    with tempfile.TemporaryDirectory(prefix="powmarl-lock-") as tmp:
        body = freeze_clean_install(args.python, Path(tmp), args.extras)
    header = HEADER.format(system=system, machine=machine, python=f"{version[0]}.{version[1]}")
    out = Path(args.out)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(header + body, encoding="utf-8")
    os.replace(tmp_out, out)
    print(f"make_lock: wrote {out} ({body.count(chr(10))} pins, Python {version[0]}.{version[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
