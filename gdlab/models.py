"""Model builders. A model is a ``Layer`` (usually a ``serial``) like any other."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax.numpy as jnp

from gdlab import layers
from gdlab.layers import Layer

_RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "softplus")


def _is_size(value) -> bool:
    """A positive integer: ``int`` or NumPy integer, not a bool, not a float (even 4.0)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _sizes(builder: str, name: str, values, *, allow_empty: bool = False) -> list[int]:
    """``values`` as a list of ints, or a ``ValueError`` naming ``builder``'s ``name``."""
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"{builder} {name} must be a sequence of positive integers, "
                         f"got {values!r}") from None
    if (not values and not allow_empty) or not all(_is_size(v) for v in values):
        raise ValueError(f"{builder} {name} must be {'a' if allow_empty else 'a non-empty'} "
                         f"sequence of positive integers, got {values!r}")
    return [int(v) for v in values]


def _size(builder: str, name: str, value, *, pair: bool = False) -> None:
    """A ``ValueError`` naming ``builder``'s ``name`` unless ``value`` is a positive
    integer (or, with ``pair``, a pair of them)."""
    if _is_size(value):
        return
    if pair and isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_size, value)):
        return
    accepted = "a positive integer or a pair of them" if pair else "a positive integer"
    raise ValueError(f"{builder} {name} must be {accepted}, got {value!r}")


def _dropout_rate(builder: str, value) -> None:
    """A dropout rate in [0, 1) (0: no dropout), whether or not a dropout layer is built."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0.0 <= float(value) < 1.0):
        raise ValueError(f"{builder} dropout_rate must be a number in [0, 1), got {value!r}")


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
    sizes = _sizes("mlp", "sizes", sizes)
    _dropout_rate("mlp", dropout_rate)
    layers.activation(activation)  # an unknown name is refused even with no hidden layer
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
    _size("linear", "num_outputs", num_outputs)
    return layers.serial(layers.dense(num_outputs, w_init=w_init, dtype=dtype),
                         name=f"linear({num_outputs})")


def cnn(
    num_outputs: int,
    *,
    channels: Sequence[int] = (32, 64),
    kernel_size: int = 3,
    padding: str = "SAME",
    pool_size: int = 2,
    hidden: Sequence[int] = (),
    dropout_rate: float = 0.0,
    dtype=jnp.float32,
) -> Layer:
    """A convolutional network for NHWC images (LeCun et al. 1998, with batch norm).

    One stage per entry of ``channels``: conv(k×k, ``padding``) → batch norm →
    relu → max-pool(p×p, SAME: a last odd row or column is pooled alone); then flatten, the optional dense ``hidden`` layers (relu,
    then dropout when asked) and a dense head of ``num_outputs``. The conv has no
    bias: the batch norm's shift that follows would cancel it. The input shape
    comes from ``init(key, (H, W, C))``.
    """
    _size("cnn", "num_outputs", num_outputs)
    _dropout_rate("cnn", dropout_rate)
    channels = _sizes("cnn", "channels", channels)
    hidden = _sizes("cnn", "hidden", hidden, allow_empty=True)
    _size("cnn", "kernel_size", kernel_size, pair=True)
    _size("cnn", "pool_size", pool_size, pair=True)
    stack: list[Layer] = []
    for c in channels:
        stack += [layers.conv2d(c, kernel_size, padding=padding, use_bias=False, dtype=dtype),
                  layers.batch_norm(dtype=dtype), layers.relu(),
                  layers.max_pool(pool_size, padding="SAME")]
    stack.append(layers.flatten())
    for h in hidden:
        stack += [layers.dense(h, w_init="he_normal", dtype=dtype), layers.relu()]
        if dropout_rate > 0:
            stack.append(layers.dropout(dropout_rate))
    stack.append(layers.dense(num_outputs, dtype=dtype))
    return layers.serial(*stack, name=f"cnn({'-'.join(map(str, channels))}, k={kernel_size}"
                                      f"{', hidden=' + '-'.join(map(str, hidden)) if hidden else ''})")


def transformer(
    vocab_size: int,
    num_outputs: int,
    *,
    max_len: int,
    width: int = 64,
    depth: int = 2,
    num_heads: int = 4,
    mlp_ratio: int = 4,
    causal: bool = False,
    dtype=jnp.float32,
) -> Layer:
    """A pre-layer-norm transformer over token ids (B, T) giving per-token outputs (B, T, K).

    embedding(vocab → width) + learned positions (up to ``max_len``) → ``depth``
    blocks (attention and MLP, each in a residual) → layer norm → dense(num_outputs)
    at every position. ``causal=True`` lets position t see positions ≤ t only.
    """
    for name, value in (("vocab_size", vocab_size), ("num_outputs", num_outputs),
                        ("max_len", max_len), ("width", width), ("depth", depth),
                        ("num_heads", num_heads), ("mlp_ratio", mlp_ratio)):
        _size("transformer", name, value)
    if width % num_heads:
        raise ValueError(f"transformer width {width} must be a multiple of num_heads {num_heads}")
    stack = [layers.embedding(vocab_size, width, dtype=dtype),
             layers.positional_embedding(max_len, dtype=dtype)]
    stack += [layers.transformer_block(width, num_heads, mlp_ratio=mlp_ratio, causal=causal,
                                       dtype=dtype) for _ in range(depth)]
    stack += [layers.layer_norm(dtype=dtype), layers.dense(num_outputs, dtype=dtype)]
    return layers.serial(*stack, name=f"transformer(d={width}, depth={depth}, heads={num_heads}"
                                      f"{', causal' if causal else ''})")
