"""Numerical tolerances, per dtype, kept in this one place.

A comparison of two arrays ``a`` and ``b`` (one leaf) passes when, element by element,

    |a − b| ≤ atol · max(s, ‖a‖∞, ‖b‖∞) + rtol · (|a| + |b|)

The absolute floor is relative to the leaf's largest entry when that exceeds s: an entry
that cancels to near zero from much larger terms keeps only the rounding error of those
terms (float32 attention gradients beside entries of size 30 differ by an ulp of 30).
s is the largest entry of the whole gradient checked, at most 1 (``gradcheck.compare``'s
``floor``), so a gradient of 1e-7 is held as closely as one of 1.

The *reported* relative error is ``|a − b| / max(1e-30, |a| + |b|)``.

- ``ANALYTIC``: manual backprop against ``jax.grad`` (same dtype). Both apply the
  same chain rule, so they agree to a few ulps of the dtype in each operation; the
  bound leaves room for those to accumulate over a deep model (float64: 1e-10, about
  10⁶ ulps, measured worst 5e-13; float32: 1e-4, about 800 ulps). A subtle bug
  shows in float64, the checker's default; float32 catches errors of about 1e-3.
- ``FINITE_DIFF``: an analytic gradient against central finite differences,
  which are always computed in float64 with step ``FD_STEP``. Truncation
  (∝ h²) and cancellation (∝ ε/h) errors make this looser; for float32 the
  analytic side's own rounding dominates.
"""

from __future__ import annotations

from typing import NamedTuple


class Tolerance(NamedTuple):
    rtol: float  # relative part, scaled by |a| + |b|
    atol: float  # absolute floor for entries that are (nearly) zero, times max(s, leaf's max |·|)


ANALYTIC = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=1e-4, atol=1e-6),
}

FINITE_DIFF = {
    "float64": Tolerance(rtol=1e-6, atol=1e-8),
    "float32": Tolerance(rtol=2e-3, atol=1e-5),
}

MIXED = {"bfloat16": 5e-2}
"""Mixed precision (``backprop.mixed_precision``: forward and backward in the compute
dtype from float32 params, the loss in float32) against the float64 gradient: the bound
on ‖g_mixed − g_64‖ / ‖g_64‖, a norm over a leaf or a whole gradient. Element by element
the comparison means little in bfloat16 (8 significant bits: entries that cancel to near
zero lose every digit). The inputs, the params and every intermediate are rounded to
2⁻⁹ relative, and the errors add up over a layer's sums."""

MIXED_RATIO = 2.0
"""Where the rounding itself exceeds ``MIXED`` (batch norm's and attention's gradients
subtract nearly equal terms), a hand-written mixed-precision gradient still passes when
its error is within this factor of jax.grad's in the same precision: the same accuracy,
where a wrong backward rule would be off by order one."""

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
