"""The shared value-decomposition learner (DESIGN sec. 4).

``make_learner(cfg, spec, algo, ...)`` returns pure ``init`` and ``update``
functions. ``update`` is the same fixed sequence of steps for every algorithm:

0. with ``Config.standardise_rewards``, the batch's rewards are standardised by running
   moments (``core/reward_scaling.py``), updated first with this batch;
1. forward: unroll the agent network; greedy actions and max utilities (stop-gradient);
2. bootstrap values at the online greedy actions (target mixer, or an extra);
3. TD(lambda) targets (stop-gradient);
4. extras with their own optimiser update first (``pre_update``);
5. a :class:`LossContext` collects what rules may read;
6. weights ``w = stop_gradient(algo.weighting(ctx, hp))``;
7. loss = masked weighted MSE of Q_tot + the extras' joint losses;
8. one Adam step with global-norm clipping over agent, mixer and joint extras;
9. hard target copy when the runner says so (every ``target_update_interval`` episodes).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from powmarl.algos.base import Algorithm, LossContext
from powmarl.config import Config, HParams
from powmarl.core.exploration import masked_argmax, take
from powmarl.core.losses import global_norm, masked_weighted_mse
from powmarl.core.returns import td_lambda_targets
from powmarl.core.reward_scaling import epymarl_slots, init_moments, standardise, update_moments
from powmarl.networks.agent import (
    AgentInputs,
    RNNAgent,
    agent_input_dim,
    build_agent_inputs,
    shift_last_actions,
    unroll_agent,
)
from powmarl.networks.mixers import MixInput
from powmarl.types import Array, EnvSpec, EpisodeBatch


@flax.struct.dataclass
class LearnerState:
    params: dict[str, Any]  # {"agent", "mixer", "extras": {name: params}}
    target_params: dict[str, Any]
    opt_state: Any  # main optimiser over agent, mixer and joint extras
    extra_opt_states: dict[str, Any]  # own-optimiser extras
    num_updates: Array  # [] int32
    last_grad_norm: Array  # [] clipped global norm of the last main step
    # RewardMoments with Config.standardise_rewards, else None (no leaves: a run without it
    # keeps the checkpoint layout it always had)
    reward_moments: Any = None


class Learner(NamedTuple):
    agent: RNNAgent
    init: Callable[..., LearnerState]
    update: Callable[..., tuple[LearnerState, dict[str, Array]]]
    agent_inputs: Callable[[Array, Array], Array]
    input_dim: int
    mixer: Any
    extras: tuple  # the algorithm's extras, bound to this config and env


def make_optimiser(hp: HParams, kind: str = "adam") -> optax.GradientTransformation:
    """Global-norm clipping then Adam (PyTorch defaults) or RMSprop (PyMARL's alpha 0.99,
    eps 1e-5 outside the square root, as PyTorch); hp values may be traced."""
    if kind == "adam":
        step = optax.adam(hp.lr)
    elif kind == "rmsprop":
        step = optax.rmsprop(hp.lr, decay=0.99, eps=1e-5, eps_in_sqrt=False)
    else:
        raise ValueError(f"optimiser: must be 'adam' or 'rmsprop', got {kind!r}")
    return optax.chain(optax.clip_by_global_norm(hp.grad_norm_clip), step)


@dataclasses.dataclass(frozen=True)
class _Parts:
    """What the learner's steps close over: the networks bound to one config and env."""

    cfg: Config
    spec: EnvSpec
    algo: Algorithm
    agent: RNNAgent
    mixer: Any
    extras: tuple
    input_dim: int
    last_action: bool
    agent_id: bool

    @property
    def own(self) -> tuple:  # extras with their own optimiser
        return tuple(e for e in self.extras if e.own_optimiser)

    @property
    def joint(self) -> tuple:  # extras trained by the main optimiser
        return tuple(e for e in self.extras if not e.own_optimiser)

    @property
    def boot_extra(self):
        return next((e for e in self.extras if e.supplies_bootstrap), None)

    def agent_inputs(self, obs, last_actions):
        spec = self.spec
        return build_agent_inputs(
            obs, last_actions, spec.num_actions, self.last_action, self.agent_id
        )

    def main_params(self, params):
        return {
            "agent": params["agent"],
            "mixer": params["mixer"],
            "extras": {e.name: params["extras"][e.name] for e in self.joint},
        }


def make_learner(
    cfg: Config, spec: EnvSpec, algo: Algorithm, last_action: bool, agent_id: bool
) -> Learner:
    """Build the learner for ``algo`` on an environment with ``spec``."""
    input_dim = agent_input_dim(
        spec.obs_dim, spec.num_agents, spec.num_actions, last_action, agent_id
    )
    parts = _Parts(
        cfg=cfg,
        spec=spec,
        algo=algo,
        agent=RNNAgent(cfg.rnn_hidden_dim, spec.num_actions),
        mixer=algo.make_mixer(cfg, spec),
        extras=tuple(e.bind(cfg, spec) for e in algo.extras),
        input_dim=input_dim,
        last_action=last_action,
        agent_id=agent_id,
    )
    return Learner(
        agent=parts.agent,
        init=functools.partial(_init, parts),
        update=functools.partial(_update, parts),
        agent_inputs=parts.agent_inputs,
        input_dim=input_dim,
        mixer=parts.mixer,
        extras=parts.extras,
    )


def learner_for_env(cfg: Config, env, algo: Algorithm) -> Learner:
    """:func:`make_learner` with the agent-input flags of ``cfg``, or the env's defaults where
    ``cfg`` leaves them None (``obs_last_action``, ``obs_agent_id``)."""
    last_action = env.obs_last_action if cfg.obs_last_action is None else cfg.obs_last_action
    agent_id = env.obs_agent_id if cfg.obs_agent_id is None else cfg.obs_agent_id
    return make_learner(cfg, env.spec, algo, last_action, agent_id)


def _init(parts: _Parts, key, example: EpisodeBatch) -> LearnerState:
    """``example``: one batch (leaves [B, ...]) fixing shapes; its values are unused."""
    cfg, spec, extras = parts.cfg, parts.spec, parts.extras
    agent_key, mixer_key, *extra_keys = jax.random.split(key, 2 + len(extras))
    a, u = spec.num_agents, spec.num_actions
    agent_params = parts.agent.init(
        agent_key, jnp.zeros((a, cfg.rnn_hidden_dim)), jnp.zeros((a, parts.input_dim))
    )
    mix_example = MixInput(
        chosen_qs=jnp.zeros((1, a)),
        states=jnp.zeros((1, spec.state_dim)),
        actions_onehot=jnp.zeros((1, a, u)),
        max_qs=jnp.zeros((1, a)),
    )
    main = {"agent": agent_params, "mixer": parts.mixer.init(mixer_key, mix_example)}
    extra_params = {
        e.name: e.after_init(e.init(k, cfg, spec, example, parts.input_dim), main)
        for e, k in zip(extras, extra_keys)
    }
    params = {**main, "extras": extra_params}
    return LearnerState(
        params=params,
        target_params=params,
        opt_state=make_optimiser(HParams(), parts.algo.optimiser).init(parts.main_params(params)),
        extra_opt_states={e.name: e.init_opt_state(params["extras"][e.name]) for e in parts.own},
        num_updates=jnp.zeros((), jnp.int32),
        last_grad_norm=jnp.zeros((), jnp.float32),
        reward_moments=init_moments() if cfg.standardise_rewards else None,
    )


def _bootstrap_values(parts: _Parts, state: LearnerState, ctx: LossContext) -> Array:  # [B, N]
    boot_extra = parts.boot_extra
    if boot_extra is not None:
        name = boot_extra.name
        return boot_extra.bootstrap(
            state.params["extras"][name], state.target_params["extras"][name], ctx
        )
    target_qs = unroll_agent(parts.agent, state.target_params["agent"], ctx.agent_inputs)
    avail = ctx.batch.avail_actions[:, : target_qs.shape[1]]
    mix = MixInput(  # double Q: target utilities at the online greedy actions
        chosen_qs=take(target_qs, ctx.greedy_actions),
        states=ctx.batch.state,
        actions_onehot=jax.nn.one_hot(ctx.greedy_actions, parts.spec.num_actions),
        max_qs=take(target_qs, masked_argmax(target_qs, avail)),  # QPLEX's max_q_i
    )
    return parts.mixer.apply(state.target_params["mixer"], mix)


def _td_targets(ctx: LossContext, hp: HParams) -> Array:  # [B, T]
    batch = ctx.batch
    boot = ctx.bootstrap
    if batch.obs.shape[1] == batch.reward.shape[1]:
        # tail dropped: every episode terminated, so Qbar_T is never used
        boot = jnp.concatenate([boot, jnp.zeros_like(boot[:, :1])], axis=1)
    return td_lambda_targets(batch.reward, batch.terminated, ctx.mask, boot, hp.gamma, hp.td_lambda)


def _loss_fn(parts: _Parts, diff, agent_qs, ctx: LossContext, hp: HParams):
    """Steps 5-7: Q_tot of the taken actions, the rule's weights, the weighted TD loss plus
    the joint extras' losses; (total, metrics)."""
    batch, algo = ctx.batch, parts.algo
    num_steps = batch.reward.shape[1]
    chosen = take(agent_qs[:, :num_steps], batch.actions)  # [B, T, A]
    mix = MixInput(
        chosen_qs=chosen,
        states=batch.state[:, :num_steps],
        actions_onehot=jax.nn.one_hot(batch.actions, parts.spec.num_actions),
        max_qs=ctx.max_qs[:, :num_steps],
    )
    q_tot = parts.mixer.apply(diff["mixer"], mix)  # [B, T]
    ctx = ctx.replace(q_tot=jax.lax.stop_gradient(q_tot))
    weights = jax.lax.stop_gradient(algo.weighting(ctx, hp))  # [B, T]
    if weights.shape != ctx.mask.shape:  # a [B] or [T] result would broadcast silently
        raise ValueError(
            f"{algo.name}: the weighting rule must return weights of shape [B, T] = "
            f"{tuple(ctx.mask.shape)}, got {tuple(weights.shape)}"
        )
    q_fit = q_tot
    for e in parts.joint:
        term = e.residual(diff["extras"][e.name], ctx, hp)
        q_fit = q_fit if term is None else q_fit + term
    loss_q_tot = algo.q_tot_loss_scale * masked_weighted_mse(q_fit, ctx.targets, weights, ctx.mask)
    n = jnp.maximum(ctx.mask.sum(), 1.0)
    metrics = {
        "train/loss_q_tot": loss_q_tot,
        "train/q_tot_mean": (q_tot * ctx.mask).sum() / n,
        "train/target_mean": (ctx.targets * ctx.mask).sum() / n,
        "train/td_error_abs": (jnp.abs(q_tot - ctx.targets) * ctx.mask).sum() / n,
        "train/weight_mean": (weights * ctx.mask).sum() / n,
    }
    total = loss_q_tot
    for e in parts.joint:
        extra_loss, extra_metrics = e.joint_loss(diff["extras"][e.name], ctx, hp)
        total = total + extra_loss
        metrics.update(extra_metrics)
    metrics["train/loss"] = total
    return total, metrics


def _pre_update(parts: _Parts, state: LearnerState, ctx: LossContext, hp: HParams, first_call):
    extras = dict(state.params["extras"])
    opt_states = dict(state.extra_opt_states)
    metrics = {}
    for e in parts.own:
        extras[e.name], opt_states[e.name], m = e.pre_update(
            extras[e.name], opt_states[e.name], ctx, hp, first_call
        )
        metrics.update(m)
    return {**state.params, "extras": extras}, opt_states, metrics


def _forward(parts: _Parts, state: LearnerState, batch: EpisodeBatch, hp: HParams, t_env):
    """Steps 1-3: the agent unroll (with its VJP), greedy actions, bootstrap values and
    TD(lambda) targets; (agent_qs, agent_vjp, ctx)."""
    spec, cfg = parts.spec, parts.cfg
    last_actions = shift_last_actions(batch.actions)[:, : batch.obs.shape[1]]
    if cfg.remat_agent:  # built per step inside the unrolls (networks/agent.py)
        inputs = AgentInputs(
            batch.obs, last_actions, spec.num_actions, parts.last_action, parts.agent_id
        )
    else:
        inputs = parts.agent_inputs(batch.obs, last_actions)  # [B, N, A, I]
    agent_qs, agent_vjp = jax.vjp(
        lambda p: unroll_agent(parts.agent, p, inputs), state.params["agent"]
    )
    qs_sg = jax.lax.stop_gradient(agent_qs)
    greedy = masked_argmax(qs_sg, batch.avail_actions)  # [B, T+1, A]
    ctx = LossContext(
        batch=batch,
        agent_inputs=inputs,
        agent_qs=qs_sg,
        greedy_actions=greedy,
        max_qs=take(qs_sg, greedy),
        targets=jnp.zeros(batch.reward.shape, jnp.float32),
        mask=batch.filled.astype(jnp.float32),
        t_env=jnp.asarray(t_env, jnp.float32),
        bootstrap=jnp.zeros(batch.obs.shape[:2], jnp.float32),
        prev_grad_norm=state.last_grad_norm,
    )
    one_step = batch.obs.shape[1] == 1 and batch.reward.shape[1] == 1
    if parts.algo.weighting_reads_bootstrap or not one_step:
        # TD(lambda) never reads bootstrap slot 0, so a one-step batch without tail skips it
        ctx = ctx.replace(bootstrap=jax.lax.stop_gradient(_bootstrap_values(parts, state, ctx)))
    ctx = ctx.replace(targets=jax.lax.stop_gradient(_td_targets(ctx, hp)))
    return agent_qs, agent_vjp, ctx


def _update(
    parts: _Parts,
    state: LearnerState,
    batch: EpisodeBatch,
    hp: HParams,
    t_env: Array,
    first_call: Array,
    update_targets: Array,
) -> tuple[LearnerState, dict[str, Array]]:
    """One learner call on a sampled batch; ``first_call``/``update_targets`` are bools.

    ``batch`` has T transitions and T+1 observation slots, or T slots when the runner
    dropped the bootstrap tail because every episode in it terminated.
    """
    moments = state.reward_moments
    if parts.cfg.standardise_rewards:  # every part of the update sees the scaled rewards
        moments = update_moments(moments, batch.reward, epymarl_slots(batch.filled))
        batch = batch.replace(reward=standardise(moments, batch.reward))
    agent_qs, agent_vjp, ctx = _forward(parts, state, batch, hp, t_env)
    params, extra_opt_states, metrics = _pre_update(parts, state, ctx, hp, first_call)
    if parts.cfg.standardise_rewards:
        metrics["train/reward_std_running"] = jnp.sqrt(moments.var)
    extras_out = {}
    for e in parts.extras:
        extras_out[e.name], extra_metrics = e.outputs(params["extras"][e.name], ctx, hp)
        metrics.update(extra_metrics)
    ctx = ctx.replace(extras_out=extras_out)
    main = parts.main_params(params)
    diff = {"mixer": main["mixer"], "extras": main["extras"]}
    grad_fn = jax.value_and_grad(functools.partial(_loss_fn, parts), argnums=(0, 1), has_aux=True)
    (_, loss_metrics), (grad_diff, grad_qs) = grad_fn(diff, agent_qs, ctx, hp)
    grads = {"agent": agent_vjp(grad_qs)[0], **grad_diff}
    optimiser = make_optimiser(hp, parts.algo.optimiser)
    updates, opt_state = optimiser.update(grads, state.opt_state, main)
    main = optax.apply_updates(main, updates)
    params = {
        "agent": main["agent"],
        "mixer": main["mixer"],
        "extras": {**params["extras"], **main["extras"]},
    }
    target_params = jax.lax.cond(update_targets, lambda: params, lambda: state.target_params)
    metrics.update(loss_metrics)
    grad_norm = global_norm(grads)
    metrics["train/grad_norm"] = grad_norm
    new_state = LearnerState(
        params=params,
        target_params=target_params,
        opt_state=opt_state,
        extra_opt_states=extra_opt_states,
        num_updates=state.num_updates + 1,
        last_grad_norm=jnp.minimum(grad_norm, hp.grad_norm_clip),
        reward_moments=moments,
    )
    return new_state, metrics
