"""Inverted dropout (Srivastava et al. 2014)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gdlab.layers.base import Layer


def dropout(rate: float) -> Layer:
    """Zero each unit with probability ``rate`` while training; identity in evaluation.

    Kept units are scaled by 1/(1 − rate) so E[y] = x and evaluation needs no
    rescaling. With m the scaled keep mask: y = m ⊙ x, dx = m ⊙ dy.
    Training needs an explicit ``key``; ``train`` is a Python bool (static).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")

    def init(key, in_shape):
        del key
        return tuple(in_shape), {}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del params, weights
        if not train or rate == 0.0:
            return x, state, None
        if key is None:
            raise ValueError("dropout in training mode needs a PRNG key: forward(..., key=k, train=True)")
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        mask = jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(x.dtype)  # scaled keep mask m
        return x * mask, state, mask

    def backward(params, mask, dy):
        del params
        return {}, dy if mask is None else dy * mask

    return Layer(init, forward, backward, f"dropout({rate})")
