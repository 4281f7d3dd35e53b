"""The shared learner: every algorithm updates, the truncated-batch path, the Extra and
weighting slots."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import powmarl
from powmarl import algos
from powmarl.algos import Algorithm, Extra
from powmarl.algos import weighting as weighting_rules
from powmarl.config import Config, HParams
from powmarl.learner import make_learner
from powmarl.networks.mixers import QMixer
from powmarl.runners.period import truncate_batch
from powmarl.types import EpisodeBatch

pytestmark = [
    pytest.mark.usefixtures("key_reuse_check"),
    # one worker for the module: its learners run un-jitted and share per-primitive kernels,
    # which each worker would compile again (measured: 114 s CPU in one process, 291 s when
    # xdist spread the tests over two workers)
    pytest.mark.xdist_group("test_learner"),
]


CFG = Config(
    batch_size=4,
    buffer_size=16,
    num_envs=2,
    rnn_hidden_dim=8,
    mixing_embed_dim=8,
    hypernet_embed=16,
    # the extras' networks as narrow: op by op, every distinct shape is kernels to compile
    central_mixing_embed_dim=16,
    lambda_hypernet_embed=16,
    lambda_mixing_embed=8,
    v_embed_dim=16,
    adv_hypernet_embed=16,
)
HP = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), HParams())
ENVS = {
    "matrix_pow": lambda: powmarl.envs.make("matrix_pow"),
    "stag_tiny": lambda: powmarl.envs.make(
        "stag_hunt", grid_size=5, num_agents=2, num_stags=1, episode_limit=6
    ),
}


@functools.cache
def env_and_batch(env_name: str):
    """A tiny env and a batch of 4 random episodes shaped and typed as its rollouts are.

    Built with numpy rather than by a compiled rollout (seconds saved on a 2-core machine):
    predator-prey episodes run into the time limit (filled, never terminated, with the T+1
    bootstrap slot); matrix episodes terminate after one step with the payoff as reward.
    """
    env = ENVS[env_name]()
    spec = env.spec
    rng = np.random.default_rng(200)
    b, t, a, u = CFG.batch_size, spec.episode_limit, spec.num_agents, spec.num_actions
    if env_name == "matrix_pow":
        obs = np.broadcast_to(np.eye(2, dtype=np.float32)[None, :, None], (b, t + 1, a, 2))
        state = np.broadcast_to(np.eye(2, dtype=np.float32)[None], (b, t + 1, 2))
        avail = np.ones((b, t + 1, a, u), bool)
        actions = rng.integers(0, u, size=(b, t, a))
        reward = np.asarray(env.default_params())[actions[..., 0], actions[..., 1]]
        terminated = np.ones((b, t), bool)
    else:
        obs = (rng.uniform(size=(b, t + 1, a, spec.obs_dim)) < 0.1).astype(np.uint8)
        state = (rng.uniform(size=(b, t + 1, spec.state_dim)) < 0.1).astype(np.uint8)
        avail = rng.uniform(size=(b, t + 1, a, u)) < 0.7
        avail[..., 4] = True  # "stay" is always available
        noise = np.where(avail[:, :t], rng.uniform(size=(b, t, a, u)), -1.0)
        actions = noise.argmax(-1)
        reward = rng.choice([0.0, 0.0, 0.0, -1.0, 10.0], size=(b, t))
        terminated = np.zeros((b, t), bool)
    batch = EpisodeBatch(
        obs=jnp.asarray(obs),
        state=jnp.asarray(state),
        avail_actions=jnp.asarray(avail),
        actions=jnp.asarray(actions, jnp.uint8),
        reward=jnp.asarray(reward, jnp.float32),
        terminated=jnp.asarray(terminated),
        filled=jnp.ones((b, t), bool),
    )
    return env, batch


_COMPILED: dict = {}


def learner_fns(algo: Algorithm, env_name: str):
    """(learner, jitted init, jitted update) for an algorithm on an env, compiled once."""
    cache_key = (id(algo), env_name)  # Algorithm holds a dict, so it is not hashable
    if cache_key not in _COMPILED:
        _COMPILED[cache_key] = (algo, _build_learner(algo, env_name))
    return _COMPILED[cache_key][1]


def _build_learner(algo: Algorithm, env_name: str):
    env, _ = env_and_batch(env_name)
    learner = make_learner(CFG, env.spec, algo, env.obs_last_action, env.obs_agent_id)
    # run un-jitted: per-primitive kernels are shared by all algorithms, so a dozen learners
    # cost far less than a dozen whole-program compilations on a 2-core CPU
    return learner, learner.init, learner.update


def run_update(algo, env_name, batch, update_targets=False, seed=0):
    """Fresh learner state from ``seed``, one update on ``batch``: (state0, state1, metrics)."""
    _, init, update = learner_fns(algo, env_name)
    state0 = init(jax.random.key(seed), batch)
    state1, metrics = update(
        state0, batch, HP, jnp.float32(1000.0), jnp.asarray(True), jnp.asarray(update_targets)
    )
    return state0, state1, jax.device_get(metrics)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def trees_equal(a, b) -> bool:
    la, lb = leaves(a), leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def max_change(a, b) -> float:
    return max((float(np.abs(x - y).max()) for x, y in zip(leaves(a), leaves(b))), default=0.0)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@functools.cache
def registered_algo(name: str) -> Algorithm:
    return algos.make(name)


# --------------------------------------------------------------------------- every algorithm


def algo_env_cases():
    """Every registered algorithm on the tiny predator-prey (T = 6: scans, bootstrap, TD(lambda));
    on the one-step game only QMIX by default, the rest under ``-m slow`` (each
    un-jitted learner costs seconds on the 2-core CI machine)."""
    names = sorted(algos.registered())
    cases = [pytest.param(name, "stag_tiny", id=f"{name}-stag_tiny") for name in names]
    for name in names:
        marks = () if name == "qmix" else (pytest.mark.slow,)
        cases.append(pytest.param(name, "matrix_pow", marks=marks, id=f"{name}-matrix_pow"))
    return cases


@pytest.mark.parametrize("algo_name,env_name", algo_env_cases())
def test_every_algorithm_updates(algo_name, env_name):
    """One update: finite loss and metrics, agent (and mixer) params move, targets untouched."""
    algo = registered_algo(algo_name)
    _, batch = env_and_batch(env_name)
    state0, state1, metrics = run_update(algo, env_name, batch, update_targets=False)
    for name in ("train/loss", "train/loss_q_tot", "train/grad_norm"):
        assert np.isfinite(metrics[name]), (name, metrics[name])
    assert metrics["train/loss"] > 0.0
    assert all(np.isfinite(v).all() for v in metrics.values())
    assert int(state1.num_updates) == 1
    assert max_change(state0.params["agent"], state1.params["agent"]) > 0.0
    if leaves(state0.params["mixer"]):
        assert max_change(state0.params["mixer"], state1.params["mixer"]) > 0.0
    # the target network is not touched without update_targets
    assert trees_equal(state1.target_params, state0.params)
    assert not trees_equal(state1.target_params, state1.params)


@pytest.mark.parametrize("algo_name", ["qmix", pytest.param("pow_qmix", marks=pytest.mark.slow)])
def test_update_targets_copies_params(algo_name):
    """update_targets=True makes the target network (extras included) an exact copy of the new
    parameters; the update itself is the same as without the copy."""
    algo = registered_algo(algo_name)
    _, batch = env_and_batch("stag_tiny")
    _, state_no, metrics_no = run_update(algo, "stag_tiny", batch, update_targets=False)
    state0, state_yes, metrics_yes = run_update(algo, "stag_tiny", batch, update_targets=True)
    assert trees_equal(state_yes.target_params, state_yes.params)
    assert not trees_equal(state_yes.target_params, state0.params)
    assert metrics_yes["train/loss"] == pytest.approx(metrics_no["train/loss"], rel=1e-6)
    assert trees_equal(state_yes.params, state_no.params)


# --------------------------------------------------------------------------- truncated batches


def terminate_early(batch, lengths):
    """Rewrite a batch so episode b terminates after lengths[b] steps, zeroing the padding the
    way the rollout does (no observation slot after a terminal step)."""
    steps = batch.reward.shape[1]
    lengths = jnp.asarray(lengths)
    step_alive = jnp.arange(steps)[None] < lengths[:, None]  # [B, T]
    slot_alive = jnp.arange(steps + 1)[None] < lengths[:, None]  # [B, T+1]

    def zero(x, alive):
        alive = alive.reshape(alive.shape + (1,) * (x.ndim - 2))
        return jnp.where(alive, x, jnp.zeros_like(x))

    return batch.replace(
        obs=zero(batch.obs, slot_alive),
        state=zero(batch.state, slot_alive),
        avail_actions=zero(batch.avail_actions, slot_alive),
        actions=zero(batch.actions, step_alive),
        reward=zero(batch.reward, step_alive),
        terminated=jnp.arange(steps)[None] == (lengths[:, None] - 1),
        filled=step_alive,
    )


def assert_same_update(result_a, result_b):
    _, state_a, metrics_a = result_a
    _, state_b, metrics_b = result_b
    assert metrics_a.keys() == metrics_b.keys()
    for name in metrics_a:
        np.testing.assert_allclose(
            metrics_a[name], metrics_b[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert_trees_close(state_a.params, state_b.params)


def test_truncated_batch_gives_the_same_update():
    """Every episode terminated early: the update on the batch cut to the longest episode (or
    with only the bootstrap tail dropped) equals the update on the full batch."""
    algo = registered_algo("qmix")
    _, raw = env_and_batch("stag_tiny")
    batch = terminate_early(raw, [2, 3, 1, 3])
    assert int(batch.filled.sum(axis=1).max()) == 3
    full = run_update(algo, "stag_tiny", batch)
    assert np.isfinite(full[2]["train/loss"]) and full[2]["train/loss"] > 0
    for length in (3, 6):  # the longest episode; every step, tail slot dropped
        short = truncate_batch(batch, length)
        assert short.obs.shape[1] == length and short.reward.shape[1] == length
        assert_same_update(full, run_update(algo, "stag_tiny", short))


def test_truncation_matters_when_episodes_hit_the_time_limit():
    """Control: episodes that ran into the time limit need Qbar_T, so dropping the tail changes
    the update (the equality above is not vacuous)."""
    algo = registered_algo("qmix")
    _, batch = env_and_batch("stag_tiny")
    assert bool((batch.filled[:, -1] & ~batch.terminated[:, -1]).any())
    full = run_update(algo, "stag_tiny", batch)
    cut = run_update(algo, "stag_tiny", truncate_batch(batch, 6))
    assert not np.isclose(full[2]["train/target_mean"], cut[2]["train/target_mean"], rtol=1e-6)


def test_matrix_batch_truncated_to_one_step():
    """The one-step game: the update on the batch cut to length 1 equals the full update."""
    algo = registered_algo("qmix")
    _, batch = env_and_batch("matrix_pow")
    assert batch.obs.shape[1] == 2 and bool(batch.terminated.all())
    full = run_update(algo, "matrix_pow", batch)
    short = truncate_batch(batch, 1)
    assert short.obs.shape[1] == 1
    assert_same_update(full, run_update(algo, "matrix_pow", short))
    # the targets are the rewards
    assert full[2]["train/target_mean"] == pytest.approx(float(batch.reward.mean()), rel=1e-5)


# --------------------------------------------------------------------------- slots


class ProbeExtra(Extra):
    """A joint-loss extra: pulls its parameter w towards 3 on real transitions."""

    name = "probe"

    def init(self, key, cfg, spec, example, input_dim):
        return {"w": jnp.zeros((spec.num_agents,), jnp.float32)}

    def outputs(self, params, ctx, hp):
        return {"w_sum": params["w"].sum()}, {"probe/w_sum": params["w"].sum()}

    def joint_loss(self, params, ctx, hp):
        real = ctx.mask.sum() / jnp.maximum(ctx.mask.size, 1)  # 1 in the one-step game
        loss = real * jnp.mean(jnp.square(params["w"] - 3.0))
        return loss, {"probe/loss": loss, "probe/w_sum_seen": ctx.extras_out["probe"]["w_sum"]}


def qmix_with(weighting=weighting_rules.uniform, extras=()) -> Algorithm:
    return Algorithm(
        name="probe_qmix",
        description="QMIX with test slots",
        make_mixer=lambda cfg, spec: QMixer(cfg.mixing_embed_dim, cfg.hypernet_embed),
        weighting=weighting,
        extras=extras,
    )


PROBE_ALGO = qmix_with(extras=(ProbeExtra(),))


def test_custom_extra_is_trained_by_main_optimiser():
    """An Extra with a joint_loss plugged into an Algorithm: its params move, its metric appears,
    its loss is added to train/loss, without touching the learner."""
    _, batch = env_and_batch("matrix_pow")
    state0, state1, metrics = run_update(PROBE_ALGO, "matrix_pow", batch)
    w0 = np.asarray(state0.params["extras"]["probe"]["w"])
    w1 = np.asarray(state1.params["extras"]["probe"]["w"])
    np.testing.assert_array_equal(w0, 0.0)
    # Adam's first step moves every coordinate by lr towards 3
    np.testing.assert_allclose(w1, float(HParams().lr), rtol=1e-3)
    assert metrics["probe/loss"] == pytest.approx(9.0)
    assert metrics["probe/w_sum_seen"] == pytest.approx(0.0)
    assert metrics["probe/w_sum"] == pytest.approx(0.0)  # outputs' metrics are logged too
    assert metrics["train/loss"] == pytest.approx(metrics["train/loss_q_tot"] + 9.0, rel=1e-6)
    # the extra's parameters travel with the target network too
    assert "probe" in state1.target_params["extras"]


def zero_weights(ctx, hp):
    assert ctx.q_tot is not None and ctx.q_tot.shape == ctx.targets.shape
    return jnp.zeros_like(ctx.targets)


def double_weights(ctx, hp):
    return 2.0 * jnp.ones_like(ctx.targets)


def test_zero_weighting_rule_silences_q_tot_loss():
    """A rule returning zeros makes the Q_tot loss 0 and leaves agent and mixer unchanged."""
    _, batch = env_and_batch("matrix_pow")
    state0, state1, metrics = run_update(qmix_with(zero_weights), "matrix_pow", batch)
    assert metrics["train/loss_q_tot"] == 0.0
    assert metrics["train/weight_mean"] == 0.0
    assert metrics["train/td_error_abs"] > 0.0  # there was an error to fit
    assert trees_equal(state1.params["mixer"], state0.params["mixer"])
    assert trees_equal(state1.params["agent"], state0.params["agent"])


def test_weighting_rule_scales_q_tot_loss():
    """Weights 2 double the uniform Q_tot loss from the same initial state."""
    _, batch = env_and_batch("matrix_pow")
    _, _, uniform = run_update(qmix_with(), "matrix_pow", batch)
    _, _, doubled = run_update(qmix_with(double_weights), "matrix_pow", batch)
    assert uniform["train/loss_q_tot"] > 0
    assert doubled["train/loss_q_tot"] == pytest.approx(2 * uniform["train/loss_q_tot"], rel=1e-5)
    assert doubled["train/weight_mean"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- remat_agent


@pytest.mark.parametrize("algo_name", ["qmix", "pow_qmix"])
def test_remat_agent_gives_the_same_update(algo_name):
    """``remat_agent`` (agent inputs built per step, GRU step rematerialised) changes memory,
    not the update: same metrics and parameters to float tolerance, on the full batch and on
    a truncated one (pow_qmix also unrolls Q*'s own agent on the first T slots)."""
    algo = registered_algo(algo_name)
    env, raw = env_and_batch("stag_tiny")
    lean_cfg = dataclasses.replace(CFG, remat_agent=True)
    lean = make_learner(lean_cfg, env.spec, algo, env.obs_last_action, env.obs_agent_id)
    for batch in (raw, truncate_batch(terminate_early(raw, [2, 3, 1, 3]), 3)):
        ref = run_update(algo, "stag_tiny", batch)
        state0 = lean.init(jax.random.key(0), batch)
        state1, metrics = lean.update(
            state0, batch, HP, jnp.float32(1000.0), jnp.asarray(True), jnp.asarray(False)
        )
        assert trees_equal(ref[0].params, state0.params)
        assert_same_update(ref, (state0, state1, jax.device_get(metrics)))


def per_episode_weights(ctx, hp):
    return jnp.ones(ctx.targets.shape[0])  # [B]: would broadcast against [B, T]


def test_weighting_rule_of_the_wrong_shape_is_an_error():
    """A rule must return [B, T]; a [B] result fails at compile time, naming the algorithm."""
    _, batch = env_and_batch("matrix_pow")
    with pytest.raises(ValueError, match=r"probe_qmix: the weighting rule must return weights"):
        run_update(qmix_with(per_episode_weights), "matrix_pow", batch)


@pytest.mark.parametrize("mode", ["copy", "independent"])
def test_resq_residual_agent_starts_as_a_copy_of_the_agent(mode):
    """``resq_residual_init``: 'copy' (the reference's ``copy.deepcopy(self.mac)``) starts
    ResQ's residual agent from the main agent's params and leaves its mixer drawn;
    'independent' draws both."""
    env, batch = env_and_batch("stag_tiny")
    cfg = dataclasses.replace(CFG, resq_residual_init=mode)
    learner = make_learner(cfg, env.spec, registered_algo("resq"), env.obs_last_action,
                           env.obs_agent_id)  # fmt: skip
    params = learner.init(jax.random.key(0), batch).params
    residual = params["extras"]["residual"]
    assert trees_equal(residual["agent"], params["agent"]) == (mode == "copy")
    assert not trees_equal(residual["mixer"], params["extras"]["central"]["mixer"])


def test_resq_residual_init_names_the_allowed_values():
    with pytest.raises(ValueError, match="resq_residual_init: must be 'copy' or 'independent'"):
        dataclasses.replace(CFG, resq_residual_init="clone").validate()
