"""Configuration: static choices (:class:`Config`) and traced numbers (:class:`HParams`).

``Config`` holds sizes and switches that shape the compiled program; changing one
recompiles. ``HParams`` holds numbers that are passed into the compiled program
as arrays, so sweeps over them share one compilation. Each field names the paper
symbol and the reference code's key (notes sec. 4).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import flax.struct


def _f(default, help: str, low=None, high=None, low_open=False):
    return dataclasses.field(
        default=default, metadata={"help": help, "low": low, "high": high, "low_open": low_open}
    )


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
    central_mixing_embed_dim: int = _f(
        256, "width of the unrestricted Q* mixer (central_mixing_embed_dim; POW 64, ResQ 128)", 1
    )
    lambda_hypernet_embed: int = _f(128, "Q_r lambda-hypernet hidden width", 1)
    lambda_mixing_embed: int = _f(64, "Q_r lambda-hypernet output width (K in sum_k)", 1)
    v_embed_dim: int = _f(128, "Q_r state-value V(s) hidden width (v_embed_dim)", 1)
    recogniser_updates: int = _f(10, "Q_r Adam steps per learner call (hard-coded 10)", 1)
    recogniser_first_updates: int = _f(20, "Q_r Adam steps on the first learner call", 1)
    recogniser_clip: str = _f(
        "reference", "Q_r grad clip: 'reference' (norm includes stale main grads) or 'own'"
    )
    num_kernel: int = _f(4, "QPLEX attention heads (num_kernel)", 1)
    adv_hypernet_layers: int = _f(2, "QPLEX advantage hypernet depth (POW-QPLEX 3)", 1)
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
    target_update_interval: int = _f(200, "episodes between hard target copies", 1)
    test_interval: int = _f(10_000, "env steps between greedy evaluations (test_interval)", 1)
    test_nepisode: int = _f(16, "greedy test episodes per evaluation (test_nepisode)", 1)
    checkpoint_interval: int = _f(
        0, "env steps between checkpoints of a run dir; 0 = at every evaluation", 0
    )
    keep_checkpoints: int = _f(3, "checkpoints kept in a run dir (the newest)", 1)
    obs_last_action: bool | None = _f(None, "feed one-hot last action (None: env default)")
    obs_agent_id: bool | None = _f(None, "feed one-hot agent id (None: env default)")

    def validate(self) -> Config:
        _check_ranges(self)
        if self.recogniser_clip not in ("reference", "own"):
            raise ValueError(
                f"recogniser_clip: must be 'reference' or 'own', got {self.recogniser_clip!r}"
            )
        if self.length_spacing not in ("halving", "even"):
            raise ValueError(
                f"length_spacing: must be 'halving' or 'even', got {self.length_spacing!r}"
            )
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size: must be <= buffer_size ({self.buffer_size}), got {self.batch_size}"
            )
        return self


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
    pow_weight: float = _f(1.0, "POW weight inside A_r (weighted_qmix_weight)", 0.0)
    no_weighted_steps: float = _f(
        100_000.0, "POW warm-up: unweighted Q_tot loss until t_env exceeds this", 0.0
    )

    def validate(self) -> HParams:
        _check_ranges(self)
        return self


def _check_ranges(obj) -> None:
    for f in dataclasses.fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        if value is None or isinstance(value, (bool, str)):
            continue
        low, high = meta.get("low"), meta.get("high")
        too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
        too_high = high is not None and value > high
        if too_low or too_high:
            lo = "-inf" if low is None else low
            hi = "inf" if high is None else high
            bracket = "(" if meta.get("low_open") else "["
            raise ValueError(f"{f.name}: must be in {bracket}{lo}, {hi}], got {value}")


def fields_help() -> dict[str, str]:
    """Every settable key with its help text, for ``powmarl list``."""
    out = {}
    for cls in (Config, HParams):
        for f in dataclasses.fields(cls):
            out[f.name] = f"{f.metadata['help']} (default {f.default})"
    return out


def parse_value(name: str, raw: Any, default: Any) -> Any:
    """Convert a command-line string to the type of the field's default."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if isinstance(default, str):
        return text
    if isinstance(default, bool) or default is None:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        if default is None and low in ("none", "null"):
            return None
        raise ValueError(f"{name}: expected true or false, got {raw!r}")
    try:
        if isinstance(default, int):
            value = float(text)
            if not value.is_integer():
                raise ValueError
            return int(value)
        return float(text)
    except ValueError:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise ValueError(f"{name}: expected {kind}, got {raw!r}") from None


def apply_overrides(cfg: Config, hp: HParams, overrides: dict[str, Any]) -> tuple[Config, HParams]:
    """Set fields by name on whichever of Config/HParams holds them; validate the result."""
    cfg_fields = {f.name: f for f in dataclasses.fields(Config)}
    hp_fields = {f.name: f for f in dataclasses.fields(HParams)}
    cfg_updates, hp_updates = {}, {}
    for name, raw in overrides.items():
        if name in cfg_fields:
            cfg_updates[name] = parse_value(name, raw, getattr(cfg, name))
        elif name in hp_fields:
            hp_updates[name] = parse_value(name, raw, getattr(hp, name))
        else:
            allowed = ", ".join(sorted([*cfg_fields, *hp_fields]))
            raise ValueError(f"unknown hyperparameter {name!r}; allowed: {allowed}")
    cfg = dataclasses.replace(cfg, **cfg_updates).validate()
    hp = hp.replace(**{k: float(v) for k, v in hp_updates.items()}).validate()
    return cfg, hp


def to_dict(cfg: Config, hp: HParams) -> dict[str, Any]:
    return {
        "config": dataclasses.asdict(cfg),
        "hparams": {k: float(v) for k, v in vars(hp).items()},
    }


def from_dict(data: dict[str, Any]) -> tuple[Config, HParams]:
    return Config(**data["config"]), HParams(**data["hparams"])


def dumps(cfg: Config, hp: HParams) -> str:
    return json.dumps(to_dict(cfg, hp), indent=2, sort_keys=True)
