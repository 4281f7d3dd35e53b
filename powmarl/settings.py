"""One resolution of a run's settings, with provenance (DESIGN sec. 6).

A run's :class:`~powmarl.config.Config` and :class:`~powmarl.config.HParams` come from
layers, each beating the ones before it:

1. library: the field defaults of Config/HParams;
2. "algorithm": what the algorithm brings: its extras' sizes (Q*'s width), the defaults of
   its declared hyperparameters, then ``Algorithm.defaults`` (its reference values);
3. "env": the environment's ``run_defaults`` (e.g. predator-prey's C = 1, 5.05M steps);
4. "preset": a :class:`~powmarl.presets.Preset`'s settings (a named paper experiment, or a
   ``powmarl train --config`` YAML file);
5. "user": overrides (``--set``, ``powmarl.train(..., **overrides)``, ``t_max``).

This module is the only place that merges layers; :func:`powmarl.config.apply_overrides`
parses and validates one dict. :meth:`Resolved.record` says, for config.json, what each
layer set and where every non-library value came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from powmarl.config import Config, HParams, apply_overrides, parse_setting, settable_fields

if TYPE_CHECKING:
    from powmarl.algos.base import Algorithm
    from powmarl.presets import Preset

#: The layers above the library defaults, lowest first.
LAYERS = ("algorithm", "env", "preset", "user")

#: Algorithm-dependent sizes (Config fields whose default None means "the algorithm's")
#: when no layer sets them, as for QMIX's unused Q* width: the values config.json showed
#: before these fields could be None.
UNSET_SIZES: dict[str, int] = {"central_mixing_embed_dim": 256, "adv_hypernet_layers": 2}


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The resolved settings and where they came from.

    ``sources`` maps every setting some layer set to the highest such layer (one of
    :data:`LAYERS`); settings not in it are library defaults. ``layers`` holds each layer's
    values, converted to the settings' types.
    """

    cfg: Config
    hp: HParams
    sources: dict[str, str]
    layers: dict[str, dict[str, Any]]
    preset: str | None = None

    def record(self) -> dict[str, Any]:
        """What config.json holds beside ``config``/``hparams``: the layers and sources."""
        out: dict[str, Any] = {
            "layers": {name: dict(sorted(self.layers[name].items())) for name in LAYERS},
            "sources": dict(sorted(self.sources.items())),
        }
        if self.preset is not None:
            out["preset"] = self.preset
        return {"settings": out}


def algorithm_layer(algo: Algorithm | None) -> dict[str, Any]:
    """The algorithm's settings: its extras' sizes, declared defaults, reference values."""
    if algo is None:
        return {}
    out: dict[str, Any] = {}
    for extra in algo.extras:
        out.update(extra.config_defaults())
    out.update({d.name: d.default for d in algo.hparams})
    out.update(algo.defaults)
    return out


def env_layer(env: Any) -> dict[str, Any]:
    """The settings ``env`` declares (its ``run_defaults`` hook; {} without one)."""
    from powmarl.envs.contract import run_defaults

    return {} if env is None else run_defaults(env)


def base_settings(algo: Algorithm | None) -> tuple[Config, HParams]:
    """Library defaults, with room for the algorithm's declared hyperparameters."""
    declared = () if algo is None else algo.hparams
    cfg = Config(
        extra={d.name: d.default for d in declared if not d.traced}, declared=tuple(declared)
    )
    hp = HParams(extra={d.name: float(d.default) for d in declared if d.traced})
    return cfg, hp


def _typed(cfg: Config, hp: HParams, values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: parse_setting(cfg, hp, name, raw)[1] for name, raw in values.items()}


def _fill_unset(cfg: Config, algo_values: Mapping[str, Any]) -> Config:
    """Algorithm-dependent sizes still None (or set to None by a layer): the algorithm's
    value, else :data:`UNSET_SIZES`."""
    fill = {
        name: algo_values.get(name) or default
        for name, default in UNSET_SIZES.items()
        if getattr(cfg, name) is None
    }
    return dataclasses.replace(cfg, **fill) if fill else cfg


def resolve(
    algo: Algorithm | None,
    env: Any,
    overrides: Mapping[str, Any] | None = None,
    preset: Preset | None = None,
) -> Resolved:
    """Library < algorithm < env < preset < user: the run's Config, HParams and provenance.

    Unknown names, mistyped and out-of-range values raise a one-line ValueError naming
    the setting and what is allowed (``config.apply_overrides``'s messages).
    """
    cfg0, hp0 = base_settings(algo)
    raw = {
        "algorithm": algorithm_layer(algo),
        "env": env_layer(env),
        "preset": dict(preset.settings) if preset is not None else {},
        "user": dict(overrides or {}),
    }
    layers = {name: _typed(cfg0, hp0, values) for name, values in raw.items()}
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in LAYERS:
        merged.update(layers[name])
        sources.update(dict.fromkeys(layers[name], name))
    cfg, hp = apply_overrides(cfg0, hp0, merged)
    cfg = _fill_unset(cfg, layers["algorithm"])
    name = getattr(preset, "name", None) or None
    return Resolved(cfg=cfg, hp=hp, sources=sources, layers=layers, preset=name)


def default_hparams(algo: Algorithm, env: Any = None, **overrides: Any) -> HParams:
    """The HParams a run of ``algo`` on ``env`` starts from (e.g. POW's alpha = 0), for
    code that builds a runner itself: ``make_runner(None, env, algo)`` resolves the same
    way for the Config."""
    return resolve(algo, env, overrides).hp


def traced_names(hp: HParams) -> list[str]:
    """Every hyperparameter ``hparam_grid`` may sweep: HParams fields and declared ones."""
    return sorted([*settable_fields(HParams), *hp.extra])


def static_names(cfg: Config) -> list[str]:
    """Every static setting: Config fields and declared static hyperparameters."""
    return sorted([*settable_fields(Config), *cfg.extra])


def _static_error(name: str) -> ValueError:
    return ValueError(
        f"hparam_grid: {name} is a static setting (it changes the compiled program); "
        "sweep it as separate runs"
    )


def member_hparams(cfg: Config, hp: HParams, overrides: Mapping[str, Any]) -> HParams:
    """One sweep member's HParams: ``hp`` with the member's traced values (by name, fields
    or declared). A static name raises ValueError (it would need another program)."""
    for name, raw in overrides.items():
        if parse_setting(cfg, hp, name, raw)[0].startswith("config"):
            raise _static_error(name)
    return apply_overrides(cfg, hp, dict(overrides))[1]


def check_grid(cfg: Config, hp: HParams, grid: Mapping[str, Iterable[Any]]) -> None:
    """Validate ``hparam_grid`` before training: every key a traced hyperparameter (field
    or declared), every list non-empty, every value of the right type and in range."""
    for name, values in grid.items():
        if name in static_names(cfg):
            raise _static_error(name)
        if name not in traced_names(hp):
            raise ValueError(
                f"hparam_grid: unknown hyperparameter {name!r}; allowed: "
                + ", ".join(traced_names(hp))
            )
        if isinstance(values, (str, bytes)) or not list(values):
            raise ValueError(f"hparam_grid: {name} needs a non-empty list of values")
        for value in values:
            member_hparams(cfg, hp, {name: value})
