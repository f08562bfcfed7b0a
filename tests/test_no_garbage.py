"""No garbage digits: the sigmoid and everything built on it (the sigmoid layer's forward
and backward, softplus's derivative, the bce loss's gradient) keep full relative precision
over x ∈ [−100, 100] in float32 and float64, checked on a dense grid against
``jax.nn.sigmoid`` and the exact derivative σ(x)·σ(−x) evaluated in float64.

The old forms lost it: ½(tanh(x/2) + 1) is off by 4e-4 (relative) at x = −30 in float64
and exactly 0 below −37; y(1 − y) and σ(z) − 1 cancel for large positive x.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdlab import gradcheck, layers, losses

DTYPES = ("float32", "float64")

SIGMOID_RTOL = {"float32": 1e-6, "float64": 1e-12}
"""Worst relative error allowed against the float64 references, per dtype."""

X_MAX = 100.0
GRID_POINTS = 20_001  # step 0.01: every integer in [−100, 100] is on the grid


def _grid(dtype: str) -> jax.Array:
    return jnp.linspace(-X_MAX, X_MAX, GRID_POINTS, dtype=jnp.float64).astype(dtype)


def _sigma64(x) -> jax.Array:
    """σ(x) in float64 at the (possibly float32) grid points themselves."""
    return jax.nn.sigmoid(jnp.asarray(x, jnp.float64))


def _dsigma64(x) -> jax.Array:
    """σ'(x) = σ(x)·σ(−x) in float64: 1 − σ(x) is never formed."""
    x = jnp.asarray(x, jnp.float64)
    return jax.nn.sigmoid(x) * jax.nn.sigmoid(-x)


def assert_relative(actual, exact, dtype: str) -> None:
    """|actual − exact| ≤ rtol·|exact| wherever |exact| is a normal number of ``dtype``.

    Below the normal range (float32 only: σ(x) < 1.2e-38 for x ≲ −87.3, and σ'(±100))
    the dtype holds at most a subnormal, which XLA on CPU flushes to 0; there the check
    is |actual − exact| ≤ the smallest normal number. In float64 every value on the
    grid is normal (σ(−100) ≈ 3.7e-44), so the relative bound holds everywhere.
    """
    actual = np.asarray(actual, np.float64)
    exact = np.asarray(exact, np.float64)
    assert actual.shape == exact.shape
    assert np.all(np.isfinite(actual))
    tiny = float(np.finfo(dtype).tiny)
    err = np.abs(actual - exact)
    normal = np.abs(exact) >= tiny
    if dtype == "float64":
        assert normal.all()
    worst = np.max(err[normal] / np.abs(exact[normal]))
    assert worst <= SIGMOID_RTOL[dtype], f"worst relative error {worst:.3g} in {dtype}"
    assert np.all(err[~normal] <= tiny)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_forward_and_backward_are_accurate(dtype):
    x = _grid(dtype)[None, :]  # (1, N)
    layer = layers.sigmoid()
    y, _, res = jax.jit(lambda v: layer.forward({}, {}, v))(x)
    _, dx = jax.jit(lambda r, dy: layer.backward({}, r, dy))(res, jnp.ones_like(x))
    assert y.dtype == dx.dtype == jnp.dtype(dtype)
    assert_relative(y, _sigma64(x), dtype)
    assert_relative(dx, _dsigma64(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_backward_scales_the_cotangent(dtype):
    x = _grid(dtype)[None, :]
    # |dy| ≤ 1: where dy·σ'(x) is a normal float32, σ'(x) itself is (no subnormal in between).
    dy = jnp.full_like(x, -0.75)
    layer = layers.sigmoid()
    _, _, res = layer.forward({}, {}, x)
    _, dx = layer.backward({}, res, dy)
    assert_relative(dx, -0.75 * _dsigma64(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softplus_derivative_is_accurate(dtype):
    x = _grid(dtype)[None, :]
    layer = layers.softplus()
    _, _, res = layer.forward({}, {}, x)
    _, dx = jax.jit(lambda r, dy: layer.backward({}, r, dy))(res, jnp.ones_like(x))
    assert_relative(dx, _sigma64(x), dtype)


@pytest.mark.parametrize("label", [0.0, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_backward_is_accurate(dtype, label):
    """∂J/∂z = (σ(z) − y)/N: σ(z) for y = 0 and −σ(−z) for y = 1, each to full precision."""
    z = _grid(dtype)[:, None]  # (N, 1): N examples of one logit
    y = jnp.full((GRID_POINTS,), label, dtype)
    loss = losses.get("bce")
    _, res = loss.forward(z, y)
    dz = jax.jit(loss.backward)(res)
    z64 = jnp.asarray(z, jnp.float64)
    exact = (_sigma64(z64) if label == 0.0 else -_sigma64(-z64)) / GRID_POINTS
    assert_relative(dz, exact, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_checker_rows_for_sigmoid_softplus_bce_pass(dtype):
    report = gradcheck.check_all(dtype=dtype, names=["sigmoid", "softplus", "bce"])
    assert {row.path.split("/")[0] for row in report.leaves} >= {"sigmoid", "softplus", "loss"}
    assert report.passed, report.table()
