"""Epsilon-greedy over available actions (PyMARL ``EpsilonGreedyActionSelector``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from powmarl.types import Array, PRNGKey


def linear_epsilon(t_env: Array, start: Array, finish: Array, anneal_time: Array) -> Array:
    """epsilon(t) = max(finish, start - (start - finish) * t / anneal_time)."""
    frac = jnp.clip(t_env / jnp.maximum(anneal_time, 1.0), 0.0, 1.0)
    return start - (start - finish) * frac


def take(values: Array, index: Array) -> Array:
    """values [..., U] at the integer index [...] -> [...] (e.g. Q_i of the chosen action)."""
    return jnp.take_along_axis(values, index[..., None].astype(jnp.int32), axis=-1)[..., 0]


def masked_argmax(q: Array, avail: Array) -> Array:
    """Greedy action over available actions: argmax of q with unavailable set to -inf."""
    return jnp.argmax(jnp.where(avail, q, -jnp.inf), axis=-1)


def epsilon_greedy(key: PRNGKey, q: Array, avail: Array, epsilon: Array) -> Array:
    """Per agent: with prob. epsilon a uniform available action, else the greedy one.

    q, avail: [..., U]; returns int32 actions [...]. Never picks an unavailable action.
    """
    explore_key, pick_key = jax.random.split(key)
    greedy = masked_argmax(q, avail)
    # uniform over available actions: argmax of Gumbel-free uniform noise on the mask
    noise = jax.random.uniform(pick_key, avail.shape)
    random = jnp.argmax(jnp.where(avail, noise, -1.0), axis=-1)
    explore = jax.random.uniform(explore_key, greedy.shape) < epsilon
    return jnp.where(explore, random, greedy).astype(jnp.int32)
