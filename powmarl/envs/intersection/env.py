"""``intersection``: the paper's 4-way unsignalised intersection ("Crossroads"), in JAX.

A port of the authors' modified highway-env scenario (notes sec. 5.5; the authors' repo
``src/envs/highway_env/IntersecEnv.py`` with ``src/config/envs/intersec.yaml``): 4
controlled vehicles, vehicle (= agent) ``i`` entering from arm ``i``, no other traffic,
3 longitudinal meta-actions (0 SLOWER, 1 IDLE, 2 FASTER) over target speeds
{0, 2, ..., 10} m/s, one simulation step of 0.2 s per policy step (5 Hz both).

Per step: every vehicle acts (road following, meta-action, controllers), then all are
integrated, then the 6 pairs are checked for collisions. Reward -1, +100 added when all 4
have arrived (current lane = exit lane and s >= 25 m along it), -100 instead when any
vehicle has crashed. The episode terminates on a crash or when all have arrived, and is
truncated when the simulated time, accumulated as the authors do (``time += 1 / 5``),
reaches 20 s: after 101 steps (100 additions of 0.2 give 19.99999999999996).

Observation of agent i (30, float32): the 4 vehicles' [x, y, vx, vy, heading] sorted by
distance from vehicle i (itself first; stable order on ties), the first row absolute and
the others minus the first row, then its 5 predicted route points (dx, dy) at 0.2, ...,
1.0 s at constant speed. Not normalised, not clipped (``normalize: False``). State (60):
per agent its own row and its 10 route values. ``info``: ``collision`` and
``all_arrive`` (1.0 on the step it happens). docs/envs/intersection.md has the equations,
the constants with their sources and every difference from the authors' copy.
"""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from powmarl.envs.base import JaxEnvDefaults
from powmarl.envs.intersection import geometry as geo
from powmarl.envs.intersection import observe as ob
from powmarl.envs.intersection import vehicle as vh
from powmarl.envs.intersection.collision import handle_collisions
from powmarl.types import Array, EnvSpec, TimeStep

NUM_VEHICLES = 4
NUM_ACTIONS = 3
DURATION = 20.0  # intersec.yaml duration [s]
POLICY_FREQUENCY = 5  # intersec.yaml policy_frequency [Hz]
SIMULATION_FREQUENCY = 5  # intersec.yaml simulation_frequency [Hz]: 1 frame per step
DT = 1 / SIMULATION_FREQUENCY
OBS_DIM = NUM_VEHICLES * ob.FEATURES + 2 * len(ob.ROUTE_TIMES)
STATE_DIM = NUM_VEHICLES * (ob.FEATURES + 2 * len(ob.ROUTE_TIMES))
INFO_KEYS = ("all_arrive", "collision")


def truncation_step(duration: float = DURATION, frequency: int = POLICY_FREQUENCY) -> int:
    """The first step at which the authors' float clock ``time += 1 / f`` reaches
    ``duration`` (101 for 20 s at 5 Hz)."""
    t, steps = 0.0, 0
    while t < duration:
        t += 1 / frequency
        steps += 1
    return steps


EPISODE_LIMIT = truncation_step()


class IntersectionStart(NamedTuple):
    """Initial conditions of the 4 vehicles (vehicle i enters from arm i), [4] each.

    entry_offset: m along the entry lane ``o{i} -> ir{i}`` (lane coordinate s, lateral 0;
        the lane is 100 m long and ends 11 m from the centre), in [0, 97.5].
    speed: initial speed [m/s] (the target speed starts at 10, the speed limit).
    destination: exit arm m != i (node ``o{m}``; 0 south, 1 west, 2 north, 3 east).
    """

    entry_offset: Array
    speed: Array
    destination: Array


@flax.struct.dataclass
class IntersectionParams:
    """The team reward's three terms (float32 scalars; vmappable)."""

    step_reward: Array  # every step (-1)
    arrive_reward: Array  # added on the step all vehicles have arrived (ma_arrive_reward)
    collision_reward: Array  # replaces the step's reward on a crash (ma_collision_reward)


@flax.struct.dataclass
class IntersectionState:
    vehicles: vh.Vehicles  # positions, headings, speeds, ... (see vehicle.Vehicles)
    time: Array  # [] int32, steps taken


def sample_start(key) -> IntersectionStart:
    """The authors' initial conditions (``_make_vehicles``): s = 60 + 5 N(1, 1) (numpy's
    ``normal(1)`` is loc 1), speed 10, destination uniform over the 4 arms with the
    entry arm replaced by the next arm (so arm i + 1 is twice as likely)."""
    offset_key, dest_key = jax.random.split(key)
    offset = 60.0 + 5.0 * (1.0 + jax.random.normal(offset_key, (NUM_VEHICLES,)))
    arm = jnp.arange(NUM_VEHICLES)
    draw = jax.random.randint(dest_key, (NUM_VEHICLES,), 0, 4)
    destination = jnp.where(draw == arm, (draw + 1) % 4, draw).astype(jnp.int32)
    speed = jnp.full((NUM_VEHICLES,), geo.SPEED_LIMIT, jnp.float32)
    return IntersectionStart(offset.astype(jnp.float32), speed, destination)


def _check_start(start: IntersectionStart) -> None:
    """One-line errors for concrete (not traced) starts out of range."""
    for name in IntersectionStart._fields:
        value = getattr(start, name)
        if isinstance(value, jax.core.Tracer):
            return
        if np.shape(value) != (NUM_VEHICLES,):
            raise ValueError(f"start.{name}: must have shape (4,), got {np.shape(value)}")
    offset, dest = np.asarray(start.entry_offset), np.asarray(start.destination)
    if not np.all((offset >= 0) & (offset <= 97.5)):
        raise ValueError(f"start.entry_offset: must be in [0, 97.5] m, got {offset.tolist()}")
    if not np.all(np.isfinite(np.asarray(start.speed))):
        raise ValueError(f"start.speed: must be finite, got {np.asarray(start.speed).tolist()}")
    if not np.all(np.isin(dest, range(4))) or np.any(dest == np.arange(4)):
        raise ValueError(
            f"start.destination: must be exit arms in 0..3 with destination[i] != i, "
            f"got {dest.tolist()}"
        )


def start_vehicles(start: IntersectionStart) -> vh.Vehicles:
    """Vehicles placed on their entry lanes (``_make_vehicles``): heading of the lane,
    target speed 10 (index 5: set from the lane's speed limit), target stage 0, not
    crashed, current lane = entry lane."""
    arm = jnp.arange(NUM_VEHICLES)
    entry = geo.lane_id(arm, geo.ENTRY)
    offset = jnp.asarray(start.entry_offset, jnp.float32)
    zeros = jnp.zeros((NUM_VEHICLES,), jnp.float32)
    false = jnp.zeros((NUM_VEHICLES,), bool)
    return vh.Vehicles(
        position=geo.position(entry, offset, 0.0).astype(jnp.float32),
        heading=geo.heading_at(entry, offset).astype(jnp.float32),
        speed=jnp.asarray(start.speed, jnp.float32),
        target_speed=jnp.full((NUM_VEHICLES,), geo.SPEED_LIMIT, jnp.float32),
        destination=jnp.asarray(start.destination, jnp.int32),
        target_stage=jnp.zeros((NUM_VEHICLES,), jnp.int32),
        on_exit_lane=false,
        crashed=false,
        impact=jnp.zeros((NUM_VEHICLES, 2), jnp.float32),
        has_impact=false,
        steering=zeros,
        acceleration=zeros,
    )


class Intersection(JaxEnvDefaults):
    """The 4-vehicle unsignalised intersection (see the module docstring)."""

    obs_last_action = True  # agent input 30 + 3 + 4 = 37 (notes sec. 5.5)
    obs_agent_id = True
    #: Run settings of the paper's intersection runs (notes sec. 4.4): epsilon fixed at
    #: 0.1, C = 0.1, 5.05M steps, 16 test episodes every 2000 steps; the buffer is ~0.4 GiB
    #: per seed: a checkpoint every 200k steps.
    run_defaults = MappingProxyType(
        {
            "t_max": 5_050_000,
            "epsilon_start": 0.1,
            "epsilon_finish": 0.1,
            "test_interval": 2000,
            "test_nepisode": 16,
            "recognition_threshold": 0.1,
            "checkpoint_interval": 200_000,
        }
    )

    def __init__(self):
        self.spec = EnvSpec(
            num_agents=NUM_VEHICLES,
            num_actions=NUM_ACTIONS,
            obs_dim=OBS_DIM,
            state_dim=STATE_DIM,
            episode_limit=EPISODE_LIMIT,
        )

    def default_params(self) -> IntersectionParams:
        return IntersectionParams(
            step_reward=jnp.asarray(-1.0, jnp.float32),
            arrive_reward=jnp.asarray(100.0, jnp.float32),
            collision_reward=jnp.asarray(-100.0, jnp.float32),
        )

    def render_frame(self, frame, env_params):
        """The road, the vehicles (numbered; red once crashed, a white outline once
        arrived), their destinations, the step, the return so far and the speeds."""
        del env_params
        from powmarl.envs.intersection.draw import draw_intersection

        return draw_intersection(frame)

    @functools.partial(jax.jit, static_argnums=0)
    def reset(self, key, params):
        """A start drawn as the authors draw it (:func:`sample_start`)."""
        del params
        return self._start(sample_start(key))

    def reset_from(self, start: IntersectionStart):
        """(TimeStep, state) of an episode starting from ``start`` (deterministic).

        Vehicle i is placed on the entry lane of arm i at s = ``start.entry_offset[i]``
        (lateral 0, the lane's heading) with speed ``start.speed[i]``, target speed 10
        and route to exit arm ``start.destination[i]``. Concrete starts are checked
        (ValueError naming the field); traced ones must be valid.
        """
        _check_start(start)
        return self._start(start)

    @functools.partial(jax.jit, static_argnums=0)
    def _start(self, start: IntersectionStart):
        # compiled even outside jit, as step is (see there)
        state = IntersectionState(start_vehicles(start), jnp.zeros((), jnp.int32))
        false = jnp.zeros((), bool)
        info = {k: jnp.zeros((), jnp.float32) for k in INFO_KEYS}
        return self._timestep(state, jnp.zeros((), jnp.float32), false, false, info), state

    @functools.partial(jax.jit, static_argnums=0)
    def step(self, key, state: IntersectionState, actions, params: IntersectionParams):
        """One policy step = one 0.2 s simulation frame (deterministic: ``key`` unused).

        Compiled even when called outside ``jit``: below ~2 m/s the authors' steering
        loop is unstable (docs/envs/intersection.md), so two differently compiled
        programs drift apart there; this way a plain call and a jitted one agree.
        """
        del key
        actions = jnp.clip(jnp.asarray(actions).astype(jnp.int32), 0, NUM_ACTIONS - 1)
        routes = vh.route_lanes(state.vehicles.destination)
        veh = vh.act(state.vehicles, routes, actions)
        veh = vh.integrate(veh, DT)
        veh = vh.update_lane(veh, routes)
        veh = handle_collisions(veh, DT)
        new_state = IntersectionState(veh, state.time + 1)
        crash = jnp.any(veh.crashed)
        all_arrive = jnp.all(ob.arrived(veh, routes))
        reward = params.step_reward + jnp.where(all_arrive, params.arrive_reward, 0.0)
        reward = jnp.where(crash, params.collision_reward, reward)
        terminated = crash | all_arrive
        truncated = (new_state.time >= EPISODE_LIMIT) & ~terminated
        info = {
            "all_arrive": all_arrive.astype(jnp.float32),
            "collision": crash.astype(jnp.float32),
        }
        return self._timestep(new_state, reward, terminated, truncated, info), new_state

    def observe(self, state: IntersectionState) -> Array:
        """[4, 30] observations of ``state``."""
        return ob.observe(state.vehicles, vh.route_lanes(state.vehicles.destination))

    def arrived(self, state: IntersectionState) -> Array:
        """[4] bool: which vehicles have arrived."""
        return ob.arrived(state.vehicles, vh.route_lanes(state.vehicles.destination))

    def _timestep(self, state, reward, terminated, truncated, info) -> TimeStep:
        obs = self.observe(state)
        return TimeStep(
            obs=obs,
            state=ob.global_state(obs),
            avail_actions=jnp.ones((NUM_VEHICLES, NUM_ACTIONS), bool),
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated, bool),
            truncated=jnp.asarray(truncated, bool),
            info=info,
        )
