"""Truth tables of every weighting rule and the POW recogniser's equations (notes sec. 3, 6.4)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from powmarl.algos import weighting
from powmarl.algos.base import LossContext
from powmarl.algos.extras import RecogniserQ
from powmarl.config import Config, HParams
from powmarl.networks.recogniser import Recogniser
from powmarl.types import EnvSpec, EpisodeBatch

pytestmark = pytest.mark.usefixtures("key_reuse_check")


def _ctx(
    actions, greedy, targets, q_tot=None, bootstrap=None, in_set=None, mask=None, t_env=1e6
):
    """A LossContext over B=1, T=len(targets) steps and A=2 agents, with U=3 actions."""
    actions = jnp.asarray(actions, jnp.int32)  # [T, A]
    steps = actions.shape[0]
    batch = EpisodeBatch(
        obs=jnp.zeros((1, steps + 1, 2, 1)),
        state=jnp.zeros((1, steps + 1, 1)),
        avail_actions=jnp.ones((1, steps + 1, 2, 3), bool),
        actions=actions[None],
        reward=jnp.zeros((1, steps)),
        terminated=jnp.zeros((1, steps), bool),
        filled=jnp.ones((1, steps), bool),
    )
    greedy = jnp.asarray(greedy, jnp.int32)[None]
    return LossContext(
        batch=batch,
        agent_inputs=jnp.zeros((1, steps + 1, 2, 1)),
        agent_qs=jnp.zeros((1, steps + 1, 2, 3)),
        greedy_actions=greedy,
        max_qs=jnp.zeros((1, steps + 1, 2)),
        targets=jnp.asarray(targets, jnp.float32)[None],
        mask=jnp.ones((1, steps)) if mask is None else jnp.asarray(mask, jnp.float32)[None],
        t_env=jnp.asarray(t_env, jnp.float32),
        bootstrap=jnp.zeros((1, steps + 1)) if bootstrap is None else jnp.asarray(bootstrap)[None],
        prev_grad_norm=jnp.zeros(()),
        q_tot=None if q_tot is None else jnp.asarray(q_tot, jnp.float32)[None],
        extras_out={} if in_set is None else {"recogniser": {"in_set": jnp.asarray(in_set)[None]}},
    )


HP = HParams(alpha=0.1, recognition_threshold=0.5, pow_weight=1.0, no_weighted_steps=100.0)


def test_uniform_is_one_everywhere():
    """uniform: w = 1."""
    ctx = _ctx([[0, 1], [2, 2]], [[0, 0], [0, 0], [0, 0]], [1.0, -1.0])
    np.testing.assert_array_equal(weighting.uniform(ctx, HP), [[1.0, 1.0]])


def test_central_truth_table():
    """CW: 1 on the greedy joint action or where y > Q*(s, a_hat); alpha otherwise."""
    #            greedy&low   not greedy&high   not greedy&low   partial match&low
    actions = [[0, 1], [2, 2], [1, 1], [0, 2]]
    greedy = [[0, 1], [0, 0], [0, 0], [0, 1], [0, 0]]
    targets = [0.0, 5.0, 0.0, 0.0]
    boot = [1.0, 1.0, 1.0, 1.0, 9.0]  # Q*(s_t, a_hat_t) for t = 0..3 (+ the tail)
    w = weighting.central(_ctx(actions, greedy, targets, bootstrap=boot), HP)
    np.testing.assert_allclose(w, [[1.0, 1.0, 0.1, 0.1]])


def test_optimistic_truth_table():
    """OW: 1 where Q_tot < y (underestimate), alpha where Q_tot >= y."""
    ctx = _ctx([[0, 0]] * 3, [[0, 0]] * 4, [1.0, 1.0, 1.0], q_tot=[0.0, 1.0, 2.0])
    np.testing.assert_allclose(weighting.optimistic(ctx, HP), [[1.0, 0.1, 0.1]])


def test_potentially_optimal_truth_table_and_warm_up():
    """POW: pow_weight where |gap| < C and the step is real, alpha elsewhere; 1 in warm-up."""
    gap = jnp.asarray([0.0, -0.4, -0.5, 3.0, -3.0])
    mask = [1.0, 1.0, 1.0, 1.0, 0.0]
    hp = HP.replace(alpha=0.0, pow_weight=5.0, pow_weight_finish=5.0)  # constant weight 5
    in_set = weighting.recognised(gap, hp)  # C = 0.5, strict; a positive gap counts by |.|
    np.testing.assert_array_equal(in_set, [True, True, False, False, False])
    ctx = _ctx([[0, 0]] * 5, [[0, 0]] * 6, [0.0] * 5, in_set=in_set, mask=mask, t_env=1000.0)
    np.testing.assert_allclose(weighting.potentially_optimal(ctx, hp), [[5.0, 5.0, 0, 0, 0]])
    warm = ctx.replace(t_env=jnp.asarray(100.0))  # t_env <= no_weighted_steps: unweighted
    np.testing.assert_allclose(weighting.potentially_optimal(warm, hp), [[1.0] * 5])


@pytest.mark.parametrize(
    ("start", "finish", "t_env", "expected"),
    [
        (5.0, 1.0, 0.0, 5.0), (5.0, 1.0, 500.0, 3.0), (5.0, 1.0, 1000.0, 1.0),
        (5.0, 1.0, 4000.0, 1.0),  # the max holds it at finish after the anneal
        (1.0, 1.0, 700.0, 1.0),  # the reference defaults: constant
        (0.5, 1.0, 0.0, 1.0),  # w0 < finish: the reference's max jumps to finish at once
    ],
)  # fmt: skip
def test_in_set_weight_anneals_linearly_as_the_reference(start, finish, t_env, expected):
    """w(t) = max(finish, w0 - t (w0 - finish) / T), T = pow_weight_anneal_time = 1000."""
    hp = HP.replace(pow_weight=start, pow_weight_finish=finish, pow_weight_anneal_time=1000.0)
    assert float(weighting.in_set_weight(jnp.asarray(t_env), hp)) == pytest.approx(expected)


def _recogniser(seed=0, states=8, agents=3, actions=4):
    module = Recogniser(hypernet_embed=16, mixing_embed=8, v_embed=16)
    key = jax.random.key(seed)
    s_key, _a_key, q_key, p_key = jax.random.split(key, 4)
    states_x = jax.random.normal(s_key, (states, 5))
    qs = jax.random.normal(q_key, (states, agents, actions))
    params = module.init(
        p_key, jnp.zeros((1, agents)), jnp.zeros((1, 5)), jnp.zeros((1, agents, actions))
    )
    return module, params, states_x, qs


def test_recogniser_igm_and_value_at_greedy():
    """Q_r(s, a_hat) = V(s) and Q_r(s, a) <= V(s): the greedy joint action maximises Q_r."""
    module, params, states, qs = _recogniser()
    greedy = qs.argmax(-1)  # [S, A]
    best = qs.max(-1)
    import itertools

    joints = jnp.asarray(list(itertools.product(range(4), repeat=3)))
    for joint in joints:
        chosen = jnp.take_along_axis(qs, jnp.broadcast_to(joint, (8, 3))[..., None], -1)[..., 0]
        onehot = jnp.broadcast_to(jax.nn.one_hot(joint, 4), (8, 3, 4))
        _q_r, gap = module.apply(params, chosen - best, states, onehot)
        assert bool(jnp.all(gap <= 1e-6))
    q_hat, gap_hat = module.apply(params, jnp.zeros((8, 3)), states, jax.nn.one_hot(greedy, 4))
    np.testing.assert_allclose(gap_hat, 0.0, atol=1e-6)
    values = module.apply(params, jnp.zeros((8, 3)), states, jax.nn.one_hot(greedy, 4))[0]
    np.testing.assert_allclose(q_hat, values)


def test_recogniser_lambdas_are_nonnegative_and_bilinear():
    """lambda_i >= 0 and gap = sum_i lambda_i * advantage_i (the two-factor form)."""
    module, params, states, _qs = _recogniser(seed=1)
    joint = jax.nn.one_hot(jnp.zeros((8, 3), jnp.int32), 4)
    lambdas = Recogniser.lambdas(params, module, states, joint)
    assert bool(jnp.all(lambdas >= 0))
    adv = -jnp.abs(jax.random.normal(jax.random.key(3), (8, 3)))
    _, gap = module.apply(params, adv, states, joint)
    np.testing.assert_allclose(gap, (lambdas * adv).sum(-1), rtol=1e-5, atol=1e-5)


def _lambdas_and_gap(module, seed):
    """(lambda_i(s, a) [8, 3] at a = all zeros, gap at random advantages, those advantages)."""
    params = module.init(
        jax.random.key(seed), jnp.zeros((1, 3)), jnp.zeros((1, 5)), jnp.zeros((1, 3, 4))
    )
    states = jax.random.normal(jax.random.key(seed + 1), (8, 5))
    joint = jax.nn.one_hot(jnp.zeros((8, 3), jnp.int32), 4)
    adv = -jnp.abs(jax.random.normal(jax.random.key(seed + 2), (8, 3)))
    lambdas = Recogniser.lambdas(params, module, states, joint)
    return lambdas, module.apply(params, adv, states, joint)[1], adv, params


def test_recogniser_without_abs_has_signed_lambdas():
    """``lambda_weights_abs=False``: the same bilinear form, but lambda takes both signs, so
    a positive gap (an action Q_r values above a_hat) is possible; gap(a_hat) is still 0."""
    module = Recogniser(hypernet_embed=16, mixing_embed=8, v_embed=16, weights_abs=False)
    lambdas, gap, adv, params = _lambdas_and_gap(module, 4)
    assert bool(jnp.any(lambdas < 0)) and bool(jnp.any(lambdas > 0))
    np.testing.assert_allclose(gap, (lambdas * adv).sum(-1), rtol=1e-5, atol=1e-5)
    zero = module.apply(params, jnp.zeros((8, 3)), jnp.zeros((8, 5)), jnp.zeros((8, 3, 4)))[1]
    np.testing.assert_array_equal(zero, 0.0)


def test_recogniser_attention_lambdas_are_qplex_weights():
    """``recogniser_lambda='attention'`` (use_lambda_hypernetwork=False): lambda_i(s, a) is
    QPLEX's attention weight (``AdvantageWeights``, > 0), gap = sum_i lambda_i A_i, and no
    lambda-hypernet is built."""
    from powmarl.networks.qplex import AdvantageWeights

    module = Recogniser(v_embed=16, lambda_mode="attention", attention_layers=3)
    lambdas, gap, adv, params = _lambdas_and_gap(module, 7)
    assert set(params["params"]) == {"si_weight", "V"}
    states = jax.random.normal(jax.random.key(8), (8, 5))
    joint = jax.nn.one_hot(jnp.zeros((8, 3), jnp.int32), 4)
    direct = AdvantageWeights(4, 3, 64).apply({"params": params["params"]["si_weight"]},
                                              states, joint)  # fmt: skip
    np.testing.assert_allclose(lambdas, direct, rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(lambdas > 0))
    np.testing.assert_allclose(gap, (lambdas * adv).sum(-1), rtol=1e-5, atol=1e-5)


def _recogniser_extra(clip="reference", **settings):
    cfg = Config(
        lambda_hypernet_embed=16, lambda_mixing_embed=8, v_embed_dim=16, recogniser_clip=clip,
        **settings,
    )
    spec = EnvSpec(num_agents=2, num_actions=3, obs_dim=1, state_dim=1, episode_limit=4)
    extra = RecogniserQ().bind(cfg, spec)
    params = extra.init(jax.random.key(0), cfg, spec, None, 1)
    ctx = _ctx([[0, 1], [2, 2], [1, 0], [0, 0]], [[0, 0]] * 5, [3.0, -2.0, 1.0, 0.5])
    ctx = ctx.replace(agent_qs=jax.random.normal(jax.random.key(1), (1, 5, 2, 3)))
    return extra, params, ctx


def test_recogniser_set_is_the_greedy_action_under_only_optimal_action():
    """``in_set``: |gap| < C, or under ``only_optimal_action`` exactly the steps whose joint
    action is the greedy one (the reference's ``is_max_joint_action``), whatever Q_r says."""
    greedy = jnp.asarray([[[0, 1], [2, 0], [1, 0], [0, 0], [0, 0]]], jnp.int32)
    for only_optimal in (False, True):  # taken: [0, 1], [2, 2], [1, 0], [0, 0]
        extra, params, ctx = _recogniser_extra(only_optimal_action=only_optimal)
        ctx = ctx.replace(greedy_actions=greedy)
        out, metrics = extra.outputs(params, ctx, HParams(recognition_threshold=0.1))
        expected = [True, False, True, True] if only_optimal else np.abs(out["gap"][0]) < 0.1
        np.testing.assert_array_equal(out["in_set"][0], expected)
        assert float(metrics["pow/in_set_fraction"]) == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("first_call, steps", [(True, 20), (False, 10)])
def test_recogniser_takes_k_adam_steps(first_call, steps):
    """Q_r takes 20 Adam steps on the first learner call and 10 after (optimiser count)."""
    extra, params, ctx = _recogniser_extra()
    opt_state = extra.init_opt_state(params)
    _, opt_state, metrics = extra.pre_update(
        params, opt_state, ctx, HParams(), jnp.asarray(first_call)
    )
    assert int(optax.tree_utils.tree_get(opt_state, "count")) == steps
    assert np.isfinite(float(metrics["pow/recogniser_loss"]))


def test_recogniser_clip_counts_stale_main_gradients():
    """A large previous main-step norm held whole ('stale_constant') shrinks the Q_r steps;
    'own' does not count it."""
    moved = {}
    for clip in ("stale_constant", "own"):
        extra, params, ctx = _recogniser_extra(clip)
        ctx = ctx.replace(prev_grad_norm=jnp.asarray(1e6))
        new, _, _ = extra.pre_update(
            params, extra.init_opt_state(params), ctx, HParams(lr=1.0), jnp.asarray(False)
        )
        delta = jax.tree.map(lambda a, b: jnp.abs(a - b).max(), new, params)
        moved[clip] = max(float(x) for x in jax.tree.leaves(delta))
    # Adam normalises step sizes, but clipping by 1e6 makes gradients ~1e-6 of their size,
    # so epsilon (1e-8) is no longer negligible and the stale_constant steps are visibly smaller
    assert moved["stale_constant"] < 0.9 * moved["own"], moved


def test_reference_clip_rescales_the_stale_gradients_at_every_inner_step():
    """``clip_grad_norm_(all params)`` at each of the K Q_r steps rescales the stale
    main-step gradients in place, so their norm n shrinks step by step. By hand (clip c,
    Q_r gradient norm g_k): s_k = min(1, c / (sqrt(g_k^2 + n_k^2) + 1e-6)), n_{k+1} = s_k n_k."""
    norms, stale0 = [3.0, 0.5, 7.0, 2.0, 12.0], 40.0
    hp = HParams()
    expected_scales, n = [], stale0
    for g in norms:
        s_k = min(1.0, 10.0 / (np.sqrt(g * g + n * n) + 1e-6))
        expected_scales.append(s_k)
        n *= s_k
    # by hand for the first two: 10/sqrt(9+1600) = 0.24931, n = 9.9724; then
    # 10/sqrt(0.25+99.449) = 1.0016 -> 1 (no clip), n unchanged
    np.testing.assert_allclose(expected_scales[:2], [0.24931, 1.0], rtol=1e-4)
    for clip, decays in (("reference", True), ("stale_constant", False)):
        extra, _, _ = _recogniser_extra(clip)
        stale = jnp.float32(stale0)
        for k, g in enumerate(norms):
            grads = {"w": jnp.asarray([g, 0.0], jnp.float32)}
            clipped, stale = extra._clip(grads, stale, hp)
            got = float(clipped["w"][0]) / g
            if decays:
                np.testing.assert_allclose(got, expected_scales[k], rtol=1e-5)
        final = stale0 * np.prod(expected_scales) if decays else stale0
        np.testing.assert_allclose(float(stale), final, rtol=1e-5)


@pytest.mark.parametrize("steps, differ", [(1, False), (10, True)])
def test_reference_and_constant_stale_clips_part_after_the_first_step(steps, differ):
    """One Q_r step: the two reference readings agree bitwise; over 10 steps they part."""
    out = {}
    for clip in ("reference", "stale_constant"):
        extra, params, ctx = _recogniser_extra(clip)
        extra = dataclasses.replace(
            extra, cfg=dataclasses.replace(extra.cfg, recogniser_updates=steps)
        )
        ctx = ctx.replace(prev_grad_norm=jnp.asarray(50.0))
        new, _, _ = extra.pre_update(
            params, extra.init_opt_state(params), ctx, HParams(), jnp.asarray(False)
        )
        out[clip] = [np.asarray(x) for x in jax.tree.leaves(new)]
    same = all(np.array_equal(a, b) for a, b in zip(out["reference"], out["stale_constant"]))
    assert same != differ


def test_residual_is_zero_on_the_greedy_joint_action_and_nonpositive_elsewhere():
    """ResQ: w_r Q_res = 0 where every agent is greedy, <= 0 (and nonzero) elsewhere."""
    from powmarl.algos.extras import Residual

    cfg = Config(rnn_hidden_dim=8, central_mixing_embed_dim=8)
    spec = EnvSpec(num_agents=2, num_actions=3, obs_dim=1, state_dim=1, episode_limit=4)
    extra = Residual().bind(cfg, spec)
    params = extra.init(jax.random.key(0), cfg, spec, None, 1)
    actions = [[0, 1], [2, 2], [1, 0], [0, 0]]
    greedy = [[0, 1], [0, 0], [1, 0], [0, 1], [0, 0]]
    ctx = _ctx(actions, greedy, [0.0] * 4)
    ctx = ctx.replace(agent_inputs=jax.random.normal(jax.random.key(1), (1, 5, 2, 1)))
    term = np.asarray(extra.residual(params, ctx, HParams()))[0]
    assert term[0] == 0.0 and term[2] == 0.0  # greedy joint actions
    assert term[1] < 0.0 and term[3] < 0.0


def test_central_mixer_is_not_monotonic():
    """Q* is unrestricted: some dQ*/dq_i is negative for some state (QMIX's never is)."""
    from powmarl.networks.central import CentralMixer

    mixer = CentralMixer(embed_dim=16)
    params = mixer.init(jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1, 4)))
    qs = jax.random.normal(jax.random.key(1), (64, 3))
    states = jax.random.normal(jax.random.key(2), (64, 4))
    grads = jax.grad(lambda q: mixer.apply(params, q, states).sum())(qs)
    assert float(grads.min()) < 0.0 < float(grads.max())
