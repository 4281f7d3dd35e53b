"""The PettingZoo adapter (``powmarl.envs.from_pettingzoo``, id ``pettingzoo``).

The conventions are checked on a scripted fake ``ParallelEnv`` (agents of different
spaces, masks in the observation and in info, an agent leaving early, time-outs and
natural ends); the real MPE ``simple_spread_v3`` (mpe2) replays a seeded episode, copies
itself for workers, and trains for a few hundred steps.
"""

from __future__ import annotations

import functools
import pickle

import gymnasium.spaces as gs
import numpy as np
import pytest

import powmarl
from powmarl.envs import contract
from powmarl.envs.host import HostVectorEnv
from powmarl.envs.host.pettingzoo import PettingZooEnv, from_pettingzoo

pytestmark = pytest.mark.usefixtures("key_reuse_check")


class FakeParallelEnv:
    """Three scripted agents, ``max_cycles`` steps:

    - ``a``: Box(2) obs, Discrete(3) actions; rewards its action;
    - ``b``: Dict obs {observation: Box(3), action_mask: [1, 0, 1, 1]}, Discrete(4); rewards 10;
    - ``c``: Discrete(3) obs (one-hot), Discrete(3, start=5) actions, its mask in info
      ([0, 1, 1]); rewards 100 and terminates after the first step.

    With ``natural_end`` every agent terminates at step 2 instead of timing out. The state
    is [t] (a ``state_space``) unless ``with_state=False``.
    """

    possible_agents = ("a", "b", "c")

    def __init__(self, max_cycles=3, natural_end=False, with_state=True, action=None):
        self.max_cycles, self.natural_end = max_cycles, natural_end
        self.agents, self.t, self.sent, self.closed = [], 0, [], False
        self._action = action
        if with_state:
            self.state_space = gs.Box(-np.inf, np.inf, (1,))

    def observation_space(self, agent):
        return {
            "a": gs.Box(-1.0, 1.0, (2,)),
            "b": gs.Dict(
                {"observation": gs.Box(-1.0, 1.0, (3,)), "action_mask": gs.MultiBinary(4)}
            ),
            "c": gs.Discrete(3),
        }[agent]

    def action_space(self, agent):
        if self._action is not None and agent == "a":
            return self._action
        return {"a": gs.Discrete(3), "b": gs.Discrete(4), "c": gs.Discrete(3, start=5)}[agent]

    def _obs(self):
        values = {
            "a": np.array([self.t, -self.t], np.float32) / 10,
            "b": {"observation": np.full(3, self.t / 10, np.float32),
                  "action_mask": np.array([1, 0, 1, 1], np.int8)},
            "c": self.t % 3,
        }  # fmt: skip
        return {a: values[a] for a in self.agents}

    def _infos(self):
        return {a: ({"action_mask": np.array([0, 1, 1])} if a == "c" else {}) for a in self.agents}

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs(), self._infos()

    def step(self, actions):
        self.sent.append(dict(actions))
        self.t += 1
        rewards = {"a": float(actions.get("a", 0)), "b": 10.0, "c": 100.0}
        rewards = {a: rewards[a] for a in self.agents}
        ending = self.natural_end and self.t == 2
        terms = {a: ending or a == "c" for a in self.agents}
        truncs = {a: self.t >= self.max_cycles for a in self.agents}
        obs, infos = self._obs(), self._infos()
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos

    def state(self):
        return np.array([self.t], np.float32)

    def close(self):
        self.closed = True


def test_views_map_every_agent_onto_the_array_axis():
    env = from_pettingzoo(FakeParallelEnv())
    assert env.spec == powmarl.types.EnvSpec(3, 4, 3, 1, 3)  # O = max(2, 3, 3), U = 4
    obs, _, avail = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [[0, 0, 0], [0, 0, 0], [1, 0, 0]])  # c: one-hot of 0
    np.testing.assert_array_equal(
        avail,
        [[1, 1, 1, 0], [1, 0, 1, 1], [0, 1, 1, 0]],  # all of a's, b's obs mask, c's info
    )
    reward, terminated, truncated, info = env.step(np.array([2, 3, 1]))
    assert env.pz.sent[0] == {"a": 2, "b": 3, "c": 6}  # c's Discrete starts at 5
    assert (reward, terminated, truncated, info) == (112.0, False, False, {})
    obs, avail = env.get_obs(), env.get_avail_actions()
    np.testing.assert_allclose(obs[:2], [[0.1, -0.1, 0], [0.1, 0.1, 0.1]], rtol=1e-6)
    # c left: zero obs, only the no-op, and no action sent to it any more
    np.testing.assert_array_equal(obs[2], 0)
    np.testing.assert_array_equal(avail[2], [1, 0, 0, 0])
    np.testing.assert_array_equal(env.get_state(), [1])  # env.state()
    env.step(np.array([1, 0, 0]))
    assert env.pz.sent[1] == {"a": 1, "b": 0}


def test_time_out_is_a_truncation_and_a_common_end_a_termination():
    env = from_pettingzoo(FakeParallelEnv(max_cycles=3))
    env.reset(seed=0)
    flags = [env.step(np.zeros(3, int))[1:3] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    # the views after a time-out are those of the agents who played the last step
    assert env.get_obs()[1].sum() > 0 and not env.get_obs()[2].any()

    env = from_pettingzoo(FakeParallelEnv(max_cycles=3, natural_end=True))
    env.reset(seed=0)
    assert [env.step(np.zeros(3, int))[1:3] for _ in range(2)] == [(False, False), (True, False)]

    # powmarl's episode_limit below the env's own limit truncates there
    env = from_pettingzoo(FakeParallelEnv(max_cycles=10), episode_limit=2)
    env.reset(seed=0)
    assert [env.step(np.zeros(3, int))[1:3] for _ in range(2)] == [(False, False), (False, True)]


def test_mean_reward_and_concatenated_state():
    env = from_pettingzoo(FakeParallelEnv(with_state=False), reward="mean")
    assert env.spec.state_dim == 9
    obs, state, _ = env.reset(seed=0)
    np.testing.assert_array_equal(state, obs.reshape(-1))
    assert env.step(np.array([2, 0, 0]))[0] == pytest.approx(112 / 3)
    assert env.step(np.array([1, 0, 0]))[0] == pytest.approx(11 / 2)  # c has left
    np.testing.assert_array_equal(env.get_state(), env.get_obs().reshape(-1))


def test_host_checks_and_copies_from_a_factory():
    factory = functools.partial(FakeParallelEnv, max_cycles=3)
    env = from_pettingzoo(factory, reward="mean")
    powmarl.envs.check(env)
    copy = contract.copy_factory(env)
    assert copy is env.clone and pickle.loads(pickle.dumps(copy))().reward == "mean"
    vec = HostVectorEnv([env, copy()])  # checks each view against the spec
    vec.reset([0, 1])
    for _ in range(3):
        *_, views = vec.step(np.zeros((2, 3), int), np.ones(2, bool))
    assert views[0].shape == (2, 3, 3)
    vec.close()
    assert env.pz.closed
    # a closure does not pickle (mpe2's parallel_env is one): the env object is pickled
    closure = from_pettingzoo(lambda: FakeParallelEnv(max_cycles=2))
    assert closure.clone is None and pickle.loads(pickle.dumps(closure)).spec.episode_limit == 2
    assert pickle.loads(pickle.dumps(contract.copy_factory(closure)))().spec == closure.spec


@pytest.mark.parametrize(
    "space, words",
    [
        (gs.Box(-1.0, 1.0, (2,)), "continuous action space"),
        (gs.MultiDiscrete([2, 2]), "needs a Discrete action space"),
    ],
)
def test_non_discrete_actions_are_refused_with_why(space, words):
    with pytest.raises(ValueError, match=words) as err:
        from_pettingzoo(FakeParallelEnv(action=space))
    assert "agent 'a'" in str(err.value) and "\n" not in str(err.value)
    assert "argmax" in str(err.value) or "one Q-value" in str(err.value)


def test_bad_input_gets_one_line_errors():
    class Aec:
        possible_agents = ("a",)

        def agent_iter(self):
            return iter(())

    with pytest.raises(ValueError, match="AEC env .*aec_to_parallel"):
        from_pettingzoo(Aec())
    with pytest.raises(ValueError, match="reward: must be one of sum, mean"):
        from_pettingzoo(FakeParallelEnv(), reward="max")
    with pytest.raises(ValueError, match=r"noop_action: must be an action every agent has"):
        from_pettingzoo(FakeParallelEnv(), noop_action=3)
    env = FakeParallelEnv()
    del env.max_cycles
    with pytest.raises(ValueError, match="episode_limit: FakeParallelEnv declares none"):
        from_pettingzoo(env)
    with pytest.raises(ImportError, match="cannot import 'no_such_suite.env_v0' .No module"):
        powmarl.envs.make("pettingzoo", env="no_such_suite.env_v0")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        powmarl.envs.make("pettingzoo", env="mpe2.simple_spread_v3:nope")


def test_mpe_simple_spread_replays_a_seeded_episode_and_copies_by_the_registry():
    env = powmarl.envs.make("pettingzoo", env_kwargs={"max_cycles": 4}, reward="mean")
    assert env.spec == powmarl.types.EnvSpec(3, 5, 18, 54, 4)
    assert "pettingzoo" in powmarl.envs.registered()
    copy = pickle.loads(pickle.dumps(contract.copy_factory(env)))()
    assert isinstance(copy, PettingZooEnv) and copy.reward == "mean"
    runs = []
    for e in (env, copy):
        obs, state, avail = e.reset(seed=7)
        steps = [e.step(np.array([1, 2, 3])) for _ in range(4)]
        np.testing.assert_array_equal(e.get_state(), e.pz.state())
        runs.append((obs, state, [s[:3] for s in steps]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][2] == runs[1][2] and runs[0][2][-1][1:] == (False, True)
    assert avail.all()  # MPE has no masks: every action available


#: Tiny training settings shared with test_gymma.py: with the same spec (that of LBF
#: 8x8-2p-2f, 5 steps) both smoke tests compile the same programs (the test session's
#: compilation cache compiles them once).
SMOKE = {"t_max": 100, "rnn_hidden_dim": 8, "mixing_embed_dim": 4, "hypernet_embed": 8}
SMOKE |= {"batch_size": 4, "buffer_size": 16, "test_interval": 50, "test_nepisode": 2}
SMOKE |= {"num_envs": 2, "length_buckets": 1}
SMOKE_SPEC = powmarl.types.EnvSpec(2, 6, 12, 24, 5)


class LbfShaped(FakeParallelEnv):
    """Two agents with LBF 8x8-2p-2f's spaces: Box(12) obs, 6 actions, no state."""

    possible_agents = ("p0", "p1")

    def __init__(self):
        super().__init__(max_cycles=5, with_state=False)

    def observation_space(self, agent):
        return gs.Box(-1.0, 8.0, (12,))

    def action_space(self, agent):
        return gs.Discrete(6)

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return {a: self.rng.integers(0, 8, 12).astype(np.float32) for a in self.agents}, {}

    def step(self, actions):
        self.t += 1
        obs = {a: self.rng.integers(0, 8, 12).astype(np.float32) for a in self.agents}
        rewards = {a: float(actions[a] == 4) for a in self.agents}  # LOAD pays
        done = {a: False for a in self.agents}
        return obs, rewards, done, {a: self.t >= 5 for a in self.agents}, {}


@pytest.mark.xdist_group("host_adapter_smoke")  # one worker: the 2nd compile is cached
def test_training_smoke_on_a_parallel_env(tmp_path):
    """A hundred steps of QMIX on a ParallelEnv, in this process."""
    env = from_pettingzoo(LbfShaped)
    assert env.spec == SMOKE_SPEC
    result = powmarl.train("qmix", env, seeds=[0], num_workers=1, progress=False,
                           run_dir=tmp_path / "run", **SMOKE)  # fmt: skip
    row = result.metrics[-1]
    assert row["t_env"] >= 100 and result.backend.kind == "host"
    assert 0 <= row["eval/return_mean"] <= 10 and row["eval/ep_length_mean"] == 5
