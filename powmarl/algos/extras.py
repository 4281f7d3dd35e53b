"""Extra networks beside the agent and mixer: WQMIX's unrestricted Q* and POW's Q_r."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from powmarl.algos import weighting
from powmarl.algos.base import Extra, LossContext
from powmarl.config import Config, HParams
from powmarl.core.exploration import take
from powmarl.core.losses import global_norm, masked_weighted_mse
from powmarl.networks.agent import RNNAgent, unroll_agent
from powmarl.networks.central import CentralMixer
from powmarl.networks.recogniser import Recogniser
from powmarl.types import EnvSpec


def central_width(cfg: Config, default: int) -> int:
    """``cfg.central_mixing_embed_dim``, or the algorithm's ``default`` where it is None."""
    width = cfg.central_mixing_embed_dim
    return default if width is None else width


def taken(ctx: LossContext):
    """(number of steps T, taken actions [B, T, A], their one-hot [B, T, A, U])."""
    actions = ctx.batch.actions.astype(jnp.int32)
    return actions.shape[1], actions, jax.nn.one_hot(actions, ctx.agent_qs.shape[-1])


@dataclasses.dataclass(frozen=True)
class CentralQ(Extra):
    """Q*(s, tau, a): its own GRU utilities and a feed-forward mixer (notes sec. 3.1, 6.4).

    Trained by the main optimiser on 1/2 masked MSE to the shared targets; its target
    copy, evaluated at the online greedy joint action, supplies the bootstrap.
    """

    name: str = "central"
    supplies_bootstrap: bool = True
    #: 1 gives the 1/2-scaled MSE of WQMIX and POW; ResQ's learner has no 1/2 (2).
    loss_scale: float = 1.0
    #: The algorithm's mixer width, used where ``Config.central_mixing_embed_dim`` is None.
    width: int = 256
    cfg: Config | None = None
    spec: EnvSpec | None = None

    def bind(self, cfg: Config, spec: EnvSpec) -> CentralQ:
        return dataclasses.replace(self, cfg=cfg, spec=spec)

    def config_defaults(self) -> dict[str, Any]:
        return {"central_mixing_embed_dim": self.width}

    @property
    def agent(self) -> RNNAgent:
        return RNNAgent(self.cfg.rnn_hidden_dim, self.spec.num_actions)

    @property
    def mixer(self) -> CentralMixer:
        return CentralMixer(central_width(self.cfg, self.width))

    def init(self, key, cfg, spec, example, input_dim):
        agent_key, mixer_key = jax.random.split(key)
        a = spec.num_agents
        return {
            "agent": self.agent.init(
                agent_key, jnp.zeros((a, cfg.rnn_hidden_dim)), jnp.zeros((a, input_dim))
            ),
            "mixer": self.mixer.init(mixer_key, jnp.zeros((1, a)), jnp.zeros((1, spec.state_dim))),
        }

    def value(self, params, ctx: LossContext, actions):
        """Q* of the joint action ``actions`` [B, T', A] at the first T' slots -> [B, T']."""
        steps = actions.shape[1]
        qs = unroll_agent(self.agent, params["agent"], ctx.agent_inputs[:, :steps])
        return self.mixer.apply(params["mixer"], take(qs, actions), ctx.batch.state[:, :steps])

    def bootstrap(self, params, target_params, ctx: LossContext):
        return self.value(target_params, ctx, ctx.greedy_actions)

    def joint_values(self, params, agent_inputs, state, joint, agent_qs, avail):
        qs = unroll_agent(self.agent, params["agent"], agent_inputs)[0, 0]  # [A, U]
        chosen = jax.vmap(lambda a: take(qs, a))(joint)
        states = jnp.broadcast_to(state, (joint.shape[0], *state.shape))
        return self.mixer.apply(params["mixer"], chosen, states)

    def joint_loss(self, params, ctx: LossContext, hp: HParams):
        _, actions, _ = taken(ctx)
        q_star = self.value(params, ctx, actions)
        loss = self.loss_scale * masked_weighted_mse(
            q_star, ctx.targets, jnp.ones_like(q_star), ctx.mask
        )
        n = jnp.maximum(ctx.mask.sum(), 1.0)
        return loss, {"central/loss": loss, "central/q_mean": (q_star * ctx.mask).sum() / n}


@dataclasses.dataclass(frozen=True)
class RecogniserQ(Extra):
    """POW's Q_r with its own Adam, K steps per learner call before the weights are read
    (notes sec. 3.7): 20 on the first call, 10 after; utilities are fixed inputs."""

    name: str = "recogniser"
    own_optimiser: bool = True
    cfg: Config | None = None
    spec: EnvSpec | None = None

    def bind(self, cfg: Config, spec: EnvSpec) -> RecogniserQ:
        return dataclasses.replace(self, cfg=cfg, spec=spec)

    @property
    def module(self) -> Recogniser:
        c = self.cfg
        return Recogniser(
            c.lambda_hypernet_embed, c.lambda_mixing_embed, c.v_embed_dim,
            lambda_mode=c.recogniser_lambda, weights_abs=c.lambda_weights_abs,
            num_kernel=c.num_kernel, attention_layers=c.recogniser_attention_layers,
            attention_embed=c.adv_hypernet_embed,
        )  # fmt: skip

    def init(self, key, cfg, spec, example, input_dim):
        a, u = spec.num_agents, spec.num_actions
        return self.module.init(
            key, jnp.zeros((1, a)), jnp.zeros((1, spec.state_dim)), jnp.zeros((1, a, u))
        )

    def init_opt_state(self, params) -> Any:
        return optax.adam(1e-3).init(params)

    def _inputs(self, ctx: LossContext):
        steps, actions, onehot = taken(ctx)
        advantages = take(ctx.agent_qs[:, :steps], actions) - ctx.max_qs[:, :steps]
        return jax.lax.stop_gradient(advantages), ctx.batch.state[:, :steps], onehot

    def _clip(self, grads, stale, hp: HParams):
        """PyTorch ``clip_grad_norm_`` over the Q_r gradients and ``stale``, the norm of the
        main-step gradients the authors' call also counts (notes sec. 3.7 quirk; 0 under
        ``recogniser_clip='own'``). The call rescales every gradient it counts in place, so
        under 'reference' the stale ones shrink by the same factor at each inner step
        ('stale_constant' keeps them whole): returns (clipped grads, the stale norm the
        next inner step sees)."""
        norm = jnp.sqrt(jnp.square(global_norm(grads)) + jnp.square(stale))
        scale = jnp.minimum(1.0, hp.grad_norm_clip / (norm + 1e-6))
        decayed = stale * scale if self.cfg.recogniser_clip == "reference" else stale
        return jax.tree.map(lambda g: g * scale, grads), decayed

    def pre_update(self, params, opt_state, ctx: LossContext, hp: HParams, first_call):
        advantages, states, onehot = self._inputs(ctx)
        module, optimiser = self.module, optax.adam(hp.lr)

        def loss_fn(p):
            q_r, _ = module.apply(p, advantages, states, onehot)
            return masked_weighted_mse(q_r, ctx.targets, jnp.ones_like(q_r), ctx.mask)

        def step(_, carry):
            p, o, _, stale = carry
            loss, grads = jax.value_and_grad(loss_fn)(p)
            grads, stale = self._clip(grads, stale, hp)
            updates, o = optimiser.update(grads, o, p)
            return optax.apply_updates(p, updates), o, loss, stale

        steps = jnp.where(
            first_call, self.cfg.recogniser_first_updates, self.cfg.recogniser_updates
        )
        own = self.cfg.recogniser_clip == "own"
        stale = jnp.zeros((), jnp.float32) if own else ctx.prev_grad_norm
        params, opt_state, loss, _ = jax.lax.fori_loop(
            0, steps, step, (params, opt_state, jnp.zeros((), jnp.float32), stale)
        )
        return params, opt_state, {"pow/recogniser_loss": loss}

    def joint_values(self, params, agent_inputs, state, joint, agent_qs, avail):
        best = jnp.max(jnp.where(avail, agent_qs, -jnp.inf), axis=-1)  # [A]
        advantages = jax.vmap(lambda a: take(agent_qs, a))(joint) - best
        states = jnp.broadcast_to(state, (joint.shape[0], *state.shape))
        onehot = jax.nn.one_hot(joint, agent_qs.shape[-1])
        return self.module.apply(params, advantages, states, onehot)[0]

    def outputs(self, params, ctx: LossContext, hp: HParams):
        advantages, states, onehot = self._inputs(ctx)
        q_r, gap = self.module.apply(params, advantages, states, onehot)
        if self.cfg.only_optimal_action:  # the reference's ablation: the greedy action only
            in_set = weighting.takes_greedy(ctx)
        else:
            in_set = weighting.recognised(gap, hp)
        inside = in_set * ctx.mask
        n = jnp.maximum(ctx.mask.sum(), 1.0)
        metrics = {
            "pow/in_set_fraction": inside.sum() / n,
            "pow/gap_mean": (jnp.abs(gap) * ctx.mask).sum() / n,
        }
        return {"q_r": q_r, "gap": gap, "in_set": in_set}, metrics


@dataclasses.dataclass(frozen=True)
class Residual(Extra):
    """ResQ's residual (v3, ``condition: max_action``): Q_jt = Q_tot + w_r Q_res with
    Q_res = -|FF([s; q^res])| <= 0 from its own GRU utilities and a feed-forward mixer of
    width ``central_mixing_embed_dim``, and w_r = 0 on the greedy joint action, 1 elsewhere.
    Trained jointly through the Q_tot loss (``residual``); the greedy policy is Q_tot's."""

    name: str = "residual"
    #: Mixer width where ``Config.central_mixing_embed_dim`` is None (ResQ's 128).
    width: int = 128
    cfg: Config | None = None
    spec: EnvSpec | None = None

    def bind(self, cfg: Config, spec: EnvSpec) -> Residual:
        return dataclasses.replace(self, cfg=cfg, spec=spec)

    def config_defaults(self) -> dict[str, Any]:
        return {"central_mixing_embed_dim": self.width}

    def _net(self, cfg: Config, spec: EnvSpec) -> CentralQ:
        return CentralQ(width=self.width).bind(cfg, spec)

    def init(self, key, cfg, spec, example, input_dim):
        return self._net(cfg, spec).init(key, cfg, spec, example, input_dim)

    def after_init(self, params, main):
        """``resq_residual_init='copy'`` (the reference's ``copy.deepcopy(self.mac)``): the
        residual's agent starts as the main agent's params; its mixer keeps its own draw."""
        if self.cfg.resq_residual_init != "copy":
            return params
        if jax.tree.structure(params["agent"]) != jax.tree.structure(main["agent"]) or any(
            a.shape != b.shape
            for a, b in zip(jax.tree.leaves(params["agent"]), jax.tree.leaves(main["agent"]))
        ):
            raise ValueError(
                "resq_residual_init: 'copy' needs the residual agent shaped as the main agent;"
                " use 'independent'"
            )
        return {**params, "agent": main["agent"]}

    def residual(self, params, ctx: LossContext, hp: HParams):
        _, actions, _ = taken(ctx)
        value = self._net(self.cfg, self.spec).value(params, ctx, actions)
        is_greedy = jnp.all(actions == ctx.greedy_actions[:, : actions.shape[1]], axis=-1)
        return jnp.where(is_greedy, 0.0, 1.0) * -jnp.abs(value)
