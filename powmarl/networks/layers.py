"""Layers initialised as PyTorch does, so early training matches the reference code.

PyTorch ``nn.Linear`` draws weights and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in));
``nn.GRUCell`` draws everything from U(-1/sqrt(hidden), 1/sqrt(hidden)) (notes sec. 8.8).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def uniform(bound: float):
    """Initialiser drawing from U(-bound, bound), any shape."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Linear(nn.Module):
    """Dense layer with PyTorch's default initialisation."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        bound = 1.0 / float(x.shape[-1]) ** 0.5
        kernel = self.param("kernel", uniform(bound), (x.shape[-1], self.features))
        y = x @ kernel
        if self.use_bias:
            y = y + self.param("bias", uniform(bound), (self.features,))
        return y


class MLP(nn.Module):
    """Linear-ReLU-...-Linear with the given widths; the last layer has no activation."""

    widths: Sequence[int]
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.widths):
            x = Linear(width, use_bias=self.use_bias)(x)
            if i < len(self.widths) - 1:
                x = nn.relu(x)
        return x


class GRUCell(nn.Module):
    """PyTorch's ``nn.GRUCell`` with its two fused gate matmuls and both bias sets.

    r = sigma(W_ir x + b_ir + W_hr h + b_hr), z = sigma(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
    Everything is drawn from U(-1/sqrt(H), 1/sqrt(H)); no orthogonal (QR) initialiser.
    ``hidden=None`` means a zero hidden state and skips the recurrent matmul.
    """

    hidden_dim: int

    @nn.compact
    def __call__(self, hidden, x):
        h = self.hidden_dim
        init = uniform(1.0 / h**0.5)
        w_i = self.param("w_input", init, (x.shape[-1], 3 * h))
        w_h = self.param("w_hidden", init, (h, 3 * h))
        b_i = self.param("b_input", init, (3 * h,))
        b_h = self.param("b_hidden", init, (3 * h,))
        gi = x @ w_i + b_i
        if hidden is None:  # episode start: W_h h = 0
            hidden = jnp.zeros((*x.shape[:-1], h), x.dtype)
            gh = jnp.broadcast_to(b_h, gi.shape)
        else:
            gh = hidden @ w_h + b_h
        r = nn.sigmoid(gi[..., :h] + gh[..., :h])
        z = nn.sigmoid(gi[..., h : 2 * h] + gh[..., h : 2 * h])
        n = jnp.tanh(gi[..., 2 * h :] + r * gh[..., 2 * h :])
        return (1.0 - z) * n + z * hidden
