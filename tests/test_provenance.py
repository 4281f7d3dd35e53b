"""Provenance in config.json (powmarl.provenance) and the lock file (requirements-lock.txt,
``make lock``): version, git commit, locked or installed versions; the lock pins every
requirement of ``.[dev]`` within pyproject.toml's ranges."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import jax
import pytest

from powmarl import __version__, provenance
from powmarl.io.run_dir import prepare_run_dir

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / provenance.LOCK_FILE


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_provenance_of_this_checkout_names_its_commit():
    record = provenance.provenance()
    assert record["powmarl"] == __version__
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if provenance.source_root() == ROOT and head.returncode == 0:
        assert record["git"]["commit"] == head.stdout.strip()
        assert isinstance(record["git"]["dirty"], bool)


def test_outside_a_checkout_records_installed_key_versions(monkeypatch, tmp_path):
    monkeypatch.setattr(provenance, "source_root", lambda: None)
    record = provenance.provenance()
    assert record["git"] == {"commit": None, "dirty": None}
    assert record["lock_file"] is None and record["installed"]["jax"] == jax.__version__
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}  # not a repo


def test_lock_pins_and_what_differs_from_them(tmp_path):
    (tmp_path / provenance.LOCK_FILE).write_text(
        f"# header\njax=={jax.__version__}\nNumPy==0.0.1\nnot_installed_pkg==1.0  # note\n"
    )
    record = provenance.package_versions(tmp_path)
    assert record["locked"] == {"jax": jax.__version__, "numpy": "0.0.1",
                                "not-installed-pkg": "1.0"}  # fmt: skip
    assert set(record["differs_from_lock"]) == {"numpy", "not-installed-pkg"}
    assert record["differs_from_lock"]["not-installed-pkg"] == {"locked": "1.0", "installed": None}
    assert len(record["lock_sha256"]) == 64


def test_new_run_dirs_record_provenance(tmp_path):
    prepare_run_dir(tmp_path / "a", {"algo": "qmix"})
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["provenance"]["powmarl"] == __version__ and "git" in config["provenance"]
    prepare_run_dir(tmp_path / "b", {"algo": "qmix", "provenance": {"given": True}})
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["provenance"] == {"given": True}


@pytest.mark.skipif(not LOCK.is_file(), reason=f"no {provenance.LOCK_FILE} (run make lock)")
def test_lock_pins_every_dev_requirement_within_pyproject_ranges():
    """Fails when pyproject.toml gained or changed a requirement since the last make lock."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = provenance.read_lock(LOCK)
    stale = []
    for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(text)
        version = pins.get(provenance._canonical(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            stale.append(f"{text} (lock: {version})")
    assert not stale, f"requirements-lock.txt is stale, run make lock: {stale}"
