"""Model builders. A model is a ``Layer`` (usually a ``serial``) like any other."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from gdlab import layers
from gdlab.layers import Layer

_RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "softplus")


def default_init(activation: str) -> str:
    """He-normal for the ReLU family, Glorot-uniform for tanh, sigmoid and the rest."""
    return "he_normal" if activation in _RELU_FAMILY else "glorot_uniform"


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    *,
    w_init: str | None = None,
    dropout_rate: float = 0.0,
    layer_norm: bool = False,
    dtype=jnp.float32,
) -> Layer:
    """A multi-layer perceptron: dense layers of the given output ``sizes``.

    ``mlp([32, 32, 10])`` is dense(32) → act → dense(32) → act → dense(10):
    hidden layers are followed by ``activation`` (then layer norm and dropout
    when asked), the last layer is left linear (logits or a regression output).
    The input size comes from ``init(key, in_shape)``.
    """
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"mlp sizes must be positive integers, got {sizes}")
    w_init = w_init or default_init(activation)
    stack: list[Layer] = []
    for size in sizes[:-1]:
        stack.append(layers.dense(size, w_init=w_init, dtype=dtype))
        stack.append(layers.activation(activation))
        if layer_norm:
            stack.append(layers.layer_norm(dtype=dtype))
        if dropout_rate > 0:
            stack.append(layers.dropout(dropout_rate))
    stack.append(layers.dense(sizes[-1], w_init=w_init, dtype=dtype))
    return layers.serial(*stack, name=f"mlp({'-'.join(map(str, sizes))}, {activation})")


def linear(num_outputs: int = 1, *, w_init: str = "lecun_normal", dtype=jnp.float32) -> Layer:
    """A linear model y = x·W + b, no hidden layer: regression's textbook model."""
    return layers.serial(layers.dense(num_outputs, w_init=w_init, dtype=dtype),
                         name=f"linear({num_outputs})")
