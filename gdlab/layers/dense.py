"""The dense (affine) layer: y = x·W + b."""

from __future__ import annotations

import jax.numpy as jnp

from gdlab.layers import initializers
from gdlab.layers.base import Layer


def dense(out_dim: int, *, w_init="glorot_uniform", dtype=jnp.float32) -> Layer:
    """An affine layer with ``params = {"w": (D_in, D_out), "b": (D_out,)}``.

    ``w_init`` names an initialiser (see ``gdlab.layers.initializers``) or is
    one; the bias starts at zero. ``x`` may have any leading axes: ``(..., D_in)``.
    """
    w_init = initializers.get(w_init)

    def init(key, in_shape):
        in_dim = in_shape[-1]
        w = w_init(key, (in_dim, out_dim), dtype)
        return (*in_shape[:-1], out_dim), {"w": w, "b": jnp.zeros((out_dim,), dtype)}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del key, train, weights
        return x @ params["w"] + params["b"], state, x  # keep x: ∂y/∂W needs it

    def backward(params, x, dy):
        """dW = xᵀ·dy,  db = Σ_batch dy,  dx = dy·Wᵀ."""
        d_in, d_out = params["w"].shape
        x2 = x.reshape(-1, d_in)    # (B, D_in), leading axes folded into B
        dy2 = dy.reshape(-1, d_out)  # (B, D_out)
        dw = x2.T @ dy2              # (D_in, D_out)
        db = dy2.sum(axis=0)         # (D_out,)
        dx = dy @ params["w"].T      # (..., D_in)
        return {"w": dw, "b": db}, dx

    return Layer(init, forward, backward, f"dense({out_dim})")

