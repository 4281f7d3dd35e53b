"""POW's recognition network Q_r (notes sec. 3.2; reference ``PowMixer``/``LambdaHypernet``).

Q_r(tau, a) = V(s) + sum_i lambda_i(s, a) (Q_i(tau_i, a_i) - max_a' Q_i(tau_i, a')),
lambda_i(s, a) = sum_k |W1(x)|_{ik} |w2(x)|_k >= 0 with x = [s; one-hot a_1 .. a_n].

W1 and w2 are MLPs (d_x -> 128 -> 128 -> n*64 and -> 64, ReLU between, with biases);
their abs-valued outputs are multiplied with no bias and no nonlinearity between the
two factors. V(s) is an MLP d_s -> 128 -> 128 -> 1. Because lambda >= 0 and every
centred advantage is <= 0 with 0 at the greedy action, the individually greedy joint
action maximises Q_r and Q_r(s, a_hat) = V(s) (IGM without a monotonic mixer).

The reference's two non-default switches (``PowMixer``, ``LambdaHypernet``):
``weights_abs=False`` (``lambda_weights_abs``) drops the two abs, so lambda may be negative
and a_hat need not maximise Q_r (Q_r(s, a_hat) = V(s) still holds); ``lambda_mode=
'attention'`` (``use_lambda_hypernetwork=False``) takes lambda_i(s, a) > 0 from QPLEX's
multi-head attention ``DMAQ_SI_Weight`` (:class:`powmarl.networks.qplex.AdvantageWeights`,
``num_kernel`` heads of depth ``attention_layers``) and the gap is sum_i lambda_i A_i.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from powmarl.networks.layers import MLP
from powmarl.networks.qplex import AdvantageWeights
from powmarl.types import Array


class Recogniser(nn.Module):
    """(centred advantages [..., A], states [..., X], joint one-hot [..., A, U]) -> (Q_r, gap).

    ``gap`` = Q_r(s, a) - V(s) = Q_r(s, a) - Q_r(s, a_hat) <= 0; a is in A_r iff |gap| < C.
    """

    hypernet_embed: int = 128
    mixing_embed: int = 64
    v_embed: int = 128
    lambda_mode: str = "hypernet"  # or "attention" (use_lambda_hypernetwork=False)
    weights_abs: bool = True  # lambda_weights_abs
    num_kernel: int = 4  # attention heads (num_kernel)
    attention_layers: int = 3  # attention depth (the POW configs' adv_hypernet_layers)
    attention_embed: int = 64  # attention width (adv_hypernet_embed)

    @nn.compact
    def __call__(self, advantages: Array, states: Array, actions_onehot: Array):
        states = states.astype(jnp.float32)
        if self.lambda_mode == "attention":
            lambdas = AdvantageWeights(
                self.num_kernel, self.attention_layers, self.attention_embed, name="si_weight"
            )(states, actions_onehot)
            gap = (advantages * lambdas).sum(axis=-1)
        else:
            gap = self._hypernet_gap(advantages, states, actions_onehot)
        value = MLP((self.v_embed, self.v_embed, 1), name="V")(states)[..., 0]
        return value + gap, gap

    def _hypernet_gap(self, advantages: Array, states: Array, actions_onehot: Array) -> Array:
        """(adv^T W1(x)) w2(x), with |.| on both factors unless ``weights_abs`` is off."""
        num_agents = advantages.shape[-1]
        x = jnp.concatenate([states, actions_onehot.reshape(*states.shape[:-1], -1)], axis=-1)
        h = self.hypernet_embed
        positive = jnp.abs if self.weights_abs else (lambda w: w)
        w1 = positive(MLP((h, h, num_agents * self.mixing_embed), name="hyper_w_1")(x))
        w1 = w1.reshape(*x.shape[:-1], num_agents, self.mixing_embed)
        w_final = positive(MLP((h, h, self.mixing_embed), name="hyper_w_final")(x))
        hidden = jnp.einsum("...a,...ak->...k", advantages, w1)
        return (hidden * w_final).sum(axis=-1)

    @staticmethod
    def lambdas(params, module: Recogniser, states: Array, actions_onehot: Array) -> Array:
        """lambda_i(s, a) [..., A] (for tests and diagnostics): the gap of unit advantages."""
        num_agents = actions_onehot.shape[-2]
        eye = jnp.eye(num_agents)

        def one(i):
            adv = jnp.broadcast_to(eye[i], (*states.shape[:-1], num_agents))
            return module.apply(params, adv, states, actions_onehot)[1]

        return jnp.stack([one(i) for i in range(num_agents)], axis=-1)
