"""Numerical tolerances, per dtype, kept in this one place.

A comparison of two arrays ``a`` and ``b`` passes when, element by element,

    |a − b| ≤ atol + rtol · (|a| + |b|)

The *reported* relative error is ``|a − b| / max(1e-30, |a| + |b|)``.

- ``ANALYTIC``: manual backprop against ``jax.grad`` (same dtype). Both apply the
  same chain rule, so they agree to a few ulps of the dtype.
- ``FINITE_DIFF``: an analytic gradient against central finite differences,
  which are always computed in float64 with step ``FD_STEP``. Truncation
  (∝ h²) and cancellation (∝ ε/h) errors make this looser; for float32 the
  analytic side's own rounding dominates.
"""

from __future__ import annotations

from typing import NamedTuple


class Tolerance(NamedTuple):
    rtol: float  # relative part, scaled by |a| + |b|
    atol: float  # absolute floor, for entries that are (nearly) zero


ANALYTIC = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=1e-4, atol=1e-6),
}

FINITE_DIFF = {
    "float64": Tolerance(rtol=1e-6, atol=1e-8),
    "float32": Tolerance(rtol=2e-3, atol=1e-5),
}

FD_STEP = 1e-5
"""Central-difference step h in float64: (f(θ + h·e) − f(θ − h·e)) / 2h."""

RELATIVE_FLOOR = 1e-30
"""Denominator floor of the reported relative error."""


def dtype_name(dtype) -> str:
    """``"float32"`` or ``"float64"`` for a NumPy/JAX dtype or its name."""
    import numpy as np

    name = np.dtype(dtype).name
    if name not in ANALYTIC:
        raise ValueError(f"no tolerances for dtype {name!r}; use float32 or float64")
    return name
