"""Jumanji's LBF and RWARE (``powmarl.envs.jumanji_envs``): EPyMARL task ids, conformance,
a hand-built LBF scene (reward, mask, food count, termination, truncation), seeded RWARE
episodes against Jumanji's own timesteps, and a short QMIX run on ``lbf``.

Slow (``-m slow``): RWARE's conformance check, the side-by-side comparison with the
gymnasium packages (``lbforaging``, ``rware``) under a random policy, whose measured numbers
are in docs/envs/jumanji.md, and QMIX and POW-QMIX learning LBF (docs/results.md).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jumanji", reason="lbf and rware need jumanji (pip install 'powmarl[jumanji]')")

import jax
import jax.numpy as jnp

import powmarl
from powmarl import envs
from powmarl.envs.jumanji_envs import parse_lbf_task, parse_rware_task

LBF_LIMIT = 8
RWARE_LIMIT = 12


@pytest.fixture(scope="module")
def lbf():
    return envs.make("lbf", task="Foraging-8x8-2p-2f-coop", episode_limit=LBF_LIMIT)


@pytest.fixture(scope="module")
def rware():
    return envs.make("rware", task="rware-tiny-2ag", episode_limit=RWARE_LIMIT)


# --------------------------------------------------------------------------- task ids


@pytest.mark.parametrize(
    "task, expected",
    [
        ("Foraging-8x8-2p-2f-coop", (8, 2, 2, 8, True, 0.0)),
        ("lbforaging:Foraging-2s-10x10-3p-3f-v3", (10, 3, 3, 2, False, 0.0)),
        ("Foraging-15x15-4p-5f-pen", (15, 4, 5, 15, False, 0.1)),
    ],
)
def test_lbf_task_ids(task, expected):
    keys = ("grid_size", "num_agents", "num_food", "sight", "force_coop", "penalty")
    assert tuple(parse_lbf_task(task)[k] for k in keys) == expected


@pytest.mark.parametrize(
    "task, expected",
    [
        ("rware-tiny-2ag", (1, 3, 2, 2)),
        ("rware:rware-small-4ag-hard-v2", (2, 3, 4, 2)),
        ("rware-medium-6ag-easy", (2, 5, 6, 12)),
        ("rware-large-2ag-hard", (3, 5, 2, 1)),
    ],
)
def test_rware_task_ids(task, expected):
    keys = ("shelf_rows", "shelf_columns", "num_agents", "request_queue_size")
    assert tuple(parse_rware_task(task)[k] for k in keys) == expected


def test_specs_and_errors(lbf, rware):
    """Sizes as Jumanji builds them; explicit arguments override the task; bad ones name
    the field."""
    assert tuple(lbf.spec) == (2, 6, 12, 24, LBF_LIMIT)
    assert tuple(rware.spec) == (2, 5, 66, 132, RWARE_LIMIT)
    assert envs.make("lbf", num_food=3).settings["num_food"] == 3
    with pytest.raises(ValueError, match="task: 'Foraging-8x8' is not an LBF task id"):
        envs.make("lbf", task="Foraging-8x8")
    with pytest.raises(ValueError, match="not supported on Jumanji's LBF"):
        envs.make("lbf", task="Foraging-grid-8x8-2p-2f")
    with pytest.raises(ValueError, match="num_food: 9 food items do not fit a 8x8 grid"):
        envs.make("lbf", num_food=9)
    with pytest.raises(ValueError, match="shelf_columns: must be odd"):
        envs.make("rware", shelf_columns=4)
    with pytest.raises(ValueError, match="episode_limit: must be an integer >= 1"):
        envs.make("rware", episode_limit=0)


def test_conformance(lbf):
    envs.check(lbf, episodes=1)


@pytest.mark.slow
def test_conformance_rware(rware):
    """Slow: RWARE's step compiles three times here (jitted, eagerly, vmapped), the costliest
    compile of these tests; the seeded RWARE test below runs in the default suite."""
    envs.check(rware, episodes=1)


# --------------------------------------------------------------------------- LBF scene


def _lbf_state(agent_pos, food_pos, food_eaten, step_count=0):
    """Jumanji LBF state: level-1 agents, level-2 foods (so both agents must load)."""
    from jumanji.environments.routing.lbf.types import Agent, Food, State

    agents = Agent(
        id=jnp.arange(2),
        position=jnp.asarray(agent_pos, jnp.int32),
        level=jnp.ones((2,), jnp.int32),
        loading=jnp.zeros((2,), bool),
    )
    food = Food(
        id=jnp.arange(2),
        position=jnp.asarray(food_pos, jnp.int32),
        level=jnp.full((2,), 2, jnp.int32),
        eaten=jnp.asarray(food_eaten),
    )
    return State(agents=agents, food_items=food, step_count=jnp.int32(step_count),
                 key=jax.random.key(0))  # fmt: skip


def test_lbf_scene_reward_mask_and_end(lbf):
    """Food (3,3) between agents (3,2) and (3,4): one loader alone earns nothing; both
    together eat it, each earning level * food / (levels * total food) = 1*2/(2*4), team
    0.5; the last food terminates; the limit truncates."""
    step = jax.jit(lbf.step)
    params = lbf.default_params()
    key = jax.random.key(1)
    state = _lbf_state([[3, 2], [3, 4]], [[3, 3], [6, 6]], [False, False])
    ts, state = step(key, state, jnp.array([5, 0]), params)
    assert float(ts.reward) == 0.0 and float(ts.info["food_eaten"]) == 0.0
    # agent 0: right is the food (masked), load is available; order none,N,S,W,E,load
    assert ts.avail_actions[0].tolist() == [True, True, True, True, False, True]
    ts, state = step(key, state, jnp.array([5, 5]), params)
    assert float(ts.reward) == pytest.approx(0.5) and float(ts.info["food_eaten"]) == 1.0
    assert ts.avail_actions[0].tolist() == [True, True, True, True, True, False]
    assert not bool(ts.terminated) and not bool(ts.truncated)
    np.testing.assert_array_equal(ts.state, np.asarray(ts.obs).reshape(-1))
    last = _lbf_state([[6, 5], [5, 6]], [[3, 3], [6, 6]], [True, False])
    ts, _ = step(key, last, jnp.array([5, 5]), params)
    assert bool(ts.terminated) and not bool(ts.truncated) and float(ts.reward) == 0.5
    late = _lbf_state([[0, 0], [7, 7]], [[3, 3], [6, 6]], [False, False], LBF_LIMIT - 1)
    ts, _ = step(key, late, jnp.array([0, 0]), params)
    assert bool(ts.truncated) and not bool(ts.terminated)


def test_lbf_all_actions():
    """all_actions=True offers every action (EPyMARL's gymma); the move Jumanji masks
    (agent 0 right into the food) leaves the agent in place, as lbforaging's no-op does."""
    env = envs.make("lbf", task="Foraging-8x8-2p-2f-coop", all_actions=True)
    state = _lbf_state([[3, 2], [3, 4]], [[3, 3], [6, 6]], [False, False])
    ts, new_state = jax.jit(env.step)(jax.random.key(1), state, jnp.array([4, 0]), {})
    assert np.asarray(ts.avail_actions).all() and float(ts.reward) == 0.0
    np.testing.assert_array_equal(new_state.agents.position, state.agents.position)
    with pytest.raises(ValueError, match="all_actions"):
        envs.make("lbf", all_actions="yes")


# --------------------------------------------------------------------------- RWARE


def test_rware_seeded_episode_matches_jumanji(rware):
    """Random available actions for a whole episode: obs, mask and reward are Jumanji's;
    the state is the obs concatenated; deliveries = reward; a collision terminates;
    otherwise the limit truncates."""
    # eager: the adapter's step runs Jumanji's step compiled once (rware._step), so the
    # reference and the adapter share one compile
    raw_step, step = rware._step, rware.step
    params = rware.default_params()
    key = jax.random.key(5)
    key, reset_key = jax.random.split(key)
    ts, state = rware.reset(reset_key, params)
    for t in range(1, RWARE_LIMIT + 1):
        key, act_key = jax.random.split(key)
        noise = jax.random.uniform(act_key, ts.avail_actions.shape)
        actions = jnp.argmax(jnp.where(ts.avail_actions, noise, -1.0), axis=-1)
        _, raw_ts = raw_step(state, actions)
        ts, state = step(key, state, actions, params)
        np.testing.assert_array_equal(ts.obs, raw_ts.observation.agents_view)
        np.testing.assert_array_equal(ts.avail_actions, raw_ts.observation.action_mask)
        np.testing.assert_array_equal(ts.state, np.asarray(ts.obs).reshape(-1))
        assert float(ts.reward) == float(raw_ts.reward) == float(ts.info["deliveries"])
        assert bool(ts.terminated) == bool(ts.info["collision"])
        if bool(ts.terminated):
            break
        assert bool(ts.truncated) == (t == RWARE_LIMIT)


# --------------------------------------------------------------------------- training


def test_qmix_trains_on_lbf(lbf):
    """One short compiled run of QMIX on the registry env: finite metrics, food counted."""
    result = powmarl.train(
        "qmix", lbf, seeds=[0], t_max=2 * LBF_LIMIT * 2, progress=False,
        rnn_hidden_dim=8, mixing_embed_dim=8, hypernet_embed=8, batch_size=4,
        buffer_size=8, num_envs=2, test_interval=2 * LBF_LIMIT * 2, test_nepisode=2,
    )  # fmt: skip
    row = result.metrics[-1]
    for name in ("eval/return_mean", "eval/food_eaten_mean", "train/loss"):
        assert np.isfinite(row[name]), name
    assert row["train/learner_calls"] >= 1


# --------------------------------------------------------------------------- side by side

#: (powmarl task, gymnasium id, episodes) compared under the uniform random policy
SIDE_BY_SIDE = [
    ("lbf", "Foraging-8x8-2p-2f-coop", "lbforaging:Foraging-8x8-2p-2f-coop-v3", 2000),
    ("lbf", "Foraging-8x8-2p-3f", "lbforaging:Foraging-8x8-2p-3f-v3", 2000),
    ("rware", "rware-tiny-2ag", "rware:rware-tiny-2ag-v2", 100),
]


def jax_random_stats(env, episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-episode return, length and deliveries (food eaten / shelves delivered) of
    ``episodes`` episodes on a powmarl JAX env under the uniform policy over ALL actions
    (the policy of the gymnasium side, where every action is allowed; an action Jumanji's
    mask forbids is a no-op there as in the gymnasium packages)."""
    info_key = "food_eaten" if "food_eaten" in env.info_keys else "deliveries"
    params, spec = env.default_params(), env.spec

    def play(key):
        reset_key, key = jax.random.split(key)
        ts, state = env.reset(reset_key, params)

        def body(carry, key):
            ts, state, alive, total = carry
            act_key, step_key = jax.random.split(key)
            actions = jax.random.randint(act_key, (spec.num_agents,), 0, spec.num_actions)
            ts, state = env.step(step_key, state, actions, params)
            got = jnp.stack([ts.reward, 1.0, ts.info[info_key]]) * alive
            alive = alive & ~(ts.terminated | ts.truncated)
            return (ts, state, alive, total + got), None

        keys = jax.random.split(key, spec.episode_limit)
        carry = (ts, state, jnp.bool_(True), jnp.zeros(3))
        (_, _, _, total), _ = jax.lax.scan(body, carry, keys)
        return total

    keys = jax.random.split(jax.random.key(seed), episodes)
    totals = np.asarray(jax.jit(jax.vmap(play))(keys))
    return {"return": totals[:, 0], "length": totals[:, 1], "deliveries": totals[:, 2]}


def gym_random_stats(gym_id: str, episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The same statistics on the gymnasium package, as EPyMARL's gymma runs it: the team
    reward is the sum of the agents' rewards, the episode ends when the env says done or
    at its registered limit."""
    import gymnasium

    env = gymnasium.make(gym_id, disable_env_checker=True)
    rng = np.random.default_rng(seed)
    counts = [space.n for space in env.action_space]
    out = {"return": [], "length": [], "deliveries": []}
    for e in range(episodes):
        env.reset(seed=seed * 100_000 + e)
        food_before = np.count_nonzero(getattr(env.unwrapped, "field", np.zeros(1)))
        total, length, done = 0.0, 0, False
        while not done:
            actions = [int(rng.integers(n)) for n in counts]
            _, rewards, terminated, truncated, _ = env.step(actions)
            total, length = total + float(np.sum(rewards)), length + 1
            done = terminated or truncated
        food_after = np.count_nonzero(getattr(env.unwrapped, "field", np.zeros(1)))
        deliveries = food_before - food_after if "Foraging" in gym_id else total
        for name, value in (("return", total), ("length", length), ("deliveries", deliveries)):
            out[name].append(value)
    env.close()
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Means within 4 standard errors of their difference (plus a small absolute slack)."""
    se = np.sqrt(a.var() / a.size + b.var() / b.size)
    return abs(a.mean() - b.mean()) <= 4 * se + 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("env_id, task, gym_id, episodes", SIDE_BY_SIDE)
def test_side_by_side_with_gymnasium(env_id, task, gym_id, episodes):
    """Random-policy return, length and deliveries on Jumanji and on the gymnasium package
    (docs/envs/jumanji.md, "Side by side", has the measured numbers). LBF agrees on all
    three; RWARE on deliveries (none for either), not on length: Jumanji ends an episode at
    a collision, rware never does."""
    pytest.importorskip(gym_id.split(":")[0], reason=f"the comparison needs {gym_id.split(':')[0]}")
    ours = jax_random_stats(envs.make(env_id, task=task), episodes)
    theirs = gym_random_stats(gym_id, episodes)
    for name in ("return", "length", "deliveries"):
        print(f"{task} {name}: jumanji {ours[name].mean():.4f} +- {ours[name].std():.4f}, "
              f"gymnasium {theirs[name].mean():.4f} +- {theirs[name].std():.4f}")  # fmt: skip
    names = ("return", "deliveries") if env_id == "rware" else ("return", "length", "deliveries")
    for name in names:
        assert _agree(ours[name], theirs[name]), name


# --------------------------------------------------------------------------- learning (slow)

#: EPyMARL's QMIX settings where powmarl has them (docs/envs/gymma.md): Adam 5e-4, batch 32,
#: epsilon over 50k steps, one-step targets, target copies every 200 episodes, standardised
#: rewards; the runs of docs/results.md ("Bring-your-own environments") used these
EPYMARL_QMIX = {"lr": 5e-4, "batch_size": 32, "epsilon_anneal_time": 50_000, "td_lambda": 0.0,
                "standardise_rewards": True, "target_update_interval": 200,
                "test_interval": 25_000, "test_nepisode": 32}  # fmt: skip
#: a uniform random policy's mean return on Foraging-8x8-2p-2f-coop (docs/envs/jumanji.md: 0.005)
LBF_RANDOM_RETURN = 0.005


@pytest.mark.slow
@pytest.mark.parametrize(
    "algo, t_max, margin",
    [
        # the 1M-step runs of docs/results.md at the evaluations around t_max: POW-QMIX
        # 0.33-0.78 at 286-312k steps, QMIX 0.13-0.38 at 576-609k; this test's QMIX run,
        # by hand on 2026-12-02: 0.344, 0.172, 0.078 (QMIX's seeds spread widely)
        ("pow_qmix", 300_000, 0.25),
        ("qmix", 600_000, 0.05),
    ],
)
def test_learns_lbf_coop(algo, t_max, margin):
    """Every one of 3 seeds' final greedy return is ``margin`` above a random policy's on
    Jumanji's Foraging-8x8-2p-2f-coop (the task's own 50-step limit)."""
    env = envs.make("lbf", task="Foraging-8x8-2p-2f-coop")
    result = powmarl.train(algo, env, seeds=[0, 1, 2], t_max=t_max, progress=False,
                           **EPYMARL_QMIX)  # fmt: skip
    final = np.asarray(result.final_eval_return)
    assert (final > LBF_RANDOM_RETURN + margin).all(), final
