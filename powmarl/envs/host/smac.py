"""Real SMAC and SMACv2 (StarCraft II) as host envs, over the ``smac`` / ``smacv2`` packages.

Needs StarCraft II (Linux 4.10), the SMAC maps and the packages; ``docs/envs/sc2.md`` has
the steps. The packages are imported when an env is built, never at ``import powmarl``.

Mapping to :class:`~powmarl.envs.host.base.HostEnv`:

- ``reset`` -> SMAC's ``reset()``, then ``get_obs()`` / ``get_state()`` /
  ``get_avail_actions()`` stacked into [A, O], [X], [A, U] bool arrays;
- ``step(actions)`` -> SMAC's ``step`` returns (reward, terminated, info); SMAC ends an
  episode at its time limit with ``terminated=True`` and, only with
  ``continuing_episode=True``, ``info["episode_limit"]=True``. As PyMARL's runner does,
  powmarl's ``truncated`` is that flag and ``terminated`` is SMAC's terminated without it.
  With the reference setting ``continuing_episode=False`` a time-out is thus a natural
  end (no bootstrap), exactly as in the paper's code;
- ``info``: ``battle_won`` (1.0 on the winning step), ``dead_allies``, ``dead_enemies``
  (SMAC reports the running count of dead units; powmarl reports the units that died
  this step, so the runner's per-episode sums are the totals, as on SMAX);
- ``spec`` from ``get_env_info()`` (n_agents, n_actions, obs_shape, state_shape,
  episode_limit).

SMAC's reward settings are those of the paper's ``sc2.yaml`` (notes sec. 5.3); SMACv2's
5v5 races those of ``sc2_v2_{race}.yaml`` (notes sec. 5.4). Any further keyword is passed
to the StarCraft II env unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from powmarl.envs import smax_maps
from powmarl.envs.host.base import HostEnvDefaults
from powmarl.types import EnvSpec

INSTALL_STEPS = (
    "StarCraft II not installed: set SC2PATH to a StarCraft II install (Linux: the 4.10 "
    "binary SC2.4.10.zip from Blizzard's s2client-proto, https://github.com/Blizzard/"
    "s2client-proto#downloads, unzipped with the licence password 'iagreetotheeula'), put "
    "the SMAC maps (SMAC_Maps.zip from https://github.com/oxwhirl/smac/releases; SMACv2 "
    "also needs 32x32_flat.SC2Map from https://github.com/oxwhirl/smacv2/releases/tag/maps) "
    "into $SC2PATH/Maps/SMAC_Maps, and install the packages: "
    "pip install git+https://github.com/oxwhirl/smac.git (SMAC) and/or "
    "pip install git+https://github.com/oxwhirl/smacv2.git (SMACv2). See docs/envs/sc2.md."
)
#: The PyPI package named ``smac`` is SMAC3 (hyperparameter optimisation), not StarCraft.
WRONG_SMAC = (
    "the installed 'smac' package is not StarCraft's SMAC (PyPI's 'smac' is SMAC3, an "
    "AutoML tool); uninstall it and pip install git+https://github.com/oxwhirl/smac.git"
)

INFO_KEYS = ("battle_won", "dead_allies", "dead_enemies")

#: SMAC reward and feature settings of the paper's sc2.yaml (notes sec. 5.3).
SMAC_SETTINGS: dict[str, Any] = {
    "continuing_episode": False,
    "difficulty": "7",
    "game_version": None,
    "move_amount": 2,
    "obs_all_health": True,
    "obs_instead_of_state": False,
    "obs_last_action": False,
    "obs_own_health": True,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_timestep_number": False,
    "reward_death_value": 10,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_only_positive": True,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "reward_sparse": False,
    "reward_win": 200,
    "state_last_action": True,
    "state_timestep_number": False,
    "step_mul": 8,
    "heuristic_ai": False,
    "debug": False,
}

#: SMACv2 additions of the paper's sc2_v2_{race}.yaml (notes sec. 5.4).
SMACV2_SETTINGS: dict[str, Any] = {
    "obs_own_pos": True,
    "obs_starcraft": True,
    "conic_fov": False,  # a full-circle field of view, as SMACv1 (chosen by the authors)
    "num_fov_actions": 12,
    "kill_unit_step_mul": 2,
    "fully_observable": False,
}

#: Unit mixes of the SMACv2 races (weights 0.45 / 0.45 / 0.10; the last is the exception).
SMACV2_RACES: dict[str, tuple[str, str, str]] = {
    "protoss": ("stalker", "zealot", "colossus"),
    "terran": ("marine", "marauder", "medivac"),
    "zerg": ("zergling", "hydralisk", "baneling"),
}


def smacv2_capability_config(race: str, n_units: int = 5, n_enemies: int = 5) -> dict:
    """SMACv2's ``capability_config`` of the paper's 5v5 race settings."""
    if race not in SMACV2_RACES:
        raise ValueError(f"race: must be one of {sorted(SMACV2_RACES)}, got {race!r}")
    units = SMACV2_RACES[race]
    return {
        "n_units": n_units,
        "n_enemies": n_enemies,
        "team_gen": {
            "dist_type": "weighted_teams",
            "unit_types": list(units),
            "weights": [0.45, 0.45, 0.1],
            "exception_unit_types": [units[2]],
            "observe": True,
        },
        "start_positions": {
            "dist_type": "surrounded_and_reflect",
            "p": 0.5,
            "n_enemies": n_enemies,
            "map_x": 32,
            "map_y": 32,
        },
    }


def _import_smac():
    try:
        import smac
    except ImportError as err:
        raise ImportError(INSTALL_STEPS) from err
    try:
        from smac.env import StarCraft2Env
    except ImportError as err:
        raise ImportError(WRONG_SMAC if hasattr(smac, "__version__") else INSTALL_STEPS) from err
    return StarCraft2Env


def _import_smacv2():
    try:
        from smacv2.env import StarCraftCapabilityEnvWrapper
    except ImportError as err:
        raise ImportError(INSTALL_STEPS) from err
    return StarCraftCapabilityEnvWrapper


class StarCraftEnv(HostEnvDefaults):
    """A host env over a SMAC-style ``StarCraft2Env`` object (``sc2_env``).

    Usually built by :func:`make_smac` / :func:`make_smacv2`; tests pass a fake object
    with the same methods. ``obs_dtype`` is the dtype the replay buffer stores.
    """

    obs_last_action = True  # PyMARL's agent input for SMAC (notes sec. 4.1)
    obs_agent_id = True
    info_keys = INFO_KEYS
    run_defaults = smax_maps.SMAC_RUN  # the paper's SMAC settings; make_smacv2 sets SMACv2's
    max_copies = 1  # one StarCraft II process: an iteration's episodes run one by one

    def __init__(self, sc2_env, obs_dtype: str = "float32"):
        if obs_dtype not in ("float16", "float32"):
            raise ValueError(f"obs_dtype: must be 'float16' or 'float32', got {obs_dtype!r}")
        self.sc2 = sc2_env
        self.obs_dtype = np.dtype(obs_dtype)
        info = sc2_env.get_env_info()
        self.spec = EnvSpec(
            num_agents=int(info["n_agents"]),
            num_actions=int(info["n_actions"]),
            obs_dim=int(info["obs_shape"]),
            state_dim=int(info["state_shape"]),
            episode_limit=int(info["episode_limit"]),
        )
        self._dead = (0.0, 0.0)

    def reset(self, seed: int | None = None):
        """Start a battle. StarCraft II is seeded once, by the ``seed`` given when the env
        is built; the per-episode ``seed`` is ignored (SMACv2 draws its units and start
        positions from NumPy's global generator)."""
        del seed
        self.sc2.reset()
        self._dead = (0.0, 0.0)
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions):
        reward, terminated, info = self.sc2.step([int(a) for a in np.asarray(actions)])
        truncated = bool(info.get("episode_limit", False))
        # SMAC counts dead units so far (and returns {} after a crashed game): report deaths
        # of this step
        dead = (
            float(info.get("dead_allies", self._dead[0])),
            float(info.get("dead_enemies", self._dead[1])),
        )
        out = {
            "battle_won": float(bool(info.get("battle_won", False))),
            "dead_allies": dead[0] - self._dead[0],
            "dead_enemies": dead[1] - self._dead[1],
        }
        self._dead = dead
        return float(reward), bool(terminated) and not truncated, truncated, out

    def get_obs(self) -> np.ndarray:
        return np.asarray(np.stack(self.sc2.get_obs()), np.float32)

    def get_state(self) -> np.ndarray:
        return np.asarray(self.sc2.get_state(), np.float32).reshape(-1)

    def get_avail_actions(self) -> np.ndarray:
        return np.asarray(self.sc2.get_avail_actions()).astype(bool)

    def close(self) -> None:
        self.sc2.close()


def make_smac(map_name: str = "3s_vs_5z", obs_dtype: str = "float32", **sc2_kwargs):
    """Real SMAC on ``map_name`` with the paper's settings; ``sc2_kwargs`` override them."""
    starcraft = _import_smac()
    return StarCraftEnv(
        starcraft(map_name=map_name, **{**SMAC_SETTINGS, **sc2_kwargs}), obs_dtype=obs_dtype
    )


def smacv2_kwargs(race: str, **overrides) -> dict[str, Any]:
    """The keyword arguments of SMACv2's env for a 5v5 race (notes sec. 5.4)."""
    kwargs = {
        **SMAC_SETTINGS,
        **SMACV2_SETTINGS,
        "map_name": f"10gen_{race}",
        "capability_config": smacv2_capability_config(race),
    }
    kwargs.update(overrides)
    return copy.deepcopy(kwargs)


def make_smacv2(race: str, obs_dtype: str = "float32", **sc2_kwargs):
    """Real SMACv2 ``10gen_{race}``, 5 vs 5, with the paper's settings."""
    smacv2_kwargs(race)  # validates the race before importing
    wrapper = _import_smacv2()
    env = StarCraftEnv(wrapper(**smacv2_kwargs(race, **sc2_kwargs)), obs_dtype=obs_dtype)
    env.run_defaults = smax_maps.SMACV2_RUN
    env.main_metric = "return"  # the paper reports test returns on SMACv2
    return env
