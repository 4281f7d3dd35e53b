"""The JAX intersection (``intersection``): geometry, collisions, arrival, reward and
termination on constructed scenes, observation layout, the authors' quirks, vmap, render,
conformance and a training smoke test. The step-by-step comparison with highway-env is
tests/test_intersection_validation.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import powmarl
from powmarl.envs.intersection import (
    EPISODE_LIMIT,
    IntersectionStart,
    IntersectionState,
    collision,
    sample_start,
)
from powmarl.envs.intersection import env as env_module
from powmarl.envs.intersection import geometry as geo
from powmarl.envs.intersection import vehicle as vh

pytestmark = pytest.mark.usefixtures("key_reuse_check")

SLOWER, IDLE, FASTER = vh.SLOWER, vh.IDLE, vh.FASTER
ENV = powmarl.envs.make("intersection")
PARAMS = ENV.default_params()
STRAIGHT_ALL = np.array([2, 3, 0, 1])  # destination of vehicle i: arm i + 2


def start(offset=(65.0, 60.0, 70.0, 62.0), speed=(10.0,) * 4, destination=STRAIGHT_ALL):
    return IntersectionStart(
        jnp.asarray(offset, jnp.float32), jnp.asarray(speed, jnp.float32),
        jnp.asarray(destination, jnp.int32),
    )  # fmt: skip


def scene(position, heading, speed, destination=STRAIGHT_ALL, time=0, **fields):
    """A state with the given vehicle kinematics (other fields as at a start, or given)."""
    _, state = ENV.reset_from(start(destination=destination))
    veh = state.vehicles.replace(
        position=jnp.asarray(position, jnp.float32),
        heading=jnp.asarray(heading, jnp.float32),
        speed=jnp.asarray(speed, jnp.float32),
        target_speed=jnp.asarray(speed, jnp.float32),
        **{k: jnp.asarray(v) for k, v in fields.items()},
    )
    return IntersectionState(veh, jnp.asarray(time, jnp.int32))


def parked_far(n: int = 4):
    """Positions and headings of vehicles standing at the far ends of their entry lanes."""
    lanes = geo.lane_id(np.arange(n), geo.ENTRY)
    return np.asarray(geo.LANES.start[lanes]), np.asarray(geo.LANES.heading[lanes])


def step(state, actions=(IDLE,) * 4):
    # a real key: the same compiled step as the conformance check's un-jitted episodes
    return ENV.step(jax.random.key(0), state, jnp.asarray(actions, jnp.int32), PARAMS)


# ----------------------------------------------------------------------------- geometry


@jax.jit
def _joins():
    """[4, 3, 2, 2]: per arm and destination, (entry end, connector start) and
    (connector end, exit start)."""
    arm = jnp.arange(4)[:, None]
    dest = (arm + jnp.array([3, 1, 2])[None]) % 4  # right, left, straight
    conn = geo.lane_id(arm, geo.connector_kind(arm, dest))
    entry = jnp.broadcast_to(geo.lane_id(arm, geo.ENTRY), conn.shape)
    exit_ = geo.lane_id(dest, geo.EXIT)
    zero = jnp.zeros(conn.shape)
    first = jnp.stack([geo.position(entry, zero + 100.0), geo.position(conn, zero)], -2)
    second = jnp.stack([geo.position(conn, geo.lane_length(conn)), geo.position(exit_, zero)], -2)
    return jnp.stack([first, second], -3)


def test_lanes_have_the_authors_lengths_and_join_up():
    lengths = np.asarray(geo.LANES.length).reshape(4, 5)
    want = [100.0, 9 * np.pi / 2, 13 * np.pi / 2, 22.0, 100.0]
    np.testing.assert_allclose(lengths, np.tile(want, (4, 1)), rtol=1e-12)
    joins = np.asarray(_joins())
    np.testing.assert_allclose(joins[..., 0, :], joins[..., 1, :], atol=1e-4)
    # arm 0 (south) drives north (-y), arm 1 (west) east (+x)
    np.testing.assert_allclose(geo.LANES.heading[[0, 5]], [-np.pi / 2, 0.0], atol=1e-12)


def test_lane_coordinates_invert_positions():
    lanes = jnp.arange(geo.NUM_LANES)[:, None].repeat(6, 1)
    s = jnp.broadcast_to(jnp.array([0.0, 3.0, 10.0, 14.0, 20.0, 21.0]), lanes.shape)
    r = jnp.where(lanes % 2 == 0, -1.5, 0.75)
    got_s, got_r = jax.jit(lambda: geo.local_coordinates(lanes, geo.position(lanes, s, r)))()
    np.testing.assert_allclose(got_s, s, atol=2e-4)
    np.testing.assert_allclose(got_r, r, atol=2e-4)


# ----------------------------------------------------------------------------- collisions


@jax.jit
def _sat(pos_a, head_a, pos_b, head_b, disp_a):
    """Batched separating-axis test of cars a (moving by disp_a) and b (at rest)."""
    zero = jnp.zeros_like(disp_a)
    return collision.rectangles_intersecting(pos_a, head_a, pos_b, head_b, disp_a, zero)


def test_rectangle_cases_by_hand():
    cases = [  # (position of b, heading of b, displacement of a, intersecting, will intersect)
        ((4.9, 0.0), 0.0, (0, 0), True, True),  # 5 m long: 0.1 m overlap
        ((5.1, 0.0), 0.0, (0, 0), False, False),
        ((1.0, 4.0), 0.0, (0, 0), False, False),  # parallel lanes 4 m apart, 2 m wide cars
        ((3.4, 3.4), np.pi / 2, (0, 0), True, True),  # crossing car: corners overlap
        ((3.6, 3.4), np.pi / 2, (0, 0), False, False),
        ((4.5, 3.2), np.pi / 4, (0, 0), False, False),  # boxes overlap, rectangles not
        ((3.5, 2.5), np.pi / 4, (0, 0), True, True),
        ((5.1, 0.0), 0.0, (1.0, 0.0), False, True),  # 1 m into a car 0.1 m ahead
    ]
    pos_b, head_b, disp, hit, will = (np.array(c, np.float32) for c in zip(*cases))
    zeros = np.zeros_like(pos_b)
    got_hit, got_will, shift = _sat(zeros, zeros[:, 0], pos_b, head_b, disp)
    assert np.asarray(got_hit).tolist() == hit.astype(bool).tolist()
    assert np.asarray(got_will).tolist() == will.astype(bool).tolist()
    np.testing.assert_allclose(shift[-1], [-0.9, 0.0], atol=1e-5)  # pushed back 0.9 m


def test_rectangle_test_matches_point_sampling():
    """Random pairs, clear of the boundary: SAT == some sampled point of a lies in b."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(-6, 6, (300, 2)).astype(np.float32)
    head = rng.uniform(-np.pi, np.pi, (300, 2)).astype(np.float32)
    zeros = np.zeros_like(pos)
    hit, _, _ = _sat(pos, head[:, 0], zeros, head[:, 1], zeros)
    u, v = np.meshgrid(np.linspace(-2.5, 2.5, 101), np.linspace(-1, 1, 41))
    local = np.stack([u.ravel(), v.ravel()], -1)  # points of a car, its own frame
    checked = 0
    for k in range(300):
        c, s = np.cos(head[k, 0]), np.sin(head[k, 0])
        world = local @ np.array([[c, s], [-s, c]]) + pos[k]  # car a's points
        c, s = np.cos(head[k, 1]), np.sin(head[k, 1])  # car b: at the origin
        along, across = world @ np.array([c, s]), world @ np.array([-s, c])
        margin = np.max(np.minimum(2.5 - np.abs(along), 1 - np.abs(across)))
        if abs(margin) < 0.06:
            continue  # too close to touching for the sampling to decide
        assert bool(hit[k]) == (margin > 0), k
        checked += 1
    assert checked > 200


def crossing(y0: float, x1: float, time: int = 0):
    """Vehicle 0 northbound at (2, y0), vehicle 1 eastbound at (x1, 2), both at 10 m/s on
    their lanes (their paths cross at (2, 2)); vehicles 2 and 3 parked far away."""
    pos, head = parked_far()
    pos[0], pos[1] = (2.0, y0), (x1, 2.0)
    return scene(pos, head, [10.0, 10.0, 0.0, 0.0], time=time)


def test_crash_ends_the_episode():
    ts, state = step(crossing(5.0, -3.0))  # apart now, overlapping after 0.2 s
    assert np.asarray(state.vehicles.crashed).tolist() == [True, True, False, False]
    assert float(ts.reward) == -100.0 and bool(ts.terminated) and not bool(ts.truncated)
    assert ts.info["collision"] == 1.0 and ts.info["all_arrive"] == 0.0


def test_predicted_contact_crashes_at_the_next_step():
    """Apart after the step, but overlapping within the next 0.2 s at constant velocity:
    an impact is set (no crash yet); the next step marks both crashed."""
    ts, state = step(crossing(8.5, -5.0))
    veh = state.vehicles
    assert not np.any(veh.crashed) and float(ts.reward) == -1.0 and not bool(ts.terminated)
    assert np.asarray(veh.has_impact).tolist() == [True, True, False, False]
    np.testing.assert_allclose(veh.impact[0], -veh.impact[1], atol=1e-6)
    assert float(jnp.linalg.norm(veh.impact[0])) > 0.1
    ts2, state2 = step(state)
    assert bool(ts2.terminated) and float(ts2.reward) == -100.0
    assert np.asarray(state2.vehicles.crashed).tolist() == [True, True, False, False]


# ----------------------------------------------------------------------------- arrival, reward


def _on_exit(s_exit, on_exit=True, speed=0.0):
    """All 4 vehicles on their exit lanes (straight routes) at s = s_exit."""
    lanes = geo.lane_id(STRAIGHT_ALL, geo.EXIT)
    point = geo.LANES.start[lanes] + s_exit * geo.LANES.direction[lanes]
    return scene(
        point, geo.LANES.heading[lanes], [speed] * 4,
        on_exit_lane=np.broadcast_to(on_exit, (4,)), target_stage=np.full(4, 2, np.int32),
    )  # fmt: skip


def test_arrival_needs_the_exit_lane_and_25_m():
    arrived = jax.jit(ENV.arrived)
    assert not np.any(arrived(_on_exit(24.9)))
    assert np.all(arrived(_on_exit(25.1)))
    assert not np.any(arrived(_on_exit(30.0, on_exit=False)))


def test_all_arrived_pays_99_and_terminates():
    ts, _ = step(_on_exit(24.0, speed=10.0))  # 2 m in the step: s = 26
    assert float(ts.reward) == 99.0 and bool(ts.terminated) and not bool(ts.truncated)
    assert ts.info["all_arrive"] == 1.0 and ts.info["collision"] == 0.0
    late = _on_exit(24.0, speed=10.0)
    late = late.replace(vehicles=late.vehicles.replace(on_exit_lane=jnp.array([1, 1, 1, 0], bool)))
    ts, _ = step(late)
    assert float(ts.reward) == -1.0 and not bool(ts.terminated)


def test_truncated_after_101_steps_and_crash_wins():
    assert EPISODE_LIMIT == env_module.truncation_step(20.0, 5) == 101 == ENV.spec.episode_limit
    pos, head = parked_far()
    ts, _ = step(scene(pos, head, [0.0] * 4, time=99))
    assert not bool(ts.truncated) and not bool(ts.terminated)
    ts, _ = step(scene(pos, head, [0.0] * 4, time=100))
    assert bool(ts.truncated) and not bool(ts.terminated) and float(ts.reward) == -1.0
    ts, _ = step(crossing(5.0, -3.0, time=100))
    assert bool(ts.terminated) and not bool(ts.truncated)


# ----------------------------------------------------------------------------- views


def test_observation_and_state_layout():
    ts, state = ENV.reset_from(start())
    veh = state.vehicles
    rows = np.concatenate(
        [veh.position, np.asarray(veh.speed)[:, None] * np.stack(
            [np.cos(veh.heading), np.sin(veh.heading)], -1), np.asarray(veh.heading)[:, None]],
        -1,
    )  # fmt: skip
    obs = np.asarray(ts.obs)
    for i in range(4):
        order = np.argsort(np.linalg.norm(veh.position - veh.position[i], axis=-1), kind="stable")
        assert order[0] == i
        np.testing.assert_allclose(obs[i, :5], rows[i], atol=1e-5)
        np.testing.assert_allclose(obs[i, 5:20], (rows[order[1:]] - rows[i]).ravel(), atol=1e-4)
    # vehicle 0 drives north at 10 m/s on its entry lane: route points 2 m apart ahead
    np.testing.assert_allclose(obs[0, 20:], np.ravel([[0, -2.0 * k] for k in range(1, 6)]),
                               atol=1e-4)  # fmt: skip
    state_view = np.concatenate([obs[:, :5], obs[:, 20:]], -1).ravel()
    np.testing.assert_array_equal(np.asarray(ts.state), state_view)
    assert ts.obs.dtype == jnp.float32 and ts.obs.shape == (4, 30) and ts.state.shape == (60,)


def test_lane_switch_and_route_points_while_crossing():
    """The authors' lane bookkeeping: past 97.5 m the current lane jumps to the exit lane
    while the route still starts with the entry lane (route points far behind), then the
    route starts with the connector (points ~20 m behind), then all is consistent."""
    pos, head = parked_far()
    pos[0] = geo.LANES.start[0] + 90.0 * geo.LANES.direction[0]  # s = 90 m on its entry lane
    state = scene(pos, head, [10.0, 0.0, 0.0, 0.0])
    seen = []
    for _ in range(17):
        ts, state = step(state)
        veh = state.vehicles
        seen.append((bool(veh.on_exit_lane[0]), int(veh.target_stage[0]), float(ts.obs[0, 21])))
    switch = next(k for k, (exit_lane, _, _) in enumerate(seen) if exit_lane)
    assert seen[switch][1] == 0 and seen[switch][2] > 100  # on the entry lane at s < 0
    assert seen[switch + 1][1] == 1 and 10 < seen[switch + 1][2] < 25  # behind the car
    exit_steps = [dy for exit_lane, stage, dy in seen if stage == 2]
    assert exit_steps and np.allclose(exit_steps, -2.0, atol=1e-3)


def test_meta_actions_round_half_to_even():
    speeds = jnp.array([0.99, 1.0, 1.01, 3.0, 5.0, 9.0, 11.0, -1.0])
    assert jax.jit(vh.speed_to_index)(speeds).tolist() == [0, 0, 1, 2, 2, 4, 5, 0]
    actions = jnp.array([FASTER, SLOWER, IDLE])
    target = jax.jit(vh.meta_action)(jnp.full(3, 4.0), jnp.full(3, 9.0), actions)
    assert target.tolist() == [10.0, 6.0, 4.0]


def test_bad_starts_are_one_line_errors():
    with pytest.raises(ValueError, match=r"start.destination: .*destination\[i\] != i"):
        ENV.reset_from(start(destination=[0, 3, 0, 1]))
    with pytest.raises(ValueError, match=r"start.entry_offset: must be in \[0, 97.5\]"):
        ENV.reset_from(start(offset=[65.0, 99.0, 70.0, 62.0]))
    with pytest.raises(ValueError, match=r"start.speed: must have shape \(4,\)"):
        ENV.reset_from(IntersectionStart(jnp.zeros(4), jnp.zeros(3), jnp.asarray(STRAIGHT_ALL)))


def test_vmap_over_many_envs_and_the_start_distribution():
    starts = jax.vmap(sample_start)(jax.random.split(jax.random.key(0), 4096))
    assert abs(float(starts.entry_offset.mean()) - 65.0) < 0.5
    dest = np.asarray(starts.destination)
    assert not np.any(dest == np.arange(4))
    assert abs(np.mean(dest == (np.arange(4) + 1) % 4) - 0.5) < 0.02  # arm i + 1: 1/2
    n = 256
    keys = jax.random.split(jax.random.key(1), n)

    @jax.jit
    def run(keys):
        _ts, state = jax.vmap(ENV.reset, in_axes=(0, None))(keys, PARAMS)
        actions = jax.random.randint(jax.random.key(1), (n, 4), 0, 3)
        return jax.vmap(ENV.step, in_axes=(None, 0, 0, None))(None, state, actions, PARAMS)[0]

    ts = run(keys)
    assert ts.obs.shape == (n, 4, 30) and bool(jnp.all(jnp.isfinite(ts.obs)))


def test_conformance():
    # one random episode each way: the validation test plays many more
    powmarl.envs.check(ENV, episodes=1)


def test_frame_draws_a_crashed_vehicle_red():
    pytest.importorskip("PIL")
    from powmarl.envs.intersection import draw

    pos, head = parked_far()
    pos[1] = (-20.0, 2.0)
    state = scene(pos, head, [0.0] * 4, crashed=np.array([False, True, False, False]))
    img = ENV.render_frame(
        {"state": state, "actions": None, "reward": 0, "return": -3, "t": 3}, PARAMS
    )
    assert img.size == (draw.SIZE, draw.SIZE + 24)
    inside = pos[1] + (1.8, 0.5)  # in the car (5 x 2 m, heading east), off its number
    assert img.getpixel(tuple(int(v) for v in draw._px(inside)[0])) == draw.CRASHED


@pytest.mark.slow  # ~15 s of CPU: the runner's and agent's programs (frames: test above)
def test_greedy_episode_plays_and_draws_as_a_gif(tmp_path):
    """The path of ``powmarl eval --render``: a greedy episode of an (untrained) agent."""
    pytest.importorskip("PIL")
    from PIL import Image

    from powmarl import render
    from powmarl.api import resolve_settings
    from powmarl.runners.jax_runner import make_runner

    algo = powmarl.algos.make("qmix")
    small = {"rnn_hidden_dim": 8, "batch_size": 2, "buffer_size": 2}
    runner = make_runner(resolve_settings(ENV, small, algo)[0], ENV, algo, seed_axis=None)
    init_key, play_key = jax.random.split(jax.random.key(3))
    agent = jax.jit(runner.init)(init_key, PARAMS).learner.params["agent"]
    frames = render.play_episode(runner.learner, ENV, agent, PARAMS, play_key)
    assert 2 <= len(frames) <= EPISODE_LIMIT + 1 and frames[-1]["actions"] is None
    gif = render.write_gif(render.draw_frames(ENV, frames, PARAMS), tmp_path / "x.gif")
    with Image.open(gif) as img:
        assert img.n_frames == len(frames)


@pytest.mark.slow  # ~45 s of CPU, nearly all compiling the training program
def test_training_logs_arrival_and_collision_rates():
    result = powmarl.train(
        "qmix", ENV, seeds=[0], t_max=2 * 8 * EPISODE_LIMIT, progress=False,
        test_interval=8 * EPISODE_LIMIT, test_nepisode=8, batch_size=8, buffer_size=16,
        rnn_hidden_dim=8, mixing_embed_dim=8, hypernet_embed=8,
    )  # fmt: skip
    last = result.metrics[-1]
    for name in ("eval/all_arrive_mean", "eval/collision_mean", "train/all_arrive_mean"):
        assert 0.0 <= last[name] <= 1.0, name
    assert -200.0 <= last["eval/return_mean"] <= 99.0  # -1 a step, -100 or +99 at the end
    assert result.hparams.epsilon_start == result.hparams.epsilon_finish == 0.1
