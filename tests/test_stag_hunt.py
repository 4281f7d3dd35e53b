"""Predator-prey with mis-capture punishment (``powmarl.envs.stag_hunt``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from powmarl.envs import check, make
from powmarl.envs.stag_hunt import (
    CATCH,
    DOWN,
    LEFT,
    RIGHT,
    STAY,
    UP,
    StagHunt,
    StagHuntState,
)

P = -2.0  # the WQMIX pred_prey_punish value
ENV = StagHunt(num_agents=3, num_stags=2)  # 10x10 grid, small cast for hand-built scenes
PARAMS = ENV.default_params().replace(punishment=jnp.float32(P))


def scene(env, agents, stags, frozen=(), dead=(), time=0) -> StagHuntState:
    """A state with agents/stags at the given (row, col) cells."""
    return StagHuntState(
        agent_pos=jnp.asarray(agents, jnp.int32).reshape(-1, 2),
        frozen=jnp.asarray([i in frozen for i in range(len(agents))]),
        stag_pos=jnp.asarray(stags, jnp.int32).reshape(-1, 2),
        stag_alive=jnp.asarray([i not in dead for i in range(len(stags))]),
        time=jnp.asarray(time, jnp.int32),
    )


@functools.cache
def jitted(env):
    return jax.jit(env.reset), jax.jit(env.step), jax.jit(env._timestep)


def step(state, actions, env=ENV, params=PARAMS, seed=0):
    return jitted(env)[1](jax.random.key(seed), state, jnp.asarray(actions, jnp.int32), params)


def view(state, env=ENV):
    zero = jnp.zeros((), jnp.float32)
    no = jnp.zeros((), bool)
    return jitted(env)[2](state, zero, no, no, {})


def obs_index(d_row, d_col, channel):
    return ((d_row + 2) * 5 + (d_col + 2)) * 3 + channel


def test_spec_flags_and_params():
    """The default env has the POW sizes, flags and float32 params."""
    env = StagHunt()
    assert env.spec == (8, 6, 75, 300, 200)
    assert env.obs_last_action and not env.obs_agent_id
    params = env.default_params()
    assert params.punishment.dtype == jnp.float32 and float(params.punishment) == 0.0
    assert float(params.reward_stag) == 10.0
    assert float(StagHunt(punishment=-0.5).default_params().punishment) == -0.5
    assert isinstance(make("stag_hunt", punishment=-1.0), StagHunt)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"grid_size": 2}, "grid_size"),
        ({"num_agents": 1}, "num_agents"),
        ({"num_stags": 0}, "num_stags"),
        ({"episode_limit": 0}, "episode_limit"),
        ({"grid_size": 3, "num_agents": 5, "num_stags": 5}, "num_agents + num_stags"),
        ({"punishment": float("nan")}, "punishment"),
        ({"punishment": "low"}, "punishment"),
        ({"num_agents": 2.5}, "num_agents"),
    ],
)
def test_invalid_arguments(kwargs, field):
    """Bad constructor arguments raise a ValueError naming the field."""
    with pytest.raises(ValueError, match=field.replace("+", r"\+")):
        StagHunt(**kwargs)


def test_reset_places_on_distinct_cells():
    """Reset puts every agent and stag on its own in-grid cell, nothing frozen or dead."""
    env = StagHunt()
    keys = jax.random.split(jax.random.key(3), 64)
    ts, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, env.default_params())
    pos = np.concatenate([np.asarray(state.agent_pos), np.asarray(state.stag_pos)], axis=1)
    assert pos.min() >= 0 and pos.max() < 10
    cells = pos[..., 0] * 10 + pos[..., 1]
    assert all(len(set(row)) == 16 for row in cells.tolist())
    assert len({tuple(row) for row in cells.tolist()}) == 64  # different keys, different scenes
    assert not state.frozen.any() and state.stag_alive.all() and (state.time == 0).all()
    assert ts.obs.dtype == jnp.uint8 and ts.state.dtype == jnp.uint8
    assert (ts.state.reshape(64, 10, 10, 3).sum((1, 2)) == np.array([8, 8, 0])).all()
    assert (ts.reward == 0).all() and not ts.terminated.any() and not ts.truncated.any()
    assert set(ts.info) == {"stags_captured", "miscaptures"}


def test_pair_catch_captures_freezes_and_removes():
    """Two adjacent catchers capture a stag: +10, stag gone, both frozen and off the grid."""
    state = scene(ENV, [(4, 4), (4, 6), (8, 8)], [(4, 5), (0, 0)])
    ts, new = step(state, [CATCH, CATCH, STAY])
    assert float(ts.reward) == 10.0
    assert float(ts.info["stags_captured"]) == 1.0 and float(ts.info["miscaptures"]) == 0.0
    assert new.stag_alive.tolist() == [False, True]
    assert new.frozen.tolist() == [True, True, False]
    grid = np.asarray(ts.state).reshape(10, 10, 3)
    assert grid[4, 4, 0] == grid[4, 6, 0] == grid[4, 5, 1] == 0
    assert grid[8, 8, 0] == 1 and grid[:, :, 0].sum() == 1 and grid[:, :, 1].sum() == 1
    assert not np.asarray(ts.obs[:2]).any()
    assert ts.obs[2, obs_index(0, 0, 0)] == 1
    assert ts.avail_actions[:2].tolist() == [[False] * 4 + [True, False]] * 2
    assert not bool(ts.terminated) and not bool(ts.truncated)


def test_lone_catch_is_punished():
    """A single catcher earns the punishment p and freezes nobody."""
    state = scene(ENV, [(4, 4), (7, 7), (8, 8)], [(4, 5), (0, 0)])
    ts, new = step(state, [CATCH, STAY, STAY])
    assert float(ts.reward) == P
    assert float(ts.info["miscaptures"]) == 1.0 and float(ts.info["stags_captured"]) == 0.0
    assert new.stag_alive.all() and not new.frozen.any()
    ts, _ = step(state, [CATCH, STAY, STAY], params=PARAMS.replace(punishment=jnp.float32(-0.25)))
    assert float(ts.reward) == -0.25


def test_punishment_once_per_stag():
    """A lone catcher next to two stags is punished once for each of them."""
    state = scene(ENV, [(4, 5), (8, 8), (9, 9)], [(4, 4), (4, 6)])
    ts, _ = step(state, [CATCH, STAY, STAY])
    assert float(ts.reward) == 2 * P and float(ts.info["miscaptures"]) == 2.0


def test_frozen_catcher_counts_only_once():
    """Stags are resolved in turn: a catcher frozen by the first capture no longer counts."""
    # agent 0 touches both stags; agents 1 and 2 touch one stag each
    state = scene(ENV, [(4, 5), (5, 4), (5, 6)], [(4, 4), (4, 6)])
    for seed in range(6):
        ts, new = step(state, [CATCH, CATCH, CATCH], seed=seed)
        assert float(ts.reward) == 10.0 + P
        assert float(ts.info["stags_captured"]) == 1.0 and float(ts.info["miscaptures"]) == 1.0
        assert int(new.stag_alive.sum()) == 1 and int(new.frozen.sum()) == 2 and new.frozen[0]


def test_catch_needs_a_four_adjacent_stag():
    """Catch is available only with a live stag in one of the four neighbouring cells."""
    diagonal = view(scene(ENV, [(4, 4), (8, 8), (0, 9)], [(5, 5), (0, 0)]))
    assert not diagonal.avail_actions[:, CATCH].any()
    beside = view(scene(ENV, [(4, 4), (8, 8), (0, 9)], [(5, 4), (0, 0)]))
    assert beside.avail_actions[:, CATCH].tolist() == [True, False, False]
    dead = view(scene(ENV, [(4, 4), (8, 8), (0, 9)], [(5, 4), (0, 0)], dead=(0,)))
    assert not dead.avail_actions[:, CATCH].any()


def test_wall_moves_unavailable():
    """Moves off the grid are unavailable; moves onto occupied cells and stay are available."""
    ts = view(scene(ENV, [(0, 0), (9, 9), (0, 1)], [(5, 5), (1, 0)]))
    avail = np.asarray(ts.avail_actions)
    assert avail[0, [RIGHT, DOWN, LEFT, UP, STAY]].tolist() == [True, True, False, False, True]
    assert avail[1, [RIGHT, DOWN, LEFT, UP, STAY]].tolist() == [False, False, True, True, True]
    assert avail[2, [RIGHT, DOWN, LEFT, UP, STAY]].tolist() == [True, True, True, False, True]
    assert avail[0, CATCH] and not avail[1, CATCH]


def test_frozen_agent_only_stays():
    """A frozen agent may only stay, does not move, is invisible and sees nothing."""
    state = scene(ENV, [(4, 4), (4, 3), (8, 8)], [(0, 0), (9, 0)], frozen=(0,))
    ts, new = step(state, [RIGHT, STAY, STAY])
    assert ts.avail_actions[0].tolist() == [False] * 4 + [True, False]
    assert new.agent_pos[0].tolist() == [4, 4]
    assert not np.asarray(ts.obs[0]).any()
    assert ts.obs[1, obs_index(0, 1, 0)] == 0  # agent 1 does not see the frozen agent
    assert np.asarray(ts.state).reshape(10, 10, 3)[4, 4, 0] == 0


def test_blocked_moves_leave_agent_in_place():
    """A move into another agent, a stag or the wall fails; a free move succeeds."""
    state = scene(ENV, [(0, 0), (0, 1), (5, 5)], [(1, 1), (9, 9)])
    for seed in range(4):
        _, new = step(state, [RIGHT, DOWN, UP], seed=seed)
        assert new.agent_pos.tolist() == [[0, 0], [0, 1], [4, 5]]
    _, new = step(state, [UP, STAY, STAY])
    assert new.agent_pos[0].tolist() == [0, 0]


def test_moves_follow_reference_directions():
    """right=(0,+1), down=(+1,0), left=(0,-1), up=(-1,0) in (row, col)."""
    for action, target in [(RIGHT, [5, 6]), (DOWN, [6, 5]), (LEFT, [5, 4]), (UP, [4, 5])]:
        _, new = step(scene(ENV, [(5, 5), (0, 9), (9, 0)], [(0, 0), (9, 9)]), [action, 4, 4])
        assert new.agent_pos[0].tolist() == target


def test_stag_moves_to_a_free_neighbour():
    """An uncaptured stag moves to a free neighbour, or stays when boxed in."""
    corner = scene(ENV, [(0, 1), (5, 5), (9, 9)], [(0, 0), (7, 0)], dead=(1,))
    boxed = scene(ENV, [(0, 1), (1, 0), (9, 9)], [(0, 0), (7, 0)], dead=(1,))
    for seed in range(5):
        _, new = step(corner, [STAY] * 3, seed=seed)
        assert new.stag_pos[0].tolist() == [1, 0]
        _, new = step(boxed, [STAY] * 3, seed=seed)
        assert new.stag_pos[0].tolist() == [0, 0]
    moved = {
        tuple(
            step(scene(ENV, [(0, 9), (9, 0), (9, 9)], [(5, 5), (0, 0)]), [STAY] * 3, seed=s)[1]
            .stag_pos[0]
            .tolist()
        )
        for s in range(40)
    }
    assert moved == {(5, 6), (6, 5), (5, 4), (4, 5)}


def test_punished_stag_still_moves():
    """A lone-catch stag is not captured and then moves as usual."""
    state = scene(ENV, [(0, 1), (5, 5), (9, 9)], [(0, 0), (7, 0)], dead=(1,))
    ts, new = step(state, [CATCH, STAY, STAY])
    assert float(ts.reward) == P and new.stag_pos[0].tolist() == [1, 0]


def test_terminates_when_all_stags_captured():
    """Capturing the last live stag terminates the episode (not truncated)."""
    state = scene(ENV, [(4, 4), (4, 6), (8, 8)], [(4, 5), (0, 0)], dead=(1,))
    ts, new = step(state, [CATCH, CATCH, STAY])
    assert bool(ts.terminated) and not bool(ts.truncated) and float(ts.reward) == 10.0
    ts, _ = step(new, [STAY] * 3)  # stepping past the end does not crash
    assert bool(ts.terminated) and float(ts.reward) == 0.0


def test_terminates_when_all_agents_frozen():
    """Freezing the last active agents terminates the episode."""
    state = scene(ENV, [(4, 4), (4, 6), (8, 8)], [(4, 5), (0, 0)], frozen=(2,))
    ts, _ = step(state, [CATCH, CATCH, STAY])
    assert bool(ts.terminated) and not bool(ts.truncated)


def test_truncates_at_episode_limit():
    """Reaching episode_limit without a natural end truncates, without terminating."""
    env = StagHunt(num_agents=3, num_stags=2, episode_limit=3)
    state = scene(env, [(0, 9), (9, 0), (9, 9)], [(5, 5), (0, 0)])
    for t in range(1, 4):
        ts, state = step(state, [STAY] * 3, env=env, seed=t)
        assert bool(ts.truncated) == (t == 3) and not bool(ts.terminated)
    ending = scene(env, [(4, 4), (4, 6), (8, 8)], [(4, 5), (0, 0)], dead=(1,), time=2)
    ts, _ = step(ending, [CATCH, CATCH, STAY], env=env)
    assert bool(ts.terminated) and not bool(ts.truncated)


def test_observation_layout():
    """Window [row offset][col offset][channel], self at the centre, off-grid cells zero."""
    state = scene(ENV, [(5, 5), (7, 3), (8, 5)], [(4, 7), (0, 0)])
    ts = view(state)
    obs = np.asarray(ts.obs)
    assert obs.dtype == np.uint8 and obs.shape == (3, 75)
    expected = np.zeros(75, np.uint8)
    expected[[obs_index(0, 0, 0), obs_index(2, -2, 0), obs_index(-1, 2, 1)]] = 1
    np.testing.assert_array_equal(obs[0], expected)  # agent 2 at (+3, 0) is out of view
    window = obs[1].reshape(5, 5, 3)
    assert window[0, 4, 0] == window[3, 4, 0] == window[2, 2, 0] == 1 and window.sum() == 3
    corner = view(scene(ENV, [(0, 0), (1, 2), (9, 9)], [(2, 0), (9, 5)]))
    window = np.asarray(corner.obs[0]).reshape(5, 5, 3)
    assert not window[:2].any() and not window[:, :2].any()  # above / left of the grid
    assert window[2, 2, 0] == 1 and window[3, 4, 0] == 1 and window[4, 2, 1] == 1
    assert window.sum() == 3
    grid = np.asarray(ts.state).reshape(10, 10, 3)
    assert ts.state.dtype == jnp.uint8 and grid[4, 7, 1] == 1 and grid[7, 3, 0] == 1
    assert grid.sum() == 5 and not grid[..., 2].any()


def test_jit_vmap_determinism():
    """Jitted, vmapped reset/step run, and the same keys give the same result."""
    env = StagHunt()
    params = env.default_params()
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    vstep = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    keys = jax.random.split(jax.random.key(0), 4)
    _, state = reset(keys, params)
    actions = jnp.full((4, 8), STAY, jnp.int32)
    a, sa = vstep(keys, state, actions, params)
    b, sb = vstep(keys, state, actions, params)
    assert a.obs.shape == (4, 8, 75) and a.state.shape == (4, 300)
    for x, y in zip(jax.tree.leaves((a, sa)), jax.tree.leaves((b, sb))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    single, _ = env.step(keys[1], jax.tree.map(lambda x: x[1], state), actions[1], params)
    np.testing.assert_array_equal(np.asarray(single.obs), np.asarray(a.obs[1]))


def test_random_episodes_keep_invariants():
    """Random play: one entity per cell, reward = 10*captures + p*miscaptures, ends by 200."""
    env = StagHunt()
    params = env.default_params().replace(punishment=jnp.float32(P))

    def run(key):
        reset_key, key = jax.random.split(key)
        ts, state = env.reset(reset_key, params)

        def body(carry, k):
            ts, state = carry
            act_key, step_key = jax.random.split(k)
            logits = jnp.where(ts.avail_actions, jnp.float32(0.0), -jnp.inf)
            logits = logits.at[:, CATCH].add(jnp.where(ts.avail_actions[:, CATCH], 3.0, 0.0))
            actions = jax.random.categorical(act_key, logits)
            new_ts, new_state = env.step(step_key, state, actions, params)
            legal = jnp.all(jnp.take_along_axis(ts.avail_actions, actions[:, None], 1))
            return (new_ts, new_state), (new_ts, new_state, legal)

        return jax.lax.scan(body, (ts, state), jax.random.split(key, 200))[1]

    ts, states, legal = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(7), 8))
    assert legal.all()
    np.testing.assert_allclose(
        ts.reward, 10.0 * ts.info["stags_captured"] + P * ts.info["miscaptures"]
    )
    grid = np.asarray(ts.state, np.int64).reshape(8, 200, 10, 10, 3)
    active = (~np.asarray(states.frozen)).sum(-1)
    alive = np.asarray(states.stag_alive).sum(-1)
    assert (grid[..., 0].sum((2, 3)) == active).all() and (grid[..., 1].sum((2, 3)) == alive).all()
    assert grid.sum(-1).max() <= 1  # no two entities share a cell
    assert (np.asarray(ts.avail_actions).any(-1)).all()
    done = np.asarray(ts.terminated | ts.truncated)
    assert done[:, -1].all() and not (np.asarray(ts.terminated & ts.truncated)).any()
    assert (np.asarray(ts.truncated)[:, :-1] == 0).all()
    assert np.asarray(ts.info["stags_captured"]).sum() > 0
    assert np.asarray(ts.info["miscaptures"]).sum() > 0


def test_conformance():
    """The env passes the library's conformance checker."""
    check(StagHunt(episode_limit=6))
