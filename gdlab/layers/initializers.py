"""Weight initialisers: variance scaling by fan-in and/or fan-out.

Each draws ``w`` with ``Var[w] = gain / fan`` where

- He (Kaiming; He et al. 2015):      gain 2, fan = fan_in            (ReLU family)
- Glorot (Xavier; Glorot & Bengio 2010): gain 2, fan = fan_in + fan_out (tanh, sigmoid)
- LeCun (LeCun et al. 1998):         gain 1, fan = fan_in            (SELU, linear)

``normal`` draws N(0, σ²) with σ = √(gain/fan); ``uniform`` draws U(−a, a) with
a = √(3·gain/fan), which has the same variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple[int, int], jnp.dtype], jax.Array]

_SCHEMES = {"he": (2.0, "in"), "glorot": (2.0, "avg2"), "lecun": (1.0, "in")}


def variance_scaling(scheme: str, distribution: str) -> Initializer:
    """An initialiser ``(key, (fan_in, fan_out), dtype) -> w`` for a scheme and distribution."""
    if scheme not in _SCHEMES or distribution not in ("normal", "uniform"):
        raise ValueError(f"unknown initialiser {scheme}_{distribution}; choose one of: {', '.join(INITIALIZERS)}")
    gain, mode = _SCHEMES[scheme]

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = shape
        fan = fan_in if mode == "in" else fan_in + fan_out
        variance = gain / fan
        if distribution == "normal":
            return math.sqrt(variance) * jax.random.normal(key, shape, dtype)
        limit = math.sqrt(3.0 * variance)
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    init.__name__ = f"{scheme}_{distribution}"
    return init


INITIALIZERS = tuple(f"{s}_{d}" for s in _SCHEMES for d in ("normal", "uniform"))


def get(name: str | Initializer) -> Initializer:
    """An initialiser by name (``"he_normal"``, ``"glorot_uniform"``, …) or the callable itself."""
    if callable(name):
        return name
    scheme, _, distribution = name.partition("_")
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initialiser {name!r}; choose one of: {', '.join(INITIALIZERS)}")
    return variance_scaling(scheme, distribution)
