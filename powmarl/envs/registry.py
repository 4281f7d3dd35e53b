"""``make(env_id, **kwargs)``: the registry of environments, and who was made how."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

from powmarl.envs.base import MultiAgentEnv

_REGISTRY: dict[str, Callable[..., MultiAgentEnv]] = {}
_DESCRIPTIONS: dict[str, str] = {}
#: id(env) -> (a reference to env, env_id, kwargs) of every live env ``make`` returned;
#: an entry leaves when its env is collected (weakref.finalize).
_MADE: dict[int, tuple[Callable[[], Any], str, dict[str, Any]]] = {}


def register(env_id: str, factory: Callable[..., MultiAgentEnv], description: str = "") -> None:
    """Register ``factory(**kwargs) -> env`` under ``env_id`` (users may add their own)."""
    if env_id in _REGISTRY:
        raise ValueError(f"env id {env_id!r} is already registered")
    _REGISTRY[env_id] = factory
    _DESCRIPTIONS[env_id] = description


def registered() -> dict[str, str]:
    """Registered env ids with a one-line description."""
    return dict(sorted(_DESCRIPTIONS.items()))


def env_kwargs(env_id: str) -> dict[str, object]:
    """The keyword arguments ``env_id`` accepts, with their defaults."""
    factory = _lookup(env_id)
    return {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def factory(env_id: str) -> Callable[..., MultiAgentEnv]:
    """The factory registered under ``env_id``."""
    return _lookup(env_id)


def _lookup(env_id: str) -> Callable[..., MultiAgentEnv]:
    if env_id not in _REGISTRY:
        raise ValueError(f"env: unknown id {env_id!r}; allowed: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[env_id]


def _remember(env: Any, env_id: str, kwargs: dict[str, Any]) -> None:
    """Keep (env_id, kwargs) for ``env`` here, not on the env object."""
    key = id(env)
    try:
        ref: Callable[[], Any] = weakref.ref(env)
        weakref.finalize(env, _MADE.pop, key, None)
    except TypeError:  # no weakref slot: hold the env, so its id cannot be reused

        def ref(env=env):
            return env

    _MADE[key] = (ref, env_id, dict(kwargs))


def identity(env: Any) -> tuple[str, dict[str, Any]] | None:
    """(env_id, kwargs) that ``make`` built ``env`` from, else None (a fresh kwargs dict)."""
    entry = _MADE.get(id(env))
    if entry is None or entry[0]() is not env:
        return None
    return entry[1], dict(entry[2])


def make(env_id: str, **kwargs) -> MultiAgentEnv:
    """Create the environment ``env_id`` with its keyword arguments, checked against its
    protocol (:func:`powmarl.envs.contract.checked`)."""
    factory = _lookup(env_id)
    allowed = env_kwargs(env_id)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"env {env_id}: unknown argument {unknown[0]!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    return rebuild(factory, env_id, kwargs)


def rebuild(factory: Callable[..., MultiAgentEnv], env_id: str, kwargs: dict[str, Any]):
    """``factory(**kwargs)``, remembered as ``env_id`` with ``kwargs`` and checked: what
    ``make`` does once it has the factory (a worker process calls it with the factory
    itself, which need not be registered there)."""
    from powmarl.envs.contract import checked

    env = factory(**kwargs)
    _remember(env, env_id, kwargs)
    return checked(env)


def _intersection_hw(obs_dtype: str = "float32"):
    # lazy: highway-env is optional (the ImportError says how to install it); a module-level
    # function, so worker processes unpickle it
    from powmarl.envs.host.intersection_hw import IntersectionHW

    return IntersectionHW(obs_dtype=obs_dtype)


register(
    "intersection_hw",
    _intersection_hw,
    "the paper's 4-way intersection (4 vehicles, 3 speed actions) on highway-env, as the "
    "authors' copy (host path; needs powmarl[highway], see docs/envs/intersection.md)",
)


def _intersection():
    from powmarl.envs.intersection import Intersection

    return Intersection()


register(
    "intersection",
    _intersection,
    "the paper's 4-way unsignalised intersection ('Crossroads'): 4 vehicles, pure-JAX port "
    "of the authors' highway-env scenario (docs/envs/intersection.md)",
)
