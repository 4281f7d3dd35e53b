"""Named settings for the paper's experiments, as data that reads and writes YAML.

A :class:`Preset` fixes the algorithm, the environment with its arguments, and every
setting the experiment depends on, numbers included (``paper.py``). Its YAML form is also
the schema of ``powmarl train --config FILE``::

    name: pow_qmix_stag_hunt_p4        # optional
    description: ...                   # optional
    algo: pow_qmix
    env: stag_hunt
    env_args: {punishment: -4.0}
    settings: {t_max: 5050000, recognition_threshold: 1.0, alpha: 0.0, ...}

Its settings are the "preset" layer of :func:`powmarl.settings.resolve`: above the
algorithm's and the env's defaults, below the user's overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from powmarl.presets.paper import (
    ALGORITHM_VALUES,
    ALGOS,
    FAMILY_VALUES,
    SMAC_MAPS,
    SMACV2_RACES,
    tasks,
)

#: The keys of a preset's YAML form, required ones first.
KEYS = ("name", "description", "algo", "env", "env_args", "settings")
_REQUIRED = ("algo", "env")


@dataclasses.dataclass(frozen=True)
class Preset:
    """An experiment: ``algo`` on ``env_id(**env_kwargs)`` with ``settings`` (setting name ->
    value: Config/HParams fields or the algorithm's declared hyperparameters)."""

    algo: str
    env_id: str
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (keys of :data:`KEYS`; an empty name or description left out)."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        out = {k: v for k, v in out.items() if v}
        out.update(algo=self.algo, env=self.env_id, env_args=dict(self.env_kwargs))
        out["settings"] = dict(sorted(self.settings.items()))
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, width=100)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> Preset:
        """A preset from its YAML form; a one-line ValueError names a wrong or unknown key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: must be a mapping with keys {', '.join(KEYS)}")  # noqa: TRY004
        unknown = sorted(str(k) for k in data if k not in KEYS)
        if unknown:
            raise ValueError(f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ValueError(f"{source}: needs the key {missing[0]!r} (keys: {', '.join(KEYS)})")
        for key in ("name", "description", "algo", "env"):
            if key in data and not isinstance(data[key], str):
                raise ValueError(f"{source}: {key} must be a string, got {data[key]!r}")
        return cls(
            algo=data["algo"],
            env_id=data["env"],
            env_kwargs=_mapping(data.get("env_args"), f"{source}: env_args"),
            settings=_settings(data.get("settings"), f"{source}: settings"),
            description=data.get("description", ""),
            name=data.get("name", ""),
        )

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> Preset:
        """Inverse of :meth:`to_yaml`; ``source`` (e.g. the file name) starts error lines."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{source}: not valid YAML: {' '.join(str(err).split())}") from None
        return cls.from_dict(data, source)


def load(path: str | Path, source: str | None = None) -> Preset:
    """A preset from a YAML file (``powmarl train --config``); one-line ValueErrors."""
    source = source or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{source}: cannot read it: {err}") from None
    return Preset.from_yaml(text, source)


def check_settings(preset: Preset, algo, source: str) -> None:
    """Every name in ``preset.settings`` is a setting of ``algo`` (an Algorithm), with a
    value of its type; else a one-line ValueError naming the file, the key and the allowed
    ones."""
    from powmarl.config import parse_setting
    from powmarl.settings import base_settings

    cfg, hp = base_settings(algo)
    for name, value in preset.settings.items():
        try:
            parse_setting(cfg, hp, name, value)
        except ValueError as err:
            raise ValueError(f"{source}: settings: {err}") from None


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{where}: must be a mapping of names to values, got {value!r}")
    return dict(value)


def _settings(value: Any, where: str) -> dict[str, Any]:
    """Setting name -> a number, bool, string or null (names are checked when resolved)."""
    out = _mapping(value, where)
    for name, item in out.items():
        if item is not None and not isinstance(item, (bool, int, float, str)):
            raise ValueError(f"{where}: {name} must be a number, bool or string, got {item!r}")
    return out


def _build() -> dict[str, Preset]:
    out = {}
    for algo in ALGOS:
        for task, family, env_id, env_kwargs, text in tasks(algo):
            name = f"{algo}_{task}"
            settings = {**ALGORITHM_VALUES[algo], **FAMILY_VALUES[family]}
            out[name] = Preset(algo, env_id, env_kwargs, settings, f"{algo} on {text}", name)
    return out


PRESETS: dict[str, Preset] = _build()


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; allowed: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


__all__ = [
    "ALGOS", "KEYS", "PRESETS", "SMACV2_RACES", "SMAC_MAPS", "Preset", "check_settings", "get",
    "load",
]  # fmt: skip
