"""The algorithm registry: ``make(name)`` returns an :class:`Algorithm`."""

from __future__ import annotations

from collections.abc import Callable

from powmarl.algos import pow, qmix, qplex, resq, vdn, wqmix
from powmarl.algos.base import Algorithm, Extra, LossContext, WeightingRule

_REGISTRY: dict[str, Callable[[], Algorithm]] = {
    "qmix": qmix.make,
    "vdn": vdn.make,
    "cw_qmix": wqmix.make_cw,
    "ow_qmix": wqmix.make_ow,
    "pow_qmix": pow.make_pow_qmix,
    "pow_vdn": pow.make_pow_vdn,
    "qplex": qplex.make_qplex,
    "pow_qplex": qplex.make_pow_qplex,
    "resq": resq.make,
}


def register(name: str, factory: Callable[[], Algorithm]) -> None:
    """Register a new algorithm factory (users may add their own)."""
    if name in _REGISTRY:
        raise ValueError(f"algorithm {name!r} is already registered")
    _REGISTRY[name] = factory


def registered() -> dict[str, str]:
    return {name: _REGISTRY[name]().description for name in sorted(_REGISTRY)}


def make(name: str) -> Algorithm:
    if name not in _REGISTRY:
        raise ValueError(f"algo: unknown {name!r}; allowed: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


__all__ = ["Algorithm", "Extra", "LossContext", "WeightingRule", "make", "register", "registered"]
