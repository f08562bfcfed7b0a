"""Layer normalisation (Ba, Kiros & Hinton 2016) with learned scale and shift."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gdlab.layers.base import Layer


def layer_norm(*, eps: float = 1e-5, dtype=jnp.float32) -> Layer:
    """Normalise over the last axis, then scale and shift.

    μ = mean(x), σ² = mean((x − μ)²), x̂ = (x − μ)/√(σ² + ε), y = γ ⊙ x̂ + β,
    with ``params = {"scale": γ (D,), "shift": β (D,)}`` (γ = 1, β = 0 at init).
    """

    def init(key, in_shape):
        del key
        d = in_shape[-1]
        return tuple(in_shape), {"scale": jnp.ones((d,), dtype), "shift": jnp.zeros((d,), dtype)}

    def forward(params, x, *, key=None, train=False):
        del key, train
        mu = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
        inv = jax.lax.rsqrt(var + eps)  # (..., 1): 1/√(σ² + ε)
        xhat = (x - mu) * inv           # (..., D)
        return params["scale"] * xhat + params["shift"], (xhat, inv)

    def backward(params, residuals, dy):
        """dγ = Σ dy ⊙ x̂,  dβ = Σ dy,  dx = (1/σ̂)(dx̂ − mean(dx̂) − x̂ ⊙ mean(dx̂ ⊙ x̂)), dx̂ = dy ⊙ γ."""
        xhat, inv = residuals
        batch_axes = tuple(range(dy.ndim - 1))
        dscale = jnp.sum(dy * xhat, axis=batch_axes)
        dshift = jnp.sum(dy, axis=batch_axes)
        dxhat = dy * params["scale"]
        dx = inv * (dxhat - jnp.mean(dxhat, axis=-1, keepdims=True)
                    - xhat * jnp.mean(dxhat * xhat, axis=-1, keepdims=True))
        return {"scale": dscale, "shift": dshift}, dx

    return Layer(init, forward, backward, "layer_norm")
