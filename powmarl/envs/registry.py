"""``make(env_id, **kwargs)``: the registry of environments."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from powmarl.envs.base import MultiAgentEnv

_REGISTRY: dict[str, Callable[..., MultiAgentEnv]] = {}
_DESCRIPTIONS: dict[str, str] = {}


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


def _lookup(env_id: str) -> Callable[..., MultiAgentEnv]:
    if env_id not in _REGISTRY:
        raise ValueError(f"env: unknown id {env_id!r}; allowed: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[env_id]


def make(env_id: str, **kwargs) -> MultiAgentEnv:
    """Create the environment ``env_id`` with its keyword arguments."""
    factory = _lookup(env_id)
    allowed = env_kwargs(env_id)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"env {env_id}: unknown argument {unknown[0]!r}; allowed: {', '.join(allowed) or 'none'}"
        )
    env = factory(**kwargs)
    env.env_id = env_id
    env.env_kwargs = dict(kwargs)
    return env
