"""The gymma adapter: gymnasium multi-agent envs with EPyMARL's conventions (id ``gymma``).

The conventions are checked on a scripted fake env registered with gymnasium (agents of
different spaces, per-agent rewards, an env step limit reported as done, as LBF and RWARE
do); real LBF and RWARE replay seeded episodes, and QMIX trains on LBF from the CLI with
two spawned worker processes.
"""

from __future__ import annotations

import json
import pickle

import gymnasium
import gymnasium.spaces as gs
import numpy as np
import pytest
from test_pettingzoo import SMOKE, SMOKE_SPEC

import powmarl
from powmarl.envs import contract
from powmarl.envs.host import HostVectorEnv
from powmarl.envs.host.gymma import GymmaEnv

pytestmark = pytest.mark.usefixtures("key_reuse_check")

FAKE = "PowmarlFakeMultiAgent-v0"


class FakeMultiAgent(gymnasium.Env):
    """Two agents: Box(2) / Box(3) obs, Discrete(3) / Discrete(5) actions; agent 0 is
    rewarded its action, agent 1 ten; done at step ``done_at`` (as a list when
    ``done_list``), or at the env's own ``max_steps`` like LBF."""

    def __init__(self, done_at=None, max_steps=4, done_list=False, action=None):
        self.n_agents = 2
        self.observation_space = gs.Tuple((gs.Box(-9, 9, (2,)), gs.Box(-9, 9, (3,))))
        self.action_space = gs.Tuple((action or gs.Discrete(3), gs.Discrete(5)))
        self.done_at, self.max_steps, self.done_list = done_at, max_steps, done_list
        self.t, self.sent = 0, []

    def _obs(self):
        return (np.array([self.t, self.seed_], np.float32), np.full(3, -self.t, np.float32))

    def reset(self, seed=None, options=None):
        self.t, self.seed_ = 0, -1 if seed is None else seed % 7
        return self._obs(), {}

    def step(self, actions):
        self.sent.append(list(actions))
        self.t += 1
        done = self.t == self.done_at or self.t >= self.max_steps
        done = [done, done] if self.done_list else done
        return self._obs(), [float(actions[0]), 10.0], done, False, {}


if FAKE not in gymnasium.registry:
    gymnasium.register(FAKE, entry_point=FakeMultiAgent)


def _flags(env, steps):
    env.reset(seed=0)
    return [env.step(np.array([1, 0]))[1:3] for _ in range(steps)]


def test_views_are_padded_and_rewards_summed():
    env = powmarl.envs.make("gymma", key=FAKE, time_limit=4)
    assert env.spec == powmarl.types.EnvSpec(2, 5, 3, 6, 4)
    obs, state, avail = env.reset(seed=3)
    np.testing.assert_array_equal(obs, [[0, 3, 0], [0, 0, 0]])  # agent 0 padded with a zero
    np.testing.assert_array_equal(state, obs.reshape(-1))  # EPyMARL's state: the obs, joined
    np.testing.assert_array_equal(avail, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert env.step(np.array([2, 4])) == (12.0, False, False, {})
    assert env.gym_env.unwrapped.sent == [[2, 4]]
    np.testing.assert_array_equal(env.get_obs(), [[1, 3, 0], [-1, -1, -1]])
    mean = powmarl.envs.make("gymma", key=FAKE, time_limit=4, reward="mean")
    mean.reset(seed=0)
    assert mean.step(np.array([2, 0]))[0] == 6.0


def test_time_limit_is_a_truncation_and_an_earlier_done_a_termination():
    # the env's own step limit (done) at the time limit: a time-out, as the time limit says
    assert _flags(powmarl.envs.make("gymma", key=FAKE, time_limit=4), 4)[-2:] == [
        (False, False), (False, True)
    ]  # fmt: skip
    env = powmarl.envs.make("gymma", key=FAKE, time_limit=4, env_kwargs={"done_at": 2})
    assert _flags(env, 2) == [(False, False), (True, False)]
    lists = {"done_at": 3, "done_list": True}
    env = powmarl.envs.make("gymma", key=FAKE, time_limit=4, env_kwargs=lists)
    assert _flags(env, 3)[-1] == (True, False)  # a list of dones: all set
    # EPyMARL's runner stores a time-out as terminal: timeout_terminates
    env = powmarl.envs.make("gymma", key=FAKE, time_limit=3, timeout_terminates=True,
                            env_kwargs={"max_steps": 9})  # fmt: skip
    assert _flags(env, 3)[-1] == (True, False)
    # a time limit above the env's own: its done ends the episode first, as a natural end
    env = powmarl.envs.make("gymma", key=FAKE, time_limit=6)
    assert _flags(env, 4)[-1] == (True, False)


def test_host_checks_and_copies_by_the_registry():
    env = powmarl.envs.make("gymma", key=FAKE, time_limit=4, reward="mean")
    powmarl.envs.check(env)
    copy = pickle.loads(pickle.dumps(contract.copy_factory(env)))()
    assert isinstance(copy, GymmaEnv) and copy.reward == "mean" and copy.spec == env.spec
    vec = HostVectorEnv([env, copy])
    obs = vec.reset([5, 5])[0]
    np.testing.assert_array_equal(obs[0], obs[1])
    for _ in range(4):
        reward, *_ = vec.step(np.ones((2, 2), int), np.ones(2, bool))
    np.testing.assert_array_equal(reward, [5.5, 5.5])
    vec.close()


def test_bad_input_gets_one_line_errors():
    box = gs.Box(-1.0, 1.0, (2,))
    with pytest.raises(ValueError, match="agent 0: has a continuous action space .*argmax"):
        powmarl.envs.make("gymma", key=FAKE, env_kwargs={"action": box})
    with pytest.raises(ImportError, match="cannot import 'no_such_suite'.*powmarl\\[gymma\\]"):
        powmarl.envs.make("gymma", key="no_such_suite:Task-v0")
    with pytest.raises(ValueError, match="key: gymnasium cannot make 'NoSuchTask-v0'"):
        powmarl.envs.make("gymma", key="NoSuchTask-v0")
    with pytest.raises(
        ValueError, match="observation_space is a Box; gymma envs have a Tuple of one"
    ):
        powmarl.envs.make("gymma", key="CartPole-v1")
    with pytest.raises(ValueError, match="time_limit: must be a positive int, got 0"):
        powmarl.envs.make("gymma", key=FAKE, time_limit=0)


def _random_returns(env, seed, episodes=3):
    rng, out = np.random.default_rng(seed), []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, steps, ended = 0.0, 0, (False, False)
        while not any(ended):
            reward, *ended, _ = env.step(rng.integers(0, env.spec.num_actions, env.spec.num_agents))
            total, steps = total + reward, steps + 1
        out.append((round(total, 6), steps, tuple(ended)))
    return out


def test_lbf_and_rware_replay_seeded_episodes():
    lbf = powmarl.envs.make("gymma", key="lbforaging:Foraging-8x8-2p-2f-coop-v3")
    assert lbf.spec == SMOKE_SPEC._replace(episode_limit=50)  # README time limit: 50
    runs = _random_returns(lbf, 0)
    assert runs == _random_returns(lbf, 0)
    for total, steps, (terminated, truncated) in runs:
        # LBF's rewards are normalised: all food eaten sums to 1; a time-out ends at 50
        assert 0.0 <= total <= 1.0 + 1e-6 and (truncated == (steps == 50)) != terminated
    rware = powmarl.envs.make("gymma", key="rware:rware-tiny-2ag-v2", time_limit=20)
    assert rware.spec == powmarl.types.EnvSpec(2, 5, 71, 142, 20)
    assert _random_returns(rware, 1, 1)[0][1:] == (20, (False, True))


@pytest.mark.xdist_group("host_adapter_smoke")  # one worker: the 2nd compile is cached
def test_training_smoke_on_lbf_from_the_cli_in_two_workers(tmp_path):
    """QMIX on LBF 8x8-2p-2f-coop (5-step episodes) from the CLI, copies in 2 spawned workers."""
    from powmarl.cli import main

    sets = [f"--set={k}={v}" for k, v in SMOKE.items() if k != "t_max"]
    code = main([
        "train", "--algo", "qmix", "--env", "gymma", "--t-max", str(SMOKE["t_max"]),
        "--env-arg", "key=lbforaging:Foraging-8x8-2p-2f-coop-v3", "--env-arg", "time_limit=5",
        "--num-workers", "2", "--no-progress", "--run-dir", str(tmp_path / "run"), *sets,
    ])  # fmt: skip
    assert code == 0
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["t_env"] >= 100 and 0 <= rows[-1]["eval/return_mean"] <= 1
    record = json.loads((run / "config.json").read_text())
    assert record["env_id"] == "gymma" and record["env_kwargs"]["time_limit"] == 5


#: QMIX on LBF 8x8-2p-2f-coop at a CPU budget (the slow learning check, 3 seeds).
LBF_LEARN = {"t_max": 200_000, "epsilon_anneal_time": 50_000, "batch_size": 32}
LBF_LEARN |= {"test_interval": 10_000, "test_nepisode": 32}


def _random_policy_return(env, episodes: int = 300) -> float:
    rng, returns = np.random.default_rng(0), []
    for episode in range(episodes):
        env.reset(seed=10_000 + episode)
        total, ended = 0.0, False
        while not ended:
            reward, terminated, truncated, _ = env.step(rng.integers(0, 6, 2))
            total, ended = total + reward, terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.slow
@pytest.mark.xfail(
    reason="measured 2026-12-02: QMIX (library defaults, epsilon over 50k, batch 32) ended at "
    "greedy return 0.0 on all 3 seeds after 200k steps (random 0.0035); with EPyMARL's settings "
    "(standardised rewards, docs/results.md) it is at 0.005 after 300k, and Jumanji's lbf needs "
    "~600k; strict: a pass means the docs need the new numbers",
    strict=True,
)
def test_qmix_learns_lbf_coop_through_gymma(tmp_path):
    """Every seed's greedy return ends well above a uniformly random policy's (~0.004)."""
    env = powmarl.envs.make("gymma", key="lbforaging:Foraging-8x8-2p-2f-coop-v3")
    random_return = _random_policy_return(env)
    result = powmarl.train("qmix", env, seeds=[0, 1, 2], num_workers=2, progress=False,
                           run_dir=tmp_path / "run", **LBF_LEARN)  # fmt: skip
    final = np.asarray(result.final_eval_return)
    print(f"random {random_return:.4f}; QMIX final greedy returns {final.round(3).tolist()}")
    assert random_return < 0.02 and (final > random_return + 0.2).all()
