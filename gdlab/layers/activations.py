"""Element-wise activations (and softmax), each with its derivative by hand.

Every activation is a parameter-free layer. Its backward multiplies the
incoming cotangent by the local derivative: ``dx = dy ⊙ σ'(x)``, where σ' is
written out below, often in terms of the saved output ``y`` to save work.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.special import erf

from gdlab.layers.base import Layer, stateless

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


def _sigmoid(x):
    # 1/(1+e^{−x}) without overflow: written via tanh, stable for large |x|.
    return 0.5 * (jnp.tanh(0.5 * x) + 1.0)


def identity() -> Layer:
    """y = x.  dx = dy."""
    return stateless("identity", lambda x: (x, None), lambda _, dy: dy)


def sigmoid() -> Layer:
    """y = 1/(1+e^{−x}).  dx = dy · y(1−y)."""

    def fn(x):
        y = _sigmoid(x)
        return y, y

    return stateless("sigmoid", fn, lambda y, dy: dy * y * (1.0 - y))


def tanh() -> Layer:
    """y = tanh(x).  dx = dy · (1 − y²)."""

    def fn(x):
        y = jnp.tanh(x)
        return y, y

    return stateless("tanh", fn, lambda y, dy: dy * (1.0 - y * y))


def relu() -> Layer:
    """y = max(x, 0).  dx = dy · [x > 0]  (0 at the kink x = 0)."""
    return stateless("relu", lambda x: (jnp.maximum(x, 0), x),
                     lambda x, dy: jnp.where(x > 0, dy, 0))


def leaky_relu(negative_slope: float = 0.01) -> Layer:
    """y = x if x > 0 else a·x.  dx = dy · (1 if x > 0 else a)."""
    a = negative_slope
    return stateless(
        f"leaky_relu({a})",
        lambda x: (jnp.where(x > 0, x, a * x), x),
        lambda x, dy: jnp.where(x > 0, dy, a * dy),
    )


def elu(alpha: float = 1.0) -> Layer:
    """y = x if x > 0 else α(eˣ − 1).  dx = dy · (1 if x > 0 else y + α)."""

    def fn(x):
        # expm1 of min(x, 0): never overflows on the branch jnp.where discards.
        y = jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))
        return y, (x, y)

    def grad(res, dy):
        x, y = res
        return jnp.where(x > 0, dy, dy * (y + alpha))

    return stateless(f"elu({alpha})", fn, grad)


def softplus() -> Layer:
    """y = log(1 + eˣ).  dx = dy · sigmoid(x)."""
    return stateless("softplus", lambda x: (jnp.logaddexp(x, 0.0), x),
                     lambda x, dy: dy * _sigmoid(x))


def gelu(approximate: bool = False) -> Layer:
    """GELU (Hendrycks & Gimpel 2016), exact or with the tanh approximation.

    exact:  y = x·Φ(x),  dx = dy · (Φ(x) + x·φ(x)), with Φ, φ the standard
            normal CDF and density.
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
        cdf = 0.5 * (1.0 + erf(x / _SQRT_2))
        return x * cdf, (x, cdf)

    def grad(res, dy):
        x, cdf = res
        pdf = _INV_SQRT_2PI * jnp.exp(-0.5 * x * x)
        return dy * (cdf + x * pdf)

    return stateless("gelu", fn, grad)


def softmax_forward(x, axis: int = -1):
    """y = eˣ / Σ eˣ along ``axis``, with the max subtracted first (no overflow)."""
    z = jnp.exp(x - jnp.max(x, axis=axis, keepdims=True))
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
