"""Weight initialisers: variance scaling by fan-in and/or fan-out.

Each draws ``w`` with ``Var[w] = gain / fan`` where

- He (Kaiming; He et al. 2015):      gain 2, fan = fan_in            (ReLU family)
- Glorot (Xavier; Glorot & Bengio 2010): gain 2, fan = fan_in + fan_out (tanh, sigmoid)
- LeCun (LeCun et al. 1998):         gain 1, fan = fan_in            (SELU, linear)

``normal`` draws N(0, σ²) with σ = √(gain/fan); ``uniform`` draws U(−a, a) with
a = √(3·gain/fan), which has the same variance.

A weight of shape ``(D_in, D_out)`` has fan_in = D_in, fan_out = D_out. A
convolution kernel ``(kh, kw, C_in, C_out)`` (HWIO) sees a receptive field of
kh·kw inputs per channel: fan_in = kh·kw·C_in, fan_out = kh·kw·C_out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]

_SCHEMES = {"he": (2.0, "in"), "glorot": (2.0, "avg2"), "lecun": (1.0, "in")}


def variance_scaling(scheme: str, distribution: str) -> Initializer:
    """An initialiser ``(key, shape, dtype) -> w`` for a scheme and distribution.

    ``shape`` is ``(fan_in, fan_out)`` or a kernel ``(*window, C_in, C_out)``.
    """
    if scheme not in _SCHEMES or distribution not in ("normal", "uniform"):
        raise ValueError(f"unknown initialiser {scheme}_{distribution}; choose one of: {', '.join(INITIALIZERS)}")
    gain, mode = _SCHEMES[scheme]

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = fans(shape)
        fan = fan_in if mode == "in" else fan_in + fan_out
        variance = gain / fan
        if distribution == "normal":
            return math.sqrt(variance) * jax.random.normal(key, shape, dtype)
        limit = math.sqrt(3.0 * variance)
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    init.__name__ = f"{scheme}_{distribution}"
    return init


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight ``(D_in, D_out)`` or kernel ``(*window, C_in, C_out)``."""
    if len(shape) < 2:
        raise ValueError(f"an initialiser needs a shape of rank >= 2, got {tuple(shape)}")
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


INITIALIZERS = tuple(f"{s}_{d}" for s in _SCHEMES for d in ("normal", "uniform"))


def get(name: str | Initializer) -> Initializer:
    """An initialiser by name (``"he_normal"``, ``"glorot_uniform"``, …) or the callable itself."""
    if callable(name):
        return name
    scheme, _, distribution = name.partition("_")
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initialiser {name!r}; choose one of: {', '.join(INITIALIZERS)}")
    return variance_scaling(scheme, distribution)
