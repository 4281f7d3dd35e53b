"""Jumanji's Level-Based Foraging and Robot Warehouse as powmarl JAX envs, with EPyMARL's tasks.

``lbf`` wraps Jumanji's ``LevelBasedForaging`` (``LevelBasedForaging-v0``) and ``rware`` its
``RobotWarehouse`` (``RobotWarehouse-v0``), both pure JAX, so training compiles end to end.
``task=`` takes the gymnasium ids EPyMARL trains on (``Foraging-8x8-2p-2f-coop``,
``Foraging-2s-10x10-3p-3f``, ``rware-tiny-2ag``, ``rware-small-4ag-hard``; an
``lbforaging:``/``rware:`` prefix and a ``-vN`` suffix are accepted) and sets grid size,
counts, sight and cooperation as those packages register them; explicit arguments
override the task's values. docs/envs/jumanji.md lists every difference from the
gymnasium versions (``lbforaging`` 2.0, ``rware`` 2.0).

Both: obs = Jumanji's per-agent vector view as float32; avail = Jumanji's action mask;
state = the agents' observations concatenated (as EPyMARL's gymma wrapper builds it);
team reward = the sum of the agents' rewards (LBF) or the shared delivery count (RWARE);
``truncated`` at ``episode_limit`` (50 for LBF and 500 for RWARE, as registered).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

from powmarl.envs.base import JaxEnvDefaults
from powmarl.envs.jaxmarl_adapter import end_flags, make_timestep
from powmarl.types import EnvSpec

MISSING_JUMANJI = "lbf/rware: needs jumanji; install with pip install 'powmarl[jumanji]'"


def _jumanji(kind: str) -> tuple[Any, Any]:
    """(env class, generator class) of Jumanji's "lbf" or "rware", imported when an env is
    made (jumanji is optional: this module registers without it)."""
    try:
        if kind == "lbf":
            from jumanji.environments import LevelBasedForaging as Env
            from jumanji.environments.routing.lbf.generator import RandomGenerator
        else:
            from jumanji.environments import RobotWarehouse as Env
            from jumanji.environments.routing.robot_warehouse.generator import RandomGenerator
    except ImportError as err:
        raise ImportError(MISSING_JUMANJI) from err
    return Env, RandomGenerator


LBF_TASK = re.compile(
    r"^(?:lbforaging:)?Foraging(?P<grid>-grid)?(?P<sight>-2s)?-(?P<rows>\d+)x(?P<cols>\d+)-"
    r"(?P<players>\d+)p-(?P<food>\d+)f(?P<coop>-coop)?(?P<ind>-ind)?(?P<pen>-pen)?(?:-v\d+)?$"
)
RWARE_TASK = re.compile(
    r"^(?:rware:)?rware-(?P<size>tiny|small|medium|large)-(?P<agents>\d+)ag"
    r"(?P<diff>-easy|-hard)?(?:-v\d+)?$"
)
#: rware's layouts: size -> (shelf_rows, shelf_columns); column height 8.
RWARE_SIZES = {"tiny": (1, 3), "small": (2, 3), "medium": (2, 5), "large": (3, 5)}
#: rware's request queue per agent: "-easy" 2, "" 1, "-hard" 0.5 (rounded down).
RWARE_DIFFICULTY = {"-easy": 2.0, "": 1.0, "-hard": 0.5}


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
    return value


def parse_lbf_task(task: str) -> dict[str, Any]:
    """The lbforaging settings of an EPyMARL task id: grid_size, num_agents, num_food,
    sight (the grid size, or 2 for "-2s"), force_coop, penalty (0.1 for "-pen")."""
    match = LBF_TASK.match(task)
    if match is None:
        raise ValueError(
            f"task: {task!r} is not an LBF task id; expected e.g. Foraging-8x8-2p-2f-coop, "
            "Foraging-2s-10x10-3p-3f, lbforaging:Foraging-15x15-4p-5f-v3"
        )
    if match["grid"] or match["ind"] or match["rows"] != match["cols"]:
        raise ValueError(
            f"task: {task!r} is not supported on Jumanji's LBF (grid observations, '-ind' "
            "food levels and non-square fields have no Jumanji counterpart)"
        )
    size = int(match["rows"])
    return {
        "grid_size": size,
        "num_agents": int(match["players"]),
        "num_food": int(match["food"]),
        "sight": 2 if match["sight"] else size,
        "force_coop": bool(match["coop"]),
        "penalty": 0.1 if match["pen"] else 0.0,
    }


def parse_rware_task(task: str) -> dict[str, Any]:
    """The rware settings of an EPyMARL task id: shelf_rows, shelf_columns, num_agents,
    request_queue_size (agents x 2 / 1 / 0.5 for -easy / normal / -hard)."""
    match = RWARE_TASK.match(task)
    if match is None:
        raise ValueError(
            f"task: {task!r} is not an RWARE task id; expected e.g. rware-tiny-2ag, "
            "rware-small-4ag-hard, rware:rware-medium-6ag-easy-v2"
        )
    agents = int(match["agents"])
    rows, columns = RWARE_SIZES[match["size"]]
    queue = int(agents * RWARE_DIFFICULTY[match["diff"] or ""])
    return {
        "shelf_rows": rows,
        "shelf_columns": columns,
        "num_agents": agents,
        "request_queue_size": max(queue, 1),
    }


def _resolve(task_values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The task's settings with every explicit (non-None) argument put over them."""
    return {**task_values, **{k: v for k, v in overrides.items() if v is not None}}


class _JumanjiEnv(JaxEnvDefaults):
    """What both adapters share: views of a Jumanji timestep, reset, step."""

    obs_last_action = False
    obs_agent_id = True
    all_actions = False  # True: every action available instead of Jumanji's mask (LBF)

    def _setup(self, env: Any, num_agents: int, num_actions: int, episode_limit: int):
        self.env, self.episode_limit = env, episode_limit
        # compiled once here: Jumanji's scans and conds would otherwise be traced and
        # compiled anew on every eager call (un-jitted use: checks, rendering); inside a
        # jitted program these are inlined
        self._reset, self._step = jax.jit(env.reset), jax.jit(env.step)
        obs_dim = int(env.observation_spec.agents_view.shape[-1])
        self.spec = EnvSpec(
            num_agents=num_agents,
            num_actions=num_actions,
            obs_dim=obs_dim,
            state_dim=num_agents * obs_dim,
            episode_limit=episode_limit,
        )

    def default_params(self) -> dict:
        return {}  # Jumanji keeps its settings on the env object

    def _timestep(self, jts, reward, terminated, truncated, info):
        obs = jts.observation.agents_view.astype(jnp.float32)  # [A, O]
        avail = jts.observation.action_mask
        if self.all_actions:  # as EPyMARL's gymma: the env turns an invalid action into a no-op
            avail = jnp.ones_like(avail)
        return make_timestep(obs, obs.reshape(-1), avail, reward, terminated, truncated, info)

    def reset(self, key, params):
        del params
        state, jts = self._reset(key)
        zero, no = jnp.zeros((), jnp.float32), jnp.zeros((), bool)
        return self._timestep(jts, zero, no, no, {k: zero for k in self.info_keys}), state

    def step(self, key, state, actions, params):
        del key, params  # Jumanji's step is deterministic given the state (which holds a key)
        actions = jnp.asarray(actions).astype(jnp.int32)
        new_state, jts = self._step(state, actions)
        reward, natural_end, info = self._outcome(state, new_state, jts)
        terminated, truncated = end_flags(natural_end, new_state.step_count, self.episode_limit)
        return self._timestep(jts, reward, terminated, truncated, info), new_state


class JumanjiLbf(_JumanjiEnv):
    """Level-Based Foraging on Jumanji. Actions: 0 none, 1 north, 2 south, 3 west, 4 east,
    5 load. ``info["food_eaten"]``: food items eaten this step (summed per episode).
    ``all_actions=True`` offers every action, as EPyMARL's gymma does (Jumanji leaves an
    agent in place on a blocked move and a load with no food next to it does nothing)."""

    info_keys = ("food_eaten",)

    def __init__(
        self,
        task: str = "Foraging-8x8-2p-2f-coop",
        grid_size: int | None = None,
        num_agents: int | None = None,
        num_food: int | None = None,
        sight: int | None = None,
        force_coop: bool | None = None,
        max_agent_level: int = 2,
        penalty: float | None = None,
        episode_limit: int = 50,
        all_actions: bool = False,
    ):
        if type(all_actions) is not bool:  # 1 or "yes" would pass a truth test
            raise ValueError(f"all_actions: must be true or false, got {all_actions!r}")
        self.all_actions = all_actions
        given = {"grid_size": grid_size, "num_agents": num_agents, "num_food": num_food}
        given.update(sight=sight, force_coop=force_coop, penalty=penalty)
        settings = _resolve(parse_lbf_task(task), given)
        for name in ("grid_size", "num_agents", "num_food", "sight"):
            _positive(name, settings[name])
        _check_lbf_fits(settings, max_agent_level)
        self.settings = dict(settings, max_agent_level=max_agent_level)
        env_class, generator_class = _jumanji("lbf")
        generator = generator_class(
            grid_size=settings["grid_size"],
            num_agents=settings["num_agents"],
            num_food=settings["num_food"],
            fov=settings["sight"],
            max_agent_level=max_agent_level,
            force_coop=bool(settings["force_coop"]),
        )
        limit = _positive("episode_limit", episode_limit)
        env = env_class(generator=generator, time_limit=limit, penalty=float(settings["penalty"]))
        self._setup(env, settings["num_agents"], 6, limit)

    def _outcome(self, state, new_state, jts):
        eaten = jnp.sum(new_state.food_items.eaten) - jnp.sum(state.food_items.eaten)
        all_eaten = jnp.all(new_state.food_items.eaten)
        return jnp.sum(jts.reward), all_eaten, {"food_eaten": eaten.astype(jnp.float32)}


def _check_lbf_fits(settings: dict[str, Any], max_agent_level: int) -> None:
    """Jumanji's generator asserts these; a one-line ValueError naming the field instead."""
    size, agents, food = settings["grid_size"], settings["num_agents"], settings["num_food"]
    if size < 5:
        raise ValueError(f"grid_size: must be >= 5 on Jumanji's LBF, got {size}")
    if settings["sight"] > size:
        raise ValueError(f"sight: must be <= grid_size {size}, got {settings['sight']}")
    if (size - 2) ** 2 - agents <= 5 * food:
        raise ValueError(
            f"num_food: {food} food items do not fit a {size}x{size} grid with {agents} agents "
            "on Jumanji's LBF (it needs (grid_size - 2)^2 - num_agents > 5 * num_food)"
        )
    bad_type = isinstance(max_agent_level, bool) or not isinstance(max_agent_level, int)
    if bad_type or max_agent_level < 2:
        raise ValueError(f"max_agent_level: must be an integer >= 2, got {max_agent_level!r}")


class JumanjiRware(_JumanjiEnv):
    """The multi-robot warehouse on Jumanji. Actions: 0 none, 1 forward, 2 left, 3 right,
    4 toggle load. ``info``: ``deliveries`` (requested shelves delivered this step) and
    ``collision`` (1 on the step two robots collide, which ends Jumanji's episode)."""

    info_keys = ("collision", "deliveries")

    def __init__(
        self,
        task: str = "rware-tiny-2ag",
        shelf_rows: int | None = None,
        shelf_columns: int | None = None,
        column_height: int = 8,
        num_agents: int | None = None,
        sensor_range: int = 1,
        request_queue_size: int | None = None,
        episode_limit: int = 500,
    ):
        given = {"shelf_rows": shelf_rows, "shelf_columns": shelf_columns}
        given.update(num_agents=num_agents, request_queue_size=request_queue_size)
        settings = _resolve(parse_rware_task(task), given)
        settings.update(column_height=column_height, sensor_range=sensor_range)
        for name, value in settings.items():
            _positive(name, value)
        if settings["shelf_columns"] % 2 != 1:
            raise ValueError(f"shelf_columns: must be odd, got {settings['shelf_columns']}")
        self.settings = settings
        limit = _positive("episode_limit", episode_limit)
        env_class, generator_class = _jumanji("rware")
        env = env_class(generator=generator_class(**settings), time_limit=limit)
        self._setup(env, settings["num_agents"], 5, limit)

    def _outcome(self, state, new_state, jts):
        del state
        ids = jnp.arange(self.spec.num_agents)
        from jumanji.environments.routing.robot_warehouse.utils import is_collision

        collided = jax.vmap(is_collision, (None, 0, 0))(new_state.grid, new_state.agents, ids)
        collision = jnp.any(collided)
        reward = jnp.asarray(jts.reward, jnp.float32)
        return reward, collision, {"collision": collision.astype(jnp.float32), "deliveries": reward}
