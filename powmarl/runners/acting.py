"""The one agent step: the shared GRU agent's utilities and its action for one env.

Training rollouts (JAX and host), greedy evaluation, one-step tables and rendering all act
through :func:`agent_step`, so an agent behaves the same everywhere it is run.
"""

from __future__ import annotations

import jax.numpy as jnp

from powmarl.core.exploration import epsilon_greedy, masked_argmax
from powmarl.learner import Learner
from powmarl.types import Array, PRNGKey


def agent_step(
    learner: Learner,
    agent_params,
    hidden: Array,  # [A, H]
    obs: Array,  # [A, O]
    last_actions: Array,  # [A] int32, -1 before the first action
    avail: Array,  # [A, U] bool
    key: PRNGKey | None = None,
    epsilon: Array | float = 0.0,
) -> tuple[Array, Array, Array]:
    """One GRU step and an action per agent: (hidden [A, H], actions [A] int32, q [A, U]).

    With ``key``: epsilon-greedy over the available actions (PyMARL's selector); without:
    greedy. Leading batch axes come from ``vmap``.
    """
    inputs = learner.agent_inputs(obs, last_actions)  # [A, I]
    hidden, q = learner.agent.apply(agent_params, hidden, inputs)
    if key is None:
        actions = masked_argmax(q, avail).astype(jnp.int32)
    else:
        actions = epsilon_greedy(key, q, avail, epsilon)
    return hidden, actions, q


def initial_hidden(learner: Learner, num_agents: int) -> Array:
    """The agent's recurrent state at the start of an episode, [A, H] zeros."""
    return jnp.zeros((num_agents, learner.agent.hidden_dim), jnp.float32)


def no_last_actions(num_agents: int) -> Array:
    """Last actions before the first step: -1 (no one-hot bit set), [A] int32."""
    return jnp.full((num_agents,), -1, jnp.int32)
