"""One-step cooperative matrix games for n agents (notes sec. 5.1).

Every agent picks one of U actions once; the team receives ``payoff[a_1, ..., a_n]``
and the episode terminates. Observation = state = one-hot of the step counter
(dimension 2), as in the reference ``one_step_matrix_game.py``.
"""

from __future__ import annotations

from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from powmarl.envs.base import JaxEnvDefaults
from powmarl.envs.drawing import draw_payoff_table
from powmarl.types import EnvSpec, TimeStep

#: The POW paper's game: optimum (A,A)=8, near-optimal trap (C,C)=7.9.
POW_PAYOFF = ((8.0, -12.0, -12.0), (-12.0, 0.0, 0.0), (-12.0, 0.0, 7.9))
#: The classic WQMIX/QTRAN game: optimum (A,A)=8 among -12 penalties.
WQMIX_PAYOFF = ((8.0, -12.0, -12.0), (-12.0, 0.0, 0.0), (-12.0, 0.0, 0.0))


def validate_payoff(payoff) -> np.ndarray:
    """Return ``payoff`` as a float32 array of shape U^n, or raise ValueError."""
    try:
        table = np.asarray(payoff, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"payoff: must be a nested list or array of numbers ({err})") from None
    if table.ndim < 1 or table.shape[0] < 2 or len(set(table.shape)) != 1:
        raise ValueError(
            f"payoff: must have shape U^n with U >= 2 actions for each of n >= 1 agents, "
            f"got shape {table.shape}"
        )
    if not np.all(np.isfinite(table)):
        raise ValueError("payoff: all entries must be finite numbers")
    return table


class MatrixGame(JaxEnvDefaults):
    """A one-step game with a payoff tensor of shape U^n; the payoff is the env param."""

    obs_last_action = False  # the reference matrix-game yaml turns it off
    obs_agent_id = True
    #: Run settings of the reference matrix-game runs (notes sec. 4.4): uniform exploration
    #: (epsilon fixed at 1), 50k steps, 8 test episodes every 1000, no POW warm-up.
    run_defaults = MappingProxyType(
        {
            "t_max": 50_000,
            "epsilon_start": 1.0,
            "epsilon_finish": 1.0,
            "test_interval": 1000,
            "test_nepisode": 8,
            "no_weighted_steps": 0,
        }
    )

    def __init__(self, payoff=POW_PAYOFF):
        self.payoff = validate_payoff(payoff)
        num_agents, num_actions = self.payoff.ndim, self.payoff.shape[0]
        self.spec = EnvSpec(num_agents, num_actions, obs_dim=2, state_dim=2, episode_limit=1)

    def default_params(self) -> jax.Array:
        return jnp.asarray(self.payoff)

    def render_frame(self, frame, env_params):
        """The payoff table ``env_params`` with the frame's joint action highlighted (two
        agents); None for the final frame, after the one step."""
        return draw_payoff_table(env_params, frame)

    def _timestep(self, t, reward, terminated) -> TimeStep:
        n, u = self.spec.num_agents, self.spec.num_actions
        state = jax.nn.one_hot(t, 2, dtype=jnp.float32)
        return TimeStep(
            obs=jnp.broadcast_to(state, (n, 2)),
            state=state,
            avail_actions=jnp.ones((n, u), dtype=bool),
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated, bool),
            truncated=jnp.zeros((), bool),
            info={},
        )

    def reset(self, key, params):
        del key, params
        t = jnp.zeros((), jnp.int32)
        return self._timestep(t, 0.0, False), t

    def step(self, key, state, actions, params):
        del key
        reward = params[tuple(actions[i] for i in range(self.spec.num_agents))]
        t = jnp.minimum(state + 1, 1)
        return self._timestep(t, reward, True), t
