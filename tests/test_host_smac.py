"""The StarCraft II adapter (real SMAC / SMACv2 as host envs).

The mapping is tested against a fake ``StarCraft2Env`` with SMAC's methods; the last test
plays a few random steps of a real map and skips unless StarCraft II and ``smac`` are
installed (docs/envs/sc2.md).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import powmarl
from powmarl.envs.host import is_host_env
from powmarl.envs.host import smac as sc2

pytestmark = pytest.mark.usefixtures("key_reuse_check")


class FakeStarCraft2Env:
    """SMAC's interface with scripted battles: 2 agents, 4 actions, episode limit 3.

    Episode 0 is won on step 2 (killing enemy 1 on step 1 and enemy 2 on step 2), episode
    1 times out, episode 2 loses agent 0 on step 1 and is won on step 3. ``get_obs`` is a
    list of per-agent arrays and ``get_avail_actions`` a list of 0/1 lists, as in SMAC.
    """

    def __init__(self, continuing_episode=False, **kwargs):
        self.continuing_episode = continuing_episode
        self.kwargs = kwargs
        self.episode, self.t, self.closed = -1, 0, False

    def get_env_info(self):
        return {"n_agents": 2, "n_actions": 4, "obs_shape": 3, "state_shape": 5, "episode_limit": 3}

    def reset(self):
        self.episode, self.t = self.episode + 1, 0
        return self.get_obs(), self.get_state()

    def step(self, actions):
        assert all(isinstance(a, int) for a in actions)
        self.t += 1
        script = {
            0: {1: (0, 1, False), 2: (0, 2, True)},
            2: {1: (1, 0, False), 3: (1, 2, True)},
        }.get(self.episode % 3, {})
        dead_allies, dead_enemies, won = script.get(self.t, (0, 0, False))
        if self.episode % 3 == 2 and self.t == 2:
            dead_allies = 1
        if self.episode % 3 == 0 and self.t > 1:
            dead_enemies = max(dead_enemies, 1)
        info = {"battle_won": won, "dead_allies": dead_allies, "dead_enemies": dead_enemies}
        terminated = won
        if not won and self.t >= 3:
            terminated = True
            if self.continuing_episode:
                info["episode_limit"] = True
        return 0.5 * self.t + 10.0 * won, terminated, info

    def get_obs(self):
        return [np.full(3, 10 * self.episode + self.t + i, np.float32) for i in range(2)]

    def get_state(self):
        return np.arange(5, dtype=np.float32) + self.t

    def get_avail_actions(self):
        return [[1, 1, 0, 1], [0, 1, 1, 1]]

    def close(self):
        self.closed = True


def _episode(env, actions=(0, 1)):
    obs, state, avail = env.reset(seed=3)
    steps = []
    while True:
        reward, terminated, truncated, info = env.step(np.asarray(actions))
        steps.append((reward, terminated, truncated, info))
        if terminated or truncated:
            return (obs, state, avail), steps


def test_spec_views_and_dtypes_follow_smac():
    env = sc2.StarCraftEnv(FakeStarCraft2Env())
    assert is_host_env(env)
    assert env.spec == powmarl.types.EnvSpec(2, 4, 3, 5, 3)
    (obs, state, avail), _ = _episode(env)
    assert obs.shape == (2, 3) and obs.dtype == np.float32 and obs[1, 0] == 1.0
    assert state.shape == (5,) and avail.dtype == bool
    assert avail.tolist() == [[True, True, False, True], [False, True, True, True]]
    env.close()
    assert env.sc2.closed


def test_win_is_terminated_and_info_counts_deaths_per_step():
    env = sc2.StarCraftEnv(FakeStarCraft2Env())
    _, steps = _episode(env)  # episode 0: won on step 2
    assert [(s[1], s[2]) for s in steps] == [(False, False), (True, False)]
    assert [s[3]["battle_won"] for s in steps] == [0.0, 1.0]
    assert [s[3]["dead_enemies"] for s in steps] == [1.0, 1.0]  # SMAC reports 1 then 2
    assert [s[0] for s in steps] == [0.5, 11.0]
    _episode(env)
    _, steps = _episode(env)  # episode 2: an ally dies on step 1, won on step 3
    assert [s[3]["dead_allies"] for s in steps] == [1.0, 0.0, 0.0]
    assert sum(s[3]["dead_enemies"] for s in steps) == 2.0  # counters restart each episode


@pytest.mark.parametrize("continuing, truncated", [(False, False), (True, True)])
def test_time_limit_follows_smacs_episode_limit_flag(continuing, truncated):
    """SMAC flags the time-out with info["episode_limit"] only when continuing_episode:
    then it is a truncation (bootstrap); otherwise a natural end, as in PyMARL."""
    env = sc2.StarCraftEnv(FakeStarCraft2Env(continuing_episode=continuing))
    _episode(env)
    _, steps = _episode(env)  # episode 1: time-out
    last = steps[-1]
    assert len(steps) == 3 and last[2] is truncated and last[1] is (not truncated)
    assert last[3]["battle_won"] == 0.0


def test_missing_packages_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "smac", None)
    monkeypatch.setitem(sys.modules, "smacv2", None)
    with pytest.raises(ImportError, match="SC2PATH") as err:
        powmarl.envs.make("sc2_smac", map_name="3m")
    for part in ("4.10", "s2client-proto", "Maps/SMAC_Maps", "oxwhirl/smac", "docs/envs/sc2.md"):
        assert part in str(err.value), part
    with pytest.raises(ImportError, match="SC2PATH"):
        powmarl.envs.make("sc2_smacv2_zerg_5v5")


def test_pypis_smac3_is_recognised(monkeypatch):
    """PyPI's 'smac' is SMAC3 (AutoML): the error says so instead of a bare ImportError."""
    fake = types.ModuleType("smac")
    fake.__version__ = "2.4.1"
    monkeypatch.setitem(sys.modules, "smac", fake)
    monkeypatch.setitem(sys.modules, "smac.env", None)
    with pytest.raises(ImportError, match="SMAC3"):
        powmarl.envs.make("sc2_smac")


def _inject(monkeypatch, package: str, name: str):
    """A fake ``package.env`` module whose ``name`` records its kwargs."""
    made = []

    def factory(**kwargs):
        made.append(kwargs)
        return FakeStarCraft2Env(**{k: kwargs[k] for k in ("continuing_episode",)})

    top, sub = types.ModuleType(package), types.ModuleType(f"{package}.env")
    setattr(sub, name, factory)
    top.env = sub
    monkeypatch.setitem(sys.modules, package, top)
    monkeypatch.setitem(sys.modules, f"{package}.env", sub)
    return made


def test_sc2_smac_passes_the_papers_settings(monkeypatch):
    made = _inject(monkeypatch, "smac", "StarCraft2Env")
    env = powmarl.envs.make("sc2_smac", map_name="corridor", seed=7)
    assert powmarl.envs.identity(env)[0] == "sc2_smac" and env.max_copies == 1
    kwargs = made[0]
    assert kwargs["map_name"] == "corridor" and kwargs["seed"] == 7
    assert kwargs["difficulty"] == "7" and kwargs["step_mul"] == 8
    assert kwargs["reward_scale_rate"] == 20 and kwargs["reward_only_positive"] is True
    assert kwargs["state_last_action"] is True and kwargs["continuing_episode"] is False


@pytest.mark.parametrize("race", sorted(sc2.SMACV2_RACES))
def test_sc2_smacv2_races_are_5v5_with_the_papers_units(monkeypatch, race):
    made = _inject(monkeypatch, "smacv2", "StarCraftCapabilityEnvWrapper")
    env = powmarl.envs.make(f"sc2_smacv2_{race}_5v5")
    assert env.spec.num_agents == 2  # the fake's
    kwargs = made[0]
    cap = kwargs["capability_config"]
    assert kwargs["map_name"] == f"10gen_{race}"
    assert cap["n_units"] == 5 and cap["n_enemies"] == 5
    assert cap["team_gen"]["unit_types"] == list(sc2.SMACV2_RACES[race])
    assert cap["team_gen"]["weights"] == [0.45, 0.45, 0.1]
    assert cap["team_gen"]["exception_unit_types"] == [sc2.SMACV2_RACES[race][2]]
    assert cap["start_positions"]["dist_type"] == "surrounded_and_reflect"
    assert cap["start_positions"]["p"] == 0.5 and cap["start_positions"]["map_x"] == 32
    assert kwargs["conic_fov"] is False and kwargs["obs_own_pos"] is True
    assert kwargs["kill_unit_step_mul"] == 2


def test_training_on_the_fake_battle_logs_win_rate(tmp_path):
    """The host runner trains on the adapter (one copy, episodes in waves) and logs
    ``eval/battle_won_mean`` and the death counters like the SMAX env."""
    env = sc2.StarCraftEnv(FakeStarCraft2Env())
    result = powmarl.train(
        "qmix",
        env,
        seeds=[0],
        t_max=60,
        test_interval=30,
        test_nepisode=3,
        num_envs=2,
        batch_size=4,
        buffer_size=16,
        length_buckets=1,
        rnn_hidden_dim=8,
        mixing_embed_dim=4,
        hypernet_embed=8,
        progress=False,
        run_dir=tmp_path / "run",
    )
    row = result.metrics[-1]
    # the policy never changes the fake's scripted battles: any 3 consecutive episodes hold
    # each script once (two wins, two enemy deaths in each)
    assert row["eval/battle_won_mean"] == pytest.approx(2 / 3)
    assert row["eval/dead_enemies_mean"] == pytest.approx(4 / 3)
    assert "train/battle_won_mean" in row and row["t_env"] >= 60


def _sc2_missing() -> str | None:
    path = Path(os.environ.get("SC2PATH", "~/StarCraftII")).expanduser()
    if not path.is_dir():
        return f"{sc2.INSTALL_STEPS.split(':')[0]}: set SC2PATH (no StarCraft II at {path})"
    try:
        from smac.env import StarCraft2Env  # noqa: F401
    except ImportError:
        return "StarCraft II not installed: set SC2PATH and pip install the smac package"
    return None


@pytest.mark.skipif(_sc2_missing() is not None, reason=str(_sc2_missing()))
def test_real_smac_map_plays_random_steps():
    """A few random available actions on the real 3m map: shapes follow the spec."""
    env = powmarl.envs.make("sc2_smac", map_name="3m")
    rng = np.random.default_rng(0)
    try:
        obs, state, avail = env.reset(seed=0)
        assert obs.shape == (env.spec.num_agents, env.spec.obs_dim)
        assert state.shape == (env.spec.state_dim,) and avail.any(axis=1).all()
        for _ in range(10):
            actions = np.asarray([rng.choice(np.flatnonzero(a)) for a in avail])
            reward, terminated, truncated, info = env.step(actions)
            assert set(info) == set(sc2.INFO_KEYS) and np.isfinite(reward)
            if terminated or truncated:
                break
            avail = env.get_avail_actions()
    finally:
        env.close()
