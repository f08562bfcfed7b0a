"""Shape-only layers."""

from __future__ import annotations

import math

from gdlab.layers.base import Layer


def flatten() -> Layer:
    """(B, d1, d2, …) → (B, d1·d2·…).  dx = dy reshaped back to x's shape."""

    def init(key, in_shape):
        del key
        return (math.prod(in_shape),), {}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del params, key, train, weights
        # Keep x itself (a reference, no copy) so the backward knows its shape.
        return x.reshape(x.shape[0], -1), state, x

    def backward(params, x, dy):
        del params
        return {}, dy.reshape(x.shape)

    return Layer(init, forward, backward, "flatten")
