"""SMAX adapter (``powmarl.envs.smax``): conformance on every map, SMAC's shaped reward on
hand-built transitions, ``battle_won``, unsupported maps, SMACv2 unit-type and start-position
draws, and a short training run.

Big maps and full episode limits run under ``-m slow``; the default run checks a few
representative maps with short limits.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip(
    "jaxmarl", reason="the smax environments need jaxmarl (pip install 'powmarl[smax]')"
)

import jax
import jax.numpy as jnp

from powmarl import envs
from powmarl.envs import smax_maps
from powmarl.envs.smax import SmaxEnv, shaped_reward

SMACV2_IDS = ("smacv2_protoss_5v5", "smacv2_terran_5v5", "smacv2_zerg_5v5")
#: SMAC maps JaxMARL 0.2 ships as SMAX scenarios.
JAXMARL_MAPS = "3m 8m 25m 5m_vs_6m 10m_vs_11m 27m_vs_30m 2s3z 3s5z 3s5z_vs_3s6z 3s_vs_5z 6h_vs_8z"


def make_map(map_name: str, **kwargs) -> SmaxEnv:
    if map_name in SMACV2_IDS:
        return envs.make(map_name, **kwargs)
    return envs.make("smax", map_name=map_name, **kwargs)


# --------------------------------------------------------------------------- registry, specs


def test_registry_lists_smax_ids():
    """``smax`` (with map_name) and the three SMACv2 races are registered with descriptions."""
    registered = envs.registered()
    for env_id in ("smax", *SMACV2_IDS):
        assert "jaxmarl" in registered[env_id]
    assert envs.env_kwargs("smax")["map_name"] == "3s_vs_5z"


@pytest.mark.parametrize(
    "map_name, spec",
    [
        # (agents, actions, obs_dim, state_dim, limit); obs = (N-1)(7+K) + 4 + K, state = N(4+K)
        ("3s_vs_5z", (3, 10, 69, 48, 250)),
        ("2s3z", (5, 10, 87, 60, 120)),
        ("3s5z", (8, 13, 141, 96, 150)),
        ("5m_vs_6m", (5, 11, 74, 44, 70)),
        ("6h_vs_8z", (6, 13, 123, 84, 150)),
        ("10m_vs_11m", (10, 16, 144, 84, 150)),
        ("27m_vs_30m", (27, 35, 396, 228, 180)),
        ("3s5z_vs_3s6z", (8, 14, 150, 102, 170)),
        ("corridor", (6, 29, 267, 180, 400)),
        ("smacv2_protoss_5v5", (5, 10, 87, 60, 200)),
        ("smacv2_terran_5v5", (5, 10, 87, 60, 200)),
        ("smacv2_zerg_5v5", (5, 10, 87, 60, 200)),
    ],
)
def test_spec_per_map(map_name, spec):
    """Agents, actions (5 moves + one attack per enemy), obs/state sizes and SMAC's limits."""
    env = make_map(map_name)
    assert tuple(env.spec) == spec
    assert env.obs_last_action and env.obs_agent_id


def test_unit_compositions_match_jaxmarl_scenarios():
    """Where JaxMARL ships a SMAC map, our unit table agrees with its scenario."""
    from jaxmarl.environments.smax import map_name_to_scenario

    for name in JAXMARL_MAPS.split():
        info, scenario = smax_maps.SMAC_MAPS[name], map_name_to_scenario(name)
        assert (scenario.num_allies, scenario.num_enemies) == (len(info.allies), len(info.enemies))
        np.testing.assert_array_equal(np.asarray(scenario.unit_types), info.allies + info.enemies)


@pytest.mark.parametrize("map_name", ["MMM", "MMM2"])
def test_medivac_maps_raise_naming_the_reason(map_name):
    """MMM/MMM2 need medivacs: ValueError says so and lists the supported maps."""
    with pytest.raises(ValueError) as err:
        envs.make("smax", map_name=map_name)
    message = str(err.value)
    assert "medivac" in message and map_name in message
    for supported in ("3s_vs_5z", "corridor", "27m_vs_30m", "smacv2_zerg_5v5"):
        assert supported in message


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown map 'nope'"):
        envs.make("smax", map_name="nope")
    with pytest.raises(ValueError, match="obs_dtype"):
        envs.make("smax", obs_dtype="int8")
    with pytest.raises(ValueError, match="episode_limit"):
        envs.make("smax", episode_limit=0)


def test_missing_jaxmarl_error(monkeypatch):
    """Without jaxmarl, make('smax') raises ImportError telling how to install it; the other
    environments still work."""
    for name in [m for m in sys.modules if m == "jaxmarl" or m.startswith("jaxmarl.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "jaxmarl", None)
    monkeypatch.delitem(sys.modules, "powmarl.envs.smax")
    with pytest.raises(
        ImportError, match=r"smax: needs jaxmarl; install with pip install 'powmarl\[smax\]'"
    ):
        envs.make("smax", map_name="3s_vs_5z")
    assert envs.make("matrix_pow").spec.num_agents == 2


# --------------------------------------------------------------------------- conformance


def test_conformance_representative_map():
    """check() passes (jit and un-jitted, vmap, determinism, flags) on 3s_vs_5z with a short
    limit (one episode: compiling SMAX dominates; every map runs under -m slow)."""
    envs.check(make_map("3s_vs_5z", episode_limit=25), episodes=1)


@pytest.mark.slow
@pytest.mark.parametrize("map_name", list(smax_maps.ALL_MAPS))
def test_conformance_every_map(map_name):
    """check() passes on every supported map and SMACv2 race with its real episode limit."""
    envs.check(make_map(map_name))


def test_observation_and_state_ranges_and_dtypes():
    """float16 by default (float32 on request); features lie in [-1, 1], state in [0, 1]."""
    env = make_map("2s3z")
    ts, _ = env.reset(jax.random.key(0), env.default_params())
    assert ts.obs.dtype == jnp.float16 and ts.state.dtype == jnp.float16
    assert float(jnp.abs(ts.obs.astype(jnp.float32)).max()) <= 1.0
    state = np.asarray(ts.state, np.float32)
    assert state.min() >= 0.0 and state.max() <= 1.0
    wide = make_map("2s3z", obs_dtype="float32")
    ts32, _ = wide.reset(jax.random.key(0), wide.default_params())
    assert ts32.obs.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(ts.obs, np.float32), np.asarray(ts32.obs), atol=2e-3)


@pytest.mark.parametrize(
    "map_name", [pytest.param("3s5z_vs_3s6z", marks=pytest.mark.slow), "smacv2_terran_5v5"]
)
def test_observations_match_smax_and_replay_records_decode_exactly(map_name):
    """Along a random episode: our ally observations equal SMAX's ``get_obs`` (type bits
    cut), and decoding the compact replay records gives back obs, state and avail_actions."""
    env = make_map(map_name, obs_dtype="float32")
    params = env.default_params()
    reset, step, encode = jax.jit(env.reset), jax.jit(env.step), jax.jit(env.replay_encode)
    ts, state = reset(jax.random.key(0), params)
    key = jax.random.key(1)
    records, views = [], []
    for _ in range(40):
        smax_obs = env.smax.get_obs(state)
        reference = jnp.stack([smax_obs[a] for a in env.smax.agents])[:, env._obs_cols]
        np.testing.assert_allclose(np.asarray(ts.obs), np.asarray(reference), atol=1e-6)
        records.append(encode(state))
        views.append((ts.obs, ts.state, ts.avail_actions))
        key, act_key, step_key = jax.random.split(key, 3)
        noise = jax.random.uniform(act_key, ts.avail_actions.shape)
        actions = jnp.argmax(jnp.where(ts.avail_actions, noise, -1.0), axis=-1)
        ts, state = step(step_key, state, actions, params)
        if bool(ts.terminated | ts.truncated):
            break
    stacked = jax.tree.map(lambda *x: jnp.stack(x)[None], *records)  # [1, T, ...]
    obs, global_state, avail = jax.jit(env.replay_decode)(stacked)
    np.testing.assert_allclose(obs[0], jnp.stack([v[0] for v in views]), atol=1e-6)
    np.testing.assert_array_equal(global_state[0], jnp.stack([v[1] for v in views]))
    np.testing.assert_array_equal(avail[0], jnp.stack([v[2] for v in views]))
    assert records[0]["health"].dtype == jnp.float16 and records[0]["types"].dtype == jnp.uint8


# --------------------------------------------------------------------------- reward shaping

ENV = make_map("3s_vs_5z")  # 3 stalkers (160 hp) vs 5 zealots (150 hp): max_reward 50+200+750
PARAMS = ENV.default_params()
ZEALOT_HP, STALKER_HP = 150.0, 160.0
SCALE = (5 * 10 + 200 + 5 * ZEALOT_HP) / 20.0  # 50: max_reward / reward_scale_rate


def units(health, alive=None):
    """A SMAX unit state of 3s_vs_5z with the given healths (allies first)."""
    _, state = ENV.reset(jax.random.key(0), PARAMS)
    health = jnp.asarray(health, jnp.float32)
    alive = health > 0 if alive is None else jnp.asarray(alive)
    return state.state.replace(unit_health=health, unit_alive=alive)


FULL = [STALKER_HP] * 3 + [ZEALOT_HP] * 5


def reward_of(before, after, **params):
    return shaped_reward(
        PARAMS.replace(**params), units(before), units(after), 3, ENV.smax.unit_type_health
    )


def test_reward_damage_and_kill_positive_only():
    """Damage 20 to one zealot plus killing another at 20 hp: (20 + 20 + 10) / 50 = 1.0;
    the 30 damage our stalker took does not count (positive-only)."""
    before = [STALKER_HP] * 3 + [ZEALOT_HP, 20.0, ZEALOT_HP, ZEALOT_HP, ZEALOT_HP]
    after = [130.0, STALKER_HP, STALKER_HP] + [130.0, 0.0, ZEALOT_HP, ZEALOT_HP, ZEALOT_HP]
    reward, won, lost, dead_allies, dead_enemies = reward_of(before, after)
    assert float(reward) == pytest.approx(50.0 / SCALE)
    assert not bool(won) and not bool(lost)
    assert float(dead_allies) == 0.0 and float(dead_enemies) == 1.0


def test_reward_with_own_losses_and_unscaled():
    """Not positive-only: minus 0.5 * (damage taken + 10 per own death); unscaled = raw."""
    before = [STALKER_HP, 5.0, STALKER_HP] + [ZEALOT_HP] * 5
    after = [130.0, 0.0, STALKER_HP] + [100.0] + [ZEALOT_HP] * 4
    reward, *_, dead_allies, _ = reward_of(before, after, reward_only_positive=jnp.asarray(False))
    assert float(dead_allies) == 1.0
    assert float(reward) == pytest.approx((50.0 - 0.5 * (30.0 + 5.0 + 10.0)) / SCALE)
    raw, *_ = reward_of(before, after, reward_scale=jnp.asarray(False))
    assert float(raw) == pytest.approx(50.0)


def test_reward_whole_battle_in_one_step_is_twenty():
    """Killing all five zealots from full health and winning gives exactly reward_scale_rate."""
    after = [STALKER_HP] * 3 + [0.0] * 5
    reward, won, lost, _, dead_enemies = reward_of(FULL, after)
    assert bool(won) and not bool(lost) and float(dead_enemies) == 5.0
    assert float(reward) == pytest.approx(20.0)


def test_reward_ignores_units_dead_before_and_defeat_term():
    """A unit already dead earns nothing; a loss adds reward_defeat (0 by default)."""
    before = [10.0, 0.0, 0.0] + [0.0, ZEALOT_HP, ZEALOT_HP, ZEALOT_HP, ZEALOT_HP]
    after = [0.0, 0.0, 0.0] + [0.0, ZEALOT_HP, ZEALOT_HP, ZEALOT_HP, ZEALOT_HP]
    reward, won, lost, dead_allies, dead_enemies = reward_of(before, after)
    assert float(reward) == 0.0 and bool(lost) and not bool(won)
    assert float(dead_allies) == 1.0 and float(dead_enemies) == 0.0
    reward, *_ = reward_of(before, after, reward_defeat=jnp.float32(-1.0))
    assert float(reward) == pytest.approx(-1.0 / SCALE)


# --------------------------------------------------------------------------- battle_won


def test_battle_won_only_on_the_winning_step():
    """One zealot left at 1 hp next to our stalker that attacks it: the step is won
    (battle_won 1, terminated, win bonus in the reward). A plain step has battle_won 0;
    losing (our last stalker already dead) terminates with battle_won 0."""
    step = jax.jit(ENV.step)
    ts, state = ENV.reset(jax.random.key(3), PARAMS)
    ts, state = step(jax.random.key(4), state, jnp.full((3,), 4, jnp.int32), PARAMS)
    assert float(ts.info["battle_won"]) == 0.0 and not bool(ts.terminated)

    u = state.state
    health = jnp.asarray(FULL, jnp.float32).at[3].set(1.0).at[4:].set(0.0)
    pos = u.unit_positions.at[3].set(u.unit_positions[0] + jnp.array([3.0, 0.0]))
    near = u.replace(
        unit_health=health,
        unit_alive=health > 0,
        unit_positions=pos,
        unit_weapon_cooldowns=jnp.zeros_like(u.unit_weapon_cooldowns),
    )
    attack_first = jnp.asarray([5, 4, 4], jnp.int32)  # ally 0 attacks enemy 0
    ts, _ = step(jax.random.key(5), state.replace(state=near), attack_first, PARAMS)
    assert float(ts.info["battle_won"]) == 1.0 and bool(ts.terminated) and not bool(ts.truncated)
    assert float(ts.info["dead_enemies"]) == 1.0
    assert float(ts.reward) == pytest.approx((1.0 + 10.0 + 200.0) / SCALE)

    health = jnp.asarray(FULL, jnp.float32).at[:3].set(0.0)
    lost = u.replace(unit_health=health, unit_alive=health > 0)
    ts, _ = step(jax.random.key(6), state.replace(state=lost), attack_first, PARAMS)
    assert float(ts.info["battle_won"]) == 0.0 and bool(ts.terminated)


# --------------------------------------------------------------------------- SMACv2 draws


@pytest.mark.parametrize("race", ["protoss", "terran", "zerg"])
def test_smacv2_unit_types_and_start_positions(race):
    """Over 2000 resets: only the race's two SMAX units, each about half the time (SMACv2's
    0.45/0.45 renormalised); enemies mirror allies; about half the starts are 'surrounded'
    (allies at the centre) and the rest 'reflect' (allies in the left half, enemies
    mirrored); every unit starts inside the map."""
    env = envs.make(f"smacv2_{race}_5v5")
    keys = jax.random.split(jax.random.key(11), 2000)
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, env.default_params())
    types = np.asarray(state.state.unit_types)  # [K, 10]
    pos = np.asarray(state.state.unit_positions)  # [K, 10, 2]
    race_units = env.map_info.race
    assert set(np.unique(types)) <= set(race_units)
    np.testing.assert_array_equal(types[:, :5], types[:, 5:])
    frac = (types[:, :5] == race_units[0]).mean()
    assert abs(frac - 0.5) < 0.03, frac
    allies = pos[:, :5]
    at_centre = np.all(np.abs(allies - 16.0) < 3.0, axis=(1, 2))
    assert abs(at_centre.mean() - 0.5) < 0.05, at_centre.mean()
    reflect = ~at_centre
    assert np.all(allies[reflect, :, 0] < 16.0 + 1.5)
    assert np.all((pos > 0.0) & (pos < 32.0))
    # mirrored enemies of reflect starts: x about 32 - x_ally, same y (up to jitter and push)
    mirror_err = np.abs(pos[reflect, 5:, 0] - (32.0 - allies[reflect, :, 0]))
    assert np.median(mirror_err) < 1.5


# --------------------------------------------------------------------------- training smoke


def test_qmix_trains_on_3s_vs_5z():
    """One short compiled chunk of QMIX on 3s_vs_5z: finite metrics including the win rate."""
    import powmarl

    env = envs.make("smax", map_name="3s_vs_5z")
    result = powmarl.train(
        "qmix",
        env,
        seeds=[0],
        t_max=1,
        batch_size=8,
        buffer_size=16,
        test_nepisode=2,
        test_interval=1,
        progress=False,
        # one learner branch instead of the ladder's five, small networks: compiling is the
        # cost of this smoke test
        length_buckets=1,
        rnn_hidden_dim=16,
        hypernet_embed=16,
        mixing_embed_dim=8,
    )
    row = result.metrics[-1]
    for name in ("eval/return_mean", "eval/battle_won_mean", "train/loss", "train/return_mean"):
        assert np.isfinite(row[name]), name
    assert 0.0 <= row["eval/battle_won_mean"] <= 1.0
    assert row["train/learner_calls"] >= 1


def test_presets_use_the_paper_settings():
    """SMAC presets: 10.05M steps, C = 0.1, buffer 5000, batch 128, 32 test episodes every
    30k; SMACv2: every 10k."""
    from powmarl import algos, presets
    from powmarl.api import resolve_settings

    smac = presets.get("pow_qmix_smax_3s_vs_5z")
    assert (smac.env_id, smac.env_kwargs) == ("smax", {"map_name": "3s_vs_5z"})
    for name, interval in (("pow_qmix_smax_27m_vs_30m", 30_000), ("qmix_smacv2_zerg_5v5", 10_000)):
        preset = presets.get(name)
        env = envs.make(preset.env_id, **preset.env_kwargs)
        cfg, hp = resolve_settings(env, preset.settings, algos.make(preset.algo))
        assert cfg.t_max == 10_050_000 and cfg.test_interval == interval
        assert cfg.test_nepisode == 32 and cfg.buffer_size == 5000 and cfg.batch_size == 128
        assert float(hp.recognition_threshold) == pytest.approx(0.1)
    for algo in ("qmix", "ow_qmix", "pow_qmix", "pow_qplex"):
        for map_name in ("3s_vs_5z", "corridor", "6h_vs_8z", "3s5z_vs_3s6z", "27m_vs_30m"):
            assert f"{algo}_smax_{map_name}" in presets.PRESETS
        for race in ("protoss", "terran", "zerg"):
            assert f"{algo}_smacv2_{race}_5v5" in presets.PRESETS
