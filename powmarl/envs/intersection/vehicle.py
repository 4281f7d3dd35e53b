"""The controlled vehicles: kinematic bicycle, speed and steering controllers, routes.

Ports of the authors' ``vehicle/kinematics.py`` (``Vehicle``), ``vehicle/controller.py``
(``ControlledVehicle``, ``MDPVehicle``) and ``road/road.py`` (``next_lane``,
``position_heading_along_route``), for the 4 controlled vehicles of the intersection,
vectorised over vehicles. Vehicle ``i`` enters from arm ``i``.

Route. ``plan_route_to("o{m}")`` from the entry lane gives the lanes entry(i) ->
connector(i, m) -> exit(m). Two lane pointers follow it, and they differ in the authors'
copy:

- the *target lane* (what the steering controller follows, ``follow_road``): at the start
  of a step, when s > length - 2.5 on it, it moves one lane on, popping the route's first
  lane; after the exit lane (route empty) ``next_lane`` picks the only road leaving node
  ``o{m}``: the entry lane of arm m, travelled backwards (a U-turn at the far end).
  Stages 0..3 of :func:`route_lanes`; stage 3 is final here (a next switch would need
  ~260 m of driving, more than 20.2 s at <= 10 m/s allow).
- the *current lane* (what arrival and the route prediction read,
  ``on_state_update_simple``): after a step ends with s > 97.5 on the entry lane while the
  route still starts with it, its loop over the route jumps straight to the exit lane
  (it re-matches each lane it switches to). It stays there.
"""

from __future__ import annotations

import flax.struct
import jax.numpy as jnp
import numpy as np

from powmarl.envs.intersection import geometry as geo
from powmarl.types import Array

LENGTH = 5.0  # Vehicle.LENGTH [m]
WIDTH = 2.0  # Vehicle.WIDTH [m]
MAX_SPEED, MIN_SPEED = 40.0, -40.0  # Vehicle.MAX_SPEED / MIN_SPEED [m/s]
TAU_ACC, TAU_HEADING, TAU_LATERAL = 0.6, 0.2, 0.6  # ControlledVehicle [s]
TAU_PURSUIT = 0.5 * TAU_HEADING
KP_A, KP_HEADING, KP_LATERAL = 1 / TAU_ACC, 1 / TAU_HEADING, 1 / TAU_LATERAL
MAX_STEERING_ANGLE = np.pi / 3
TARGET_SPEEDS = np.array([0.0, 2.0, 4.0, 6.0, 8.0, 10.0])  # intersec.yaml target_speeds
SLOWER, IDLE, FASTER = range(3)  # DiscreteMetaAction.ACTIONS_LONGI
FINAL_STAGE = 3  # target lane index into route_lanes: entry, connector, exit, entry(m)


@flax.struct.dataclass
class Vehicles:
    """The 4 controlled vehicles ([4] or [4, 2] each; vehicle i entered from arm i)."""

    position: Array  # [4, 2] m, world frame (x east, y south)
    heading: Array  # [4] rad, not wrapped (the authors integrate it freely)
    speed: Array  # [4] m/s
    target_speed: Array  # [4] m/s, one of TARGET_SPEEDS
    destination: Array  # [4] int32 exit arm m (node "o{m}")
    target_stage: Array  # [4] int32: which of route_lanes the steering follows
    on_exit_lane: Array  # [4] bool: current lane is exit(m) (else entry(i))
    crashed: Array  # [4] bool
    impact: Array  # [4, 2] m: position shift waiting for the next step (will-collide)
    has_impact: Array  # [4] bool
    steering: Array  # [4] rad: steering angle applied in the last step
    acceleration: Array  # [4] m/s^2: acceleration applied in the last step


def route_lanes(destination) -> Array:
    """[..., 4] exit arms -> [..., 4, 4] lane ids: entry(i), connector(i, m), exit(m),
    entry(m) (the lane after the exit), for vehicle i = 0..3."""
    arm = jnp.arange(geo.NUM_ARMS)
    conn = geo.lane_id(arm, geo.connector_kind(arm, destination))
    entry = jnp.broadcast_to(geo.lane_id(arm, geo.ENTRY), conn.shape)
    return jnp.stack(
        [entry, conn, geo.lane_id(destination, geo.EXIT), geo.lane_id(destination, geo.ENTRY)],
        -1,
    ).astype(jnp.int32)


def current_lane(veh: Vehicles, routes) -> Array:
    """[4] lane ids of ``Vehicle.lane``: the exit lane once switched, else the entry lane."""
    return jnp.where(veh.on_exit_lane, routes[:, 2], routes[:, 0])


def target_lane(veh: Vehicles, routes) -> Array:
    return jnp.take_along_axis(routes, veh.target_stage[:, None], 1)[:, 0]


def follow_road(veh: Vehicles, routes) -> Vehicles:
    """``ControlledVehicle.follow_road``: past s > length - 2.5 on the target lane, move
    the target one lane along the route."""
    lane = geo.lanes(target_lane(veh, routes))
    s, _ = geo.local_coordinates(lane, veh.position)
    passed = s > lane.length - geo.VEHICLE_LENGTH_LANE / 2
    stage = veh.target_stage + (passed & (veh.target_stage < FINAL_STAGE))
    return veh.replace(target_stage=stage.astype(jnp.int32))


def speed_to_index(speed):
    """``MDPVehicle.speed_to_index``: nearest target-speed index (round half to even)."""
    ts = TARGET_SPEEDS
    x = (speed - ts[0]) / (ts[-1] - ts[0])
    return jnp.clip(jnp.round(x * (ts.size - 1)), 0, ts.size - 1).astype(jnp.int32)


def meta_action(target_speed, speed, action):
    """``MDPVehicle.act``: FASTER / SLOWER set the target one index above / below the
    index nearest the *current speed*; IDLE keeps the target."""
    step = jnp.where(action == FASTER, 1, jnp.where(action == SLOWER, -1, 0))
    index = jnp.clip(speed_to_index(speed) + step, 0, TARGET_SPEEDS.size - 1)
    return jnp.where(action == IDLE, target_speed, jnp.asarray(TARGET_SPEEDS)[index])


def not_zero(x, eps: float = 1e-2):
    """``utils.not_zero``: x if |x| > eps, else eps with x's sign (eps for 0)."""
    return jnp.where(jnp.abs(x) > eps, x, jnp.where(x >= 0, eps, -eps))


def steering_control(lane, position, heading, speed):
    """``ControlledVehicle.steering_control``: lateral P -> heading reference -> heading
    P -> steering angle.

    v_lat = -K_lat r;  h_ref = h_lane(s + v tau_p) + clip(asin(v_lat / v), +-pi/4);
    dh = K_h wrap(h_ref - h);  delta = atan(2 tan(asin(L/2 dh / v))), clipped to +-pi/3
    (as atan2(2 sin, cos): float32's tan(pi/2) is negative).
    """
    lane = geo.lanes(lane)
    s, r = geo.local_coordinates(lane, position)
    future_heading = geo.heading_at(lane, s + speed * TAU_PURSUIT)
    lateral_speed = -KP_LATERAL * r
    heading_command = jnp.arcsin(jnp.clip(lateral_speed / not_zero(speed), -1, 1))
    heading_ref = future_heading + jnp.clip(heading_command, -np.pi / 4, np.pi / 4)
    heading_rate = KP_HEADING * geo.wrap_to_pi(heading_ref - heading)
    slip = jnp.arcsin(jnp.clip(LENGTH / 2 / not_zero(speed) * heading_rate, -1, 1))
    steering = jnp.arctan2(2 * jnp.sin(slip), jnp.cos(slip))  # atan(2 tan), f32-safe at pi/2
    return jnp.clip(steering, -MAX_STEERING_ANGLE, MAX_STEERING_ANGLE)


def act(veh: Vehicles, routes, actions) -> Vehicles:
    """Everything before the integration: road following, the meta-action, both
    controllers (``MDPVehicle.act`` then ``Road.act``; the second call changes nothing)."""
    veh = follow_road(veh, routes)
    target_speed = meta_action(veh.target_speed, veh.speed, actions)
    lane = target_lane(veh, routes)
    steering = steering_control(lane, veh.position, veh.heading, veh.speed)
    acceleration = KP_A * (target_speed - veh.speed)  # ControlledVehicle.speed_control
    return veh.replace(target_speed=target_speed, steering=steering, acceleration=acceleration)


def integrate(veh: Vehicles, dt: float) -> Vehicles:
    """``Vehicle.step``: the kinematic bicycle, dt seconds.

    beta = atan(tan(delta) / 2);  p += v (cos(h + beta), sin(h + beta)) dt (+ a pending
    impact, which also marks the vehicle crashed);  h += v sin(beta) / (L/2) dt;  v += a dt.
    A crashed vehicle gets delta = 0, a = -v (``clip_actions``).
    """
    steering = jnp.where(veh.crashed, 0.0, veh.steering)
    accel = jnp.where(veh.crashed, -veh.speed, veh.acceleration)
    accel = jnp.where(veh.speed > MAX_SPEED, jnp.minimum(accel, MAX_SPEED - veh.speed), accel)
    accel = jnp.where(veh.speed < MIN_SPEED, jnp.maximum(accel, MIN_SPEED - veh.speed), accel)
    beta = jnp.arctan(0.5 * jnp.tan(steering))
    angle = veh.heading + beta
    velocity = veh.speed[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
    position = veh.position + velocity * dt
    position = position + jnp.where(veh.has_impact[:, None], veh.impact, 0.0)
    return veh.replace(
        position=position,
        heading=veh.heading + veh.speed * jnp.sin(beta) / (LENGTH / 2) * dt,
        speed=veh.speed + accel * dt,
        crashed=veh.crashed | veh.has_impact,
        impact=jnp.zeros_like(veh.impact),
        has_impact=jnp.zeros_like(veh.has_impact),
        steering=steering,
        acceleration=accel,
    )


def update_lane(veh: Vehicles, routes) -> Vehicles:
    """``Vehicle.on_state_update_simple``: past s > 97.5 on the entry lane, while the
    route still starts with it (target stage 0), the current lane becomes the exit lane."""
    entry = geo.lanes(routes[:, 0])
    s, _ = geo.straight_coordinates(entry, veh.position)
    passed = s > entry.length - geo.VEHICLE_LENGTH_LANE / 2
    switch = ~veh.on_exit_lane & (veh.target_stage == 0) & passed
    return veh.replace(on_exit_lane=veh.on_exit_lane | switch)


def velocity(veh: Vehicles) -> Array:
    """[4, 2] ``Vehicle.velocity``: speed along the heading (no slip angle)."""
    return veh.speed[:, None] * jnp.stack([jnp.cos(veh.heading), jnp.sin(veh.heading)], -1)


def predict_route(veh: Vehicles, routes, times) -> Array:
    """[4, K, 2] ``ControlledVehicle.predict_trajectory_constant_speed`` positions at
    ``times`` [K]: the point s0 + v t along the remaining route (the route lanes from the
    target stage on; just the current lane once the route is empty), s0 being the
    vehicle's s on its *current* lane, lateral 0 (``position_heading_along_route``: a
    point past a lane's end moves to the next lane while one is left)."""
    lane = current_lane(veh, routes)
    s0, _ = geo.local_coordinates(lane, veh.position)
    stage = veh.target_stage[:, None]
    hops = jnp.minimum(stage + jnp.arange(FINAL_STAGE), FINAL_STAGE)  # [4, 3]
    route = jnp.take_along_axis(routes, hops, 1)  # the route list, then padding
    route = route.at[:, 0].set(jnp.where(stage[:, 0] >= FINAL_STAGE, lane, route[:, 0]))
    left = jnp.maximum(FINAL_STAGE - stage, 1)  # [4, 1] lanes in the route list
    length = geo.lane_length(route)  # [4, 3]
    lon = s0[:, None] + veh.speed[:, None] * jnp.asarray(times)  # [4, K]
    go1 = (left > 1) & (lon > length[:, :1])
    lon = jnp.where(go1, lon - length[:, :1], lon)
    go2 = go1 & (left > 2) & (lon > length[:, 1:2])
    lon = jnp.where(go2, lon - length[:, 1:2], lon)
    cur = jnp.where(go2, route[:, 2:3], jnp.where(go1, route[:, 1:2], route[:, :1]))
    return geo.position(cur, lon, 0.0)
