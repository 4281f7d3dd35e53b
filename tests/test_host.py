"""The host path: Python (NumPy) envs through the shared learner.

Host rollouts must pad episodes exactly as the JAX rollout does (checked field by field
against ``make_rollout`` on the same game, with the same actions); ``powmarl.train`` on
the NumPy matrix game must find the optimum; a host run dir must work with ``report``,
``eval`` and ``resume`` (exactly, from a checkpoint inside or between seeds).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import powmarl
from powmarl import algos
from powmarl.cli import main
from powmarl.config import Config
from powmarl.envs.host import HostMatrixGame, HostVectorEnv, is_host_env, make_copies
from powmarl.envs.matrix import MatrixGame
from powmarl.learner import make_learner
from powmarl.runners import host_runner
from powmarl.runners.host_rollout import play_episodes
from powmarl.runners.rollout import make_rollout
from powmarl.types import EnvSpec, TimeStep

pytestmark = pytest.mark.usefixtures("key_reuse_check")

SMALL = Config(rnn_hidden_dim=8, mixing_embed_dim=4, hypernet_embed=8, batch_size=4)
FIELDS = ("obs", "state", "avail_actions", "actions", "reward", "terminated", "filled")

# --------------------------------------------------------------------------- a counter game
# Agent 0 pushes a counter p by its action (0, 1 or 2); the battle is won when p >= 4
# (terminated); after LIMIT steps without it the episode is truncated. Agent 1 may not take
# action 2 on odd steps. Random actions give lengths 2 to 4, wins and time-outs, and wins on
# the last step (length T and terminated).

LIMIT, TARGET = 4, 4


def _counter_views(t, p, xp):
    obs = xp.stack([xp.stack([t / LIMIT, p / TARGET, 0.0]), xp.stack([t / LIMIT, p / TARGET, 1.0])])
    state = xp.stack([t * 1.0, p * 1.0])
    avail = xp.stack([xp.ones(3, dtype=bool), xp.arange(3) < 2 + (t % 2 == 0)])
    return obs.astype(xp.float32), state.astype(xp.float32), avail


class JaxCounter:
    """The counter game as a pure JAX env."""

    obs_last_action = True
    obs_agent_id = True
    spec = EnvSpec(num_agents=2, num_actions=3, obs_dim=3, state_dim=2, episode_limit=LIMIT)

    def default_params(self):
        return jnp.zeros(())

    def _timestep(self, t, p, reward, terminated, truncated):
        obs, state, avail = _counter_views(t, p, jnp)
        info = {"battle_won": terminated.astype(jnp.float32)}
        return TimeStep(obs, state, avail, reward, terminated, truncated, info)

    def reset(self, key, params):
        del key, params
        t = p = jnp.zeros((), jnp.int32)
        no = jnp.zeros((), bool)
        return self._timestep(t, p, jnp.zeros((), jnp.float32), no, no), (t, p)

    def step(self, key, state, actions, params):
        del key, params
        t, p = state[0] + 1, state[1] + actions[0].astype(jnp.int32)
        reward = (p + 0.5 * actions[1]).astype(jnp.float32)
        terminated = p >= TARGET
        truncated = (t >= LIMIT) & ~terminated
        return self._timestep(t, p, reward, terminated, truncated), (t, p)


class HostCounter:
    """The same game as a NumPy host env."""

    obs_last_action = True
    obs_agent_id = True
    info_keys = ("battle_won",)
    spec = JaxCounter.spec

    def __init__(self):
        self.t = self.p = 0

    def clone(self):
        return HostCounter()

    def reset(self, seed=None):
        self.t = self.p = 0
        return self.get_obs(), self.get_state(), self.get_avail_actions()

    def step(self, actions):
        self.t, self.p = self.t + 1, self.p + int(actions[0])
        terminated = self.p >= TARGET
        truncated = self.t >= LIMIT and not terminated
        return (
            float(self.p + 0.5 * int(actions[1])),
            terminated,
            truncated,
            {"battle_won": float(terminated)},
        )

    def get_obs(self):
        return _counter_views(np.int64(self.t), np.int64(self.p), np)[0]

    def get_state(self):
        return _counter_views(np.int64(self.t), np.int64(self.p), np)[1]

    def get_avail_actions(self):
        return _counter_views(np.int64(self.t), np.int64(self.p), np)[2]

    def close(self):
        pass


def _agent_params(learner, spec):
    hidden = jnp.zeros((spec.num_agents, learner.agent.hidden_dim))
    inputs = jnp.zeros((spec.num_agents, learner.input_dim))
    return learner.agent.init(jax.random.key(1), hidden, inputs)


def _jax_episodes(env, num, shapes_only=False):
    """E episodes of the JAX rollout with uniform random actions (epsilon 1)."""
    learner = make_learner(SMALL, env.spec, algos.make("qmix"), True, True)
    rollout = make_rollout(env, learner, SMALL.rnn_hidden_dim)
    params = _agent_params(learner, env.spec)

    def run(key):
        return rollout(params, env.default_params(), key, 1.0, num)

    if shapes_only:
        return jax.eval_shape(run, jax.eval_shape(lambda: jax.random.key(0)))
    batch, stats = run(jax.random.key(0))
    return jax.device_get(batch), jax.device_get(stats)


def _replay(actions):
    """Host policies that play the JAX rollout's actions [E, T, A], wave by wave."""

    def make_policy(wave, n):
        rows = actions[wave * n : (wave + 1) * n].astype(np.int32)
        step = iter(range(actions.shape[1]))
        return lambda obs, avail: rows[:, next(step)]

    return make_policy


@pytest.mark.parametrize(
    "jax_env, host_env, copies",
    [(JaxCounter(), HostCounter(), 8), (MatrixGame(), HostMatrixGame(), 4)],
    ids=["counter", "matrix"],
)
def test_host_episodes_equal_the_jax_rollout(jax_env, host_env, copies):
    """Same game, same actions: every field of the padded EpisodeBatch (obs/state/avail
    [E, T+1], slot T only at full length, zero padding, filled, terminated vs truncated)
    and the episode stats equal the JAX rollout's."""
    num = 32
    expected, expected_stats = _jax_episodes(jax_env, num)
    vec = HostVectorEnv(make_copies(host_env, copies))
    assert len(vec) == copies
    got, stats = play_episodes(vec, _replay(expected.actions), [0] * num)
    for name in FIELDS:
        want, have = np.asarray(getattr(expected, name)), getattr(got, name)
        assert have.dtype == want.dtype and have.shape == want.shape, name
        np.testing.assert_array_equal(have, want, err_msg=name)
    np.testing.assert_array_equal(stats.lengths, expected_stats.lengths)
    np.testing.assert_allclose(stats.returns, expected_stats.returns, rtol=1e-6)
    for k in expected_stats.info:
        np.testing.assert_array_equal(stats.info[k], expected_stats.info[k])
    if isinstance(host_env, HostCounter):  # the cases the counter game is built to produce
        lengths, last = stats.lengths, got.terminated[np.arange(num), stats.lengths - 1]
        assert set(lengths.tolist()) >= {2, 3, 4}
        assert (last & (lengths == LIMIT)).any() and (~last & (lengths == LIMIT)).any()
        assert not got.obs[lengths < LIMIT, LIMIT].any()  # slot T only at full length
        assert got.obs[lengths == LIMIT, LIMIT].any()


def test_runner_rollout_has_the_jax_rollout_shapes():
    """The host runner's own rollout (jitted agent, epsilon-greedy, waves) returns the JAX
    rollout's shapes and dtypes, never takes an unavailable action, and uses every copy."""
    env = HostCounter()
    cfg = Config(rnn_hidden_dim=8, mixing_embed_dim=4, hypernet_embed=8, batch_size=4, num_envs=3)
    runner = host_runner.make_host_runner(cfg, env, algos.make("qmix"))
    params = _agent_params(runner.learner, env.spec)
    batch, stats = host_runner.rollout(runner, params, jax.random.key(5), 0.5, 7)
    expected, _ = _jax_episodes(JaxCounter(), 7, shapes_only=True)
    for name in FIELDS:
        want = getattr(expected, name)
        assert getattr(batch, name).shape == want.shape and getattr(batch, name).dtype == want.dtype
    taken = np.take_along_axis(batch.avail_actions[:, :-1], batch.actions[..., None], -1)[..., 0]
    assert taken[batch.filled].all()
    assert (batch.filled.sum(1) == stats.lengths).all() and stats.lengths.min() >= 2


def test_is_host_env_tells_host_from_jax_envs():
    assert is_host_env(HostMatrixGame()) and is_host_env(HostCounter())
    assert not is_host_env(MatrixGame()) and not is_host_env(JaxCounter())


def test_schedule_matches_the_jax_runner():
    """can_learn / first_call / target copy from the iteration index, as jax_runner's."""
    cfg = Config(num_envs=8, batch_size=32, target_update_interval=200)
    flags = [host_runner.schedule(it, cfg) for it in range(60)]
    assert [f[0] for f in flags].index(True) == 3  # 32 episodes seen after iteration 3
    assert [it for it, f in enumerate(flags) if f[1] and f[0]] == [3]
    assert [it for it, f in enumerate(flags) if f[2]] == [25, 50]


# --------------------------------------------------------------------------- learning

LEARN = {"t_max": 3000, "batch_size": 32, "buffer_size": 500, "length_buckets": 1}


@pytest.fixture(scope="module")
def pow_host(tmp_path_factory):
    """POW-QMIX on the NumPy matrix game, seeds 0 and 1 one after another, with a run dir."""
    run_dir = tmp_path_factory.mktemp("host") / "run"
    with jax.debug_key_reuse(True):
        result = powmarl.train(
            "pow_qmix", "matrix_host", seeds=[0, 1], run_dir=run_dir, progress=False, **LEARN
        )
    return result, run_dir


def test_pow_qmix_finds_the_optimum_on_the_host_matrix_game(pow_host):
    """Greedy evaluation returns the optimum 8 = payoff (A, A) in both seeds."""
    result, _ = pow_host
    assert result.seeds == [0, 1]
    assert result.final_eval_return.tolist() == [8.0, 8.0]
    assert result.t_env.tolist() == [3000, 3000]
    assert jax.tree.leaves(result.params)[0].shape[0] == 2  # params stacked over members


def test_host_rows_have_the_jax_runner_metrics(pow_host):
    """One row per seed per evaluation, with the JAX runner's metric names."""
    result, _ = pow_host
    rows = [r for r in result.metrics if r["seed"] == 0]
    assert [r["t_env"] for r in rows] == [1000, 2000, 3000]
    for name in (
        "eval/return_mean",
        "eval/return_std",
        "eval/ep_length_mean",
        "train/return_mean",
        "train/epsilon",
        "train/learner_calls",
        "train/loss",
        "episodes",
        "time/env_steps_per_s",
    ):
        assert name in rows[0], name
    assert rows[0]["episodes"] == 1000 and rows[1]["train/learner_calls"] == 125


def test_host_run_dir_works_with_report_and_eval(pow_host, tmp_path, capsys):
    """``powmarl report`` and ``powmarl eval`` read a host run dir; tables are JAX-only."""
    result, run_dir = pow_host
    assert (run_dir / "config.json").exists() and (run_dir / "metrics.jsonl").exists()
    assert main(["report", str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    assert "pow_qmix" in capsys.readouterr().out
    rows = powmarl.api.evaluate(run_dir, episodes=4)
    assert [(r["seed"], r["t_env"], r["return_mean"]) for r in rows] == [
        (0, 3000, 8.0),
        (1, 3000, 8.0),
    ]
    with pytest.raises(ValueError, match="render"):
        powmarl.api.evaluate(run_dir, render=tmp_path / "x.gif")
    with pytest.raises(ValueError, match="host"):
        result.tables()


def _metric_rows(run_dir):
    from powmarl.io.run_dir import read_metrics

    return [
        {k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(run_dir)
    ]


def _cut_after(run_dir, keep: int):
    """What a kill leaves: only the first ``keep`` checkpoints, every metrics row written
    (rows of the lost checkpoints included) and half of a next one."""
    from powmarl.io import checkpoint

    for meta in checkpoint.list_checkpoints(run_dir)[keep:]:
        meta.with_suffix(".npz").unlink()
        meta.unlink()
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write('{"seed": 1, "t_e')


@pytest.fixture(scope="module")
def qmix_host(tmp_path_factory):
    """QMIX on the NumPy matrix game, 2 seeds x 2000 steps, every checkpoint kept:
    seed 0 at 1000 and 2000 (member done), seed 1 at 1000 and 2000 (finished)."""
    run_dir = tmp_path_factory.mktemp("host_qmix") / "run"
    settings = {**LEARN, "t_max": 2000, "keep_checkpoints": 10}
    with jax.debug_key_reuse(True):
        result = powmarl.train("qmix", "matrix_host", seeds=[0, 1], run_dir=run_dir,
                               progress=False, **settings)  # fmt: skip
    return result, run_dir


@pytest.mark.parametrize("keep", [1, 2, 3])  # inside seed 0, between seeds, inside seed 1
def test_host_resume_matches_the_uninterrupted_run(qmix_host, tmp_path, keep):
    """Killed after checkpoint ``keep``: resume recomputes the lost rows exactly (the
    matrix game is deterministic), and the final params equal the uninterrupted run's."""
    import shutil

    from powmarl.api import resume, run_status
    from powmarl.io import checkpoint

    result, ref_dir = qmix_host
    metas = checkpoint.list_checkpoints(ref_dir)
    assert len(metas) == 4 and run_status(ref_dir) == "finished"
    run_dir = tmp_path / "killed"
    shutil.copytree(ref_dir, run_dir)
    _cut_after(run_dir, keep)
    assert run_status(run_dir) == "partial"
    if keep == 1:  # only seed 0 had been trained, up to 1000 steps
        rows = powmarl.api.evaluate(run_dir, episodes=2)
        assert [(r["seed"], r["t_env"]) for r in rows] == [(0, 1000)]
    resumed = resume(run_dir, progress=False)
    assert run_status(run_dir) == "finished"
    assert _metric_rows(run_dir) == _metric_rows(ref_dir)
    assert [r["t_env"] for r in resumed.metrics] == [1000, 2000, 1000, 2000]
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(result.params)):
        np.testing.assert_array_equal(a, b)


def test_host_resume_of_a_finished_run_changes_nothing(qmix_host, capsys):
    _, run_dir = qmix_host
    before = (run_dir / "metrics.jsonl").read_text()
    assert main(["resume", str(run_dir), "--no-progress"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert (run_dir / "metrics.jsonl").read_text() == before
