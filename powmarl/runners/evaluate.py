"""Greedy read-outs of trained agents: one-step-game actions and learned tables."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.core.exploration import masked_argmax, take
from powmarl.networks.mixers import MixInput
from powmarl.runners.jax_runner import Runner


def initial_utilities(runner: Runner, env, agent_params, env_params, key):
    """Q_i at the first step of an episode: [A, U], and the reset timestep."""
    ts, _ = env.reset(key, env_params)
    spec = env.spec
    learner = runner.learner
    hidden = jnp.zeros((spec.num_agents, learner.agent.hidden_dim), jnp.float32)
    inputs = learner.agent_inputs(ts.obs, jnp.full((spec.num_agents,), -1, jnp.int32))
    _, q = learner.agent.apply(agent_params, hidden, inputs)
    return q, ts


def one_step_tables(runner: Runner, env, params, env_params, key) -> dict[str, np.ndarray]:
    """For a one-step game: greedy joint action, Q_i [A, U], and the tables over all U^A
    joint actions of Q_tot and of every extra that has one (Q* as ``central``, Q_r as
    ``recogniser``)."""
    spec = env.spec
    learner = runner.learner
    q, ts = initial_utilities(runner, env, params["agent"], env_params, key)
    greedy = masked_argmax(q, ts.avail_actions)
    joint = jnp.asarray(list(itertools.product(range(spec.num_actions), repeat=spec.num_agents)))
    chosen = jax.vmap(lambda a: take(q, a))(joint)  # [N, A]
    mix = MixInput(
        chosen_qs=chosen,
        states=jnp.broadcast_to(ts.state, (joint.shape[0], *ts.state.shape)),
        actions_onehot=jax.nn.one_hot(joint, spec.num_actions),
        max_qs=jnp.broadcast_to(take(q, greedy), chosen.shape),
    )
    shape = (spec.num_actions,) * spec.num_agents
    tables = {
        "greedy_actions": np.asarray(greedy),
        "q_i": np.asarray(q),
        "q_tot": np.asarray(learner.mixer.apply(params["mixer"], mix)).reshape(shape),
    }
    last = jnp.full((spec.num_agents,), -1, jnp.int32)
    inputs = learner.agent_inputs(ts.obs, last)[None, None]  # [1, 1, A, I]
    for extra in learner.extras:
        values = extra.joint_values(
            params["extras"][extra.name], inputs, ts.state, joint, q, ts.avail_actions
        )
        if values is not None:
            tables[extra.name] = np.asarray(values).reshape(shape)
    return tables
