"""The JaxMARL adapter (``powmarl.envs.jaxmarl_adapter``): conformance on MPE simple_spread,
agent dicts to arrays (obs, rewards, padding of unequal agents), masks and world states
where the env has them, terminated vs truncated on a hand-built env, errors, and a short
QMIX run through the registry id.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip(
    "jaxmarl", reason="the jaxmarl env needs jaxmarl (pip install 'powmarl[jaxmarl]')"
)

import jax
import jax.numpy as jnp
from flax import struct
from jaxmarl.environments.multi_agent_env import MultiAgentEnv
from jaxmarl.environments.spaces import Box, Discrete

from powmarl import envs
from powmarl.envs.jaxmarl_adapter import JaxMarlEnv

LIMIT = 6  # short episodes: conformance steps every one un-jitted too


@pytest.fixture(scope="module")
def spread():
    return envs.make("jaxmarl", name="MPE_simple_spread_v3", episode_limit=LIMIT)


def test_registry_and_spec(spread):
    """``jaxmarl`` is listed; simple_spread: 3 agents, 5 actions, obs 18, state = 3 x 18."""
    assert "jaxmarl" in envs.registered()["jaxmarl"].lower()
    assert tuple(spread.spec) == (3, 5, 18, 54, LIMIT)
    assert envs.identity(spread) == (
        "jaxmarl",
        {"name": "MPE_simple_spread_v3", "episode_limit": LIMIT},
    )
    assert envs.make("jaxmarl").spec.episode_limit == 25  # MPE's max_steps by default


def test_conformance(spread):
    envs.check(spread, episodes=1)


def test_seeded_episode_matches_jaxmarl(spread):
    """Obs, team reward (sum of agents' rewards), state (concatenated obs), avail (all) and
    the time limit, step by step against JaxMARL's own dicts from the same keys."""
    raw, agents = spread.env, spread.agents
    params = spread.default_params()
    reset, step = jax.jit(spread.reset), jax.jit(spread.step)
    key = jax.random.key(3)
    key, reset_key = jax.random.split(key)
    ts, state = reset(reset_key, params)
    raw_obs, _ = raw.reset(jax.random.clone(reset_key))
    np.testing.assert_allclose(ts.obs, np.stack([raw_obs[a] for a in agents]), rtol=1e-6)
    for t in range(1, LIMIT + 1):
        key, step_key, act_key = jax.random.split(key, 3)
        actions = jax.random.randint(act_key, (3,), 0, 5)
        named = {a: actions[i] for i, a in enumerate(agents)}
        raw_out = raw.step_env(jax.random.clone(step_key), state.env_state, named)
        ts, state = step(step_key, state, actions, params)
        expected = sum(float(raw_out[2][a]) for a in agents)
        assert float(ts.reward) == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(ts.obs, np.stack([raw_out[0][a] for a in agents]), rtol=1e-5)
        np.testing.assert_array_equal(ts.state, np.asarray(ts.obs).reshape(-1))
        assert bool(ts.avail_actions.all())
        assert not bool(ts.terminated) and bool(ts.truncated) == (t == LIMIT)


def test_unequal_agents_are_padded():
    """speaker_listener: the speaker's 3 obs values and 3 actions are padded to the
    listener's 11 and 5; the padded actions are never available."""
    env = envs.make("jaxmarl", name="MPE_simple_speaker_listener_v4")
    assert env.action_counts == (3, 5) and tuple(env.spec)[:3] == (2, 5, 11)
    ts, _ = env.reset(jax.random.key(0), env.default_params())
    assert ts.avail_actions.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert np.all(np.asarray(ts.obs)[0, 3:] == 0.0)


@struct.dataclass
class CountState:
    count: jax.Array  # [] int32


class Countdown(MultiAgentEnv):
    """Two agents; the episode ends naturally after ``ends_after`` steps; agent_1 may only
    take action 0; rewards are 1 and 3; the world state is the count; info has a scalar."""

    def __init__(self, ends_after: int, max_steps: int = 10):
        super().__init__(num_agents=2)
        self.ends_after, self.max_steps = ends_after, max_steps
        self.action_spaces = {a: Discrete(2) for a in self.agents}

    def reset(self, key):
        del key
        state = CountState(count=jnp.int32(0))
        return self.get_obs(state), state

    def get_obs(self, state):
        return {a: jnp.full((2,), state.count, jnp.float32) + i for i, a in enumerate(self.agents)}

    def step_env(self, key, state, actions):
        state = CountState(count=state.count + 1)
        done = state.count >= self.ends_after
        rewards = {"agent_0": jnp.float32(1.0), "agent_1": jnp.float32(3.0)}
        info = {"count": state.count, "per_agent": jnp.zeros((2,))}
        return (
            self.get_obs(state),
            state,
            rewards,
            {a: done for a in [*self.agents, "__all__"]},
            info,
        )

    def get_avail_actions(self, state):
        return {"agent_0": jnp.array([1, 1]), "agent_1": jnp.array([1, 0])}

    def get_world_state(self, state):
        return jnp.stack([state.count, -state.count]).astype(jnp.float32)


def _episode(env):
    ts, state = env.reset(jax.random.key(0), env.default_params())
    steps = []
    while not (bool(ts.terminated) or bool(ts.truncated)):
        ts, state = env.step(jax.random.key(1), state, jnp.zeros((2,), jnp.int32), {})
        steps.append(ts)
    return steps


def test_natural_end_terminates_time_limit_truncates():
    """A done before the limit terminates; our limit truncates; a done the env raises at
    its own max_steps is its time limit (truncated). Mask, world state, scalar info and the
    mean reward come through."""
    ended = _episode(JaxMarlEnv(Countdown(ends_after=3), episode_limit=5, reward="mean"))
    assert len(ended) == 3 and bool(ended[-1].terminated) and not bool(ended[-1].truncated)
    assert float(ended[0].reward) == 2.0 and set(ended[0].info) == {"count"}
    assert ended[-1].avail_actions.tolist() == [[True, True], [True, False]]
    assert ended[-1].state.tolist() == [3.0, -3.0] and float(ended[-1].info["count"]) == 3.0
    limited = _episode(JaxMarlEnv(Countdown(ends_after=9), episode_limit=4))
    assert len(limited) == 4 and bool(limited[-1].truncated) and not bool(limited[-1].terminated)
    assert float(limited[0].reward) == 4.0
    own_limit = _episode(JaxMarlEnv(Countdown(ends_after=4, max_steps=4)))
    assert len(own_limit) == 4 and bool(own_limit[-1].truncated)
    envs.check(JaxMarlEnv(Countdown(ends_after=3), episode_limit=5), episodes=1)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="name: unknown jaxmarl env 'MPE_nope'"):
        envs.make("jaxmarl", name="MPE_nope")
    with pytest.raises(ValueError, match="reward: must be one of sum, mean"):
        JaxMarlEnv(Countdown(3), reward="max")
    continuous = Countdown(3)
    continuous.action_spaces = {a: Box(0.0, 1.0, (2,)) for a in continuous.agents}
    with pytest.raises(ValueError, match="needs discrete actions"):
        JaxMarlEnv(continuous)
    no_limit = Countdown(3)
    del no_limit.max_steps
    with pytest.raises(ValueError, match="episode_limit: Countdown has no max_steps"):
        JaxMarlEnv(no_limit)


@pytest.mark.slow
def test_qmix_trains_through_the_cli_id(tmp_path):
    """``powmarl train --env jaxmarl --env-arg name=MPE_simple_spread_v3``, one short run.
    Slow (about 45 s CPU, the compile of a training program): the default suite trains one
    JAX adapter, Jumanji's LBF, in tests/test_jumanji.py."""
    from powmarl.cli import main

    run_dir = tmp_path / "spread"
    args = ["train", "--algo", "qmix", "--env", "jaxmarl", "--env-arg", "name=MPE_simple_spread_v3"]
    args += ["--env-arg", f"episode_limit={LIMIT}", "--seeds", "0", "--run-dir", str(run_dir)]
    for setting in ("t_max=48", "batch_size=4", "buffer_size=8", "rnn_hidden_dim=8",
                    "mixing_embed_dim=8", "hypernet_embed=8", "test_interval=48",
                    "test_nepisode=2", "num_envs=2"):  # fmt: skip
        args += ["--set", setting]
    assert main([*args, "--no-progress"]) in (0, None)
    import json

    with open(run_dir / "metrics.jsonl") as lines:
        rows = [json.loads(line) for line in lines]
    assert rows and np.isfinite(rows[-1]["eval/return_mean"])
    assert rows[-1]["train/learner_calls"] >= 1
