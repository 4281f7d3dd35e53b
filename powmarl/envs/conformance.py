"""``check(env)``: does an environment honour the powmarl contract?

Run it on your own environment before training on it. It first runs the static
checks of :func:`powmarl.envs.contract.checked` (members and hooks; all a host env
gets here), then steps a JAX env, jitted and un-jitted: shapes and dtypes against
``env.spec`` (and ``obs_dtype`` when declared), at least one available action per
agent, determinism for a fixed key, that ``vmap`` works, fixed info keys, and
terminated vs truncated (truncation only at ``episode_limit``, never both).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.envs import contract
from powmarl.types import TimeStep


class ConformanceError(AssertionError):
    """Raised with every failed check listed."""


def _check_timestep(ts: TimeStep, spec, where: str, errors: list[str], info_keys=None):
    expect = {
        "obs": (spec.num_agents, spec.obs_dim),
        "state": (spec.state_dim,),
        "avail_actions": (spec.num_agents, spec.num_actions),
        "reward": (),
        "terminated": (),
        "truncated": (),
    }
    for name, shape in expect.items():
        value = getattr(ts, name)
        if tuple(value.shape) != shape:
            errors.append(f"{where}: {name} has shape {tuple(value.shape)}, spec says {shape}")
    for name in ("avail_actions", "terminated", "truncated"):
        if getattr(ts, name).dtype != jnp.bool_:
            errors.append(f"{where}: {name} must be bool, got {getattr(ts, name).dtype}")
    if not jnp.issubdtype(ts.reward.dtype, jnp.floating):
        errors.append(f"{where}: reward must be a float scalar, got {ts.reward.dtype}")
    if ts.avail_actions.shape == expect["avail_actions"] and not bool(
        np.all(np.asarray(ts.avail_actions).any(axis=-1))
    ):
        errors.append(f"{where}: some agent has no available action")
    if info_keys is not None and set(ts.info) != info_keys:
        errors.append(
            f"{where}: info keys {sorted(ts.info)} differ from reset's {sorted(info_keys)}"
        )
    for k, v in ts.info.items():
        if jnp.shape(v) != ():
            errors.append(f"{where}: info[{k!r}] must be a scalar, got shape {jnp.shape(v)}")


def _random_actions(key, avail):
    noise = jax.random.uniform(key, avail.shape)
    return jnp.argmax(jnp.where(avail, noise, -1.0), axis=-1).astype(jnp.int32)


def _play(env, params, key, reset, step, errors, label, max_steps):
    """One random episode; returns the list of timesteps."""
    spec = env.spec
    reset_key, key = jax.random.split(key)
    ts, state = reset(reset_key, params)
    _check_timestep(ts, spec, f"{label} reset", errors)
    info_keys = set(ts.info)
    timesteps = []
    for t in range(1, max_steps + 1):
        key, act_key, step_key = jax.random.split(key, 3)
        actions = _random_actions(act_key, ts.avail_actions)
        ts, state = step(step_key, state, actions, params)
        _check_timestep(ts, spec, f"{label} step {t}", errors, info_keys)
        timesteps.append(ts)
        terminated, truncated = bool(ts.terminated), bool(ts.truncated)
        if terminated and truncated:
            errors.append(f"{label} step {t}: terminated and truncated are both set")
        if truncated and t != spec.episode_limit:
            errors.append(f"{label} step {t}: truncated before episode_limit {spec.episode_limit}")
        if terminated or truncated:
            return timesteps
    errors.append(
        f"{label}: episode did not end within episode_limit={spec.episode_limit} steps "
        "(set truncated at the limit)"
    )
    return timesteps


def check(env, params=None, seed: int = 0, episodes: int = 2) -> None:
    """Raise :class:`ConformanceError` listing every violation of the contract, else return."""
    try:
        contract.checked(env)
    except ValueError as err:
        raise ConformanceError(str(err)) from None
    if contract.env_kind(env) == "host":
        return  # host envs are stepped by the host runner, which checks every view
    errors: list[str] = []
    spec = env.spec
    params = env.default_params() if params is None else params
    for field in spec._fields:
        if not isinstance(getattr(spec, field), int) or getattr(spec, field) < 1:
            errors.append(f"spec.{field} must be a positive int, got {getattr(spec, field)!r}")
    if errors:
        raise ConformanceError("\n".join(errors))
    _check_jit_and_determinism(env, params, seed, episodes, errors)
    _check_vmap(env, params, errors)
    _check_obs_dtype(env, params, errors)
    if errors:
        raise ConformanceError(
            f"{type(env).__name__} fails {len(errors)} check(s):\n" + "\n".join(errors)
        )


def _check_jit_and_determinism(env, params, seed: int, episodes: int, errors: list[str]) -> None:
    """Jitted and un-jitted episodes from the same key agree; the same key replays the same
    episode."""
    limit = env.spec.episode_limit
    key = jax.random.key(seed)
    # one jitted pair for every jitted episode: compiled once, not once per episode
    jit_reset, jit_step = jax.jit(env.reset), jax.jit(env.step)
    for e in range(episodes):
        key, ep_key = jax.random.split(key)
        same_key = jax.random.clone(ep_key)  # the jitted run replays the same episode
        plain = _play(env, params, ep_key, env.reset, env.step, errors, f"episode {e}", limit)
        jitted = _play(
            env, params, same_key, jit_reset, jit_step, errors, f"jit episode {e}", limit
        )
        for t, (a, b) in enumerate(zip(plain, jitted), start=1):
            if not np.allclose(
                np.asarray(a.obs, np.float32), np.asarray(b.obs, np.float32), atol=1e-5
            ) or not np.isclose(float(a.reward), float(b.reward), atol=1e-5):
                errors.append(f"episode {e} step {t}: jitted and un-jitted runs differ")
                break
    again, twice = (
        # a fresh key object per replay (the same value): the key-reuse checker stays happy
        _play(env, params, jax.random.fold_in(jax.random.key(seed), 7), jit_reset, jit_step,
              [], "determinism", limit)
        for _ in range(2)
    )  # fmt: skip
    if len(again) != len(twice) or any(
        not np.array_equal(np.asarray(a.obs), np.asarray(b.obs)) for a, b in zip(again, twice)
    ):
        errors.append("determinism: the same key gave different episodes")


def _check_vmap(env, params, errors: list[str]) -> None:
    spec = env.spec
    try:
        reset_keys, act_keys, step_keys = jax.random.split(jax.random.key(1), (3, 3))
        ts, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(reset_keys, params)
        actions = jax.vmap(_random_actions)(act_keys, ts.avail_actions)
        step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
        ts, _ = step(step_keys, state, actions, params)
        if ts.obs.shape != (3, spec.num_agents, spec.obs_dim):
            errors.append(f"vmap: batched obs has shape {ts.obs.shape}")
    except Exception as err:  # noqa: BLE001 - report any failure as a conformance error
        errors.append(f"vmap: reset/step fail under jax.vmap: {type(err).__name__}: {err}")


def _check_obs_dtype(env, params, errors: list[str]) -> None:
    """A declared ``obs_dtype`` is the dtype reset emits obs and state in."""
    declared = contract.obs_dtype(env, default=None)
    if declared is None:
        return
    ts, _ = jax.eval_shape(env.reset, jax.random.key(0), params)
    for name in ("obs", "state"):
        if getattr(ts, name).dtype != declared:
            errors.append(f"obs_dtype: {name} is {getattr(ts, name).dtype}, declared {declared}")
