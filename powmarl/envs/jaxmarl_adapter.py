"""Any JaxMARL ``MultiAgentEnv`` as a powmarl JAX env, compiled end to end.

``JaxMarlEnv(jaxmarl.make(name))`` (or ``make("jaxmarl", name=...)``) maps JaxMARL's
agent dicts onto powmarl's array contract (docs/envs/jaxmarl.md):

- agents become the array axis in the env's own ``env.agents`` order;
- observations are flattened and zero-padded to the largest agent's size ``O``;
- actions: every agent's space must be discrete; ``U`` is the largest; an agent's padded
  actions are never available. Available actions come from the env's
  ``get_avail_actions`` where it overrides JaxMARL's base one, else every real action;
- global state: the env's ``get_world_state(state)`` where it has one, else a
  ``"world_state"`` entry of its observation dict, else the agents' padded observations
  concatenated ``[A * O]``;
- team reward: the sum over agents of the per-agent rewards (``reward="mean"``: the mean);
- episodes: ``step_env`` is called (no auto-reset); powmarl counts the steps itself.
  ``truncated`` is set at ``episode_limit`` (default: the env's ``max_steps``);
  ``terminated`` is JaxMARL's ``dones["__all__"]`` before the limit, except a done raised
  on or after the env's own ``max_steps``, which is its time limit, not a natural end;
- ``info``: the scalar entries of ``step_env``'s info dict (zeros at reset).

The small helpers at the top are shared with the richer SMAX adapter (``smax.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from powmarl.envs.base import JaxEnvDefaults
from powmarl.types import Array, EnvSpec, TimeStep

MISSING_JAXMARL = "jaxmarl: needs jaxmarl; install with pip install 'powmarl[jaxmarl]'"
REWARD_MODES = ("sum", "mean")


# ------------------------------------------------------------------ shared with smax.py


def agent_dict(actions: Array, agents: Sequence[str]) -> dict[str, Array]:
    """{agent name: actions[i]} in ``agents`` order: powmarl's [A] array to JaxMARL's dict."""
    return {agent: actions[i] for i, agent in enumerate(agents)}


def stack_agents(values: Mapping[str, Array], agents: Sequence[str], width: int | None = None):
    """[A, width] the flattened per-agent arrays of ``values`` in ``agents`` order, each
    zero-padded (False for bools) to ``width`` (default: the largest)."""
    flat = [jnp.ravel(values[agent]) for agent in agents]
    width = max(v.shape[0] for v in flat) if width is None else width
    return jnp.stack([jnp.pad(v, (0, width - v.shape[0])) for v in flat])


def end_flags(natural_end: Array, t: Array, episode_limit: int) -> tuple[Array, Array]:
    """(terminated, truncated) bool scalars: a natural end terminates; reaching
    ``episode_limit`` steps without one truncates (bootstrapped), so never both."""
    terminated = jnp.asarray(natural_end, bool)
    truncated = (t >= episode_limit) & ~terminated
    return terminated, truncated


def check_episode_limit(value: Any) -> int:
    """``value`` as a positive int; a one-line ValueError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"episode_limit: must be an integer >= 1, got {value!r}")
    return value


def make_timestep(obs, state, avail, reward, terminated, truncated, info) -> TimeStep:
    """A :class:`TimeStep` with the contract's dtypes (float32 reward, bool flags)."""
    return TimeStep(
        obs=obs,
        state=state,
        avail_actions=jnp.asarray(avail, bool),
        reward=jnp.asarray(reward, jnp.float32),
        terminated=jnp.asarray(terminated, bool),
        truncated=jnp.asarray(truncated, bool),
        info=info,
    )


# ------------------------------------------------------------------ the generic adapter


@flax.struct.dataclass
class JaxMarlState:
    """The wrapped env's state and the steps taken in this episode."""

    env_state: Any
    t: Array  # [] int32


def _overrides(env: Any, method: str) -> bool:
    """Whether ``env``'s class defines ``method`` itself rather than JaxMARL's base class
    (whose ``get_avail_actions`` only raises NotImplementedError)."""
    from jaxmarl.environments.multi_agent_env import MultiAgentEnv

    own = getattr(type(env), method, None)
    return own is not None and own is not getattr(MultiAgentEnv, method, None)


def _num_actions(env: Any, agent: str) -> int:
    space = env.action_space(agent)
    n = getattr(space, "n", None)
    if n is None:
        raise ValueError(
            f"jaxmarl: agent {agent!r} has a {type(space).__name__} action space; value "
            "decomposition needs discrete actions (argmax over per-agent utilities)"
        )
    return int(n)


class JaxMarlEnv(JaxEnvDefaults):
    """A JaxMARL ``MultiAgentEnv`` instance under powmarl's JAX contract (module docstring).

    Args: ``env`` a JaxMARL env; ``episode_limit`` steps before truncation (default: its
    ``max_steps``); ``reward`` "sum" or "mean" of the agents' rewards; the agent-input
    flags (EPyMARL's defaults: agent id on, last action off).
    """

    def __init__(
        self,
        env: Any,
        episode_limit: int | None = None,
        reward: str = "sum",
        obs_agent_id: bool = True,
        obs_last_action: bool = False,
    ):
        if reward not in REWARD_MODES:
            raise ValueError(f"reward: must be one of {', '.join(REWARD_MODES)}, got {reward!r}")
        own_limit = getattr(env, "max_steps", None)
        if episode_limit is None and not isinstance(own_limit, int):
            raise ValueError(
                f"episode_limit: {type(env).__name__} has no max_steps; pass episode_limit"
            )
        self.episode_limit = check_episode_limit(
            own_limit if episode_limit is None else episode_limit
        )
        self.env, self.reward_mode = env, reward
        self.agents = tuple(env.agents)
        self.own_limit = own_limit if isinstance(own_limit, int) else math.inf
        self.obs_agent_id, self.obs_last_action = bool(obs_agent_id), bool(obs_last_action)
        self.action_counts = tuple(_num_actions(env, a) for a in self.agents)
        self._has_avail = _overrides(env, "get_avail_actions")
        self._has_world_state = hasattr(env, "get_world_state")
        # shapes only: an abstract key, so no key is invented here
        self._key_shape = jax.eval_shape(jax.random.key, 0)
        obs, env_state = jax.eval_shape(env.reset, self._key_shape)
        self.obs_dim = max(math.prod(obs[a].shape) for a in self.agents)
        self._obs_world_state = "world_state" in obs and not self._has_world_state
        state_dim = jax.eval_shape(self._state_view, obs, env_state).shape[0]
        self._info_keys = self._scalar_info_keys(env_state)
        self.spec = EnvSpec(
            num_agents=len(self.agents),
            num_actions=max(self.action_counts),
            obs_dim=self.obs_dim,
            state_dim=int(state_dim),
            episode_limit=self.episode_limit,
        )

    def _scalar_info_keys(self, env_state) -> tuple[str, ...]:
        """The names of ``step_env``'s scalar info entries (found by shape, not by running)."""
        actions = {a: jnp.zeros((), jnp.int32) for a in self.agents}
        out = jax.eval_shape(self.env.step_env, self._key_shape, env_state, actions)
        infos = out[4] if isinstance(out[4], Mapping) else {}
        return tuple(sorted(k for k, v in infos.items() if getattr(v, "shape", None) == ()))

    def default_params(self) -> dict:
        return {}  # JaxMARL envs keep their settings on the env object

    # ------------------------------------------------------------------ views

    def _obs_view(self, obs) -> Array:
        return stack_agents(obs, self.agents, self.obs_dim).astype(jnp.float32)

    def _state_view(self, obs, env_state) -> Array:
        if self._has_world_state:
            return jnp.ravel(self.env.get_world_state(env_state)).astype(jnp.float32)
        if self._obs_world_state:
            return jnp.ravel(obs["world_state"]).astype(jnp.float32)
        return jnp.ravel(self._obs_view(obs))

    def _avail_view(self, env_state) -> Array:
        """[A, U] bool: the env's mask where it has one, else every real action."""
        width = max(self.action_counts)
        counts = jnp.asarray(self.action_counts)
        real = jnp.arange(width)[None, :] < counts[:, None]
        if not self._has_avail:
            return real
        avail = self.env.get_avail_actions(env_state)
        return stack_agents({a: jnp.asarray(avail[a], bool) for a in self.agents}, self.agents,
                            width) & real  # fmt: skip

    def _timestep(self, obs, env_state, reward, terminated, truncated, info) -> TimeStep:
        return make_timestep(
            self._obs_view(obs),
            self._state_view(obs, env_state),
            self._avail_view(env_state),
            reward,
            terminated,
            truncated,
            info,
        )

    # ------------------------------------------------------------------ reset / step

    def reset(self, key, params):
        del params
        obs, env_state = self.env.reset(key)
        zero, no = jnp.zeros((), jnp.float32), jnp.zeros((), bool)
        info = {k: zero for k in self._info_keys}
        state = JaxMarlState(env_state=env_state, t=jnp.zeros((), jnp.int32))
        return self._timestep(obs, env_state, zero, no, no, info), state

    def step(self, key, state: JaxMarlState, actions, params):
        del params
        actions = jnp.asarray(actions).astype(jnp.int32)
        named = agent_dict(actions, self.agents)
        obs, env_state, rewards, dones, infos = self.env.step_env(key, state.env_state, named)
        per_agent = jnp.stack([jnp.asarray(rewards[a], jnp.float32) for a in self.agents])
        reward = jnp.sum(per_agent) if self.reward_mode == "sum" else jnp.mean(per_agent)
        t = state.t + 1
        # a done at or past the env's own max_steps is its time limit, not a natural end
        natural = jnp.asarray(dones["__all__"], bool) & (t < self.own_limit)
        terminated, truncated = end_flags(natural, t, self.episode_limit)
        info = {k: jnp.asarray(infos[k], jnp.float32) for k in self._info_keys}
        new_state = JaxMarlState(env_state=env_state, t=t)
        return self._timestep(obs, env_state, reward, terminated, truncated, info), new_state


def make_jaxmarl(
    name: str = "MPE_simple_spread_v3",
    env_kwargs: dict | None = None,
    episode_limit: int | None = None,
    reward: str = "sum",
) -> JaxMarlEnv:
    """``jaxmarl.make(name, **env_kwargs)`` wrapped by :class:`JaxMarlEnv`; a one-line
    ValueError naming ``name`` and the registered ids when it is unknown."""
    try:
        import jaxmarl
        from jaxmarl.registration import registered_envs
    except ImportError as err:  # pragma: no cover - exercised only without jaxmarl
        raise ImportError(MISSING_JAXMARL) from err
    if name not in registered_envs:
        raise ValueError(
            f"name: unknown jaxmarl env {name!r}; allowed: {', '.join(registered_envs)}"
        )
    if env_kwargs is not None and not isinstance(env_kwargs, Mapping):
        raise ValueError(
            f"env_kwargs: must be a JSON object of jaxmarl arguments, got {env_kwargs!r}"
        )
    return JaxMarlEnv(jaxmarl.make(name, **dict(env_kwargs or {})), episode_limit, reward)


def from_jaxmarl(
    env: Any, episode_limit: int | None = None, reward: str = "sum", **flags: bool
) -> JaxMarlEnv:
    """A JaxMARL env instance of yours (built with its own arguments) as a checked powmarl
    env; ``flags``: ``obs_agent_id``, ``obs_last_action``."""
    from powmarl.envs.contract import checked

    return checked(JaxMarlEnv(env, episode_limit, reward, **flags))
