"""Views of the intersection: per-agent observations, the global state, arrival.

``KinematicWithRouteObservation.observe`` and ``IntersecEnv.get_state`` of the authors'
copy (``envs/common/observation.py``, ``IntersecEnv.py``), and
``IntersectionEnv.has_arrived`` (``envs/intersection_env.py``).
"""

from __future__ import annotations

import jax.numpy as jnp

from powmarl.envs.intersection import geometry as geo
from powmarl.envs.intersection import vehicle as vh
from powmarl.types import Array

ROUTE_TIMES = (0.2, 0.4, 0.6, 0.8, 1.0)  # KinematicWithRouteObservation timestamps [s]
ARRIVE_DISTANCE = 25.0  # has_arrived(exit_distance=25) [m]
FEATURES = 5  # Vehicle.states(): x, y, vx, vy, heading


def kinematics(veh: vh.Vehicles) -> Array:
    """[4, 5] ``Vehicle.states()``: x, y, vx, vy, heading."""
    return jnp.concatenate([veh.position, vh.velocity(veh), veh.heading[:, None]], -1)


def observe(veh: vh.Vehicles, routes) -> Array:
    """[4, 30] observations.

    Row order of agent i: ``sorted(vehicles, key=|p_j - p_i|)`` (Python's stable sort:
    list order on ties, so i itself first unless another vehicle sits on it). The first
    row is absolute, rows 2..4 are minus the first row (all 5 features, heading too).
    Then the 5 route points minus the vehicle's position, (dx, dy) interleaved.
    """
    rows = kinematics(veh)  # [4, 5]
    gap = veh.position[None, :, :] - veh.position[:, None, :]  # [ego, other, 2]
    dist = jnp.sqrt(jnp.sum(gap**2, -1))
    order = jnp.argsort(dist, axis=-1, stable=True)  # [4, 4]
    seen = rows[order]  # [ego, rank, 5]
    first = seen[:, :1]
    table = jnp.concatenate([first, seen[:, 1:] - first], 1).reshape(rows.shape[0], -1)
    route = vh.predict_route(veh, routes, jnp.asarray(ROUTE_TIMES))  # [4, K, 2]
    route = (route - veh.position[:, None, :]).reshape(rows.shape[0], -1)
    return jnp.concatenate([table, route], -1).astype(jnp.float32)


def global_state(obs) -> Array:
    """[60] ``IntersecEnv.get_state``: per agent, its obs[:5] and obs[-10:], concatenated."""
    return jnp.concatenate([obs[:, :FEATURES], obs[:, -2 * len(ROUTE_TIMES) :]], -1).reshape(-1)


def arrived(veh: vh.Vehicles, routes) -> Array:
    """[4] ``has_arrived``: the current lane is the exit lane (il -> o) and s >= 25 on it."""
    s, _ = geo.straight_coordinates(routes[:, 2], veh.position)
    return veh.on_exit_lane & (s >= ARRIVE_DISTANCE)
