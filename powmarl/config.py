"""Configuration: static choices (:class:`Config`) and traced numbers (:class:`HParams`).

``Config`` holds sizes and switches that shape the compiled program; changing one
recompiles. ``HParams`` holds numbers that are passed into the compiled program
as arrays, so sweeps over them share one compilation. Each field names the paper
symbol and the reference code's key (notes sec. 4).

An algorithm may declare hyperparameters of its own (:class:`Declared`, listed in
``Algorithm.hparams``): static ones live in ``Config.extra``, traced ones in
``HParams.extra`` (inside the pytree passed to ``jit``, so sweepable without
recompiling). On input and output (``--set``, ``hparam_grid``, config.json) their names
are flat, like the fields'; ``hp.beta`` reads ``hp.extra["beta"]``. Merging the layers of
settings (algorithm, env, preset, user) happens in :mod:`powmarl.settings` only.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from typing import Any

import flax.struct


def _f(default, help: str, low=None, high=None, low_open=False, kind=None):
    """A field with its help text, range and value type (``kind``: the default's type)."""
    meta = {"help": help, "low": low, "high": high, "low_open": low_open}
    return dataclasses.field(default=default, metadata={**meta, "kind": kind or type(default)})


@dataclasses.dataclass(frozen=True)
class Declared:
    """A hyperparameter an algorithm brings with it (``Algorithm.hparams``).

    ``traced`` ones are floats in ``HParams.extra``: arrays inside the compiled program,
    sweepable with ``hparam_grid``. Static ones (int, float, bool or str) live in
    ``Config.extra`` and are read when the program is built (changing one recompiles).
    ``low``/``high`` bound the value (``low_open``: exclusive lower bound).
    """

    name: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    traced: bool = True

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"hyperparameter name: must be an identifier, got {self.name!r}")
        number = isinstance(self.default, numbers.Real) and not isinstance(self.default, bool)
        if self.traced and not number:
            raise ValueError(
                f"{self.name}: a traced hyperparameter needs a number default, got {self.default!r}"
            )
        if not isinstance(self.default, (bool, int, float, str)):
            raise TypeError(
                f"{self.name}: default must be a number, bool or str, got {self.default!r}"
            )

    @property
    def metadata(self) -> dict[str, Any]:
        kind = float if self.traced else type(self.default)
        return {"help": self.help, "low": self.low, "high": self.high,
                "low_open": self.low_open, "kind": kind}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Config:
    """Static configuration (closed over by ``jit``)."""

    t_max: int = _f(1_000_000, "env steps to train each seed (t_max)", 1)
    num_envs: int = _f(8, "parallel training envs per seed (batch_size_run)", 1)
    buffer_size: int = _f(5000, "replay capacity in episodes (buffer_size)", 1)
    batch_size: int = _f(128, "episodes per learner batch (batch_size)", 1)
    rnn_hidden_dim: int = _f(64, "GRU width of the agent network (rnn_hidden_dim)", 1)
    mixing_embed_dim: int = _f(32, "QMIX mixing width (mixing_embed_dim)", 1)
    hypernet_embed: int = _f(64, "QMIX hypernetwork width (hypernet_embed)", 1)
    central_mixing_embed_dim: int | None = _f(
        None,
        "width of the unrestricted Q* mixer (central_mixing_embed_dim; None: the algorithm's,"
        " WQMIX 256, POW 64, ResQ 128)",
        1,
        kind=int,
    )
    lambda_hypernet_embed: int = _f(128, "Q_r lambda-hypernet hidden width", 1)
    lambda_mixing_embed: int = _f(64, "Q_r lambda-hypernet output width (K in sum_k)", 1)
    v_embed_dim: int = _f(128, "Q_r state-value V(s) hidden width (v_embed_dim)", 1)
    recogniser_updates: int = _f(10, "Q_r Adam steps per learner call (hard-coded 10)", 1)
    recogniser_first_updates: int = _f(20, "Q_r Adam steps on the first learner call", 1)
    recogniser_clip: str = _f(
        "reference", "Q_r grad clip: 'reference' (norm includes the stale main grads, which "
        "each inner step rescales), 'stale_constant' (powmarl before 2026-12-03: the stale "
        "norm counted whole at every step) or 'own'"
    )
    recogniser_lambda: str = _f(
        "hypernet", "Q_r lambda_i(s, a): 'hypernet' (reference use_lambda_hypernetwork=True) or "
        "'attention' (False: QPLEX's DMAQ_SI_Weight heads over (s, a))"
    )
    recogniser_attention_layers: int = _f(
        3, "Q_r attention depth under recogniser_lambda=attention (POW adv_hypernet_layers)", 1,
        3,
    )
    lambda_weights_abs: bool = _f(
        True, "Q_r hypernet weights through abs, so lambda >= 0 (lambda_weights_abs)"
    )
    only_optimal_action: bool = _f(
        False, "POW ablation: weight only the greedy joint action, not A_r (only_optimal_action)"
    )
    resq_residual_init: str = _f(
        "copy", "ResQ residual agent at init: 'copy' of the agent network (reference) or "
        "'independent' draw"
    )
    num_kernel: int = _f(4, "QPLEX attention heads (num_kernel)", 1)
    adv_hypernet_layers: int | None = _f(
        None, "QPLEX advantage hypernet depth (None: the algorithm's, QPLEX 2, POW-QPLEX 3)", 1,
        kind=int,
    )  # fmt: skip
    adv_hypernet_embed: int = _f(64, "QPLEX advantage hypernet width", 1)
    length_buckets: int = _f(
        4, "batch lengths the learner is compiled for; 1 = always the full episode", 1
    )
    length_spacing: str = _f(
        "halving",
        "truncated batch lengths: 'halving' (T, T/2, T/4, ...) or 'even' (T/(n-1), 2T/(n-1),"
        " ..., T for n = length_buckets); 'even' with more buckets narrows the gap between"
        " one seed's bucket and the longest of all vmapped seeds (the shared one)",
    )
    remat_agent: bool = _f(
        False,
        "learner: build agent inputs per step and recompute the GRU step in the backward pass"
        " (less memory, ~1 more agent forward; SMAX presets switch it on)",
    )
    standardise_rewards: bool = _f(
        False,
        "learner: train on rewards standardised by running moments of every sampled batch,"
        " as EPyMARL's standardise_rewards (its QMIX/VDN default; off in the POW and PyMARL2"
        " code)",
    )
    target_update_interval: int = _f(200, "episodes between hard target copies", 1)
    test_interval: int = _f(10_000, "env steps between greedy evaluations (test_interval)", 1)
    test_nepisode: int = _f(16, "greedy test episodes per evaluation (test_nepisode)", 1)
    checkpoint_interval: int = _f(
        0, "env steps between checkpoints of a run dir; 0 = at every evaluation", 0
    )
    keep_checkpoints: int = _f(3, "checkpoints kept in a run dir (the newest)", 1)
    obs_last_action: bool | None = _f(
        None, "feed one-hot last action (None: env default)", kind=bool
    )
    obs_agent_id: bool | None = _f(None, "feed one-hot agent id (None: env default)", kind=bool)
    # not settings of their own: the values of the algorithm's static declared hyperparameters,
    # and the declarations (their ranges; not compared, not written to config.json)
    extra: dict[str, Any] = dataclasses.field(
        default_factory=dict, hash=False, metadata={"internal": True}
    )
    declared: tuple[Declared, ...] = dataclasses.field(
        default=(), compare=False, metadata={"internal": True}
    )

    def __getattr__(self, name: str) -> Any:
        return _declared_value(self, name)

    def validate(self) -> Config:
        _check_ranges(self)
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                *head, last = [repr(a) for a in allowed]
                names = f"{', '.join(head)} or {last}"
                raise ValueError(f"{name}: must be {names}, got {value!r}")
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size: must be <= buffer_size ({self.buffer_size}), got {self.batch_size}"
            )
        return self


#: The string settings of Config and the values each allows.
_CHOICES = {
    "recogniser_clip": ("reference", "stale_constant", "own"),
    "recogniser_lambda": ("hypernet", "attention"),
    "resq_residual_init": ("copy", "independent"),
    "length_spacing": ("halving", "even"),
}


@flax.struct.dataclass
class HParams:
    """Traced hyperparameters (arrays inside the compiled program)."""

    lr: float = _f(1e-3, "Adam learning rate (lr)", 0.0, None, True)
    gamma: float = _f(0.99, "discount gamma (gamma)", 0.0, 1.0)
    td_lambda: float = _f(0.6, "TD(lambda) lambda (td_lambda)", 0.0, 1.0)
    grad_norm_clip: float = _f(10.0, "global-norm gradient clip (grad_norm_clip)", 0.0, None, True)
    epsilon_start: float = _f(1.0, "initial exploration epsilon (epsilon_start)", 0.0, 1.0)
    epsilon_finish: float = _f(0.05, "final exploration epsilon (epsilon_finish)", 0.0, 1.0)
    epsilon_anneal_time: float = _f(500_000.0, "env steps of linear epsilon decay", 0.0)
    alpha: float = _f(0.1, "weight outside the favoured set (WQMIX w, POW alpha = 0)", 0.0, 1.0)
    recognition_threshold: float = _f(
        0.1, "POW tolerance C of A_r (weighted_qmix_threshold; predator-prey 1)", 0.0
    )
    pow_weight: float = _f(1.0, "POW weight inside A_r at t_env = 0 (weighted_qmix_weight)", 0.0)
    pow_weight_finish: float = _f(
        1.0, "POW weight inside A_r after the anneal (weighted_qmix_weight_finish)", 0.0
    )
    pow_weight_anneal_time: float = _f(
        1e6, "env steps of the linear pow_weight -> pow_weight_finish anneal", 0.0, None, True
    )
    no_weighted_steps: float = _f(
        100_000.0, "POW warm-up: unweighted Q_tot loss until t_env exceeds this", 0.0
    )
    # the values of the algorithm's traced declared hyperparameters (leaves of this pytree)
    extra: dict[str, Any] = flax.struct.field(default_factory=dict, metadata={"internal": True})

    def __getattr__(self, name: str) -> Any:
        return _declared_value(self, name)

    def validate(self) -> HParams:
        _check_ranges(self)
        return self


def _declared_value(obj, name: str) -> Any:
    """``obj.name`` for a declared hyperparameter: ``obj.extra[name]``."""
    extra = obj.__dict__.get("extra")
    if name.startswith("__") or extra is None or name not in extra:
        raise AttributeError(f"{type(obj).__name__} has no setting {name!r}")
    return extra[name]


def _check_value(name: str, value: Any, meta: dict[str, Any]) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    low, high = meta.get("low"), meta.get("high")
    too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        bracket = "(" if meta.get("low_open") else "["
        raise ValueError(f"{name}: must be in {bracket}{lo}, {hi}], got {value}")


def _check_ranges(obj) -> None:
    for f in settable_fields(type(obj)).values():
        _check_value(f.name, getattr(obj, f.name), f.metadata)


def settable_fields(cls) -> dict[str, dataclasses.Field]:
    """The fields of ``Config`` or ``HParams`` that are settings (not ``extra``/``declared``)."""
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}


def _default_text(f: dataclasses.Field) -> str:
    if f.default is None and f.metadata["kind"] is int:
        return "default: the algorithm's"
    return f"default {f.default}"


def fields_help() -> dict[str, str]:
    """Every settable library key with its help text, for ``powmarl list``."""
    out = {}
    for cls in (Config, HParams):
        for f in settable_fields(cls).values():
            out[f.name] = f"{f.metadata['help']} ({_default_text(f)})"
    return out


def declared_help(spec: Declared) -> str:
    """One line on an algorithm's declared hyperparameter, for ``powmarl list``."""
    kind = "traced" if spec.traced else "static"
    lo = "-inf" if spec.low is None else spec.low
    hi = "inf" if spec.high is None else spec.high
    bounds = "" if spec.low is None and spec.high is None else f", in [{lo}, {hi}]"
    return f"{spec.help} (default {spec.default}, {kind}{bounds})"


def _expected(kind) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]


def _coerce(name: str, raw: Any, kind, nullable: bool) -> Any:
    """Check a value given as a Python/YAML object (not a string) against the field's type."""
    if raw is None and nullable:
        return None
    if kind is bool or kind is str:
        if isinstance(raw, kind):
            return raw
    elif not isinstance(raw, (bool, str, type(None))):
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = None
        if value is not None and kind is float:
            return value
        if value is not None and value.is_integer():
            return int(value)
    raise ValueError(f"{name}: expected {_expected(kind)}, got {raw!r}")


def parse_value(name: str, raw: Any, default: Any, kind=None) -> Any:
    """Convert a command-line string (or check a Python/YAML value) to the field's type.

    ``kind`` is the value type (default: the type of ``default``; bool for a None default);
    a field whose default is None also takes 'none'/'null' (None).
    """
    kind = kind or (bool if default is None else type(default))
    nullable = default is None
    if not isinstance(raw, str):
        return _coerce(name, raw, kind, nullable)
    text = raw.strip()
    if kind is str:
        return text
    low = text.lower()
    if nullable and low in ("none", "null"):
        return None
    if kind is bool:
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"{name}: expected true or false, got {raw!r}")
    try:
        value = float(text)
        if kind is int and not value.is_integer():
            raise ValueError
        return int(value) if kind is int else value
    except ValueError:
        raise ValueError(f"{name}: expected {_expected(kind)}, got {raw!r}") from None


def _spec(cfg: Config, name: str) -> Declared | None:
    return next((d for d in cfg.declared if d.name == name), None)


def parse_setting(cfg: Config, hp: HParams, name: str, raw: Any) -> tuple[str, Any]:
    """(where, value): which part holds ``name`` ("config", "hparams", "config_extra" or
    "hparams_extra") and ``raw`` converted to its type; unknown names raise ValueError."""
    for where, cls in (("config", Config), ("hparams", HParams)):
        f = settable_fields(cls).get(name)
        if f is not None:
            return where, parse_value(name, raw, f.default, f.metadata["kind"])
    spec = _spec(cfg, name)
    if name in cfg.extra:
        default = spec.default if spec is not None else cfg.extra[name]
        return "config_extra", parse_value(name, raw, default, type(default))
    if name in hp.extra:
        return "hparams_extra", parse_value(name, raw, 0.0, float)
    allowed = sorted([*settable_fields(Config), *settable_fields(HParams), *cfg.extra, *hp.extra])
    raise ValueError(f"unknown hyperparameter {name!r}; allowed: {', '.join(allowed)}")


def apply_overrides(cfg: Config, hp: HParams, overrides: dict[str, Any]) -> tuple[Config, HParams]:
    """Set fields (or declared hyperparameters) by name on whichever of Config/HParams holds
    them; validate the result. Layers are merged by :func:`powmarl.settings.resolve`."""
    parts: dict[str, dict[str, Any]] = {
        "config": {}, "hparams": {}, "config_extra": {}, "hparams_extra": {}
    }  # fmt: skip
    for name, raw in overrides.items():
        where, value = parse_setting(cfg, hp, name, raw)
        parts[where][name] = value
    cfg_extra = {**cfg.extra, **parts["config_extra"]}
    cfg = dataclasses.replace(cfg, **parts["config"], extra=cfg_extra).validate()
    hp_extra = {**hp.extra, **{k: float(v) for k, v in parts["hparams_extra"].items()}}
    hp = hp.replace(**{k: float(v) for k, v in parts["hparams"].items()}, extra=hp_extra)
    hp = hp.validate()
    for spec in cfg.declared:
        holder = hp.extra if spec.traced else cfg.extra
        if spec.name in holder:
            _check_value(spec.name, holder[spec.name], spec.metadata)
    return cfg, hp


def to_dict(cfg: Config, hp: HParams) -> dict[str, Any]:
    """config.json's ``config`` and ``hparams``: fields and declared values, flat."""
    config = {name: getattr(cfg, name) for name in settable_fields(Config)}
    hparams = {name: float(getattr(hp, name)) for name in settable_fields(HParams)}
    return {
        "config": {**config, **cfg.extra},
        "hparams": {**hparams, **{k: float(v) for k, v in hp.extra.items()}},
    }


def from_dict(data: dict[str, Any]) -> tuple[Config, HParams]:
    """Inverse of :func:`to_dict`: names that are not fields are declared values."""
    config, hparams = dict(data["config"]), dict(data["hparams"])
    cfg_extra = {k: config.pop(k) for k in list(config) if k not in settable_fields(Config)}
    hp_extra = {
        k: float(hparams.pop(k)) for k in list(hparams) if k not in settable_fields(HParams)
    }
    return Config(**config, extra=cfg_extra), HParams(**hparams, extra=hp_extra)


def dumps(cfg: Config, hp: HParams) -> str:
    return json.dumps(to_dict(cfg, hp), indent=2, sort_keys=True)
