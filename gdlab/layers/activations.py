"""Element-wise activations (and softmax), each with its derivative by hand.

Every activation is a parameter-free layer. Its backward multiplies the
incoming cotangent by the local derivative: ``dx = dy ⊙ σ'(x)``, where σ' is
written out below, often in terms of the saved output ``y`` to save work.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfc

from gdlab.layers.base import Layer, stateless

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


def exp_neg_abs(x):
    """e^{−|x|} ∈ (0, 1]: never overflows. −|x| is written as a ``where`` so that
    ``jax.grad`` at exactly 0 takes the x ≥ 0 branch (d/dx = −e) instead of
    ``sign(0) = 0``, which would make autodiff of ``sigmoid_forward`` (and of the
    binary cross-entropy) wrong there."""
    return jnp.exp(jnp.where(x >= 0, -x, x))


def sigmoid_forward(x):
    """σ(x) = 1/(1+e^{−x}) to full relative precision for every x.

    With e = e^{−|x|} ≤ 1: σ(x) = 1/(1+e) for x ≥ 0 and e/(1+e) for x < 0, so no
    exponential overflows and neither branch subtracts nearly equal numbers (the
    old ½(tanh(x/2) + 1) form lost every digit below x ≈ −37 in float64).
    """
    e = exp_neg_abs(x)
    return jnp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_derivative(x):
    """σ'(x) = σ(x)·σ(−x) = e/(1+e)² with e = e^{−|x|} (σ' is even).

    Never formed as y(1 − y): for large x, 1 − y cancels and keeps no relative
    precision (at x = 30 in float64 it is off by ~1e-3).
    """
    e = exp_neg_abs(x)
    return e / ((1.0 + e) * (1.0 + e))


def identity() -> Layer:
    """y = x.  dx = dy."""
    return stateless("identity", lambda x: (x, None), lambda _, dy: dy)


def sigmoid() -> Layer:
    """y = σ(x) = 1/(1+e^{−x}).  dx = dy · σ(x)σ(−x)  (= dy · y(1−y), but 1 − y is
    taken as σ(−x), so it keeps its relative precision where y rounds to 1).

    Residual: x; the backward recomputes σ'(x) = e/(1+e)², e = e^{−|x|}.
    """
    return stateless("sigmoid", lambda x: (sigmoid_forward(x), x),
                     lambda x, dy: dy * sigmoid_derivative(x))


def tanh() -> Layer:
    """y = tanh(x).  dx = dy · (1 − y²), evaluated as (1 + y)(1 − y): near |y| = 1 that
    keeps the digits y·y rounds away (and is the product ``jax.grad`` forms)."""

    def fn(x):
        y = jnp.tanh(x)
        return y, y

    return stateless("tanh", fn, lambda y, dy: dy * ((1.0 + y) * (1.0 - y)))


def relu() -> Layer:
    """y = max(x, 0).  dx = dy · [x > 0].

    Convention at the kink: relu'(0) = 0 (as in PyTorch). The forward is written
    ``where(x <= 0, 0, x)`` so that ``jax.grad`` of it gives 0 at 0 too
    (``jnp.maximum(x, 0)`` would give ½), and the autodiff reference and this
    backward agree exactly on inputs that are exactly 0. A NaN passes through (as
    in PyTorch and ``jnp.maximum``): ``where(x > 0, x, 0)`` would turn it into 0, and
    params made NaN by an update would then never show in the loss the divergence
    guard reads.
    """
    return stateless("relu", lambda x: (jnp.where(x <= 0, jnp.zeros_like(x), x), x),
                     lambda x, dy: jnp.where(x <= 0, jnp.zeros_like(dy), dy))


def leaky_relu(negative_slope: float = 0.01) -> Layer:
    """y = x if x > 0 else a·x.  dx = dy · (1 if x > 0 else a).

    At the kink the slope is a (the x ≤ 0 side), as ``jax.grad`` of the forward gives.
    """
    a = negative_slope
    return stateless(
        f"leaky_relu({a})",
        lambda x: (jnp.where(x > 0, x, a * x), x),
        lambda x, dy: jnp.where(x > 0, dy, a * dy),
    )


def elu(alpha: float = 1.0) -> Layer:
    """y = x if x > 0 else α(eˣ − 1).  dx = dy · (1 if x > 0 else y + α).

    At x = 0 the slope is α (the x ≤ 0 side; 1 for the default α = 1), as ``jax.grad``
    of the forward gives.
    """

    def fn(x):
        # expm1 of min(x, 0), written as a where: never overflows on the branch the outer
        # where discards, and jax.grad at exactly 0 takes the x side (jnp.minimum's tie
        # would halve it and disagree with the manual rule).
        y = jnp.where(x > 0, x, alpha * jnp.expm1(jnp.where(x > 0, jnp.zeros_like(x), x)))
        return y, (x, y)

    def grad(res, dy):
        x, y = res
        return jnp.where(x > 0, dy, dy * (y + alpha))

    return stateless(f"elu({alpha})", fn, grad)


def softplus() -> Layer:
    """y = log(1 + eˣ).  dx = dy · σ(x)  (σ to full relative precision, ``sigmoid_forward``)."""
    return stateless("softplus", lambda x: (jnp.logaddexp(x, 0.0), x),
                     lambda x, dy: dy * sigmoid_forward(x))


def gelu(approximate: bool = False) -> Layer:
    """GELU (Hendrycks & Gimpel 2016), exact or with the tanh approximation.

    exact:  y = x·Φ(x),  dx = dy · (Φ(x) + x·φ(x)), with Φ, φ the standard
            normal CDF and density; Φ(x) = ½·erfc(−x/√2), accurate in the far
            negative tail too.
    tanh:   y = ½x(1 + t), t = tanh(u), u = √(2/π)(x + 0.044715x³),
            dx = dy · (½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)).
    """
    if approximate:

        def fn(x):
            t = jnp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x**3))
            return 0.5 * x * (1.0 + t), (x, t)

        def grad(res, dy):
            x, t = res
            du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x * x)
            return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)

        return stateless("gelu_tanh", fn, grad)

    def fn(x):
        cdf = 0.5 * erfc(-x / _SQRT_2)  # Φ(x); 1 + erf(x/√2) would cancel for x ≲ −5
        return x * cdf, (x, cdf)

    def grad(res, dy):
        x, cdf = res
        pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)
        return dy * (cdf + x * pdf)

    return stateless("gelu", fn, grad)


def softmax_forward(x, axis: int = -1):
    """y = eˣ / Σ eˣ along ``axis``, with the max subtracted first (no overflow; y does not
    depend on the shift, so jax.grad is told not to differentiate it)."""
    z = jnp.exp(x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True)))
    return z / jnp.sum(z, axis=axis, keepdims=True)


def softmax_backward(y, dy, axis: int = -1):
    """dx = y ⊙ (dy − Σ(dy ⊙ y)): the Jacobian diag(y) − y·yᵀ times dy, never materialised."""
    return y * (dy - jnp.sum(dy * y, axis=axis, keepdims=True))


def softmax(axis: int = -1) -> Layer:
    """y = eˣ / Σ eˣ along ``axis``.

    The Jacobian is diag(y) − y·yᵀ; its product with dy is never materialised:
    dx = y ⊙ (dy − Σ(dy ⊙ y)). Attention reuses both halves.
    """

    def fn(x):
        y = softmax_forward(x, axis)
        return y, y

    return stateless("softmax", fn, lambda y, dy: softmax_backward(y, dy, axis))


ACTIVATIONS = {
    "identity": identity,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "softplus": softplus,
    "gelu": gelu,
    "gelu_tanh": lambda: gelu(approximate=True),
    "softmax": softmax,
}
"""Activation builders by name; each call returns a fresh ``Layer``."""


def get(name: str) -> Layer:
    """An activation layer by name, e.g. ``get("tanh")``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
