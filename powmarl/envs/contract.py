"""The environment contract: what kind an env is, whether it is well formed, and its hooks.

Every reader of an environment's optional hooks goes through the accessors here, so a
hook has one name, one form and one default (:data:`powmarl.envs.base.JAX_HOOKS`,
:data:`powmarl.envs.host.base.HOST_HOOKS`; docs/envs/contract.md). An absent hook and a
hook set to None both mean its default. :func:`checked` validates an env against its
protocol when it is made; :func:`powmarl.envs.check` (conformance) is the deep check that
steps it.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np

from powmarl.envs import registry
from powmarl.envs.base import JAX_ATTRIBUTES, JAX_HOOKS, JAX_METHODS
from powmarl.types import EnvSpec

Kind = Literal["jax", "host"]


def _host_protocol() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(attributes, methods, hook names) of host envs (imported late: host.vector imports us)."""
    from powmarl.envs.host.base import HOST_ATTRIBUTES, HOST_HOOKS, HOST_METHODS

    return HOST_ATTRIBUTES, HOST_METHODS, tuple(h.name for h in HOST_HOOKS)


def _protocol(kind: Kind) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    if kind == "jax":
        return JAX_ATTRIBUTES, JAX_METHODS, tuple(h.name for h in JAX_HOOKS)
    return _host_protocol()


def describe(env: Any) -> str:
    """``env 'stag_hunt' (StagHunt)`` for a registry env, else ``env StagHunt``."""
    made = identity(env)
    name = type(env).__name__
    return f"env {made[0]!r} ({name})" if made else f"env {name}"


def env_kind(env: Any) -> Kind:
    """Kind "jax" or "host", as ``env`` has all members of the JAX or the host protocol.

    The only place that tells the two apart. Raises ValueError naming the missing members
    when it has neither protocol's members in full, or when it has both (ambiguous)."""
    missing = {}
    for kind in ("jax", "host"):
        attributes, methods, _ = _protocol(kind)
        missing[kind] = [n for n in (*attributes, *methods) if not hasattr(env, n)]
    if not missing["jax"] and not missing["host"]:
        raise ValueError(
            f"{describe(env)}: has the members of both the JAX protocol (default_params, "
            "reset(key, params)) and the host one (info_keys, get_obs, ...); keep one"
        )
    for kind in ("jax", "host"):
        if not missing[kind]:
            return kind
    raise ValueError(
        f"{describe(env)}: is neither a JAX env (missing {', '.join(missing['jax'])}) nor a "
        f"host env (missing {', '.join(missing['host'])}); see docs/envs/contract.md"
    )


# ------------------------------------------------------------------ validation


def _spec_problem(spec: Any) -> str | None:
    if not isinstance(spec, EnvSpec):
        return f"spec must be a powmarl.types.EnvSpec, got {type(spec).__name__}"
    for field, value in zip(spec._fields, spec):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            return f"spec.{field} must be a positive int, got {value!r}"
    return None


def _callable_problem(name: str, value: Any) -> str | None:
    return None if callable(value) else f"{name} must be callable, got {type(value).__name__}"


def _dtype_problem(value: Any) -> str | None:
    try:
        dtype = np.dtype(value)
    except TypeError:
        return f"obs_dtype must be a NumPy float dtype, got {value!r}"
    if not jnp.issubdtype(dtype, jnp.floating):
        return f"obs_dtype must be a NumPy float dtype (float16, float32, ...), got {dtype}"
    return None


def _copies_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        return f"max_copies must be a positive int (or None: unlimited), got {value!r}"
    return None


def _defaults_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        return f"run_defaults must be a mapping of setting name -> value, got {value!r}"
    return None


def _metric_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value.isidentifier():
        return f'main_metric must be "return" or an info key (a name), got {value!r}'
    return None


_HOOK_PROBLEMS: dict[str, Callable[[Any], str | None]] = {
    "obs_dtype": _dtype_problem,
    "max_copies": _copies_problem,
    "run_defaults": _defaults_problem,
    "replay_encode": functools.partial(_callable_problem, "replay_encode"),
    "replay_decode": functools.partial(_callable_problem, "replay_decode"),
    "clone": functools.partial(_callable_problem, "clone"),
    "render_frame": functools.partial(_callable_problem, "render_frame"),
    "main_metric": _metric_problem,
}


def _hook(env: Any, name: str) -> Any:
    """The env's hook ``name``, None when absent (or None); ValueError when malformed."""
    value = getattr(env, name, None)
    problem = None if value is None else _HOOK_PROBLEMS[name](value)
    if problem is not None:
        raise ValueError(f"{describe(env)}: {problem}")
    return value


def _member_problem(env: Any, kind: Kind) -> str | None:
    attributes, methods, _ = _protocol(kind)
    problem = _spec_problem(env.spec)
    if problem is not None:
        return problem
    for name in methods:
        if not callable(getattr(env, name)):
            return _callable_problem(name, getattr(env, name))
    for name in ("obs_last_action", "obs_agent_id"):
        if not isinstance(getattr(env, name), bool | np.bool_):
            return f"{name} must be a bool, got {getattr(env, name)!r}"
    if "info_keys" in attributes:
        keys = env.info_keys
        if not isinstance(keys, tuple) or not all(isinstance(k, str) for k in keys):
            return f"info_keys must be a tuple of str, got {keys!r}"
    return None


def _foreign_hook_problem(env: Any, kind: Kind) -> str | None:
    """A hook of the other protocol that ``env`` sets: it would be silently ignored."""
    other: Kind = "host" if kind == "jax" else "jax"
    own = set(_protocol(kind)[2])
    for name in _protocol(other)[2]:
        if name not in own and getattr(env, name, None) is not None:
            return f"{name} is a hook of {'JAX' if other == 'jax' else 'host'} envs only"
    return None


def _codec_problem(env: Any) -> str | None:
    encode = getattr(env, "replay_encode", None)
    decode = getattr(env, "replay_decode", None)
    if (encode is None) == (decode is None):
        return None
    have, lack = (
        ("replay_encode", "replay_decode") if decode is None else ("replay_decode", "replay_encode")
    )
    return f"has {have} but no {lack}; a compact replay needs both"


def checked(env: Any) -> Any:
    """``env`` itself after validating it against its protocol, without stepping it.

    Checks the members (spec an EnvSpec of positive ints, methods callable, bool agent-input
    flags, host ``info_keys`` a tuple of str) and the hooks that are set (their form; the
    replay codec complete; none of the other kind's hooks). Raises a one-line ValueError
    naming the env and the missing or wrong part."""
    kind = env_kind(env)
    problem = _member_problem(env, kind) or _foreign_hook_problem(env, kind) or _codec_problem(env)
    if problem is not None:
        raise ValueError(f"{describe(env)}: {problem}")
    for name in _protocol(kind)[2]:
        _hook(env, name)
    return env


# ------------------------------------------------------------------ accessors


def replay_codec(env: Any) -> tuple[Callable, Callable] | None:
    """(replay_encode, replay_decode) when the env stores compact replay records, else None."""
    encode, decode = _hook(env, "replay_encode"), _hook(env, "replay_decode")
    problem = _codec_problem(env)
    if problem is not None:
        raise ValueError(f"{describe(env)}: {problem}")
    return None if encode is None else (encode, decode)


def obs_dtype(env: Any, default: Any = np.float32) -> np.dtype | None:
    """The dtype the replay buffer stores obs and state in; ``default`` (float32) when the
    env declares none (``default=None`` tells whether it declares one)."""
    value = _hook(env, "obs_dtype")
    value = default if value is None else value
    return None if value is None else np.dtype(value)


def max_copies(env: Any) -> int | None:
    """The most copies of ``env`` that may exist at once; None: unlimited."""
    value = _hook(env, "max_copies")
    return None if value is None else int(value)


def run_defaults(env: Any) -> dict[str, Any]:
    """The env's Config/HParams settings (a fresh dict; {} by default)."""
    return dict(_hook(env, "run_defaults") or {})


def renderer(env: Any) -> Callable[[dict[str, Any], Any], Any]:
    """The env's ``render_frame(frame, env_params) -> PIL.Image | None``; ValueError naming
    the env when it has none."""
    draw = _hook(env, "render_frame")
    if draw is None:
        raise ValueError(
            f"render: {describe(env)} cannot be drawn (it has no render_frame hook); "
            "give it render_frame(frame, env_params) -> PIL.Image (docs/envs/contract.md)"
        )
    return draw


def main_metric(env: Any) -> str | None:
    """What ranks the env's evaluations for the absolute metric: ``"return"`` or an info key;
    None when it declares nothing (:func:`powmarl.io.best.metric_key` then takes the win
    rate where reported, else the return)."""
    return _hook(env, "main_metric")


def identity(env: Any) -> tuple[str, dict[str, Any]] | None:
    """(env_id, kwargs) of an env made by ``powmarl.envs.make``, else None."""
    return registry.identity(env)


def pickles(obj: Any) -> bool:
    """Whether ``obj`` pickles (what spawned worker processes need of an env factory)."""
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any failure means "not picklable"
        return False
    return True


def copy_factory(env: Any) -> Callable[[], Any] | None:
    """A zero-argument factory making a fresh equal copy of ``env``, or None when none works.

    In order: the factory registered for the env's id, with the same arguments; the env's
    ``clone``; unpickling a pickle of the env. A factory that pickles (for 'spawn' worker
    processes) is preferred; otherwise an in-process one is returned. A registered factory
    pickles by module and name, so a worker imports the module that defines it."""
    made = identity(env)
    candidates = []
    if made is not None:
        # the registered factory itself, not ``make(env_id)``: it pickles by module and name,
        # so a spawned worker imports the user's module even if it never registered the id
        env_id, kwargs = made
        candidates.append(
            functools.partial(registry.rebuild, registry.factory(env_id), env_id, kwargs)
        )
    clone = _hook(env, "clone")
    if clone is not None:
        candidates.append(clone)
    for factory in candidates:
        if pickles(factory):
            return factory
    try:
        frozen = pickle.dumps(env)
    except Exception:  # noqa: BLE001 - an env that does not pickle has no pickle copy
        return candidates[0] if candidates else None
    return functools.partial(pickle.loads, frozen)
