"""Whole-episode rollouts of E environments as one fixed-length ``lax.scan``.

Each env runs one episode of at most T = episode_limit steps from reset; steps
after the episode ended are padding (``filled = False``, data zeroed), so shapes
stay static and nothing leaves the compiled program.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from powmarl.envs.contract import replay_codec
from powmarl.learner import Learner
from powmarl.runners.acting import agent_step, initial_hidden, no_last_actions
from powmarl.types import Array, EpisodeBatch, PRNGKey


class EpisodeStats(NamedTuple):
    returns: Array  # [E]
    lengths: Array  # [E] int32
    info: dict[str, Array]  # each [E], summed over the episode


@flax.struct.dataclass
class _Carry:
    timestep: Any
    env_state: Any
    hidden: Array  # [A, H]
    last_actions: Array  # [A] int32, -1 before the first action
    alive: Array  # [] bool, the episode has not ended before this step
    key: PRNGKey
    ret: Array
    length: Array
    info: dict[str, Array]


def _zero_unless(alive, x):
    return jnp.where(alive, x, jnp.zeros_like(x))


class _Rollout:
    """``rollout(agent_params, env_params, key, epsilon, num_envs) -> (EpisodeBatch, stats)``
    for one env and learner."""

    def __init__(self, env, learner: Learner):
        self.env, self.learner, self.spec = env, learner, env.spec
        # an env may have the buffer keep a compact per-step record instead of obs, state
        # and avail_actions (its replay codec; the runner restores them with the decoder)
        codec = replay_codec(env)
        self.encode = None if codec is None else codec[0]

    def stored(self, ts, env_state, keep):
        """What the buffer keeps of one step, zeroed unless ``keep``."""
        if self.encode is None:
            kept = {"obs": ts.obs, "state": ts.state, "avail_actions": ts.avail_actions}
        else:
            kept = {"obs": self.encode(env_state), "state": None, "avail_actions": None}
        return jax.tree.map(lambda x: _zero_unless(keep, x), kept)

    def env_step(self, carry: _Carry, agent_params, env_params, epsilon):
        key, act_key, step_key = jax.random.split(carry.key, 3)
        ts = carry.timestep
        hidden, actions, _ = agent_step(
            self.learner, agent_params, carry.hidden, ts.obs, carry.last_actions,
            ts.avail_actions, act_key, epsilon,
        )  # fmt: skip
        next_ts, env_state = self.env.step(step_key, carry.env_state, actions, env_params)
        alive = carry.alive
        record = {
            "slots": self.stored(ts, carry.env_state, alive),
            "actions": _zero_unless(alive, actions).astype(jnp.uint8),
            "reward": _zero_unless(alive, next_ts.reward),
            "terminated": alive & next_ts.terminated,
            "filled": alive,
        }
        ended = next_ts.terminated | next_ts.truncated
        new_carry = _Carry(
            timestep=next_ts,
            env_state=env_state,
            hidden=hidden,
            last_actions=actions,
            alive=alive & ~ended,
            key=key,
            ret=carry.ret + record["reward"],
            length=carry.length + alive.astype(jnp.int32),
            info={k: carry.info[k] + _zero_unless(alive, v) for k, v in next_ts.info.items()},
        )
        return new_carry, record

    def episode(self, agent_params, env_params, key, epsilon):
        spec = self.spec
        reset_key, run_key = jax.random.split(key)
        ts, env_state = self.env.reset(reset_key, env_params)
        carry = _Carry(
            timestep=ts,
            env_state=env_state,
            hidden=initial_hidden(self.learner, spec.num_agents),
            last_actions=no_last_actions(spec.num_agents),
            alive=jnp.ones((), bool),
            key=run_key,
            ret=jnp.zeros((), jnp.float32),
            length=jnp.zeros((), jnp.int32),
            info={k: jnp.zeros((), jnp.float32) for k in ts.info},
        )

        def body(c, _):
            return self.env_step(c, agent_params, env_params, epsilon)

        carry, rec = jax.lax.scan(body, carry, None, length=spec.episode_limit)
        # slot T holds the observation after the last step when the episode ran to the limit
        full = carry.length == spec.episode_limit
        last = self.stored(carry.timestep, carry.env_state, full)
        slots = jax.tree.map(lambda r, x: jnp.concatenate([r, x[None]]), rec["slots"], last)
        batch = EpisodeBatch(
            **slots,
            actions=rec["actions"],
            reward=rec["reward"].astype(jnp.float32),
            terminated=rec["terminated"],
            filled=rec["filled"],
        )
        return batch, EpisodeStats(carry.ret, carry.length, carry.info)

    def __call__(self, agent_params, env_params, key, epsilon, num_envs: int):
        keys = jax.random.split(key, num_envs)
        return jax.vmap(self.episode, in_axes=(None, None, 0, None))(
            agent_params, env_params, keys, epsilon
        )


def make_rollout(env, learner: Learner):
    """Return ``rollout(agent_params, env_params, key, epsilon, num_envs) -> (EpisodeBatch,
    stats)``: E whole episodes of at most T steps, padded (module docstring)."""
    return _Rollout(env, learner)
