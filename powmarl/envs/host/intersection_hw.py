"""``intersection_hw``: the paper's 4-way unsignalised intersection on highway-env, as a host env.

Four controlled vehicles, one entering from each arm, no other traffic (notes sec. 5.5).
Each agent has 3 longitudinal meta-actions (0 SLOWER, 1 IDLE, 2 FASTER) over the target
speeds {0, 2, ..., 10} m/s, always available; one step is 0.2 s (5 Hz simulation and
policy). Built on the ``highway-env`` package (``pip install 'powmarl[highway]'``), changed
to behave as the authors' copy (:mod:`powmarl.envs.host.intersection_hw_sim`; every
difference is listed in docs/envs/intersection.md).

- obs [4, 30]: per agent, the 4 vehicles' [x, y, vx, vy, heading] sorted by distance (its
  own row absolute, the others relative to it), then its 5 predicted route points (dx, dy)
  after 0.2 ... 1.0 s at constant speed (the authors' KinematicsWithRoute);
- state [60]: each agent's own row and route points;
- reward: -1 a step, +100 added on the step all 4 have arrived (25 m along their exit
  lane), -100 instead on any crash;
- terminated on a crash or when all have arrived; truncated when the simulated time
  reaches 20 s: the time is a float sum of 0.2 s steps, which is 19.99999999999996 after
  100 steps, so, as in the authors' code, the truncation comes at step 101
  (``spec.episode_limit``). A step that is both a natural end and the time limit is a
  natural end (terminated, not truncated);
- info: ``all_arrive`` (1.0 on the step all have arrived: the arrival rate) and
  ``collision`` (1.0 on the step of a crash).

:meth:`IntersectionHW.reset_from` starts from given initial conditions (the JAX port
``intersection`` has the same), for validating the port step by step.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from powmarl.envs.host.base import HostEnvDefaults
from powmarl.types import EnvSpec

INSTALL = (
    "intersection_hw: needs the highway-env package: pip install 'powmarl[highway]' "
    "(or pip install highway-env)"
)
NUM_AGENTS, NUM_ACTIONS, OBS_DIM, STATE_DIM = 4, 3, 30, 60
#: Steps until the 20 s time limit: the float sum of 0.2 s steps first reaches 20 at 101.
EPISODE_LIMIT = 101
INFO_KEYS = ("all_arrive", "collision")
START_KEYS = ("entry_offset", "speed", "destination")

#: The paper's run settings for the intersection (notes sec. 4.4): C = 0.1, epsilon fixed
#: at 0.1, 5.05M steps, 16 test episodes every 2000 steps.
RUN_DEFAULTS = MappingProxyType(
    {
        "t_max": 5_050_000,
        "epsilon_start": 0.1,
        "epsilon_finish": 0.1,
        "test_interval": 2_000,
        "test_nepisode": 16,
        "recognition_threshold": 0.1,
    }
)


def import_sim():
    """The highway-env subclasses module; ImportError saying how to install it."""
    try:
        import highway_env  # noqa: F401
    except ImportError as err:
        raise ImportError(INSTALL) from err
    from powmarl.envs.host import intersection_hw_sim

    return intersection_hw_sim


def check_start(start: Mapping) -> dict[str, np.ndarray]:
    """``start`` (a mapping, or the port's ``IntersectionStart``) as float64/int64 arrays of
    shape [4]; ValueError naming a bad field."""
    if hasattr(start, "_asdict"):
        start = start._asdict()
    missing = [k for k in START_KEYS if k not in start]
    if missing:
        raise ValueError(f"start: missing {missing[0]!r}; needs {', '.join(START_KEYS)}")
    out = {k: np.asarray(start[k], np.float64).reshape(-1) for k in START_KEYS}
    for key, value in out.items():
        if value.shape != (NUM_AGENTS,) or not np.all(np.isfinite(value)):
            raise ValueError(f"start.{key}: must be {NUM_AGENTS} finite numbers, got {value}")
    destination = out["destination"]
    if np.any((destination != np.round(destination)) | (destination < 0) | (destination > 3)):
        raise ValueError(f"start.destination: must be exit arms 0..3, got {destination}")
    out["destination"] = destination.astype(np.int64)
    if np.any(out["destination"] == np.arange(NUM_AGENTS)):
        raise ValueError(
            f"start.destination: vehicle i enters from arm i and must leave by another arm, "
            f"got {out['destination']}"
        )
    if np.any((out["entry_offset"] < 0) | (out["entry_offset"] > 97.5)):
        # beyond 97.5 m (2.5 m before the lane's end) the vehicle would start past its lane
        raise ValueError(f"start.entry_offset: must be in [0, 97.5] m, got {out['entry_offset']}")
    if np.any(out["speed"] < 0):
        raise ValueError(f"start.speed: must be >= 0, got {out['speed']}")
    return out


class IntersectionHW(HostEnvDefaults):
    """The intersection on highway-env (see the module docstring).

    Args:
        obs_dtype: the dtype the replay buffer stores obs and state in (float32).
    """

    obs_last_action = True  # agent input 30 + 3 + 4 = 37 (notes sec. 5.5)
    obs_agent_id = True
    info_keys = INFO_KEYS
    run_defaults = RUN_DEFAULTS

    def __init__(self, obs_dtype: str = "float32"):
        if obs_dtype not in ("float16", "float32"):
            raise ValueError(f"obs_dtype: must be 'float16' or 'float32', got {obs_dtype!r}")
        self.obs_dtype = np.dtype(obs_dtype)
        self.spec = EnvSpec(NUM_AGENTS, NUM_ACTIONS, OBS_DIM, STATE_DIM, EPISODE_LIMIT)
        self._sim = import_sim()
        self.sim = self._sim.AuthorsIntersection()
        self._obs = self._sim.observe(self.sim)

    def __getstate__(self):
        # a pickle carries the settings, not the simulator (a copy starts a fresh one)
        return {"obs_dtype": str(self.obs_dtype)}

    def __setstate__(self, state):
        self.__init__(**state)

    def reset(self, seed: int | None = None):
        """A new episode with the authors' random start, drawn from ``seed``."""
        self.sim.start = None
        return self._reset(seed)

    def reset_from(self, start: Mapping, seed: int | None = None):
        """A new episode from given initial conditions: ``start`` holds [4] arrays
        ``entry_offset`` (m along vehicle i's entry lane, from arm i), ``speed`` (m/s) and
        ``destination`` (exit arm, numbered as highway-env's road nodes o0..o3). The target
        speed starts at 10 whatever the speed, as in the authors' code."""
        self.sim.start = check_start(start)
        try:
            return self._reset(seed)
        finally:
            self.sim.start = None

    def _reset(self, seed):
        self.sim.reset(seed=None if seed is None else int(seed))
        self._obs = self._sim.observe(self.sim)
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions):
        """Apply ``actions`` [4] in {0, 1, 2}: (reward, terminated, truncated, info)."""
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != (NUM_AGENTS,) or np.any((actions < 0) | (actions >= NUM_ACTIONS)):
            raise ValueError(f"actions: must be {NUM_AGENTS} ints in 0..2, got {actions}")
        _, reward, terminated, truncated, info = self.sim.step(tuple(int(a) for a in actions))
        self._obs = self._sim.observe(self.sim)
        out = {k: float(bool(info[k])) for k in INFO_KEYS}
        return float(reward), bool(terminated), bool(truncated) and not terminated, out

    def get_obs(self) -> np.ndarray:
        return self._obs.copy()

    def get_state(self) -> np.ndarray:
        return self._sim.state_of(self._obs)

    def get_avail_actions(self) -> np.ndarray:
        return np.ones((NUM_AGENTS, NUM_ACTIONS), bool)

    def vehicles(self) -> dict[str, np.ndarray]:
        """The vehicles now, float64: ``position`` [4, 2], ``heading`` [4], ``speed`` [4],
        ``crashed`` [4] bool, ``arrived`` [4] bool; and the simulated ``time`` [s]."""
        cars = self.sim.controlled_vehicles
        return {
            "position": np.array([v.position for v in cars]),
            "heading": np.array([v.heading for v in cars], np.float64),
            "speed": np.array([v.speed for v in cars], np.float64),
            "crashed": np.array([v.crashed for v in cars]),
            "arrived": np.array([self.sim.has_arrived(v) for v in cars]),
            "time": float(self.sim.time),
        }

    def close(self) -> None:
        self.sim.close()
