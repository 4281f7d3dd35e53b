"""How an algorithm plugs into the shared learner: a mixer, a weighting rule, extras.

An :class:`Algorithm` is data. The learner (``powmarl.learner``) runs the same
sequence of steps for every algorithm and calls these slots; it never looks at
the algorithm's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct

from powmarl.config import Config, Declared, HParams, settable_fields
from powmarl.types import Array, EnvSpec, EpisodeBatch


@flax.struct.dataclass
class LossContext:
    """What weighting rules and extras may read during one learner update (all stop-gradient
    except where noted). Shapes: B episodes, T steps, A agents, U actions."""

    batch: EpisodeBatch
    # [B, N, A, I]; N = T+1 slots, or T when the tail was dropped; an AgentInputs (same
    # indexing, built per step by unroll_agent) when Config.remat_agent is on
    agent_inputs: Any
    agent_qs: Array  # [B, N, A, U] online utilities
    greedy_actions: Array  # [B, N, A] online greedy actions over available ones
    max_qs: Array  # [B, N, A] online utilities at the greedy actions
    targets: Array  # [B, T] TD(lambda) targets y
    mask: Array  # [B, T] float32 real transitions
    t_env: Array  # [] env steps so far
    bootstrap: Array  # [B, N] target values at the greedy joint actions (before TD(lambda))
    prev_grad_norm: Array  # [] clipped global grad norm of the previous main step (0 at first)
    q_tot: Array | None = None  # [B, T] the factored value of the taken actions
    extras_out: dict[str, Any] = flax.struct.field(default_factory=dict)


#: A weighting rule maps the context to per-transition weights w(s, a) of shape [B, T].
WeightingRule = Callable[[LossContext, HParams], Array]


class Extra:
    """A network beside the agent and mixer (e.g. WQMIX's central Q*, POW's recogniser).

    Subclasses override the hooks they need; the defaults do nothing.
    ``own_optimiser`` extras are updated in :meth:`pre_update` with their own
    optimiser before the main step; the others are trained by the main optimiser
    through :meth:`joint_loss`.
    """

    name: str = "extra"
    own_optimiser: bool = False
    supplies_bootstrap: bool = False

    def bind(self, cfg: Config, spec: EnvSpec) -> Extra:
        """This extra configured for ``cfg`` and ``spec`` (the learner calls it first)."""
        return self

    def config_defaults(self) -> dict[str, Any]:
        """Config values this extra uses where the config leaves them None (e.g. Q*'s
        width); the algorithm's layer of settings reports them (``powmarl.settings``)."""
        return {}

    def init(self, key, cfg: Config, spec: EnvSpec, example: EpisodeBatch, input_dim: int) -> Any:
        return {}

    def init_opt_state(self, params: Any) -> Any:
        return ()

    def after_init(self, params: Any, main: dict[str, Any]) -> Any:
        """This extra's freshly drawn params, given the main ``agent`` and ``mixer`` params
        (for an extra that starts as a copy of them); unchanged by default."""
        return params

    def pre_update(self, params, opt_state, ctx: LossContext, hp: HParams, first_call: bool):
        """Own-optimiser training; returns (params, opt_state, metrics)."""
        return params, opt_state, {}

    def outputs(self, params, ctx: LossContext, hp: HParams):
        """(values, metrics): values are read by rules from ``ctx.extras_out[name]``
        (e.g. a recognition gap); metrics are logged."""
        return {}, {}

    def joint_loss(self, params, ctx: LossContext, hp: HParams) -> tuple[Array, dict[str, Array]]:
        """A loss added to the main objective (differentiated w.r.t. ``params``)."""
        return 0.0, {}

    def joint_values(self, params, agent_inputs, state, joint, agent_qs, avail) -> Array | None:
        """Diagnostics for one-step games: this extra's value of every joint action.

        agent_inputs [1, 1, A, I] at the first step, state [X], joint [N, A] int,
        agent_qs / avail [A, U] of the main agents. Returns [N], or None (no table).
        """
        return None

    def residual(self, params, ctx: LossContext, hp: HParams) -> Array | None:
        """A term [B, T] added to Q_tot in the Q_tot loss (ResQ's w_r Q_res), or None."""
        return None

    def bootstrap(self, params, target_params, ctx: LossContext) -> Array:
        """Target values at the greedy joint actions, [B, N] (if ``supplies_bootstrap``)."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One member of the value-decomposition family."""

    name: str
    description: str
    make_mixer: Callable[[Config, EnvSpec], nn.Module]
    weighting: WeightingRule
    extras: tuple[Extra, ...] = ()
    #: Config/HParams values this algorithm's reference configuration sets (names of
    #: fields or of ``hparams``).
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Hyperparameters of this algorithm's own, beside the Config/HParams fields: a traced
    #: one is read as ``hp.extra[name]`` (or ``hp.name``) by rules and extras, a static one
    #: as ``cfg.extra[name]``; ``--set``, ``hparam_grid`` and config.json take them by name.
    hparams: tuple[Declared, ...] = ()
    #: Multiplies the (1/2-scaled) Q_tot loss; WQMIX's learner has no 1/2 there (scale 2).
    q_tot_loss_scale: float = 1.0
    #: "adam" (PyMARL2) or "rmsprop" (PyMARL's default, which the ResQ learner falls back to).
    optimiser: str = "adam"
    #: The weighting rule reads ``ctx.bootstrap`` at the current step (CW-QMIX), so it is
    #: needed even where TD(lambda) would not read it (one-step batches).
    weighting_reads_bootstrap: bool = False

    def __post_init__(self):
        names = [e.name for e in self.extras]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: extras must have distinct names, got {names}")
        if sum(e.supplies_bootstrap for e in self.extras) > 1:
            raise ValueError(f"{self.name}: at most one extra may supply the bootstrap")
        sizes = [e.config_defaults() for e in self.extras]
        for name in {k for s in sizes for k in s}:
            if len({s[name] for s in sizes if name in s}) > 1:
                raise ValueError(f"{self.name}: its extras disagree on the default of {name}")
        fields = {*settable_fields(Config), *settable_fields(HParams)}
        declared = [d.name for d in self.hparams]
        clash = sorted(fields.intersection(declared)) or sorted(
            {n for n in declared if declared.count(n) > 1}
        )
        if clash:
            raise ValueError(
                f"{self.name}: declared hyperparameter {clash[0]!r} is already a setting "
                "(a Config/HParams field or another declaration); pick another name"
            )
        unknown = sorted(set(self.defaults) - fields - set(declared))
        if unknown:
            raise ValueError(
                f"{self.name}: defaults name {unknown[0]!r}, which is neither a Config/HParams "
                "field nor one of the algorithm's declared hyperparameters"
            )

    @property
    def bootstrap_extra(self) -> Extra | None:
        return next((e for e in self.extras if e.supplies_bootstrap), None)
