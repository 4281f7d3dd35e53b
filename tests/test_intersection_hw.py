"""``intersection_hw``: the paper's intersection on highway-env (host env).

Constructed episodes (``reset_from``) check the geometry, the observation layout, the
reward, termination and info of arrivals, crashes and time-outs, and the authors' lane
tracking; seeded resets check the authors' start draw; a tiny QMIX run (slow) trains it on
the host path with its copies in 2 worker processes. Skips without highway-env.
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("highway_env", reason="intersection_hw needs highway-env (powmarl[highway])")

import powmarl
from powmarl.envs import contract
from powmarl.envs.host.intersection_hw import IntersectionHW, check_start
from powmarl.envs.host.vector import HostVectorEnv, make_copies

SLOWER, IDLE, FASTER = 0, 1, 2
#: Entry lane of arm i: from START[i] towards the centre along DIRECTION[i] (road nodes
#: o_i -> ir_i; lane centres 2 m right of the axis, 100 m long, ending 11 m from the centre).
START = np.array([[2.0, 111.0], [-111.0, 2.0], [-2.0, -111.0], [111.0, -2.0]])
DIRECTION = np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
RIGHT, STRAIGHT = (3, 0, 1, 2), (2, 3, 0, 1)  # destination arms of each origin


@pytest.fixture(scope="module")
def env():
    return powmarl.envs.make("intersection_hw")


def start(offset, speed=10.0, destination=RIGHT):
    return {
        "entry_offset": np.broadcast_to(np.asarray(offset, float), (4,)),
        "speed": np.broadcast_to(np.asarray(speed, float), (4,)),
        "destination": np.asarray(destination),
    }


def play(env, actions_of_step, limit=200):
    """Step until the episode ends: lists of (reward, terminated, truncated, info)."""
    out = []
    for t in range(limit):
        out.append(env.step(actions_of_step(t)))
        if out[-1][1] or out[-1][2]:
            return out
    raise AssertionError("the episode did not end")


def test_registered_checked_and_copyable(env):
    assert powmarl.envs.env_kind(env) == "host"
    powmarl.envs.check(env)
    assert env.spec == powmarl.types.EnvSpec(4, 3, 30, 60, 101)
    assert (env.obs_last_action, env.obs_agent_id) == (True, True)
    assert env.info_keys == ("all_arrive", "collision")
    factory = contract.copy_factory(env)
    copy = pickle.loads(pickle.dumps(factory))()
    assert contract.identity(copy) == ("intersection_hw", {})
    obs, state, avail = copy.reset(5)
    assert obs.shape == (4, 30) and obs.dtype == np.float32
    assert state.shape == (60,) and avail.all() and avail.shape == (4, 3)
    np.testing.assert_array_equal(obs, env.reset(5)[0])
    again = pickle.loads(pickle.dumps(env))  # a pickle carries the settings only
    np.testing.assert_array_equal(again.reset(5)[0], obs)


def test_observation_layout_and_state(env):
    """Own row absolute, the others relative and sorted by distance, route points ahead."""
    offsets, speeds = np.array([60.0, 70.0, 80.0, 90.0]), np.array([10.0, 8.0, 6.0, 4.0])
    obs, state, _ = env.reset_from(start(offsets, speeds))
    position = START + offsets[:, None] * DIRECTION
    heading = np.arctan2(DIRECTION[:, 1], DIRECTION[:, 0])
    rows = np.concatenate([position, speeds[:, None] * DIRECTION, heading[:, None]], axis=1)
    for i in range(4):
        order = np.argsort(np.linalg.norm(position - position[i], axis=1), kind="stable")
        assert order[0] == i
        want = rows[order].copy()
        want[1:] -= want[0]
        np.testing.assert_allclose(obs[i, :20].reshape(4, 5), want, atol=1e-5)
        ahead = speeds[i] * np.array([0.2, 0.4, 0.6, 0.8, 1.0])[:, None] * DIRECTION[i]
        np.testing.assert_allclose(obs[i, 20:].reshape(5, 2), ahead, atol=1e-5)
    np.testing.assert_array_equal(state, np.concatenate([obs[:, :5], obs[:, 20:]], 1).ravel())
    cars = env.vehicles()
    np.testing.assert_allclose(cars["position"], position, atol=1e-9)
    assert cars["time"] == 0.0 and not cars["crashed"].any() and not cars["arrived"].any()


def test_all_arrive_pays_99_and_terminates(env):
    """Four right turns never meet: every step pays -1 until all are 25 m along their
    exit lanes, when the step pays -1 + 100 and the episode terminates."""
    env.reset_from(start(60.0, destination=RIGHT))
    steps = play(env, lambda t: [IDLE] * 4)
    rewards = [s[0] for s in steps]
    assert rewards[:-1] == [-1.0] * (len(steps) - 1) and rewards[-1] == 99.0
    assert steps[-1][1:] == (True, False, {"all_arrive": 1.0, "collision": 0.0})
    assert all(s[3] == {"all_arrive": 0.0, "collision": 0.0} for s in steps[:-1])
    assert env.vehicles()["arrived"].all() and 35 < len(steps) < 60


def test_crossing_vehicles_crash(env):
    """Arms 0 and 1 go straight at the same distance and speed and meet in the middle:
    -100 and terminated; the others stay stopped at the far ends of their lanes."""
    env.reset_from(start([60.0, 60.0, 0.0, 0.0], [10.0, 10.0, 0.0, 0.0], STRAIGHT))
    steps = play(env, lambda t: [IDLE, IDLE, SLOWER, SLOWER])
    assert [s[0] for s in steps[:-1]] == [-1.0] * (len(steps) - 1)
    assert steps[-1] == (-100.0, True, False, {"all_arrive": 0.0, "collision": 1.0})
    cars = env.vehicles()
    assert cars["crashed"].tolist() == [True, True, False, False]
    assert np.linalg.norm(cars["position"][0] - cars["position"][1]) < 6.0
    assert 18 < len(steps) < 26


def test_time_limit_truncates_at_step_101(env):
    """Everyone brakes to a stop: 101 steps of -1, then truncated (20 s of float time)."""
    env.reset_from(start(10.0, destination=STRAIGHT))
    steps = play(env, lambda t: [SLOWER] * 4)
    assert len(steps) == env.spec.episode_limit == 101
    assert [s[0] for s in steps] == [-1.0] * 101
    assert steps[-1][1:3] == (False, True) and not any(s[2] for s in steps[:-1])
    assert env.vehicles()["speed"].max() < 1e-6 and env.vehicles()["time"] >= 20.0


def test_lane_jumps_to_the_exit_lane_and_arrival_reads_it(env):
    """The authors' lane tracking: 2.5 m before the end of the entry lane the current lane
    becomes the exit lane (the straight connector is skipped); arrival = 25 m along it."""
    env.reset_from(start([60.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], STRAIGHT))
    car, seen = env.sim.controlled_vehicles[0], []
    for _ in range(60):
        env.step([IDLE, SLOWER, SLOWER, SLOWER])
        y = car.position[1]
        seen.append(car.lane_index)
        assert car.lane_index == (("o0", "ir0", 0) if y >= 13.5 else ("il2", "o2", 0))
        assert env.vehicles()["arrived"][0] == (y <= -11.0 - 25.0)
    assert ("ir0", "il2", 0) not in seen and seen[-1] == ("il2", "o2", 0)


def test_seeded_starts_follow_the_authors_draw(env):
    """Seeded resets repeat; destinations never the origin, origin + 1 twice as likely;
    start offsets 60 + 5 N(1, 1) m at speed 10."""
    first, again, other = env.reset(7)[0], env.reset(7)[0], env.reset(8)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    draws = [env.sim.draw_start() for _ in range(2000)]
    destination = np.stack([d["destination"] for d in draws])  # [N, 4]
    offset = np.stack([d["entry_offset"] for d in draws])
    assert not np.any(destination == np.arange(4))
    next_arm = np.mean(destination == (np.arange(4) + 1) % 4)
    assert 0.46 < next_arm < 0.54
    assert abs(offset.mean() - 65.0) < 0.3 and abs(offset.std() - 5.0) < 0.3
    assert all(np.all(d["speed"] == 10.0) for d in draws[:5])


def test_bad_input_names_the_field(env):
    with pytest.raises(ValueError, match="start.destination: vehicle i enters from arm i"):
        check_start(start(60.0, destination=(0, 0, 1, 2)))
    with pytest.raises(ValueError, match="start: missing 'speed'"):
        check_start({"entry_offset": [1, 2, 3, 4], "destination": RIGHT})
    with pytest.raises(ValueError, match=r"start.entry_offset: must be in \[0, 97.5\] m"):
        check_start(start(98.0))
    with pytest.raises(ValueError, match="start.entry_offset: must be 4 finite numbers"):
        check_start({**start(60.0), "entry_offset": [1.0, 2.0]})
    env.reset(0)
    with pytest.raises(ValueError, match="actions: must be 4 ints in 0..2"):
        env.step([0, 1, 2, 3])
    with pytest.raises(ValueError, match="obs_dtype"):
        IntersectionHW(obs_dtype="int8")


def test_missing_highway_env_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "highway_env", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'powmarl\[highway\]'"):
        powmarl.envs.make("intersection_hw")


def test_copies_step_with_none_active(env):
    """A block of copies whose episodes have all ended steps to no views (a worker's block
    while another worker's episodes run on: variable episode lengths)."""
    vec = HostVectorEnv(make_copies(env, 2))
    vec.reset([0, 1])
    reward, terminated, truncated, info, views = vec.step(np.ones((2, 4), int), np.zeros(2, bool))
    assert views == (None, None, None) and not reward.any() and not (terminated | truncated).any()
    assert set(info) == {"all_arrive", "collision"}


#: a tiny QMIX: 2 episodes an iteration, batches of 2, one evaluation of 2 episodes
TINY = {
    "num_envs": 2, "rnn_hidden_dim": 8, "mixing_embed_dim": 4, "hypernet_embed": 8,
    "batch_size": 2, "buffer_size": 8, "length_buckets": 1, "test_interval": 150,
    "test_nepisode": 2,
}  # fmt: skip


@pytest.mark.slow
def test_trains_on_the_host_path_with_two_workers():
    """Two QMIX iterations of 2 episodes each, stepped in 2 spawned worker processes; the
    arrival and collision rates reach the metrics. Slow: ~50 s of CPU (compiling the
    learner for 101-step episodes, and JAX and highway-env imported in each worker)."""
    result = powmarl.train(
        "qmix", "intersection_hw", seeds=[0], t_max=150, num_workers=2, progress=False, **TINY
    )
    assert result.backend.kind == "host" and result.t_env.min() >= 150
    row = result.metrics[-1]
    for name in ("eval/all_arrive_mean", "eval/collision_mean", "train/collision_mean"):
        assert 0.0 <= row[name] <= 1.0
    assert np.isfinite(row["eval/return_mean"])
