"""Layer normalisation (Ba, Kiros & Hinton 2016) with learned scale and shift."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from gdlab.layers.base import Layer, feature_axis


def _check_eps(layer: str, eps) -> None:
    """ε, added to the variance under a square root: a finite number > 0."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 < eps < float("inf"):
        raise ValueError(f"{layer} eps must be a finite number > 0, got {eps!r}")


def layer_norm(*, eps: float = 1e-5, dtype=jnp.float32) -> Layer:
    """Normalise over the last axis, then scale and shift.

    μ = mean(x), σ² = mean((x − μ)²), x̂ = (x − μ)/√(σ² + ε), y = γ ⊙ x̂ + β,
    with ``params = {"scale": γ (D,), "shift": β (D,)}`` (γ = 1, β = 0 at init).
    """
    _check_eps("layer_norm", eps)

    def init(key, in_shape):
        del key
        d = feature_axis("layer_norm", in_shape)
        return tuple(in_shape), {"scale": jnp.ones((d,), dtype), "shift": jnp.zeros((d,), dtype)}, {}

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del key, train, weights
        mu = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
        inv = jax.lax.rsqrt(var + eps)  # (..., 1): 1/√(σ² + ε)
        xhat = (x - mu) * inv           # (..., D)
        return params["scale"] * xhat + params["shift"], state, (xhat, inv)

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


DATA_AXIS = "data"
"""The name of the data-parallel mesh axis (``gdlab.parallel.DATA``). Under ``shard_map``
over it, batch norm sums its statistics over every device's rows (sync batch norm)."""


def _across_devices(x):
    """Σ over the devices of the data-parallel axis when running under one, else ``x``."""
    try:
        return jax.lax.psum(x, DATA_AXIS)
    except NameError:  # not inside shard_map over DATA_AXIS (decided once, while tracing)
        return x


def batch_norm(*, momentum: float = 0.9, eps: float = 1e-5, dtype=jnp.float32) -> Layer:
    """Batch normalisation (Ioffe & Szegedy 2015) over every axis but the last.

    Each feature (the last axis: D of ``(N, D)``, C of ``(N, H, W, C)``, D of
    ``(N, T, D)``) is normalised over all other axes, its "reduced positions" i.
    ``params = {"scale": γ (C,), "shift": β (C,)}`` (γ = 1, β = 0 at init);
    ``state = {"mean": (C,), "var": (C,)}`` (0 and 1 at init), the running statistics.

    Training (``train=True``) uses the batch's statistics, weighted by the
    per-example ``weights`` w (B,) (``None``: all ones), each example's weight
    shared by all its positions:
        ω_i = w_b(i) / Σ_j w_b(j)   (Σ over all reduced positions; ω = 1/N unweighted)
        μ = Σ_i ω_i x_i,  σ² = Σ_i ω_i (x_i − μ)²  (biased),  x̂ = (x − μ)/√(σ² + ε)
    so rows of weight 0 (the padding of a partial batch) never enter μ or σ².
    At least one weight must be positive (Σw = 0 gives NaN). The running
    statistics follow flax's convention, ``momentum`` being the share of the OLD
    value kept:  mean ← m·mean + (1 − m)·μ,  var ← m·var + (1 − m)·σ².
    Under ``shard_map`` over the data-parallel axis (``gdlab.parallel``) the sums
    over i run over every device's rows, in the forward and the backward pass: the
    statistics of the whole batch (sync batch norm).
    Evaluation (``train=False``) uses the running statistics instead and leaves
    the state unchanged: one example's output never depends on the others.
    Output: y = γ ⊙ x̂ + β.
    """
    _check_eps("batch_norm", eps)
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) \
            or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm momentum, the share of the running statistics kept each "
                         f"step, must lie in [0, 1], got {momentum!r}")

    def init(key, in_shape):
        del key
        c = feature_axis("batch_norm", in_shape)
        params = {"scale": jnp.ones((c,), dtype), "shift": jnp.zeros((c,), dtype)}
        state = {"mean": jnp.zeros((c,), dtype), "var": jnp.ones((c,), dtype)}
        return tuple(in_shape), params, state

    def forward(params, state, x, *, key=None, train=False, weights=None):
        del key
        if x.ndim < 2:
            raise ValueError(f"batch_norm needs an input of rank >= 2 (batch, ..., features), "
                             f"got shape {x.shape}")
        axes = tuple(range(x.ndim - 1))  # every axis but the features
        if not train:
            # in x's dtype: mixed precision keeps the running statistics in float32, and a
            # float32 mean would turn a bfloat16 x (and every layer after) into float32
            inv = jax.lax.rsqrt(state["var"] + eps).astype(x.dtype)  # (C,): 1/√(var_run + ε)
            xhat = (x - state["mean"].astype(x.dtype)) * inv
            return params["scale"] * xhat + params["shift"], state, (xhat, inv)
        bshape = (x.shape[0],) + (1,) * (x.ndim - 1)
        if weights is None:
            w = jnp.ones(bshape, x.dtype)
        else:
            w = weights.astype(x.dtype).reshape(bshape)
        positions = x.size // (x.shape[0] * x.shape[-1])  # reduced positions per example
        total = _across_devices(positions * jnp.sum(w))    # every device's rows (sync BN)
        omega = w / total                                  # (B, 1, ..., 1): ω_i, Σ_i ω_i = 1
        mu = _across_devices(jnp.sum(omega * x, axis=axes))                 # (C,)
        var = _across_devices(jnp.sum(omega * jnp.square(x - mu), axis=axes))  # (C,), biased
        inv = jax.lax.rsqrt(var + eps)                     # (C,): 1/√(σ² + ε)
        xhat = (x - mu) * inv
        new_state = {  # cast back: the state's dtype never drifts (a scan/jit carry)
            "mean": (momentum * state["mean"] + (1.0 - momentum) * mu).astype(state["mean"].dtype),
            "var": (momentum * state["var"] + (1.0 - momentum) * var).astype(state["var"].dtype),
        }
        return params["scale"] * xhat + params["shift"], new_state, (xhat, inv, omega)

    def backward(params, residuals, dy):
        """dγ = Σ dy ⊙ x̂,  dβ = Σ dy,  dx̂ = dy ⊙ γ; evaluation: dx = dx̂/√(var_run + ε);
        training: dx_i = (1/σ̂)(dx̂_i − ω_i·Σ_j dx̂_j − ω_i·x̂_i·Σ_j dx̂_j x̂_j), σ̂ = √(σ² + ε),
        sums over the reduced positions (ω = 1/N: dx = (1/σ̂)(dx̂ − mean dx̂ − x̂·mean(dx̂ x̂)))."""
        xhat, inv = residuals[0], residuals[1]
        axes = tuple(range(dy.ndim - 1))
        dscale = jnp.sum(dy * xhat, axis=axes)
        dshift = jnp.sum(dy, axis=axes)
        dxhat = dy * params["scale"]
        if len(residuals) == 2:  # evaluation: the statistics are constants
            return {"scale": dscale, "shift": dshift}, dxhat * inv
        omega = residuals[2]  # (B, 1, ..., 1)
        # ∂x̂_j/∂x_i = (δ_ij − ω_i − ω_i x̂_i x̂_j)/σ̂, using ∂σ²/∂x_i = 2ω_i(x_i − μ).
        sum_dxhat = _across_devices(jnp.sum(dxhat, axis=axes))             # (C,)
        sum_dxhat_xhat = _across_devices(jnp.sum(dxhat * xhat, axis=axes))  # (C,)
        dx = inv * (dxhat - omega * (sum_dxhat + xhat * sum_dxhat_xhat))
        return {"scale": dscale, "shift": dshift}, dx

    return Layer(init, forward, backward, "batch_norm")
