"""Tests for conv2d and the pooling layers: every hand-written backward against
``jax.vjp`` of its own forward (float64 and float32, jitted), forwards against
``flax.linen`` as an independent reference, max_pool's tie rule in closed form,
jit/vmap, init validation and He-initialised kernel statistics."""

from __future__ import annotations

import functools
import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose

from gdlab.layers.base import Layer, init_shapes
from gdlab.layers.conv import conv2d
from gdlab.layers.pooling import avg_pool, global_avg_pool, max_pool

DTYPES = ("float64", "float32")
X_SHAPE = (2, 7, 9, 4)  # (B, H, W, C): odd, unequal spatial sizes
C_IN = X_SHAPE[-1]

# name -> conv2d keyword arguments (features defaults to 6)
CONV_CASES = {
    "same_3x3": dict(kernel_size=3),
    "valid_3x3": dict(kernel_size=3, padding="VALID"),
    "explicit_2x3": dict(kernel_size=(2, 3), padding=((1, 2), (0, 1))),
    "int_pad_stride2": dict(kernel_size=3, padding=1, strides=2),
    "same_stride2": dict(kernel_size=3, strides=2),
    "valid_stride2": dict(kernel_size=3, strides=2, padding="VALID"),
    "same_stride_2x1_2x3": dict(kernel_size=(2, 3), strides=(2, 1)),
    "same_dilation2": dict(kernel_size=3, dilation=2),
    "valid_dilation2_stride2": dict(kernel_size=(2, 3), dilation=2, strides=2, padding="VALID"),
    "explicit_dilation2": dict(kernel_size=3, dilation=(2, 1), padding=((1, 2), (0, 1))),
    "1x1": dict(kernel_size=1),
    "1x1_stride2": dict(kernel_size=1, strides=2, padding="VALID"),
    "pad_beyond_kernel": dict(kernel_size=2, padding=3, strides=3),
    "groups2": dict(kernel_size=3, feature_groups=2),
    "groups2_stride2_explicit": dict(kernel_size=(2, 3), feature_groups=2, strides=2,
                                     padding=((1, 2), (0, 1))),
    "depthwise": dict(features=2 * C_IN, kernel_size=3, feature_groups=C_IN),
    "depthwise_valid_stride_2x1": dict(features=C_IN, kernel_size=(3, 2), strides=(2, 1),
                                       padding="VALID", feature_groups=C_IN),
}

# name -> pooling keyword arguments (window, strides, padding)
POOL_CASES = {
    "2x2": dict(window=2),
    "3x3_s2_overlap": dict(window=3, strides=2),
    "3x3_s2_same": dict(window=3, strides=2, padding="SAME"),
    "3x3_s1_same": dict(window=3, strides=1, padding="SAME"),
    "2x3_s1x2_explicit": dict(window=(2, 3), strides=(1, 2), padding=((1, 0), (2, 1))),
    "2x2_s3_pad1": dict(window=2, strides=3, padding=1),  # strides > window: gaps
}
POOL_KINDS = ("max", "avg", "avg_exclude_pad")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@functools.cache
def _conv(name: str, dtype: str) -> Layer:
    kw = dict(CONV_CASES[name])
    return conv2d(kw.pop("features", 6), **kw, dtype=jnp.dtype(dtype))


@functools.cache
def _pool(kind: str, name: str) -> Layer:
    kw = dict(POOL_CASES[name])
    if kind == "max":
        return max_pool(**kw)
    return avg_pool(**kw, count_include_pad=(kind == "avg"))


# Test data comes from NumPy, seeded by the ``key`` fixture: jax.random inside a jitted
# check would multiply its compile time (threefry) several times over.


def _rng(key) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def _distinct(rng, shape, dtype):
    """Random values, all distinct (a shuffled grid): max_pool has no ties to break."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n - 0.5).astype(dtype)


def _abstract_init(layer, in_shape):
    """(out_shape, params, state) of ``layer.init``, params and state as shapes only:
    traced abstractly, nothing compiled or drawn."""
    out = []

    def init(k):
        out_shape, params, state = layer.init(k, in_shape)
        out.append(tuple(out_shape))
        return params, state

    params, state = jax.eval_shape(init, jax.random.PRNGKey(0))
    return out[0], params, state


def _random_case(layer, rng, dtype, *, distinct=False):
    """Random params (like the layer's), x and dy for X_SHAPE, and init's out_shape."""
    out_shape, param_shapes, _ = _abstract_init(layer, X_SHAPE[1:])
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(dtype), param_shapes)
    x = _distinct(rng, X_SHAPE, dtype) if distinct else rng.standard_normal(X_SHAPE).astype(dtype)
    dy = rng.standard_normal((X_SHAPE[0], *out_shape)).astype(dtype)
    return out_shape, params, x, dy


def _manual_and_reference(layer, params, x, dy):
    """(y, new_state, manual (dparams, dx), jax.vjp's (dparams, dx) of its own forward)."""
    y, state, residuals = layer.forward(params, {}, x)
    manual = layer.backward(params, residuals, dy)
    _, vjp = jax.vjp(lambda p, x: layer.forward(p, {}, x)[0], params, x)
    return y, state, manual, vjp(dy)


def _forward_backward(layer, params, x, dy):
    y, _, residuals = layer.forward(params, {}, x)
    dparams, dx = layer.backward(params, residuals, dy)
    return y, dparams, dx


def _cases(names, float32_names):
    """Every case in float64, representative ones in float32 too (each case compiles once)."""
    return [(n, "float64") for n in names] + [(n, "float32") for n in float32_names]


# ------------------------------------------------------------------------ conv2d

CONV_FLOAT32 = ("same_3x3", "valid_dilation2_stride2", "groups2_stride2_explicit", "depthwise")


@functools.partial(jax.jit, static_argnums=0)
def _conv_check(name, params, x, dy):
    """Everything one conv2d case compares, traced and compiled once."""
    layer = _conv(name, x.dtype.name)
    kw = dict(CONV_CASES[name])
    dtype = x.dtype
    y, state, manual, reference = _manual_and_reference(layer, params, x, dy)
    flax_conv = nn.Conv(kw.pop("features", 6), _pair(kw["kernel_size"]),
                        strides=_pair(kw.get("strides", 1)), padding=kw.get("padding", "SAME"),
                        kernel_dilation=_pair(kw.get("dilation", 1)),
                        feature_group_count=kw.get("feature_groups", 1),
                        dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype))
    y_flax = flax_conv.apply({"params": {"kernel": params["w"], "bias": params["b"]}}, x)
    return dict(y=y, y_flax=y_flax, manual=manual, reference=reference, state=state)


@pytest.mark.parametrize("name, dtype", _cases(CONV_CASES, CONV_FLOAT32))
def test_conv2d_matches_flax_and_vjp(name, dtype, key):
    """Forward against flax.linen.Conv (same kernel and bias, padding, strides, dilation,
    groups); manual dx and dparams against jax.vjp of the layer's own forward."""
    out_shape, params, x, dy = _random_case(_conv(name, dtype), _rng(key), dtype)
    r = _conv_check(name, params, x, dy)
    (dparams, dx), (ref_dparams, ref_dx) = r["manual"], r["reference"]
    assert r["y"].shape[1:] == out_shape
    assert r["y"].dtype == dx.dtype == dparams["w"].dtype == jnp.dtype(dtype)
    assert dx.shape == x.shape and r["state"] == {}
    assert_tree_allclose(r["y"], r["y_flax"], dtype=dtype)
    assert_tree_allclose(dx, ref_dx, dtype=dtype)
    assert_tree_allclose(dparams, ref_dparams, dtype=dtype)


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_dw_both_ways(name, key, monkeypatch):
    """conv2d's two forms of dW (float64, eager): one matmul per kernel tap (the CPU's)
    and one convolution (the GPU's, forced on here) both equal jax.vjp's dW, padding,
    strides, dilation and groups included."""
    conv_module = importlib.import_module("gdlab.layers.conv")
    layer = _conv(name, "float64")
    _, params, x, dy = _random_case(layer, _rng(key), "float64")
    _, _, residuals = layer.forward(params, {}, x)
    _, vjp = jax.vjp(lambda p: layer.forward(p, {}, x)[0], params)
    reference = vjp(dy)[0]["w"]
    for as_convolution in (False, True):
        monkeypatch.setattr(conv_module, "_dw_as_one_convolution", lambda v=as_convolution: v)
        dparams, _ = layer.backward(params, residuals, dy)
        assert_tree_allclose(dparams["w"], reference, dtype="float64")


def test_conv2d_same_output_is_ceil(key):
    layer = conv2d(6, (2, 3), strides=(2, 3), feature_groups=2, dtype=jnp.float64)
    out_shape, params, state = layer.init(key, (7, 9, 4))
    assert out_shape == (4, 3, 6)  # SAME: (⌈7/2⌉, ⌈9/3⌉)
    assert params["w"].shape == (2, 3, 2, 6) and params["b"].shape == (6,)
    assert not np.any(np.asarray(params["b"])) and state == {}
    assert init_shapes(layer, (7, 9, 4))[1]["w"].shape == (2, 3, 2, 6)
    assert layer.name == "conv2d(6, 2x3, stride 2x3, groups 2)"
    assert conv2d(8, 3).name == "conv2d(8, 3x3)"


def test_conv2d_he_init_variance(key):
    groups, c_in, kh, kw = 2, 16, 3, 3
    layer = conv2d(64, (kh, kw), feature_groups=groups, w_init="he_normal", dtype=jnp.float64)
    _, params, _ = layer.init(key, (8, 8, c_in))
    w = np.asarray(params["w"])
    fan_in = kh * kw * c_in // groups  # each output sees its own group's channels only
    assert abs(w.var() / (2.0 / fan_in) - 1.0) < 0.1
    assert abs(w.mean()) < 0.1 * np.sqrt(2.0 / fan_in)


# ------------------------------------------------------------------------ pooling

POOL_FLOAT32 = ("3x3_s2_same", "2x3_s1x2_explicit")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _pool_check(kind, name, x, dy):
    """Everything one pooling case compares, traced and compiled once."""
    layer = _pool(kind, name)
    kw = POOL_CASES[name]
    window = _pair(kw["window"])
    strides = _pair(kw.get("strides", kw["window"]))  # flax's default stride is 1, not window
    padding = kw.get("padding", "VALID")
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    y, state, manual, reference = _manual_and_reference(layer, {}, x, dy)
    if kind == "max":
        y_flax = nn.max_pool(x, window, strides, padding)
    else:
        y_flax = nn.avg_pool(x, window, strides, padding, count_include_pad=(kind == "avg"))
    return dict(y=y, y_flax=y_flax, manual=manual, reference=reference, state=state)


@pytest.mark.parametrize("name, dtype", _cases(POOL_CASES, POOL_FLOAT32))
@pytest.mark.parametrize("kind", POOL_KINDS)
def test_pool_matches_flax_and_vjp(kind, name, dtype, key):
    """Forward against flax.linen.max_pool/avg_pool; manual dx against jax.vjp (random
    distinct inputs: no ties)."""
    layer = _pool(kind, name)
    out_shape, params, x, dy = _random_case(layer, _rng(key), dtype, distinct=True)
    assert params == {} and layer.init(None, X_SHAPE[1:])[1:] == ({}, {})
    r = _pool_check(kind, name, x, dy)
    (dparams, dx), (_, ref_dx) = r["manual"], r["reference"]
    assert r["state"] == {} and dparams == {}
    assert r["y"].shape[1:] == out_shape
    assert dx.shape == x.shape and dx.dtype == jnp.dtype(dtype)
    assert_tree_allclose(r["y"], r["y_flax"], dtype=dtype)
    assert_tree_allclose(dx, ref_dx, dtype=dtype)


def _pool_dx(layer, x, dy):
    x = jnp.asarray(x, jnp.float64)[None, :, :, None]    # (1, H, W, 1)
    dy = jnp.asarray(dy, jnp.float64)[None, :, :, None]
    _, _, residuals = layer.forward({}, {}, x)
    return np.asarray(layer.backward({}, residuals, dy)[1][0, :, :, 0])


def test_max_pool_tie_goes_to_first_maximum():
    # An all-equal 2×2 window: the whole gradient goes to the top-left element.
    np.testing.assert_array_equal(_pool_dx(max_pool(2), np.ones((2, 2)), [[3.0]]),
                                  [[3.0, 0.0], [0.0, 0.0]])
    # A tie on the anti-diagonal: the first maximum in row-major order is (0, 1).
    np.testing.assert_array_equal(_pool_dx(max_pool(2), [[0.0, 5.0], [5.0, 1.0]], [[2.0]]),
                                  [[0.0, 2.0], [0.0, 0.0]])
    # Overlapping all-equal windows (2×2, stride 1): each window picks its own top-left.
    np.testing.assert_array_equal(
        _pool_dx(max_pool(2, strides=1), np.ones((3, 3)), [[1.0, 2.0], [3.0, 4.0]]),
        [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])


def test_max_pool_overlapping_windows_accumulate():
    # One peak in the centre is the maximum of all four overlapping windows.
    x = np.zeros((3, 3))
    x[1, 1] = 1.0
    dx = _pool_dx(max_pool(2, strides=1), x, [[1.0, 2.0], [3.0, 4.0]])
    expected = np.zeros((3, 3))
    expected[1, 1] = 10.0
    np.testing.assert_array_equal(dx, expected)
    # SAME padding (−∞) never wins: on an all-negative 2×2 input every 3×3 window covers
    # all four real values, and its first real maximum (row-major) is x[0, 0].
    dx = _pool_dx(max_pool(3, strides=1, padding="SAME"), -np.ones((2, 2)),
                  [[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(dx, [[4.0, 0.0], [0.0, 0.0]])


def test_avg_pool_closed_form():
    # 2×2 windows on a 3×3 input, SAME-style padding of one row/column at the end.
    dy = [[1.0, 2.0], [3.0, 4.0]]
    pad = ((0, 1), (0, 1))
    dx_incl = _pool_dx(avg_pool(2, padding=pad), np.ones((3, 3)), dy)
    np.testing.assert_allclose(dx_incl, np.array([[1, 1, 2], [1, 1, 2], [3, 3, 4]]) / 4.0)
    dx_excl = _pool_dx(avg_pool(2, padding=pad, count_include_pad=False), np.ones((3, 3)), dy)
    np.testing.assert_allclose(dx_excl, [[0.25, 0.25, 1.0], [0.25, 0.25, 1.0], [1.5, 1.5, 4.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool_closed_form(dtype, key):
    layer = global_avg_pool()
    out_shape, params, state = layer.init(None, X_SHAPE[1:])
    assert out_shape == (C_IN,) and params == {} and state == {}
    _, _, x, dy = _random_case(layer, _rng(key), dtype)
    check = jax.jit(_manual_and_reference, static_argnums=0)
    y, _, (dparams, dx), (_, ref_dx) = check(layer, params, x, dy)
    h, w = X_SHAPE[1:3]
    assert y.shape == (X_SHAPE[0], C_IN) and dparams == {}
    assert_tree_allclose(y, np.asarray(x).mean(axis=(1, 2)), dtype=dtype)
    closed = np.broadcast_to(dy[:, None, None, :] / (h * w), X_SHAPE)
    assert_tree_allclose(dx, closed, dtype=dtype)
    assert_tree_allclose(dx, ref_dx, dtype=dtype)


# ------------------------------------------------------------------------ jit / vmap

VMAP_CASES = {
    "conv_groups": lambda: _conv("groups2_stride2_explicit", "float64"),
    "conv_depthwise": lambda: _conv("depthwise_valid_stride_2x1", "float64"),
    "max_pool": lambda: _pool("max", "3x3_s2_same"),
    "avg_pool": lambda: _pool("avg_exclude_pad", "2x3_s1x2_explicit"),
    "global_avg_pool": global_avg_pool,
}


@pytest.mark.parametrize("name", VMAP_CASES)
def test_jit_and_vmap_match_a_loop(name, key):
    """jit(vmap(forward+backward)) over an extra leading axis (params included) equals a
    loop of the jitted single-batch function over that axis."""
    layer = VMAP_CASES[name]()
    n = 3
    rng = _rng(key)
    out_shape, param_shapes, _ = _abstract_init(layer, X_SHAPE[1:])
    params = jax.tree.map(lambda s: rng.standard_normal((n, *s.shape)), param_shapes)
    xs = _distinct(rng, (n, *X_SHAPE), np.float64)  # no ties for max_pool
    dys = rng.standard_normal((n, X_SHAPE[0], *out_shape))
    fb = functools.partial(_forward_backward, layer)
    batched = jax.jit(jax.vmap(fb))(params, xs, dys)
    single = jax.jit(fb)
    for i in range(n):
        one = single(jax.tree.map(lambda a, i=i: a[i], params), xs[i], dys[i])
        assert_tree_allclose(jax.tree.map(lambda a, i=i: a[i], batched), one, dtype="float64")


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize("layer", [conv2d(4, 3), max_pool(2), avg_pool(2), global_avg_pool()],
                         ids=lambda layer: layer.name)
def test_init_rejects_flat_inputs(layer, key):
    with pytest.raises(ValueError, match=r"needs image inputs \(H, W, C\), got \(64,\)"):
        layer.init(key, (64,))


@pytest.mark.parametrize("layer", [conv2d(4, 9, padding="VALID"),
                                   conv2d(4, 5, dilation=2, padding=0),  # dilated: 9
                                   max_pool(9), avg_pool((3, 9), padding=((0, 0), (0, 0)))],
                         ids=lambda layer: layer.name)
def test_init_rejects_window_larger_than_padded_input(layer, key):
    with pytest.raises(ValueError, match="larger than the padded input"):
        layer.init(key, (8, 8, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        init_shapes(layer, (8, 8, 3))


@pytest.mark.parametrize("layer", [conv2d(4, 3, padding="VALID"), max_pool(3), avg_pool(3),
                                   avg_pool(3, count_include_pad=False)],
                         ids=lambda layer: layer.name)
def test_forward_rejects_a_batch_the_window_does_not_fit(layer, key):
    """init checks one example's shape; forward checks the batch it is given, which would
    otherwise give an empty (B, 0, 0, C) output silently (and a lax error in backward)."""
    _, params, state = layer.init(key, (8, 8, 2))
    layer.forward(params, state, jnp.ones((2, 8, 8, 2), jnp.float32))  # init's shape: fine
    with pytest.raises(ValueError, match="larger than the padded input 2x2"):
        layer.forward(params, state, jnp.ones((2, 2, 2, 2), jnp.float32))
    with pytest.raises(ValueError, match=r"needs a batch of images \(B, H, W, C\), got shape "
                                         r"\(8, 8, 2\)"):
        layer.forward(params, state, jnp.ones((8, 8, 2), jnp.float32))


def test_global_avg_pool_forward_rejects_an_unbatched_image(key):
    layer = global_avg_pool()
    assert layer.forward({}, {}, jnp.ones((2, 5, 4, 3)))[0].shape == (2, 3)
    with pytest.raises(ValueError, match=r"needs a batch of images \(B, H, W, C\), got shape "
                                         r"\(5, 4, 3\)"):
        layer.forward({}, {}, jnp.ones((5, 4, 3)))  # it averaged axes 1 and 2: shape (5,)


def test_conv2d_init_rejects_channels_not_divisible_by_groups(key):
    with pytest.raises(ValueError, match="divisible by feature_groups"):
        conv2d(4, 3, feature_groups=2).init(key, (8, 8, 3))


@pytest.mark.parametrize("build, match", [
    (lambda: conv2d(4, 3, padding="FULL"), "unknown padding"),
    (lambda: conv2d(4, 3, padding=-1), "at least 0"),
    (lambda: conv2d(4, 3, padding=((1, 2), (0,))), "padding must be"),
    (lambda: conv2d(4, 3, strides=0), "strides must be at least 1"),
    (lambda: conv2d(4, (3, -1)), "kernel_size must be at least 1"),
    (lambda: conv2d(4, 3, dilation=(1, 2, 3)), "dilation must be an int or a pair"),
    (lambda: conv2d(5, 3, feature_groups=2), "divisible by feature_groups"),
    (lambda: conv2d((4, 4), 3), "features must be an int"),
    (lambda: conv2d(4, 3, feature_groups=0), "feature_groups must be at least 1"),
    (lambda: max_pool(2, padding=2), "padding smaller than the window"),
    (lambda: avg_pool(2, padding=((0, 2), (0, 0)), count_include_pad=False),
     "padding smaller than the window"),
    (lambda: avg_pool(0), "window must be at least 1"),
])
def test_builders_reject_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# ------------------------------------------- edge shapes: SAME with stride > window, 1-pixel images

# (name, layer builder, x shape, flax reference). SAME pads max((⌈n/s⌉ − 1)·s + k − n, 0):
# with a stride beyond the window the unclamped total goes negative (n = 8, k = 1, s = 2;
# n = 9, k = 2, s = 3), which would crop the first row instead of padding nothing.
EDGE_CASES = {
    "conv_1x1_stride2_same": (lambda: conv2d(5, 1, strides=2, dtype=jnp.float64), (2, 8, 7, 3),
                              lambda p, x: nn.Conv(5, (1, 1), strides=(2, 2), padding="SAME",
                                                   dtype=jnp.float64, param_dtype=jnp.float64)
                              .apply({"params": {"kernel": p["w"], "bias": p["b"]}}, x)),
    "max_2x2_stride3_same": (lambda: max_pool(2, strides=3, padding="SAME"), (2, 9, 8, 3),
                             lambda p, x: nn.max_pool(x, (2, 2), (3, 3), "SAME")),
    "avg_2x2_stride3_same": (lambda: avg_pool(2, strides=3, padding="SAME"), (2, 9, 8, 3),
                             lambda p, x: nn.avg_pool(x, (2, 2), (3, 3), "SAME")),
    # one-pixel-high / -wide images and a batch of one: the SAME kernel overhangs the image
    "conv_3x3_same_1_high": (lambda: conv2d(4, 3, dtype=jnp.float64), (1, 1, 5, 2),
                             lambda p, x: nn.Conv(4, (3, 3), padding="SAME", dtype=jnp.float64,
                                                  param_dtype=jnp.float64)
                             .apply({"params": {"kernel": p["w"], "bias": p["b"]}}, x)),
    "conv_3x2_dil2_stride2_1_wide": (
        lambda: conv2d(4, (3, 2), strides=2, dilation=2, dtype=jnp.float64), (1, 6, 1, 2),
        lambda p, x: nn.Conv(4, (3, 2), strides=(2, 2), padding="SAME", kernel_dilation=(2, 2),
                             dtype=jnp.float64, param_dtype=jnp.float64)
        .apply({"params": {"kernel": p["w"], "bias": p["b"]}}, x)),
    "max_3x3_same_1_high": (lambda: max_pool(3, strides=1, padding="SAME"), (1, 1, 5, 2),
                            lambda p, x: nn.max_pool(x, (3, 3), (1, 1), "SAME")),
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_shapes_match_flax_and_vjp(name, key):
    """Forward against flax (lax's own SAME padding), manual dx and dparams against jax.vjp,
    and, for conv2d, both forms of dW, on the shapes the main cases never meet."""
    build, shape, reference = EDGE_CASES[name]
    layer = build()
    rng = _rng(key)
    out_shape, param_shapes, _ = _abstract_init(layer, shape[1:])
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape), param_shapes)
    x = jnp.asarray(_distinct(rng, shape, np.float64))
    dy = jnp.asarray(rng.standard_normal((shape[0], *out_shape)))
    y, _, manual, (ref_dparams, ref_dx) = _manual_and_reference(layer, params, x, dy)
    assert y.shape[1:] == out_shape
    assert_tree_allclose(y, reference(params, x), dtype="float64")
    assert_tree_allclose(manual[1], ref_dx, dtype="float64")
    assert_tree_allclose(manual[0], ref_dparams, dtype="float64")
    if params:
        conv_module = importlib.import_module("gdlab.layers.conv")
        _, _, residuals = layer.forward(params, {}, x)
        for as_convolution in (False, True):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(conv_module, "_dw_as_one_convolution", lambda v=as_convolution: v)
                assert_tree_allclose(layer.backward(params, residuals, dy)[0], ref_dparams,
                                     dtype="float64")


def test_max_pool_padding_never_takes_the_gradient_of_a_window_of_zeros():
    """After a relu whole windows are 0. The padding is −∞ in the backward's search for the
    first maximum too, so such a window's gradient goes to its first REAL zero, never to a
    padded cell above or left of it (where it would be cropped away and lost)."""
    dy = [[1.0, 2.0], [3.0, 4.0]]
    # SAME, 3×3, stride 1 on 2×2: every window holds all four zeros; x[0, 0] is first.
    dx = _pool_dx(max_pool(3, strides=1, padding="SAME"), np.zeros((2, 2)), dy)
    np.testing.assert_array_equal(dx, [[10.0, 0.0], [0.0, 0.0]])
    # padding above and left only: each 2×2 window's first real cell takes its dy.
    dx = _pool_dx(max_pool(2, padding=((1, 0), (1, 0))), np.zeros((3, 3)), dy)
    np.testing.assert_array_equal(dx, [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("grad", ["manual", "custom_vjp"])
def test_a_float32_cnn_takes_float64_images_as_jax_grad_does(grad):
    """float64 images on a float32 kernel compute in float64, as dense's x @ w does (lax's
    convolution takes one dtype only): the gradient equals jax.grad's, in the params'
    dtypes, and fit trains the CNN on them."""
    from gdlab import backprop, losses, models, optim, train

    model = models.cnn(3, channels=(4,))
    rng = np.random.default_rng(8)
    x = rng.normal(size=(10, 6, 6, 1))                     # float64, NumPy's default
    y = rng.integers(0, 3, 10)
    _, params, state = model.init(jax.random.PRNGKey(0), (6, 6, 1))
    loss = losses.get("xent")
    (j, _), got = jax.jit(getattr(backprop, grad)(model, loss), static_argnames="train")(
        params, state, jnp.asarray(x), y, train=True)
    (j_ref, _), ref = jax.jit(backprop.autodiff(model, loss), static_argnames="train")(
        params, state, jnp.asarray(x), y, train=True)
    assert jnp.asarray(j).dtype == jnp.float64
    assert [g.dtype for g in jax.tree.leaves(got)] == [p.dtype for p in jax.tree.leaves(params)]
    assert_tree_allclose(got, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(j), float(j_ref), rtol=1e-12)
    fitted = train.fit(model, loss, optim.momentum(0.05), (x, y), epochs=2, batch_size=5,
                       key=jax.random.PRNGKey(1), grad=grad)
    assert fitted.status == "completed"
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(fitted.state.params))
