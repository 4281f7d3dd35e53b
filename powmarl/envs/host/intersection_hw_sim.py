"""The paper's intersection on the ``highway-env`` package, changed to behave as the
authors' copy of highway-env (repository tiev-tongji/potentially-optimal-joint-actions-
recognition-marl, ``src/envs/highway_env``; notes sec. 5.5).

The package (1.12) and the authors' copy share the road geometry, the vehicle model and the
controllers; where they differ, the small subclasses here follow the authors' copy
(docs/envs/intersection.md, "highway-env package vs the authors' copy"):

- :class:`RouteVehicle`: the vehicle's current lane follows its planned route (the authors'
  ``on_state_update_simple``) instead of the package's closest lane;
- :class:`AuthorsIntersection`: the 4 controlled vehicles and nothing else (the package adds
  a "challenger" vehicle at every reset), the authors' start draw, team reward, termination
  and info, a road without the package's right-of-way regulation (the authors switched it
  off; it never acts on controlled vehicles, so it only cost time);
- :func:`observe`: the authors' ``KinematicsWithRoute`` observation, which the package lacks.

Imports ``highway_env``: import this module only when highway-env is installed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from highway_env.envs.common.abstract import AbstractEnv
from highway_env.envs.intersection_env import IntersectionEnv
from highway_env.road.road import Road
from highway_env.vehicle.controller import MDPVehicle

NUM_VEHICLES = 4
TARGET_SPEEDS = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
#: Times [s] of the 5 predicted route points of KinematicsWithRoute.
ROUTE_TIMES = (0.2, 0.4, 0.6, 0.8, 1)
FEATURES = 5  # x, y, vx, vy, heading
OBS_DIM = NUM_VEHICLES * FEATURES + 2 * len(ROUTE_TIMES)  # 30
STATE_DIM = NUM_VEHICLES * (FEATURES + 2 * len(ROUTE_TIMES))  # 60
ARRIVE_REWARD = 100.0  # ma_arrive_reward of intersec.yaml
CRASH_REWARD = -100.0  # ma_collision_reward
EXIT_DISTANCE = 25.0  # has_arrived: metres along the exit lane

#: The authors' intersec.yaml, in the package's config keys. The observation is computed
#: by :func:`observe` (the package has no KinematicsWithRoute), so the package's own
#: observation is an empty one that costs nothing.
CONFIG: Mapping = {
    "observation": {"type": "AttributesObservation", "attributes": []},
    "action": {
        "type": "MultiAgentAction",
        "action_config": {
            "type": "DiscreteMetaAction",
            "longitudinal": True,
            "lateral": False,
            "target_speeds": list(TARGET_SPEEDS),
        },
    },
    "controlled_vehicles": NUM_VEHICLES,
    "initial_vehicle_count": 0,
    "spawn_probability": -1.0,
    "simulation_frequency": 5,
    "policy_frequency": 5,
    "duration": 20,
    "screen_width": 800,
    "screen_height": 800,
    "centering_position": [0.5, 0.5],
    "scaling": 5.5,
}


class RouteVehicle(MDPVehicle):
    """An MDPVehicle whose current lane follows its route, as in the authors' copy.

    The package sets ``lane_index`` to the closest lane after every step. The authors'
    ``on_state_update_simple`` changes it only when the vehicle passes the end of its lane
    (``after_end``: 2.5 m before the end), to the lane that follows in its route; their loop
    over the route has no ``break``, so from the entry lane it moves on through every later
    route lane at once and lands on the exit lane, which it keeps from then on. The arrival
    test (25 m along the exit lane) and the predicted route points read this lane.
    """

    def on_state_update(self) -> None:
        if not self.road or not self.lane.after_end(self.position):
            return
        for i, lane_index in enumerate(self.route):
            if self.lane_index[:2] == lane_index[:2] and i + 1 < len(self.route):
                self.lane_index = (*self.route[i + 1][:2], 0)
                self.lane = self.road.network.get_lane(self.lane_index)


def lane_start(road: Road, origin: int, entry_offset: float, speed: float, destination: int):
    """A RouteVehicle ``entry_offset`` m along arm ``origin``'s entry lane, at ``speed``,
    routed to exit arm ``destination``, with target speed 10 (the authors' _make_vehicles)."""
    lane = road.network.get_lane((f"o{origin}", f"ir{origin}", 0))
    vehicle = RouteVehicle(
        road,
        lane.position(entry_offset, 0.0),
        heading=lane.heading_at(60.0),
        speed=speed,
        target_speeds=TARGET_SPEEDS,
    )
    vehicle.plan_route_to(f"o{destination}")
    vehicle.speed_index = vehicle.speed_to_index(lane.speed_limit)
    vehicle.target_speed = vehicle.index_to_speed(vehicle.speed_index)
    return vehicle


class AuthorsIntersection(IntersectionEnv):
    """The package's IntersectionEnv with the authors' scene, reward, termination and info.

    ``start`` (set by the host env before ``reset``) fixes the initial conditions:
    ``{"entry_offset": [4], "speed": [4], "destination": [4]}``; None draws them as the
    authors do.
    """

    start: Mapping | None = None

    @classmethod
    def default_config(cls) -> dict:
        config = super().default_config()
        config.update(CONFIG)
        return config

    def _make_road(self) -> None:
        # the authors' RegulatedRoad has its rule enforcement commented out: a plain Road
        super()._make_road()
        self.road = Road(
            network=self.road.network,
            np_random=self.np_random,
            record_history=self.config["show_trajectories"],
        )

    def _make_vehicles(self, n_vehicles: int = 0) -> None:
        del n_vehicles  # no other traffic (initial_vehicle_count 0)
        start = self.start if self.start is not None else self.draw_start()
        self.controlled_vehicles = []
        for i in range(self.config["controlled_vehicles"]):
            vehicle = lane_start(
                self.road,
                i % 4,
                float(start["entry_offset"][i]),
                float(start["speed"][i]),
                int(start["destination"][i]),
            )
            self.road.vehicles.append(vehicle)
            self.controlled_vehicles.append(vehicle)

    def draw_start(self) -> dict[str, np.ndarray]:
        """The authors' draw: the destination uniform over the 4 arms, moved to the next arm
        when it is the origin (so origin + 1 is twice as likely); 60 + 5 N(1, 1) m along the
        entry lane; speed 10 (the lane's speed limit)."""
        n = self.config["controlled_vehicles"]
        offset, destination = np.zeros(n), np.zeros(n, np.int64)
        for i in range(n):
            drawn = int(self.np_random.integers(4))
            destination[i] = (drawn + 1) % 4 if drawn == i % 4 else drawn
            offset[i] = 60.0 + 5.0 * self.np_random.normal(1.0) + 30.0 * (i // 4)
        return {"entry_offset": offset, "speed": np.full(n, 10.0), "destination": destination}

    def crashed(self) -> bool:
        return any(v.crashed for v in self.controlled_vehicles)

    def all_arrived(self) -> bool:
        return all(self.has_arrived(v, EXIT_DISTANCE) for v in self.controlled_vehicles)

    def _reward(self, action) -> float:
        """-1 a step, +100 on the step all have arrived, -100 instead on any crash."""
        reward = -1.0 + (ARRIVE_REWARD if self.all_arrived() else 0.0)
        return CRASH_REWARD if self.crashed() else reward

    def _is_terminated(self) -> bool:
        return self.crashed() or self.all_arrived()

    def _info(self, obs, action=None) -> dict:
        return {"collision": self.crashed(), "all_arrive": self.all_arrived()}

    # no other traffic to clear or spawn (the package's spawn draws a number each step)
    step = AbstractEnv.step


def route_points(vehicle) -> np.ndarray:
    """[5, 2] float64: the vehicle's positions along its route at constant speed after
    0.2 ... 1.0 s, relative to its position (ControlledVehicle's prediction)."""
    positions, _ = vehicle.predict_trajectory_constant_speed(ROUTE_TIMES)
    return np.asarray(positions) - vehicle.position


def kinematics(vehicle) -> np.ndarray:
    """[5] float64: x, y, vx, vy, heading (the authors' ``Vehicle.states``)."""
    vx, vy = vehicle.velocity
    return np.array([vehicle.position[0], vehicle.position[1], vx, vy, vehicle.heading])


def observe(env: AuthorsIntersection) -> np.ndarray:
    """[A, 30] float32: KinematicsWithRoute of every controlled vehicle.

    Per observer: the [x, y, vx, vy, heading] rows of all vehicles sorted by distance (a
    stable sort, so the observer comes first), the others minus the observer's row, then
    its 5 predicted route points relative to its position; float64 until the final cast,
    as in the authors' code."""
    vehicles = env.road.vehicles
    rows = np.stack([kinematics(v) for v in vehicles])  # [V, 5]
    positions = rows[:, :2]
    out = []
    for observer in env.controlled_vehicles:
        distance = [np.linalg.norm(p - observer.position) for p in positions]
        order = sorted(range(len(vehicles)), key=distance.__getitem__)
        sorted_rows = rows[order].copy()
        sorted_rows[1:] = sorted_rows[1:] - sorted_rows[0]
        out.append(np.concatenate([sorted_rows.ravel(), route_points(observer).ravel()]))
    return np.stack(out).astype(np.float32)


def state_of(obs: np.ndarray) -> np.ndarray:
    """[60] float32: each agent's own row (5) and route points (10), concatenated."""
    return np.concatenate([obs[:, :FEATURES], obs[:, -2 * len(ROUTE_TIMES) :]], axis=1).ravel()
