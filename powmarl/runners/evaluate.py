"""Greedy read-outs of trained agents: one-step-game actions and learned tables."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.core.exploration import take
from powmarl.learner import Learner
from powmarl.networks.mixers import MixInput
from powmarl.runners.acting import agent_step, initial_hidden, no_last_actions


def initial_utilities(learner: Learner, env, agent_params, env_params, key):
    """Q_i at the first step of an episode: [A, U], its greedy actions [A], and the reset
    timestep."""
    ts, _ = env.reset(key, env_params)
    a = env.spec.num_agents
    hidden = initial_hidden(learner, a)
    _, greedy, q = agent_step(
        learner, agent_params, hidden, ts.obs, no_last_actions(a), ts.avail_actions
    )
    return q, greedy, ts


def one_step_tables(learner: Learner, env, params, env_params, key) -> dict[str, np.ndarray]:
    """For a one-step game: greedy joint action, Q_i [A, U], and the tables over all U^A
    joint actions of Q_tot and of every extra that has one (Q* as ``central``, Q_r as
    ``recogniser``)."""
    spec = env.spec
    q, greedy, ts = initial_utilities(learner, env, params["agent"], env_params, key)
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
    inputs = learner.agent_inputs(ts.obs, no_last_actions(spec.num_agents))[None, None]
    for extra in learner.extras:
        values = extra.joint_values(
            params["extras"][extra.name], inputs, ts.state, joint, q, ts.avail_actions
        )
        if values is not None:
            tables[extra.name] = np.asarray(values).reshape(shape)
    return tables
