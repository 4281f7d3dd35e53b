"""QPLEX duplex-dueling mixer (notes sec. 6.3; POW-QPLEX sec. 3.8; baseline settings sec. 4.3).

A port of PyMARL2's ``DMAQer`` (``src/modules/mixers/dmaq_general.py``) and its attention
weights ``DMAQ_SI_Weight`` (``src/modules/mixers/dmaq_si_weight.py``), as called by
``src/learners/dmaq_qatten_learner.py`` with the defaults of ``src/config/algs/qplex.yaml``.

With Q~_i(q) = w_i(s) q + v_i(s) (the "weighted head"), ``a`` the joint action being
valued, ``q_i = x.chosen_qs`` and ``m_i = x.max_qs``:

    Q_tot = sum_i Q~_i(q_i)  +  sum_i (lambda_i(s, a) - 1) * sg[Q~_i(q_i) - Q~_i(m_i)]
            `-- "V" pass --'     `-------------- advantage pass --------------------'

    lambda_i(s, a) = sum_k (|kappa_k(s)| + 1e-10) * sigmoid(phi_k(s))_i * sigmoid(psi_k(s, a))_i

Reference behaviours reproduced (file names are PyMARL2's):

* What each pass receives (``dmaq_qatten_learner.py``): the learner calls the mixer twice
  and adds the results. The V pass (``is_v=True``) receives the *chosen* utilities (the
  taken actions in the loss; the target utilities at the online greedy actions in the
  bootstrap), transformed by the weighted head and summed over agents; it never sees
  ``max_q_i``. The advantage pass receives the same chosen utilities, the one-hot joint
  action and ``max_q_i``; both utilities go through the same weighted head. One call
  here computes both passes, which is equivalent because both use the same parameters.
* What is detached (``dmaq_general.py``, ``calc_adv``): the whole difference
  ``Q~_i(q_i) - Q~_i(m_i)`` (including the head weights w_i, v_i inside it) is detached,
  so the advantage pass trains only the lambda networks, and dQ_tot/dq_i = w_i(s).
  ``max_qs`` gets no gradient at all.
* Weighted head (``dmaq_general.py``): w = |Linear(s->H)-ReLU-Linear(H->A)| + 1e-10 and
  v = Linear(s->H)-ReLU-Linear(H->A), with H = ``hypernet_embed`` (64 in ``qplex.yaml``),
  *not* ``mixing_embed_dim``. ``mixing_embed_dim`` is stored by ``DMAQer`` but never used;
  it is kept here only so configs carry the same field, and does nothing.
  ``weighted_head=False`` leaves utilities untransformed (the reference still builds the
  two head networks but never uses them; here they are not created).
* ``is_minus_one`` (``dmaq_general.py``): multiply the detached advantage by
  ``lambda - 1`` when True, by ``lambda`` when False.
* Attention weights (``dmaq_si_weight.py``): ``num_kernel`` independent heads, each with a
  key network kappa_k: s -> 1, an agent network phi_k: s -> A and an action network
  psi_k: concat(s, flattened one-hot joint action [A*U]) -> A. The per-head weight is
  (|kappa_k| + 1e-10) (broadcast over agents) * sigmoid(phi_k) * sigmoid(psi_k); heads are
  summed. Layer structure for ``adv_hypernet_layers`` (width E = ``adv_hypernet_embed``):
  1 -> Linear(in->out); 2 -> Linear(in->E)-ReLU-Linear(E->out);
  3 -> Linear(in->E)-ReLU-Linear(E->E)-ReLU-Linear(E->out); anything else is an error.
* Initialisation: every Linear as PyTorch's ``nn.Linear`` (``powmarl.networks.layers``).

Not matched / not applicable:

* ``is_adv_attention`` and ``is_stop_gradient`` in ``qplex.yaml`` are read by neither
  mixer file nor ``dmaq_qatten_learner.py``; they have no counterpart here.
* ``DMAQer.state_action_dim`` (state + actions + 1) is unused in the reference; omitted.
* Independent PyTorch RNG draws mean parameter values differ from the reference; only
  the distributions match.
* For the double-Q bootstrap the reference passes ``max_q_i`` = the masked max of the
  *target* utilities (``target_mac_out.max(dim=3)``), not the target utilities at the
  online greedy actions; the mixer just uses whatever ``x.max_qs`` the caller supplies.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from powmarl.networks.layers import MLP
from powmarl.networks.mixers import MixInput
from powmarl.types import Array


def extractor_widths(num_layers: int, embed: int, out: int) -> tuple[int, ...]:
    """Widths of one attention extractor with ``num_layers`` Linear layers (1, 2 or 3)."""
    if num_layers not in (1, 2, 3):
        raise ValueError(f"adv_hypernet_layers must be 1, 2 or 3, got {num_layers}")
    return (embed,) * (num_layers - 1) + (out,)


class AdvantageWeights(nn.Module):
    """lambda_i(s, a) > 0: the multi-head attention of ``DMAQ_SI_Weight``.

    states [..., X], actions_onehot [..., A, U] -> lambdas [..., A].
    """

    num_kernel: int = 4
    num_layers: int = 2
    embed: int = 64

    @nn.compact
    def __call__(self, states: Array, actions_onehot: Array) -> Array:
        num_agents = actions_onehot.shape[-2]
        joint = actions_onehot.reshape(*actions_onehot.shape[:-2], -1).astype(jnp.float32)
        state_action = jnp.concatenate([states, joint], axis=-1)
        key_w = extractor_widths(self.num_layers, self.embed, 1)
        agent_w = extractor_widths(self.num_layers, self.embed, num_agents)
        total = 0.0
        for k in range(self.num_kernel):
            key = jnp.abs(MLP(key_w, name=f"key_{k}")(states)) + 1e-10  # [..., 1]
            agents = nn.sigmoid(MLP(agent_w, name=f"agents_{k}")(states))  # [..., A]
            action = nn.sigmoid(MLP(agent_w, name=f"action_{k}")(state_action))  # [..., A]
            total = total + key * agents * action
        return total


class QPLEXParts(NamedTuple):
    """The pieces of one QPLEX evaluation; q_tot = v_tot + adv_tot."""

    q_tot: Array  # [...]
    v_tot: Array  # [...] sum_i Q~_i(chosen)
    adv_tot: Array  # [...] sum_i (lambda_i [- 1]) * sg[Q~_i(chosen) - Q~_i(max)]
    lambdas: Array  # [..., A]
    w: Array  # [..., A] head weights (ones without the weighted head)
    v: Array  # [..., A] head biases (zeros without the weighted head)


class QPLEXMixer(nn.Module):
    """QPLEX (Wang et al. 2021), PyMARL2 ``dmaq``: see the module docstring.

    Needs ``x.actions_onehot`` (the joint action valued) and ``x.max_qs`` (greedy
    utilities); Q_tot has shape ``x.chosen_qs.shape[:-1]``.
    """

    num_kernel: int = 4
    adv_hypernet_layers: int = 2  # POW-QPLEX: 3
    adv_hypernet_embed: int = 64
    hypernet_embed: int = 64  # weighted-head hypernets (reference ``hypernet_embed``)
    mixing_embed_dim: int = 32  # unused, as in the reference DMAQer
    is_minus_one: bool = True
    weighted_head: bool = True

    @nn.compact
    def parts(self, x: MixInput) -> QPLEXParts:
        """Q_tot and its pieces; ``__call__`` returns ``parts(x).q_tot``."""
        if x.actions_onehot is None or x.max_qs is None:
            raise ValueError("QPLEXMixer needs MixInput.actions_onehot and MixInput.max_qs")
        qs, states = x.chosen_qs, x.states.astype(jnp.float32)
        num_agents = qs.shape[-1]
        if self.weighted_head:
            widths = (self.hypernet_embed, num_agents)
            w = jnp.abs(MLP(widths, name="hyper_w_final")(states)) + 1e-10
            v = MLP(widths, name="V")(states)
        else:
            w, v = jnp.ones_like(qs), jnp.zeros_like(qs)
        chosen = w * qs + v
        best = w * x.max_qs + v
        v_tot = chosen.sum(axis=-1)
        lambdas = AdvantageWeights(
            self.num_kernel, self.adv_hypernet_layers, self.adv_hypernet_embed, name="si_weight"
        )(states, x.actions_onehot)
        adv = jax.lax.stop_gradient(chosen - best)
        scale = lambdas - 1.0 if self.is_minus_one else lambdas
        adv_tot = (adv * scale).sum(axis=-1)
        return QPLEXParts(v_tot + adv_tot, v_tot, adv_tot, lambdas, w, v)

    def __call__(self, x: MixInput) -> Array:
        return self.parts(x).q_tot
