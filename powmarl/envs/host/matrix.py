"""The one-step cooperative matrix game as a host (NumPy) env (notes sec. 5.1).

The same game as :class:`powmarl.envs.matrix.MatrixGame`, for testing the host path
without StarCraft II: every agent picks one of U actions once, the team receives
``payoff[a_1, ..., a_n]`` and the episode terminates. Observation = state = one-hot of the
step counter (dimension 2).
"""

from __future__ import annotations

import numpy as np

from powmarl.envs.host.base import HostEnvDefaults
from powmarl.envs.matrix import POW_PAYOFF, MatrixGame, validate_payoff
from powmarl.types import EnvSpec


class HostMatrixGame(HostEnvDefaults):
    """A one-step game with a payoff tensor of shape U^n, stepped in Python."""

    obs_last_action = False  # as the JAX matrix game (the reference yaml turns it off)
    obs_agent_id = True
    info_keys: tuple[str, ...] = ()
    run_defaults = MatrixGame.run_defaults  # those of the JAX matrix game (notes sec. 4.4)

    def __init__(self, payoff=POW_PAYOFF):
        self.payoff = validate_payoff(payoff)
        num_agents, num_actions = self.payoff.ndim, self.payoff.shape[0]
        self.spec = EnvSpec(num_agents, num_actions, obs_dim=2, state_dim=2, episode_limit=1)
        self._t = 0

    def clone(self) -> HostMatrixGame:
        return HostMatrixGame(self.payoff)

    def reset(self, seed: int | None = None):
        del seed  # deterministic
        self._t = 0
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions):
        if self._t != 0:
            raise RuntimeError("HostMatrixGame: step after the episode ended; call reset")
        reward = float(self.payoff[tuple(int(a) for a in np.asarray(actions))])
        self._t = 1
        return reward, True, False, {}

    def get_state(self) -> np.ndarray:
        return np.eye(2, dtype=np.float32)[self._t]

    def get_obs(self) -> np.ndarray:
        return np.tile(self.get_state(), (self.spec.num_agents, 1))

    def get_avail_actions(self) -> np.ndarray:
        return np.ones((self.spec.num_agents, self.spec.num_actions), bool)

    def close(self) -> None:
        pass
