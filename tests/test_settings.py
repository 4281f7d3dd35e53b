"""Settings: one resolution (algorithm < env < preset < user) with provenance, presets as
YAML, ``train --config``, hyperparameters an algorithm declares, and runners built from an
algorithm getting its defaults (issue 11)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest
from test_cli import TRAIN, assert_usage_error

import powmarl
from powmarl import algos, envs, presets, settings
from powmarl.algos.base import Algorithm
from powmarl.cli import main
from powmarl.config import Config, Declared, HParams, apply_overrides, from_dict, to_dict
from powmarl.networks.mixers import QMixer
from powmarl.presets import Preset
from powmarl.runners.jax_runner import make_runner

pytestmark = pytest.mark.usefixtures("key_reuse_check")

SMALL_HUNT = {"grid_size": 5, "num_agents": 2, "num_stags": 1, "episode_limit": 6}
#: Tiny networks and batches for real trainings on matrix_pow (a few seconds each).
TINY = {
    "batch_size": 16,
    "buffer_size": 100,
    "test_interval": 1000,
    "rnn_hidden_dim": 8,
    "mixing_embed_dim": 8,
    "hypernet_embed": 16,
}


def _beta_rule(ctx, hp):
    """w = 1 where Q_tot < y, else the algorithm's own traced ``beta`` (an OW-like rule)."""
    return jnp.where(ctx.q_tot < ctx.targets, 1.0, hp.beta)


def toy_algorithm() -> Algorithm:
    return Algorithm(
        name="toy_beta",
        description="QMIX weighted by a rule with its own hyperparameter beta",
        make_mixer=lambda cfg, spec: QMixer(cfg.mixing_embed_dim, cfg.hypernet_embed),
        weighting=_beta_rule,
        hparams=(
            Declared("beta", 0.5, "weight where Q_tot >= y", 0.0, 1.0),
            Declared("toy_heads", 2, "a static size of the toy (unused)", 1, traced=False),
        ),
        defaults={"lr": 0.002},
    )


# ----------------------------------------------------------------------------- layers


def test_each_layer_beats_the_ones_below_and_says_so():
    """library < algorithm < env < preset < user: each value comes from the highest layer
    that sets it, and ``sources`` names that layer."""
    algo = algos.make("pow_qmix")
    env = envs.make("stag_hunt", **SMALL_HUNT)
    preset = Preset("pow_qmix", "stag_hunt", SMALL_HUNT, {"t_max": 1000, "alpha": 0.2, "lr": 2e-3})
    r = settings.resolve(algo, env, {"lr": "0.0005", "batch_size": 8}, preset)
    assert r.cfg.central_mixing_embed_dim == 64 and r.sources["central_mixing_embed_dim"] == (
        "algorithm"
    )
    assert float(r.hp.recognition_threshold) == 1.0 and r.sources["recognition_threshold"] == "env"
    assert r.cfg.test_interval == 10_000 and r.sources["test_interval"] == "env"
    assert float(r.hp.alpha) == 0.2 and r.sources["alpha"] == "preset"  # beats POW's 0
    assert r.cfg.t_max == 1000 and r.sources["t_max"] == "preset"  # beats the env's 5.05M
    assert float(r.hp.lr) == 0.0005 and r.sources["lr"] == "user"  # beats the preset's
    assert r.cfg.batch_size == 8 and r.sources["batch_size"] == "user"
    assert float(r.hp.gamma) == 0.99 and "gamma" not in r.sources  # a library default
    assert r.cfg.rnn_hidden_dim == 64 and "rnn_hidden_dim" not in r.sources


def test_env_beats_the_algorithm():
    """An algorithm's defaults lose to the env's run settings but beat the library's."""
    algo = toy_algorithm()
    algo = Algorithm(**{**vars(algo), "defaults": {"lr": 0.002, "t_max": 77, "td_lambda": 0.3}})
    r = settings.resolve(algo, envs.make("matrix_pow"))
    assert r.cfg.t_max == 50_000 and r.sources["t_max"] == "env"
    assert float(r.hp.td_lambda) == 0.3 and r.sources["td_lambda"] == "algorithm"
    assert r.layers["algorithm"]["t_max"] == 77 and r.layers["env"]["t_max"] == 50_000


def test_record_holds_every_layer_typed_and_json():
    """record(): each layer's values converted to the settings' types, the sources, the
    preset's name; all of it JSON."""
    preset = presets.get("pow_qmix_matrix_pow")
    env = envs.make("matrix_pow")
    r = settings.resolve(algos.make("pow_qmix"), env, {"lr": "0.0005", "t_max": "2000"}, preset)
    record = json.loads(json.dumps(r.record()))["settings"]
    assert record["preset"] == "pow_qmix_matrix_pow"
    assert set(record["layers"]) == {"algorithm", "env", "preset", "user"}
    assert record["layers"]["user"] == {"lr": 0.0005, "t_max": 2000}
    assert record["layers"]["env"]["epsilon_finish"] == 1.0
    assert record["layers"]["preset"] == preset.settings
    assert record["sources"]["t_max"] == "user" and record["sources"]["alpha"] == "preset"
    assert set(record["sources"]) == {k for layer in record["layers"].values() for k in layer}


def test_bad_values_in_any_layer_name_the_setting():
    """Unknown names, wrong types and out-of-range values keep apply_overrides' messages."""
    algo, env = algos.make("qmix"), envs.make("matrix_pow")
    with pytest.raises(ValueError, match=r"unknown hyperparameter 'learning_rate'; allowed: .*lr"):
        settings.resolve(algo, env, {"learning_rate": 0.1})
    bad = Preset("qmix", "matrix_pow", {}, {"batch_size": 2.5})
    with pytest.raises(ValueError, match="batch_size: expected an integer, got 2.5"):
        settings.resolve(algo, env, preset=bad)
    with pytest.raises(ValueError, match=r"gamma: must be in \[0.0, 1.0\], got 2"):
        settings.resolve(algo, env, {"gamma": "2"})
    with pytest.raises(ValueError, match="remat_agent: expected true or false"):
        settings.resolve(algo, env, {"remat_agent": 3})


def test_resolved_configs_equal_those_of_the_old_resolution():
    """The values config.json gets are those of before (algorithm defaults < env family
    defaults), e.g. the unused Q* width of QMIX stays 256 and QPLEX's depth 2."""
    env = envs.make("matrix_pow")
    expected = {
        "qmix": (256, 2, 0.1), "vdn": (256, 2, 0.1), "qplex": (256, 2, 0.1),
        "cw_qmix": (256, 2, 0.1), "ow_qmix": (256, 2, 0.1), "resq": (128, 2, 0.1),
        "pow_qmix": (64, 2, 0.0), "pow_vdn": (64, 2, 0.0), "pow_qplex": (64, 3, 0.0),
    }  # fmt: skip
    for name, (width, layers, alpha) in expected.items():
        cfg, hp = powmarl.api.resolve_settings(env, {}, algos.make(name))
        assert (cfg.central_mixing_embed_dim, cfg.adv_hypernet_layers) == (width, layers), name
        assert float(hp.alpha) == alpha and float(hp.no_weighted_steps) == 0.0, name
        assert cfg.t_max == 50_000 and float(hp.epsilon_finish) == 1.0, name


# ----------------------------------------------------------------------------- presets


def test_presets_keep_their_names():
    assert len(presets.PRESETS) == 144
    for algo in presets.ALGOS:
        tasks = ("matrix_pow", "matrix_wqmix", "stag_hunt_p0", "stag_hunt_p4", "smax_2s3z")
        for task in (*tasks, "intersection"):
            assert f"{algo}_{task}" in presets.PRESETS
        assert f"{algo}_smacv2_zerg_5v5" in presets.PRESETS


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_round_trips_through_yaml(name):
    preset = presets.get(name)
    text = preset.to_yaml()
    assert Preset.from_yaml(text) == preset
    assert f"name: {name}\n" in text and f"algo: {preset.algo}\n" in text


def _env_values(env_id: str, env_kwargs: dict) -> dict:
    if env_id.startswith(("smax", "smacv2")):
        pytest.importorskip("jaxmarl")
    return settings.env_layer(envs.make(env_id, **env_kwargs))


def test_presets_pin_the_values_algorithms_and_envs_declare():
    """A preset's numbers are the algorithm's reference values and the env's run settings
    (so training from a preset resolves exactly as from its algorithm and env)."""
    env_values = {}
    for name, preset in presets.PRESETS.items():
        key = (preset.env_id, json.dumps(preset.env_kwargs, sort_keys=True))
        if key not in env_values:
            env_values[key] = _env_values(preset.env_id, preset.env_kwargs)
        algo_values = settings.algorithm_layer(algos.make(preset.algo))
        assert preset.settings == {**algo_values, **env_values[key]}, name


def test_env_run_defaults_by_family():
    """Each env declares its family's settings (notes sec. 4.4)."""
    assert settings.env_layer(envs.make("matrix_host"))["t_max"] == 50_000
    hunt = settings.env_layer(envs.make("stag_hunt"))
    assert hunt["recognition_threshold"] == 1.0 and hunt["t_max"] == 5_050_000
    pytest.importorskip("jaxmarl")
    assert settings.env_layer(envs.make("smax", map_name="2s3z"))["test_interval"] == 30_000
    assert settings.env_layer(envs.make("smacv2_zerg_5v5"))["test_interval"] == 10_000


@pytest.mark.parametrize(
    "text,needles",
    [
        ("algo: qmix\nenv: matrix_pow\nseeds: 3\n", ("unknown key 'seeds'", "allowed", "env_args")),
        ("env: matrix_pow\n", ("needs the key 'algo'",)),
        ("algo: qmix\nenv: matrix_pow\nsettings: [1, 2]\n", ("settings", "mapping")),
        ("algo: qmix\nenv: matrix_pow\nsettings: {lr: [1]}\n", ("lr", "number, bool or string")),
        ("algo: [qmix\n", ("not valid YAML",)),
        ("- qmix\n", ("must be a mapping",)),
    ],
)
def test_bad_yaml_is_one_line_naming_the_key(text, needles):
    with pytest.raises(ValueError) as err:
        Preset.from_yaml(text, "exp.yaml")
    line = str(err.value)
    assert "\n" not in line and line.startswith("exp.yaml: ")
    for needle in needles:
        assert needle in line, (needle, line)


# ----------------------------------------------------------------------------- command line


def test_config_show_prints_a_preset_that_reads_back(capsys):
    assert main(["config", "show", "pow_qmix_stag_hunt_p4"]) == 0
    out = capsys.readouterr().out
    assert Preset.from_yaml(out) == presets.get("pow_qmix_stag_hunt_p4")
    assert "recognition_threshold: 1.0" in out and "punishment: -4.0" in out
    assert_usage_error(capsys, ["config", "show", "pow_qmix_nowhere"], "pow_qmix_nowhere")


def _write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "text,needles",
    [
        ("algo: qmix\nenv: matrix_pow\nsetting: {}\n", ("unknown key 'setting'", "settings")),
        (
            "algo: qmix\nenv: matrix_pow\nsettings: {learning_rate: 0.1}\n",
            ("settings", "learning_rate", "allowed", "lr"),
        ),
        ("algo: qmix\nenv: matrix_pow\nsettings: {gamma: 2}\n", ("gamma", "[0.0, 1.0]")),
        ("algo: qmix\nenv: matrix_pow\nenv_args: {size: 3}\n", ("size", "allowed")),
        ("algo: qmixx\nenv: matrix_pow\n", ("qmixx", "allowed")),
    ],
)
def test_train_config_errors_are_one_line(capsys, tmp_path, text, needles):
    assert_usage_error(capsys, [*TRAIN, "--config", _write(tmp_path, text)], *needles)


def test_train_config_refuses_conflicting_flags(capsys, tmp_path):
    path = _write(tmp_path, "algo: qmix\nenv: matrix_pow\n")
    assert_usage_error(capsys, [*TRAIN, "--config", path, "--algo", "vdn"], "--algo", "'qmix'")
    both = [*TRAIN, "--config", path, "--preset", "qmix_matrix_pow"]
    assert_usage_error(capsys, both, "not both")
    assert_usage_error(capsys, [*TRAIN, "--config", str(tmp_path / "none.yaml")], "no such file")


def test_train_from_a_config_file_end_to_end(capsys, tmp_path):
    """``train --config``: the file's settings beat the env's; --set beats the file's; the
    run dir's config.json has the resolved values."""
    settings_text = "\n".join(f"  {k}: {v}" for k, v in {**TINY, "test_nepisode": 4}.items())
    path = _write(
        tmp_path,
        "algo: qmix\nenv: matrix\nenv_args:\n  payoff: [[8, -12], [-12, 7.9]]\n"
        f"settings:\n{settings_text}\n  t_max: 2000\n  length_buckets: 1\n",
    )
    run_dir = tmp_path / "run"
    argv = [*TRAIN, "--config", path, "--set", "rnn_hidden_dim=4", "--run-dir", str(run_dir)]
    status = main([*argv, "--seeds", "0,1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "qmix on matrix" in out
    record = json.loads((run_dir / "config.json").read_text())
    assert record["algo"] == "qmix" and record["env_kwargs"]["payoff"][1] == [-12, 7.9]
    config, hparams = record["config"], record["hparams"]
    assert config["rnn_hidden_dim"] == 4  # --set beats the file
    assert config["test_nepisode"] == 4 and config["t_max"] == 2000  # the file beats the env
    assert hparams["epsilon_finish"] == 1.0  # the env's (the library's is 0.05)
    sources = record["settings"]["sources"]  # provenance, layer by layer
    assert sources["rnn_hidden_dim"] == "user" and sources["t_max"] == "preset"
    assert sources["epsilon_finish"] == "env" and "gamma" not in sources
    assert record["settings"]["layers"]["preset"]["test_nepisode"] == 4
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted({(r["seed"], r["t_env"]) for r in rows}) == [(0, 1000), (0, 2000), (1, 1000),
                                                              (1, 2000)]  # fmt: skip


# ----------------------------------------------------------------------------- declared


def test_declared_hyperparameters_resolve_parse_and_round_trip():
    algo = toy_algorithm()
    env = envs.make("matrix_pow")
    r = settings.resolve(algo, env)
    assert r.hp.extra == {"beta": 0.5} and r.cfg.extra == {"toy_heads": 2}
    assert float(r.hp.beta) == 0.5 and r.cfg.toy_heads == 2
    assert r.sources["beta"] == "algorithm" and r.sources["lr"] == "algorithm"
    r = settings.resolve(algo, env, {"beta": "0.25", "toy_heads": "3"})
    assert float(r.hp.beta) == 0.25 and r.cfg.toy_heads == 3 and r.sources["beta"] == "user"
    with pytest.raises(ValueError, match=r"beta: must be in \[0.0, 1.0\], got 2.0"):
        settings.resolve(algo, env, {"beta": 2})
    with pytest.raises(ValueError, match="toy_heads: expected an integer"):
        settings.resolve(algo, env, {"toy_heads": "two"})
    with pytest.raises(ValueError, match="unknown hyperparameter 'beta'"):
        settings.resolve(algos.make("qmix"), env, {"beta": 0.1})
    flat = to_dict(r.cfg, r.hp)  # config.json: flat names, like the fields'
    assert flat["hparams"]["beta"] == 0.25 and flat["config"]["toy_heads"] == 3
    assert "extra" not in flat["hparams"] and "declared" not in flat["config"]
    cfg, hp = from_dict(json.loads(json.dumps(flat)))
    assert cfg == r.cfg and hp == r.hp
    assert jax.tree.leaves(hp) == jax.tree.leaves(r.hp)  # beta is a leaf of the pytree


def test_declared_names_must_not_clash():
    with pytest.raises(ValueError, match="'alpha' is already a setting"):
        Algorithm(**{**vars(toy_algorithm()), "hparams": (Declared("alpha", 0.1, "again"),)})
    with pytest.raises(ValueError, match="traced hyperparameter needs a number"):
        Declared("mode", "fast", "a string cannot be traced")
    with pytest.raises(ValueError, match="defaults name 'gama'"):
        Algorithm(**{**vars(toy_algorithm()), "defaults": {"gama": 0.9}})


def test_grid_and_members_of_declared_hyperparameters():
    """hparam_grid takes traced declared names, refuses static ones, checks every value."""
    r = settings.resolve(toy_algorithm(), envs.make("matrix_pow"))
    settings.check_grid(r.cfg, r.hp, {"beta": [0.0, 1.0], "alpha": [0.1]})
    with pytest.raises(ValueError, match="toy_heads is a static setting"):
        settings.check_grid(r.cfg, r.hp, {"toy_heads": [1, 2]})
    with pytest.raises(ValueError, match=r"beta: must be in \[0.0, 1.0\], got 3.0"):
        settings.check_grid(r.cfg, r.hp, {"beta": [0.5, 3.0]})
    with pytest.raises(ValueError, match="unknown hyperparameter 'gamma2'; allowed: .*beta"):
        settings.check_grid(r.cfg, r.hp, {"gamma2": [0.5]})
    member = settings.member_hparams(r.cfg, r.hp, {"beta": 0.0, "lr": 0.01})
    assert member.extra == {"beta": 0.0} and float(member.lr) == 0.01
    assert r.hp.extra == {"beta": 0.5}  # unchanged
    with pytest.raises(ValueError, match="batch_size is a static setting"):
        settings.member_hparams(r.cfg, r.hp, {"batch_size": 8})


def test_a_traced_declared_hyperparameter_is_swept_without_recompiling():
    """beta reaches the rule as an array of the HParams pytree: one jit serves every value."""
    r = settings.resolve(toy_algorithm(), envs.make("matrix_pow"))
    traces = []

    @jax.jit
    def weights(hp):
        traces.append(1)
        ctx = type("Ctx", (), {"q_tot": jnp.array([1.0, 3.0]), "targets": jnp.array([2.0, 2.0])})
        return _beta_rule(ctx, hp)

    for beta in (0.0, 0.3):
        hp = jax.tree.map(jnp.float32, settings.member_hparams(r.cfg, r.hp, {"beta": beta}))
        assert weights(hp).tolist() == pytest.approx([1.0, beta])
    assert len(traces) == 1


def test_toy_rule_trains_on_matrix_pow_with_a_grid_over_its_beta():
    """A plug-in rule's own traced beta is swept by hparam_grid in one program: beta = 1 is
    uniform weighting (QMIX's loss), beta = 0 drops every over-estimated transition."""
    result = powmarl.train(
        toy_algorithm(),
        envs.make("matrix_pow"),
        seeds=[0],
        t_max=2000,
        progress=False,
        hparam_grid={"beta": [0.0, 1.0]},
        **TINY,
    )
    assert [m.hparams for m in result.members] == [{"beta": 0.0}, {"beta": 1.0}]
    assert result.hparams.extra["beta"].tolist() == [0.0, 1.0]
    q_tot = [r["train/q_tot_mean"] for r in result.metrics if r["t_env"] == 2000]
    assert len(q_tot) == 2 and q_tot[0] != q_tot[1]


def test_list_shows_declared_hyperparameters(capsys):
    if "toy_beta" not in algos.registered():
        algos.register("toy_beta", toy_algorithm)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("beta "))
    assert "[toy_beta]" in line and "default 0.5, traced, in [0.0, 1.0]" in line
    assert "toy_heads" in out and "static" in out


# ----------------------------------------------------------------------------- runners


def _central_width(runner, env) -> int:
    state = jax.eval_shape(runner.init, jax.random.key(0), env.default_params())
    return state.learner.params["extras"]["central"]["mixer"]["params"]["MLP_0"]["Linear_0"][
        "kernel"
    ].shape[-1]


def test_runner_from_a_bare_config_gets_the_algorithms_sizes():
    """make_runner(Config(), env, algo): POW's Q* is 64 wide (not WQMIX's 256), ResQ's 128;
    an explicit width still wins; cfg=None resolves the algorithm's and env's defaults."""
    env = envs.make("matrix_pow")
    pow_qmix = algos.make("pow_qmix")
    assert Config().central_mixing_embed_dim is None
    assert _central_width(make_runner(Config(), env, pow_qmix, seed_axis=None), env) == 64
    assert _central_width(make_runner(Config(), env, algos.make("cw_qmix"), None), env) == 256
    assert _central_width(make_runner(Config(), env, algos.make("resq"), None), env) == 128
    wide = Config(central_mixing_embed_dim=32)
    assert _central_width(make_runner(wide, env, pow_qmix, seed_axis=None), env) == 32
    runner = make_runner(None, env, pow_qmix, seed_axis=None)
    assert _central_width(runner, env) == 64
    assert float(settings.default_hparams(pow_qmix, env).alpha) == 0.0


def test_run_dirs_written_before_still_load():
    """config.json of a powmarl 0.1 run dir reads back with every value it holds; settings
    added since read as their defaults (which give the 0.1 behaviour)."""
    from pathlib import Path

    path = Path(__file__).parent / "data" / "runs_v0.1" / "jax_pow_qmix" / "config.json"
    record = json.loads(path.read_text())
    cfg, hp = from_dict(record)
    assert cfg.central_mixing_embed_dim == 64 and cfg.adv_hypernet_layers == 2
    assert float(hp.alpha) == 0.0 and hp.extra == {} and cfg.extra == {}
    # Config fields newer than the record (resq_residual_init acts only at a ResQ run's init,
    # which a resume from a checkpoint does not repeat; the Q_r switches' and the in-set
    # weight anneal's defaults are the behaviour the record was written with)
    added = {
        "standardise_rewards": False, "resq_residual_init": "copy",
        "recogniser_lambda": "hypernet", "recogniser_attention_layers": 3,
        "lambda_weights_abs": True, "only_optimal_action": False,
    }  # fmt: skip
    added_hp = {"pow_weight_finish": 1.0, "pow_weight_anneal_time": 1e6}
    written = to_dict(cfg, hp)
    assert {k: written["config"][k] for k in added} == added
    assert {k: written["hparams"][k] for k in added_hp} == added_hp
    written["config"] = {k: v for k, v in written["config"].items() if k not in added}
    written["hparams"] = {k: v for k, v in written["hparams"].items() if k not in added_hp}
    assert written == {"config": record["config"], "hparams": record["hparams"]}
    assert apply_overrides(cfg, HParams(**record["hparams"]), {})[0] == cfg
