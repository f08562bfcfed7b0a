"""Tests for gdlab.layers: every hand-written backward against ``jax.vjp`` of its own
forward (eager, jitted and vmapped, float64 and float32), initialiser statistics,
dropout's inverted scaling, softmax and layer-norm invariants, ``serial``'s order, the
``residual`` and ``parallel`` combinators (cotangents summed where one value feeds two
paths), and the readable, stable parameter paths of nested compositions."""

from __future__ import annotations

import functools
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose
from hypothesis import given, settings
from hypothesis import strategies as st

from gdlab import layers, losses, models
from gdlab.gradcheck import leaf_paths
from gdlab.layers import initializers
from gdlab.train import check_data

DTYPES = ("float64", "float32")

DROPOUT_RATE = 0.3
LEAKY_SLOPE = 0.1
ELU_ALPHA = 0.7

# name -> (builder(dtype) -> Layer, input kind, train)
# input kinds: "vec" (B, D); "dense" (..., B, D) with optional leading axes; "image" (B, a, b, c);
# "fixed" (B, FIXED_DIM), for a residual whose body must map D back to D.
FIXED_DIM = 4
CASES = {
    "dense": (lambda dt: layers.dense(3, w_init="he_normal", dtype=dt), "dense", False),
    "identity": (lambda dt: layers.identity(), "vec", False),
    "sigmoid": (lambda dt: layers.sigmoid(), "vec", False),
    "tanh": (lambda dt: layers.tanh(), "vec", False),
    "relu": (lambda dt: layers.relu(), "vec", False),
    "leaky_relu": (lambda dt: layers.leaky_relu(LEAKY_SLOPE), "vec", False),
    "elu": (lambda dt: layers.elu(ELU_ALPHA), "vec", False),
    "softplus": (lambda dt: layers.softplus(), "vec", False),
    "gelu": (lambda dt: layers.gelu(), "vec", False),
    "gelu_tanh": (lambda dt: layers.gelu(approximate=True), "vec", False),
    "softmax": (lambda dt: layers.softmax(), "vec", False),
    "dropout_train": (lambda dt: layers.dropout(DROPOUT_RATE), "vec", True),
    "dropout_eval": (lambda dt: layers.dropout(DROPOUT_RATE), "vec", False),
    "layer_norm": (lambda dt: layers.layer_norm(dtype=dt), "vec", False),
    "flatten": (lambda dt: layers.flatten(), "image", False),
    "serial": (
        lambda dt: layers.serial(layers.dense(4, dtype=dt), layers.tanh(), layers.dense(2, dtype=dt)),
        "vec", False),
    "residual": (
        lambda dt: layers.residual(layers.serial(layers.dense(6, dtype=dt), layers.tanh(),
                                                 layers.dense(FIXED_DIM, dtype=dt))),
        "fixed", False),
    "parallel_sum": (
        lambda dt: layers.parallel(layers.dense(3, dtype=dt),
                                   layers.serial(layers.dense(5, dtype=dt), layers.tanh(),
                                                 layers.dense(3, dtype=dt)),
                                   merge="sum"),
        "vec", False),
    "parallel_concat": (
        lambda dt: layers.parallel(layers.dense(2, dtype=dt), layers.tanh(),
                                   layers.serial(layers.dense(3, dtype=dt), layers.elu()),
                                   merge="concat"),
        "vec", False),
}


@functools.cache
def _layer(name: str, dtype: str):
    """One Layer object per (case, dtype), so jitted functions that take it as a static
    argument hit their compile cache across hypothesis examples."""
    return CASES[name][0](jnp.dtype(dtype))


# ------------------------------------------------------------------------- helpers


def _away_from_zero(z):
    """Push values at least 0.1 away from 0, clear of the relu/leaky/elu kinks."""
    return np.where(z >= 0, 1.0, -1.0) * (0.1 + np.abs(z))


def _perturb(params, rng, dtype):
    """Non-trivial values for every parameter (biases start at 0, layer-norm scale at 1)."""
    return jax.tree.map(
        lambda p: (np.asarray(p, np.float64) + 0.5 * rng.normal(size=p.shape)).astype(dtype), params
    )


def _both(layer, train, params, state, x, dy, key):
    """(manual (dparams, dx), jax.vjp's (dparams, dx)) for cotangent ``dy``; the state is
    an input like the key, never differentiated."""
    _, _, residuals = layer.forward(params, state, x, key=key, train=train)
    manual = layer.backward(params, residuals, dy)
    _, vjp = jax.vjp(lambda p, x_: layer.forward(p, state, x_, key=key, train=train)[0],
                     params, x)
    return manual, vjp(dy)


_both_jit = jax.jit(_both, static_argnums=(0, 1))


def _both_vmap(layer, train, params, state, xs, dys, key):
    """``_both`` vmapped over a leading axis of x and dy; params, state and key are shared."""
    return jax.vmap(lambda x, dy: _both(layer, train, params, state, x, dy, key))(xs, dys)


_both_vmap_jit = jax.jit(_both_vmap, static_argnums=(0, 1))


def _random_params(layer, in_shape, rng, dtype):
    """(random params, state) in the shapes ``init`` gives (found abstractly: no compile).
    Every case here is stateless, so the state is the init's tree of empty dicts."""
    _, shapes, state_shapes = layers.init_shapes(layer, in_shape)
    assert jax.tree_util.tree_leaves(state_shapes) == []
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), dtype), shapes)
    return params, state_shapes


def _case_inputs(name, dtype, batch, feat, extra, seed, n=0):
    """(layer, train, params, state, x, dy, key) for one case; with ``n`` > 0, x and dy get
    an extra leading axis of ``n`` slices to vmap over."""
    _, kind, train = CASES[name]
    layer = _layer(name, dtype)
    rng = np.random.default_rng(seed)
    if kind == "image":
        shape = (batch, *rng.integers(1, 4, size=3).tolist())
    elif kind == "dense" and extra:
        shape = (extra, batch, feat)  # an extra leading axis: (L, B, D)
    elif kind == "fixed":
        shape = (batch, FIXED_DIM)
    else:
        shape = (batch, feat)
    params, state = _random_params(layer, shape[1:], rng, dtype)
    key = _KEY if train else None
    lead = (n,) if n else ()
    x = jnp.asarray(_away_from_zero(1.5 * rng.normal(size=lead + shape)), dtype)
    y_shape = jax.eval_shape(lambda x_: layer.forward(params, state, x_, key=key, train=train)[0],
                             jax.ShapeDtypeStruct(shape, x.dtype)).shape
    dy = jnp.asarray(rng.normal(size=lead + y_shape), dtype)
    return layer, train, params, state, x, dy, key


def _assert_grads(manual, ref, params, x, dtype, lead=()):
    dparams, dx = manual
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert jax.tree_util.tree_structure(dparams) == jax.tree_util.tree_structure(params)
    for g, p in zip(jax.tree_util.tree_leaves(dparams), jax.tree_util.tree_leaves(params)):
        assert g.shape == lead + p.shape and g.dtype == p.dtype
    assert_tree_allclose(manual, ref, dtype=dtype)


_KEY = jax.random.PRNGKey(123)
_apply_jit = jax.jit(layers.apply, static_argnums=0)


# --------------------------------------------------- every backward against jax.vjp

# Each new shape costs a compile per layer, dtype and mode (0.1 to 0.5 s on a small CPU),
# so every case draws two shapes (the first is hypothesis's minimal one, B = D = 1); all
# cases share the same derandomised draws, which lets eager ops reuse compiled kernels.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=2)
@given(batch=st.integers(1, 4), feat=st.integers(1, 6), extra=st.integers(0, 3),
       seed=st.integers(0, 2**20))
def test_backward_matches_vjp(name, dtype, batch, feat, extra, seed):
    """Manual (dparams, dx) = jax.vjp of the forward output for a random cotangent dy,
    under jax.jit, under jax.vmap over an extra leading axis of x and dy (params shared),
    and eagerly (float64: eager float32 would compile every op again for no new math).
    dense also sees x with an extra leading axis (L, B, D)."""
    layer, train, params, state, x, dy, key = _case_inputs(name, dtype, batch, feat, extra, seed)
    manual_jit, ref = _both_jit(layer, train, params, state, x, dy, key)
    _assert_grads(manual_jit, ref, params, x, dtype)
    if dtype == "float64":
        # eager: every op of the manual forward and backward dispatched one by one
        _, new_state, residuals = layer.forward(params, state, x, key=key, train=train)
        assert new_state == state  # stateless: the (empty) state comes back unchanged
        _assert_grads(layer.backward(params, residuals, dy), ref, params, x, dtype)

    n = extra + 1
    layer, train, params, state, xs, dys, key = _case_inputs(name, dtype, batch, feat, extra,
                                                             seed, n)
    manual_v, ref_v = _both_vmap_jit(layer, train, params, state, xs, dys, key)
    _assert_grads(manual_v, ref_v, params, xs, dtype, lead=(n,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("w_init", initializers.INITIALIZERS)
def test_dense_backward_each_initializer(w_init, dtype):
    layer = layers.dense(4, w_init=w_init, dtype=jnp.dtype(dtype))
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(2, 3, 5)), dtype)  # (L, B, D_in): leading axes folded
    out_shape, params, state = layer.init(jax.random.PRNGKey(3), (3, 5))
    assert out_shape == (3, 4) and state == {}
    params = _perturb(params, rng, dtype)
    dy = jnp.asarray(rng.normal(size=(2, 3, 4)), dtype)
    manual, ref = _both(layer, False, params, state, x, dy, None)  # eager: shared kernels
    _assert_grads(manual, ref, params, x, dtype)


def test_dense_backward_closed_form(key):
    """dW = xᵀ·dy, db = Σ dy, dx = dy·Wᵀ, written in NumPy."""
    rng = np.random.default_rng(0)
    layer = layers.dense(3, dtype=jnp.float64)
    _, params, state = layer.init(key, (4,))
    params = _perturb(params, rng, np.float64)
    x, dy = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    y, new_state, res = layer.forward(params, state, jnp.asarray(x))
    assert new_state == {}
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-12, atol=1e-14)
    dparams, dx = layer.backward(params, res, jnp.asarray(dy))
    np.testing.assert_allclose(dparams["w"], x.T @ dy, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dparams["b"], dy.sum(0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("jit", [False, True])
def test_weight_grad_with_x_and_dy_transposed_first(monkeypatch, jit):
    """The GPU path of ``weight_grad`` (xᵀ and dyᵀ written out before the gemm), forced on
    here: the same dW as NumPy's xᵀ·dy, and inside jit real transposes XLA cannot fold away,
    with the gemm summing along both operands' minor axis."""
    dense_module = importlib.import_module("gdlab.layers.dense")  # the package exports dense()
    monkeypatch.setattr(dense_module, "_transpose_first", lambda x2, dy2: True)
    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    fn = jax.jit(dense_module.weight_grad) if jit else dense_module.weight_grad
    np.testing.assert_allclose(fn(jnp.asarray(x), jnp.asarray(dy)), x.T @ dy, rtol=1e-12)
    layer = layers.dense(3, dtype=jnp.float64)
    _, params, state = layer.init(jax.random.PRNGKey(0), (5,))
    both = _both_jit if jit else _both
    manual, ref = both(layer, False, params, state, jnp.asarray(x), jnp.asarray(dy), None)
    _assert_grads(manual, ref, params, x, "float64")
    if jit:  # the gemm contracts xᵀ's and dyᵀ's minor axes, after transposes of their own
        hlo = jax.jit(dense_module.weight_grad).lower(x, dy).compile().as_text()
        assert hlo.count(" transpose(") >= 2, hlo
        assert "lhs_contracting_dims={1}" in hlo and "rhs_contracting_dims={1}" in hlo, hlo
        monkeypatch.setattr(dense_module, "_transpose_first", lambda x2, dy2: False)
        plain = jax.jit(lambda a, b: dense_module.weight_grad(a, b))  # a new trace
        plain = plain.lower(x, dy).compile().as_text()
        assert "lhs_contracting_dims={0}" in plain, plain


def test_weight_grad_plain_off_gpu_and_for_small_or_low_precision_operands():
    """``weight_grad`` transposes first only for float32 operands of at least
    ``TRANSPOSE_MIN_ELEMENTS`` on a GPU."""
    dense_module = importlib.import_module("gdlab.layers.dense")
    big = jnp.zeros((1024, dense_module.TRANSPOSE_MIN_ELEMENTS // 1024), jnp.float32)
    on_gpu = jax.default_backend() == "gpu"
    assert dense_module._transpose_first(big, big) == on_gpu
    assert not dense_module._transpose_first(big[:512], big[:512])
    assert not dense_module._transpose_first(big.astype(jnp.bfloat16), big.astype(jnp.bfloat16))


def test_vmapped_dense_grads_sum_to_batched_grads():
    """Per-slice dW under vmap (shared params) sum to the dW of the stacked (L, B, D) input."""
    layer = _layer("dense", "float64")
    rng = np.random.default_rng(11)
    _, params, state = layer.init(jax.random.PRNGKey(0), (4,))
    params = _perturb(params, rng, np.float64)
    xs = jnp.asarray(rng.normal(size=(3, 2, 4)))
    dys = jnp.asarray(rng.normal(size=(3, 2, 3)))
    (dp_v, dx_v), _ = _both_vmap_jit(layer, False, params, state, xs, dys, None)
    (dp_all, dx_all), _ = _both_jit(layer, False, params, state, xs, dys, None)
    assert_tree_allclose(jax.tree.map(lambda g: g.sum(0), dp_v), dp_all)
    assert_tree_allclose(dx_v, dx_all)


# ---------------------------------------------------------------- activations' values


_X = np.linspace(-4.0, 4.0, 17) + 0.05  # never exactly 0


@pytest.mark.parametrize(
    "layer, reference",
    [
        (layers.identity(), lambda x: x),
        (layers.sigmoid(), lambda x: 1.0 / (1.0 + np.exp(-x))),
        (layers.tanh(), np.tanh),
        (layers.relu(), lambda x: np.maximum(x, 0.0)),
        (layers.leaky_relu(LEAKY_SLOPE), lambda x: np.where(x > 0, x, LEAKY_SLOPE * x)),
        (layers.elu(ELU_ALPHA), lambda x: np.where(x > 0, x, ELU_ALPHA * (np.exp(x) - 1.0))),
        (layers.softplus(), lambda x: np.log1p(np.exp(x))),
        (layers.gelu(), lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))),
        (layers.gelu(approximate=True),
         lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_activation_values(layer, reference):
    x = jnp.asarray(_X.reshape(1, -1), jnp.float64)
    y = layers.apply(layer, {}, {}, x)
    np.testing.assert_allclose(y, reference(_X.reshape(1, -1)), rtol=1e-12, atol=1e-14)


def test_exact_gelu_keeps_its_precision_in_the_negative_tail():
    """Φ(x) = ½·erfc(−x/√2): against jax.nn.gelu (exact), value and derivative, to the last
    digits down to x = −30, where ½(1 + erf(x/√2)) loses every one (y = −0 at x = −10)."""
    x = jnp.asarray([np.concatenate([-np.geomspace(30.0, 0.1, 25), np.geomspace(0.1, 30.0, 25)])],
                    jnp.float64)
    layer = layers.gelu()
    y, _, res = layer.forward({}, {}, x)
    _, dx = layer.backward({}, res, jnp.ones_like(x))
    exact = functools.partial(jax.nn.gelu, approximate=False)
    np.testing.assert_allclose(y, exact(x), rtol=1e-12, atol=0)
    np.testing.assert_allclose(dx, jax.vmap(jax.grad(lambda v: exact(v)))(x[0])[None],
                               rtol=1e-12, atol=0)
    assert y[0, 0] < 0  # x·Φ(x) at −30 is about −3e−197, not −0


def test_tanh_backward_is_the_product_jax_grad_forms():
    """(1 + y)(1 − y), as jax.grad forms it: the same bits where y is the same. Near
    y = −1 the factor 1 + y magnifies the last bit of y, which two programs may round
    apart (x = −12: 1 + y ≈ 1.5e−10), so there the two agree to 1e−10 only."""
    x = jnp.asarray([[-0.3, 0.0, 0.7, 2.0, 10.0, 15.0, -5.0, -12.0]], jnp.float64)
    layer = layers.tanh()
    _, _, res = layer.forward({}, {}, x)
    _, dx = layer.backward({}, res, jnp.ones_like(x))
    reference = jax.vmap(jax.grad(jnp.tanh))(x[0])[None]
    np.testing.assert_allclose(dx[:, :6], reference[:, :6], rtol=1e-15, atol=0)
    np.testing.assert_allclose(dx, reference, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", [n for n in layers.ACTIVATIONS if n != "softmax"])
def test_activations_pass_nan_through_as_jax_and_pytorch_do(name):
    """NaN in, NaN out, at its own place, as jax.nn's and PyTorch's: relu written as
    where(x > 0, x, 0) made it 0, so params made NaN by an update never showed in the loss
    the divergence guard reads. Infinities keep their limits (relu(−inf) = 0)."""
    layer = layers.activation(name)
    x = jnp.asarray([[jnp.nan, -jnp.inf, -1.0, 0.0, 2.0]], jnp.float64)
    y = np.asarray(layer.forward({}, {}, x)[0])
    assert np.isnan(y[0, 0]) and not np.isnan(y[0, 2:]).any(), y
    if name == "relu":
        np.testing.assert_array_equal(y, [[np.nan, 0.0, 0.0, 0.0, 2.0]])
        np.testing.assert_array_equal(y[0, 1:], jax.nn.relu(x)[0, 1:])


def test_a_relu_net_whose_params_turn_nan_is_refused_at_the_next_update():
    """A NaN weight in a relu MLP: the loss the next update computes is NaN, so the guard
    refuses that update (the params that gave it are kept)."""
    from gdlab import losses, models, optim, train

    model, loss, opt = models.mlp([8, 3]), losses.get("xent"), optim.gd(0.1)
    state = train.create_state(model, opt, jax.random.PRNGKey(0), (5,))
    w = state.params["layers"][0]["w"]
    state = state.replace(params={**state.params, "layers": (
        {**state.params["layers"][0], "w": w.at[2, 3].set(jnp.nan)}, *state.params["layers"][1:])})
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5), jnp.float32)
    y = jnp.array([0, 1, 2, 0])
    new, (value, _) = train.make_guarded_step(model, loss, opt)(state, x, y)
    assert np.isnan(float(value)) and bool(new.health.diverged)
    assert int(new.health.diverged_at) == 1 and int(new.step) == 0


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "elu", "gelu", "gelu_tanh"])
def test_activation_stable_for_large_inputs(name):
    layer = layers.activation(name)
    x = jnp.asarray([[-1000.0, -50.0, 50.0, 1000.0]], jnp.float64)
    y, _, res = layer.forward({}, {}, x)
    _, dx = layer.backward({}, res, jnp.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    _, vjp = jax.vjp(lambda x_: layer.forward({}, {}, x_)[0], x)
    assert_tree_allclose(dx, vjp(jnp.ones_like(x))[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "layer, slope_at_zero",
    [
        (layers.relu(), 0.0),  # the stated convention: relu'(0) = 0, as in PyTorch
        (layers.leaky_relu(LEAKY_SLOPE), LEAKY_SLOPE),  # the x ≤ 0 side
        (layers.elu(ELU_ALPHA), ELU_ALPHA),  # the x ≤ 0 side: y + α with y = 0
        (layers.sigmoid(), 0.25),
        (layers.softplus(), 0.5),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_derivative_at_exactly_zero_is_one_convention(layer, slope_at_zero, dtype):
    """At x = ±0 the manual backward and ``jax.grad`` of the forward give exactly the same
    number, and it is the stated one; ``jnp.maximum(x, 0)`` or ``jnp.minimum`` in a
    forward would make autodiff give half a slope there instead."""
    x = jnp.asarray([[0.0, -0.0, 0.5, -0.5]], dtype)
    dy = jnp.asarray([[1.0, -2.0, 1.0, 1.0]], dtype)
    _, _, res = layer.forward({}, {}, x)
    _, manual = layer.backward({}, res, dy)
    autodiff = jax.grad(lambda v: jnp.sum(layer.forward({}, {}, v)[0] * dy))(x)
    np.testing.assert_array_equal(np.asarray(manual[0, :2]), np.asarray(autodiff[0, :2]))
    expected = jnp.asarray(slope_at_zero, dtype) * dy[0, :2]
    np.testing.assert_allclose(np.asarray(manual[0, :2]), np.asarray(expected), rtol=1e-6)
    assert_tree_allclose(manual, autodiff)  # away from 0: the usual few-ulp agreement


def test_activation_get_unknown_raises():
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        layers.activation("nope")


# ---------------------------------------------------------------------- initialisers

FAN_IN, FAN_OUT = 300, 500
EXPECTED_VARIANCE = {
    "he": 2.0 / FAN_IN,
    "glorot": 2.0 / (FAN_IN + FAN_OUT),
    "lecun": 1.0 / FAN_IN,
}


@pytest.mark.parametrize("name", initializers.INITIALIZERS)
def test_initializer_statistics(name):
    scheme, distribution = name.split("_")
    var = EXPECTED_VARIANCE[scheme]
    w = np.asarray(initializers.get(name)(jax.random.PRNGKey(42), (FAN_IN, FAN_OUT), jnp.float32))
    assert w.shape == (FAN_IN, FAN_OUT) and w.dtype == np.float32
    # 150 000 draws: the sample variance's relative standard error is below 0.4 %.
    assert abs(w.var() / var - 1.0) < 0.03
    assert abs(w.mean()) < 0.01 * math.sqrt(var)
    std = math.sqrt(var)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * var)
        assert np.all(np.abs(w) <= limit)
        assert np.abs(w).max() > 0.99 * limit
        assert abs(np.mean(np.abs(w) < limit / 2) - 0.5) < 0.01  # flat density
    else:
        assert abs(np.mean(np.abs(w) < std) - 0.6827) < 0.01    # one-sigma mass of a normal
        assert np.abs(w).max() > 3.0 * std                       # unbounded tails


@pytest.mark.parametrize("name", initializers.INITIALIZERS)
def test_initializer_dtype_and_dense_init(name):
    w64 = initializers.get(name)(jax.random.PRNGKey(0), (3, 2), jnp.float64)
    assert w64.dtype == jnp.float64
    layer = layers.dense(6, w_init=name, dtype=jnp.float64)
    out_shape, params, state = layer.init(jax.random.PRNGKey(1), (2, 4))
    assert out_shape == (2, 6) and state == {}
    assert params["w"].shape == (4, 6) and params["w"].dtype == jnp.float64
    np.testing.assert_array_equal(params["b"], np.zeros(6))
    assert params["b"].dtype == jnp.float64
    assert np.all(np.asarray(params["w"]) != 0.0)


def test_initializer_get():
    def fn(key, shape, dtype):
        return jnp.ones(shape, dtype)

    assert initializers.get(fn) is fn
    with pytest.raises(ValueError, match="unknown initialiser"):
        initializers.get("he_cauchy")
    with pytest.raises(ValueError, match="unknown initialiser"):
        initializers.variance_scaling("xavier", "normal")


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_inverted_scaling(rate):
    layer = layers.dropout(rate)
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.uniform(0.5, 1.5, size=(400, 500)), jnp.float64)
    y, state, mask = layer.forward({}, {}, x, key=jax.random.PRNGKey(9), train=True)
    assert state == {}
    x, y = np.asarray(x), np.asarray(y)
    kept = y != 0.0
    # 200 000 Bernoulli draws: the dropped fraction's standard error is ≤ 0.0012.
    assert abs(1.0 - kept.mean() - rate) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / (1.0 - rate), rtol=1e-12)
    assert abs(y.mean() / x.mean() - 1.0) < 0.02  # E[y] = x
    # backward multiplies by the same scaled mask
    dy = rng.normal(size=x.shape)
    _, dx = layer.backward({}, mask, jnp.asarray(dy))
    dx = np.asarray(dx)
    np.testing.assert_array_equal(dx[~kept], 0.0)
    np.testing.assert_allclose(dx[kept], dy[kept] / (1.0 - rate), rtol=1e-12)


def test_dropout_keys_give_different_masks():
    layer = layers.dropout(0.5)
    x = jnp.ones((8, 16), jnp.float64)
    y1 = layers.apply(layer, {}, {}, x, key=jax.random.PRNGKey(1), train=True)
    y1b = layers.apply(layer, {}, {}, x, key=jax.random.PRNGKey(1), train=True)
    y2 = layers.apply(layer, {}, {}, x, key=jax.random.PRNGKey(2), train=True)
    np.testing.assert_array_equal(y1, y1b)
    assert np.any(np.asarray(y1) != np.asarray(y2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_eval_is_identity(dtype):
    layer = layers.dropout(0.5)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 7)), dtype)
    dy = jnp.asarray(rng.normal(size=(3, 7)), dtype)
    for key in (None, jax.random.PRNGKey(0)):
        y, _, res = layer.forward({}, {}, x, key=key, train=False)
        np.testing.assert_array_equal(y, x)
        dparams, dx = layer.backward({}, res, dy)
        assert dparams == {}
        np.testing.assert_array_equal(dx, dy)
    # rate 0 is the identity even in training
    y0 = layers.apply(layers.dropout(0.0), {}, {}, x, key=jax.random.PRNGKey(0), train=True)
    np.testing.assert_array_equal(y0, x)


def test_dropout_errors():
    with pytest.raises(ValueError, match="needs a PRNG key"):
        layers.dropout(0.5).forward({}, {}, jnp.ones((2, 2)), train=True)
    for rate in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout rate"):
            layers.dropout(rate)


# ----------------------------------------------------------------- softmax, layer norm


@settings(max_examples=6)
@given(batch=st.integers(1, 4), feat=st.integers(1, 6), seed=st.integers(0, 2**20),
       scale=st.sampled_from([1.0, 30.0, 1000.0]))
def test_softmax_rows_sum_to_one(batch, feat, seed, scale):
    z = scale * np.random.default_rng(seed).normal(size=(batch, feat))
    y = np.asarray(_apply_jit(_layer("softmax", "float64"), {}, {}, jnp.asarray(z)))
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-12)
    e = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-12, atol=1e-300)


def test_softmax_other_axis():
    z = np.random.default_rng(0).normal(size=(3, 4))
    layer = layers.softmax(axis=0)
    y = np.asarray(layers.apply(layer, {}, {}, jnp.asarray(z)))
    np.testing.assert_allclose(y.sum(0), 1.0, rtol=1e-12)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)))
    manual, ref = _both_jit(layer, False, {}, {}, jnp.asarray(z), dy, None)
    assert_tree_allclose(manual, ref)


_LN_EPS = 0.01
_LN = layers.layer_norm(eps=_LN_EPS, dtype=jnp.float64)


@settings(max_examples=6)
@given(batch=st.integers(1, 4), feat=st.integers(2, 6), seed=st.integers(0, 2**20))
def test_layer_norm_statistics(batch, feat, seed):
    rng = np.random.default_rng(seed)
    # small spread, so var(x̂) = σ²/(σ² + ε) is visibly below 1
    x = 0.3 * rng.normal(size=(batch, feat)) + rng.normal(size=(batch, 1))
    eps = _LN_EPS
    layer = _LN
    _, params, state = layer.init(None, (feat,))
    assert state == {}
    np.testing.assert_array_equal(params["scale"], np.ones(feat))
    np.testing.assert_array_equal(params["shift"], np.zeros(feat))
    y = np.asarray(_apply_jit(layer, params, state, jnp.asarray(x)))
    var = x.var(-1, keepdims=True)
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-12)
    # var(x̂) = σ²/(σ² + ε)
    np.testing.assert_allclose(y.var(-1, keepdims=True), var / (var + eps), rtol=1e-10)
    # with scale γ and shift β: (y − β)/γ is the same normalised x̂
    gamma, beta = rng.uniform(0.5, 2.0, feat), rng.normal(size=feat)
    y2 = np.asarray(_apply_jit(layer, {"scale": jnp.asarray(gamma), "shift": jnp.asarray(beta)},
                               state, jnp.asarray(x)))
    np.testing.assert_allclose((y2 - beta) / gamma, y, rtol=1e-10, atol=1e-12)


def test_layer_norm_unit_variance_with_default_eps():
    """With the default ε = 1e-5 and a spread ≫ √ε, the output has mean 0 and variance 1."""
    x = 3.0 * np.random.default_rng(0).normal(size=(4, 6)) + 5.0
    layer = _layer("layer_norm", "float64")
    _, params, state = layer.init(None, (6,))
    y = np.asarray(_apply_jit(layer, params, state, jnp.asarray(x)))
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1.0, rtol=1e-4)


# ----------------------------------------------------------------------- flatten, serial


def test_flatten_shapes():
    layer = layers.flatten()
    out_shape, params, state = layer.init(None, (2, 3, 4))
    assert out_shape == (24,) and params == {} and state == {}
    x = jnp.arange(5 * 24, dtype=jnp.float64).reshape(5, 2, 3, 4)
    y, _, res = layer.forward(params, state, x)
    np.testing.assert_array_equal(y, np.arange(5 * 24).reshape(5, 24))
    _, dx = layer.backward(params, res, y)
    np.testing.assert_array_equal(dx, x)


def _recording(tag, log):
    """A y = 2x layer that appends ``tag`` to ``log`` when its backward runs."""

    def grad(_, dy):
        log.append(tag)
        return 2.0 * dy

    return layers.stateless(tag, lambda x: (2.0 * x, None), grad)


def test_serial_backward_runs_in_reverse():
    log: list[str] = []
    model = layers.serial(*(_recording(t, log) for t in "abc"))
    _, params, state = model.init(jax.random.PRNGKey(0), (2,))
    assert params == state == {"layers": ({}, {}, {})}
    x = jnp.ones((1, 2), jnp.float64)
    y, new_state, res = model.forward(params, state, x)
    assert new_state == state
    assert log == []
    _, dx = model.backward(params, res, jnp.ones_like(y))
    assert log == ["c", "b", "a"]
    np.testing.assert_array_equal(dx, 8.0 * np.ones((1, 2)))


def test_serial_grads_equal_vjp_of_composition():
    """serial's params/grads tree is {"layers": (p0, p1, ...)} and its grads are the VJP of
    the hand-composed forward (a non-commuting chain: order mistakes would show)."""
    d1, act, d2 = layers.dense(4, dtype=jnp.float64), layers.elu(), layers.dense(3, dtype=jnp.float64)
    model = layers.serial(d1, act, d2)
    out_shape, params, state = model.init(jax.random.PRNGKey(2), (5,))
    assert out_shape == (3,)
    assert len(params["layers"]) == 3 and params["layers"][1] == {}
    assert state == {"layers": ({}, {}, {})}
    rng = np.random.default_rng(3)
    params = _perturb(params, rng, np.float64)
    x = jnp.asarray(rng.normal(size=(4, 5)))
    dy = jnp.asarray(rng.normal(size=(4, 3)))

    def composed(p, x_):
        h = x_ @ p["layers"][0]["w"] + p["layers"][0]["b"]
        h = jnp.where(h > 0, h, jnp.expm1(jnp.minimum(h, 0)))
        return h @ p["layers"][2]["w"] + p["layers"][2]["b"]

    @jax.jit
    def both(params, x, dy):
        y, _, res = model.forward(params, state, x)
        y_ref, vjp = jax.vjp(composed, params, x)
        return (y, model.backward(params, res, dy)), (y_ref, vjp(dy))

    manual, ref = both(params, x, dy)
    assert_tree_allclose(manual, ref)


def test_serial_with_dropout_key():
    """A forward key reaches the dropout inside serial; backward uses the same mask."""
    model = layers.serial(layers.dense(6, dtype=jnp.float64), layers.dropout(0.5),
                          layers.dense(2, dtype=jnp.float64))
    _, params, state = model.init(jax.random.PRNGKey(0), (3,))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))
    dy = jnp.ones((5, 2), jnp.float64)
    k = jax.random.PRNGKey(4)
    manual, ref = _both_jit(model, True, params, state, x, dy, k)
    assert_tree_allclose(manual, ref)
    manual_eval, _ = _both_jit(model, False, params, state, x, dy, None)
    # the mask was applied: some first-layer weight gradients change
    assert np.any(np.asarray(manual[0]["layers"][0]["w"]) != np.asarray(manual_eval[0]["layers"][0]["w"]))



# -------------------------------------------------------------------- residual, parallel

F64 = jnp.float64


def _mlp_body(width, out, dtype=F64):
    """dense(width) → tanh → dense(out): a body with a non-trivial Jacobian."""
    return layers.serial(layers.dense(width, dtype=dtype), layers.tanh(),
                         layers.dense(out, dtype=dtype))


def test_residual_backward_is_dy_plus_body_dx():
    """y = x + f(x); its backward returns the body's dparams under "body" and
    dx = dy (identity path) + the body's dx: the two cotangents that meet at x are summed.
    Both agree with jax.vjp of the forward."""
    body = _mlp_body(6, 4)
    model = layers.residual(body)
    out_shape, params, state = model.init(jax.random.PRNGKey(5), (4,))
    assert out_shape == (4,)
    assert set(params) == {"body"} and state == {"body": {"layers": ({}, {}, {})}}
    rng = np.random.default_rng(12)
    params = _perturb(params, rng, np.float64)
    x = jnp.asarray(rng.normal(size=(3, 4)))
    dy = jnp.asarray(rng.normal(size=(3, 4)))

    y, new_state, res = model.forward(params, state, x)
    fx, _, body_res = body.forward(params["body"], state["body"], x)
    assert new_state == state
    np.testing.assert_array_equal(y, np.asarray(x) + np.asarray(fx))

    dparams, dx = model.backward(params, res, dy)
    body_dparams, body_dx = body.backward(params["body"], body_res, dy)
    assert_tree_allclose(dparams, {"body": body_dparams}, rtol=0.0, atol=0.0)
    np.testing.assert_array_equal(dx, np.asarray(dy) + np.asarray(body_dx))
    # neither path alone is the answer: the body's dx is far from 0, and from dy
    assert np.max(np.abs(np.asarray(body_dx))) > 1e-3
    assert not np.allclose(dx, body_dx) and not np.allclose(dx, dy)

    manual, ref = _both_jit(model, False, params, state, x, dy, None)
    _assert_grads(manual, ref, params, x, "float64")
    assert_tree_allclose(manual, (dparams, dx))


def test_residual_of_zero_body_passes_dy_through():
    """With the body's last layer zeroed, f ≡ 0: y = x and dx = dy exactly."""
    model = layers.residual(_mlp_body(5, 3))
    _, params, state = model.init(jax.random.PRNGKey(0), (3,))
    body = params["body"]["layers"]
    params = {"body": {"layers": (body[0], body[1], jax.tree.map(jnp.zeros_like, body[2]))}}
    assert np.all(np.asarray(params["body"]["layers"][2]["w"]) == 0.0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)))
    dy = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3)))
    y, _, res = model.forward(params, state, x)
    np.testing.assert_array_equal(y, x)
    _, dx = model.backward(params, res, dy)
    np.testing.assert_array_equal(dx, dy)


def test_residual_body_must_keep_the_shape():
    """A body that changes the shape cannot be added to its input: ValueError at init,
    also when traced abstractly and when nested inside serial."""
    model = layers.residual(layers.dense(3, dtype=F64))
    with pytest.raises(ValueError, match=r"keep the shape.*\(4,\) to \(3,\)"):
        model.init(jax.random.PRNGKey(0), (4,))
    with pytest.raises(ValueError, match="keep the shape"):
        layers.init_shapes(model, (4,))
    with pytest.raises(ValueError, match="keep the shape"):
        layers.serial(layers.dense(4, dtype=F64), layers.residual(layers.flatten())).init(
            jax.random.PRNGKey(0), (2, 3))
    # the same body on an input it maps to itself is fine
    assert model.init(jax.random.PRNGKey(0), (3,))[0] == (3,)


def _parallel_branches(merge):
    if merge == "sum":  # every branch maps (4,) → (3,)
        return (layers.dense(3, dtype=F64), _mlp_body(5, 3),
                layers.serial(layers.dense(3, dtype=F64), layers.sigmoid()))
    # widths 2, 4 (tanh keeps D = 4) and 5, concatenated in this order
    return (layers.dense(2, dtype=F64), layers.tanh(),
            layers.serial(layers.dense(5, dtype=F64), layers.elu()))


@pytest.mark.parametrize("merge", ["sum", "concat"])
def test_parallel_merges_and_matches_vjp(merge):
    """Every branch sees the same x. sum: y = Σ_i f_i(x), each branch gets dy;
    concat: y = [f_1(x), f_2(x), …] along the last axis in branch order, each branch gets
    its slice of dy. dx = Σ_i dx_i in both cases, and everything matches jax.vjp."""
    branches = _parallel_branches(merge)
    model = layers.parallel(*branches, merge=merge)
    out_shape, params, state = model.init(jax.random.PRNGKey(7), (4,))
    assert out_shape == ((3,) if merge == "sum" else (2 + 4 + 5,))
    assert len(params["branches"]) == 3
    if merge == "concat":
        assert params["branches"][1] == {}  # the parameter-free tanh branch
    assert jax.tree_util.tree_leaves(state) == [] and len(state["branches"]) == 3
    rng = np.random.default_rng(21)
    params = _perturb(params, rng, np.float64)
    x = jnp.asarray(rng.normal(size=(5, 4)))
    dy = jnp.asarray(rng.normal(size=(5, *out_shape)))

    y, new_state, res = model.forward(params, state, x)
    assert y.shape == (5, *out_shape) and new_state == state
    outs, reses = [], []
    for branch, p, s in zip(branches, params["branches"], state["branches"]):
        o, _, r = branch.forward(p, s, x)
        outs.append(np.asarray(o))
        reses.append(r)
    if merge == "sum":
        np.testing.assert_allclose(y, sum(outs), rtol=1e-14, atol=1e-14)
        dys = [dy] * 3
    else:
        np.testing.assert_array_equal(y[:, :2], outs[0])   # branch order is the concat order
        np.testing.assert_array_equal(y[:, 2:6], outs[1])
        np.testing.assert_array_equal(y[:, 6:], outs[2])
        dys = [dy[:, :2], dy[:, 2:6], dy[:, 6:]]

    dparams, dx = model.backward(params, res, dy)
    per_branch = [b.backward(p, r, d) for b, p, r, d in
                  zip(branches, params["branches"], reses, dys)]
    assert_tree_allclose(dparams, {"branches": tuple(dp for dp, _ in per_branch)},
                         rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(dx, sum(np.asarray(d) for _, d in per_branch),
                               rtol=1e-13, atol=1e-14)

    manual, ref = _both_jit(model, False, params, state, x, dy, None)
    _assert_grads(manual, ref, params, x, "float64")
    assert_tree_allclose(manual, (dparams, dx))


def test_parallel_concat_of_images_and_leading_axes():
    """concat joins the last axis only: image branches (B, H, W, C_i) give (B, H, W, ΣC_i)."""
    model = layers.parallel(layers.dense(2, dtype=F64), layers.relu(), layers.dense(1, dtype=F64),
                            merge="concat")
    out_shape, params, state = model.init(jax.random.PRNGKey(1), (3, 2, 4))
    assert out_shape == (3, 2, 2 + 4 + 1)
    rng = np.random.default_rng(4)
    params = _perturb(params, rng, np.float64)
    x = jnp.asarray(_away_from_zero(rng.normal(size=(2, 3, 2, 4))))
    dy = jnp.asarray(rng.normal(size=(2, *out_shape)))
    y = layers.apply(model, params, state, x)
    np.testing.assert_array_equal(y[..., 2:6], np.maximum(np.asarray(x), 0.0))
    manual, ref = _both_jit(model, False, params, state, x, dy, None)
    _assert_grads(manual, ref, params, x, "float64")


def test_init_shapes_gives_the_out_shape():
    """``init_shapes`` promises ``(out_shape, params, state)`` like ``init``: a tuple of ints."""
    model = layers.parallel(layers.dense(2, dtype=F64), layers.relu(), merge="concat")
    assert layers.init_shapes(model, (3, 4))[0] == model.init(jax.random.PRNGKey(0), (3, 4))[0]


def test_parallel_rejects_bad_merges_and_shapes():
    with pytest.raises(ValueError, match="unknown merge 'max'"):
        layers.parallel(layers.relu(), merge="max")
    with pytest.raises(ValueError, match="at least one branch"):
        layers.parallel()
    # sum needs one output shape
    with pytest.raises(ValueError, match="one output shape"):
        layers.parallel(layers.dense(2, dtype=F64), layers.dense(3, dtype=F64)).init(
            jax.random.PRNGKey(0), (4,))
    # concat needs outputs that differ in the last axis only
    with pytest.raises(ValueError, match="last axis only"):
        layers.parallel(layers.flatten(), layers.identity(), merge="concat").init(
            jax.random.PRNGKey(0), (2, 3))


# --------------------------------------------------------------- paths of nested params


def _nested(dtype=F64):
    return layers.serial(
        layers.dense(4, dtype=dtype),
        layers.residual(layers.serial(layers.dense(4, dtype=dtype), layers.batch_norm(dtype=dtype),
                                      layers.tanh())),
        layers.parallel(layers.dense(2, dtype=dtype),
                        layers.serial(layers.layer_norm(dtype=dtype), layers.dense(3, dtype=dtype)),
                        merge="concat"),
    )


NESTED_PARAM_PATHS = [
    "layers/0/b", "layers/0/w",
    "layers/1/body/layers/0/b", "layers/1/body/layers/0/w",
    "layers/1/body/layers/1/scale", "layers/1/body/layers/1/shift",
    "layers/2/branches/0/b", "layers/2/branches/0/w",
    "layers/2/branches/1/layers/0/scale", "layers/2/branches/1/layers/0/shift",
    "layers/2/branches/1/layers/1/b", "layers/2/branches/1/layers/1/w",
]
NESTED_STATE_PATHS = ["layers/1/body/layers/1/mean", "layers/1/body/layers/1/var"]


def test_nested_leaf_paths_are_readable_and_stable():
    """serial → layers/i, residual → body, parallel → branches/i: the paths of a nested
    composition read as written, are the same for every key, for the abstract shapes, for
    the gradients (manual and jax.vjp) and for the state a training forward returns; and
    the state (batch norm's running statistics) follows the same paths."""
    model = _nested()
    out_shape, params, state = model.init(jax.random.PRNGKey(0), (5,))
    assert out_shape == (5,)
    assert leaf_paths(params) == NESTED_PARAM_PATHS
    assert leaf_paths(state) == NESTED_STATE_PATHS
    assert params["layers"][1]["body"]["layers"][0]["w"].shape == (4, 4)
    assert params["layers"][2]["branches"][1]["layers"][1]["w"].shape == (4, 3)
    assert state["layers"][1]["body"]["layers"][1]["mean"].shape == (4,)
    # tree_flatten_with_path itself: a DictKey/SequenceKey chain
    (path0, _), *_ = jax.tree_util.tree_flatten_with_path(params)[0]
    assert jax.tree_util.keystr(path0) == "['layers'][0]['b']"

    _, params_other, state_other = model.init(jax.random.PRNGKey(9), (5,))
    _, shapes, state_shapes = layers.init_shapes(model, (5,))
    assert leaf_paths(params_other) == leaf_paths(shapes) == NESTED_PARAM_PATHS
    assert leaf_paths(state_other) == leaf_paths(state_shapes) == NESTED_STATE_PATHS
    assert [s.shape for s in jax.tree_util.tree_leaves(shapes)] == \
        [p.shape for p in jax.tree_util.tree_leaves(params)]

    rng = np.random.default_rng(2)
    params = _perturb(params, rng, np.float64)
    x = jnp.asarray(rng.normal(size=(6, 5)))
    dy = jnp.asarray(rng.normal(size=(6, 5)))
    for train in (False, True):
        y, new_state, res = model.forward(params, state, x, train=train)
        assert y.shape == (6, 5) and leaf_paths(new_state) == NESTED_STATE_PATHS
        dparams, dx = model.backward(params, res, dy)
        assert leaf_paths(dparams) == NESTED_PARAM_PATHS and dx.shape == x.shape
        (manual_dp, manual_dx), (ref_dp, ref_dx) = _both_jit(model, train, params, state, x, dy,
                                                              None)
        assert leaf_paths(ref_dp) == NESTED_PARAM_PATHS
        assert_tree_allclose((manual_dp, manual_dx), (ref_dp, ref_dx))
        assert_tree_allclose((dparams, dx), (manual_dp, manual_dx))
        moved = not np.allclose(new_state["layers"][1]["body"]["layers"][1]["mean"], 0.0)
        assert moved == train  # training updates the running mean; evaluation keeps it


_AUTODIFF = {"grad", "vjp", "jvp", "jacobian", "jacfwd", "jacrev", "value_and_grad", "linearize",
             "hessian", "custom_vjp", "custom_jvp"}


def _autodiff_uses(source: str) -> list[int]:
    """Line numbers where code reaches jax's autodiff: ``jax.grad`` (or through an alias of
    ``jax``) as an attribute, or ``from jax import vjp``-style imports. The source is parsed,
    so docstrings and comments that merely name ``jax.grad`` do not count."""
    import ast

    tree = ast.parse(source)
    aliases = {"jax"} | {a.asname for node in ast.walk(tree) if isinstance(node, ast.Import)
                         for a in node.names if a.name == "jax" and a.asname}
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr in _AUTODIFF):
            lines.append(node.lineno)
        elif (isinstance(node, ast.ImportFrom) and node.module
              and node.module.split(".")[0] == "jax"
              and any(a.name in _AUTODIFF for a in node.names)):
            lines.append(node.lineno)
    return sorted(lines)


def test_autodiff_detector():
    """The check below finds real uses and ignores mere mentions."""
    assert _autodiff_uses("import jax\ny = jax.grad(f)(x)\n") == [2]
    assert _autodiff_uses("import jax as j\ng = j.vjp\n") == [2]
    assert _autodiff_uses("from jax import numpy, value_and_grad\n") == [1]
    assert _autodiff_uses("from jax.experimental import jet\n") == []
    assert _autodiff_uses('"""Compare with ``jax.grad`` of reduce_window."""\n# jax.vjp\n') == []


def test_no_autodiff_inside_layers_or_losses():
    """Every backward in gdlab/layers and gdlab/losses.py is written by hand: no code there
    calls or imports jax's autodiff (docstrings may name it, to compare against)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "gdlab"
    files = [*sorted((root / "layers").glob("*.py")), root / "losses.py"]
    assert len(files) >= 7
    offenders = [f"{f.name}:{i}" for f in files for i in _autodiff_uses(f.read_text())]
    assert offenders == []


@pytest.mark.parametrize("layer", [layers.dense(3), layers.layer_norm(), layers.batch_norm(),
                                   models.linear()],
                         ids=lambda layer: layer.name)
def test_layers_on_a_feature_axis_refuse_scalar_examples(layer):
    """One number per example, x of shape (N,), has no feature axis: a clear ValueError from
    init, which ``check_data`` turns into one sentence naming the data, not an
    IndexError from inside ``init``."""
    with pytest.raises(ValueError, match=r"feature axis: an input shape of rank >= 1 per example, got \(\)"):
        layers.init_shapes(layer, ())
    x = np.linspace(-1.0, 1.0, 8)
    with pytest.raises(ValueError, match=r"train_data: examples of shape \(\) do not fit"):
        check_data(layer, losses.get("mse"), (x, 3.0 * x))


@pytest.mark.parametrize("build, needle", [
    (lambda: layers.dense(0), "dense out_dim must be at least 1"),
    (lambda: layers.dense(-2), "dense out_dim must be at least 1"),
    (lambda: layers.dense(2.5), "dense out_dim must be an int"),
])
def test_dense_refuses_a_width_that_is_not_a_positive_int(build, needle):
    """A zero-width layer would compute a constant; a negative one fails deep inside XLA."""
    with pytest.raises(ValueError, match=needle):
        build()


@pytest.mark.parametrize("build, needle", [
    (lambda: layers.serial(layers.dense(3), layers.relu), r"serial takes Layers, got <function relu"
     r".*> as argument 1 \(a builder: call it, relu\(\.\.\.\)\)"),
    (lambda: layers.residual(layers.tanh), r"residual takes Layers, got .* as argument 0 "
     r"\(a builder: call it, tanh"),
    (lambda: layers.parallel(layers.identity(), layers.dense), r"parallel takes Layers, got .* as "
     r"argument 1 \(a builder: call it, dense"),
    (lambda: layers.serial(layers.dense(3), 4), r"serial takes Layers, got 4 as argument 1$"),
])
def test_combinators_refuse_what_is_not_a_layer(build, needle):
    """A builder passed uncalled (``relu`` for ``relu()``) is named when the model is built,
    not met later as an AttributeError inside ``init``."""
    with pytest.raises(ValueError, match=needle):
        build()


@pytest.mark.parametrize("name", ["sigmoid", "softplus"])
def test_activation_derivative_keeps_its_relative_precision_in_the_tails(name):
    """σ'(x) = e/(1+e)² with e = e^{−|x|}, and softplus'(x) = σ(x), to full RELATIVE
    precision where they are tiny: formed as y(1 − y), or as 1 − σ(−x), they cancel (σ'(30)
    off by ~1e-3 in float64, σ'(40) = 0). assert_tree_allclose's absolute floor would hide
    that (test_activation_stable_for_large_inputs passes either way): rtol only here."""
    x = np.array([[-40.0, -30.0, -20.0, 20.0, 30.0, 40.0]])
    e = np.exp(-np.abs(x))
    expected = e / (1.0 + e) ** 2 if name == "sigmoid" else np.where(x >= 0, 1.0 / (1.0 + e),
                                                                      e / (1.0 + e))
    layer = layers.activation(name)
    xj = jnp.asarray(x, jnp.float64)
    _, _, res = layer.forward({}, {}, xj)
    _, dx = layer.backward({}, res, jnp.ones_like(xj))
    np.testing.assert_allclose(np.asarray(dx), expected, rtol=1e-13, atol=0)


def _custom_dense(backward_fix):
    """dense whose backward result goes through ``backward_fix(dparams, dx)``."""
    d = layers.dense(3)

    def backward(params, x, dy):
        return backward_fix(*d.backward(params, x, dy))

    return layers.Layer(d.init, d.forward, backward, "mine")


@pytest.mark.parametrize("fix,message", [
    pytest.param(lambda dp, dx: ([dp["w"], dp["b"]], dx), "dparams shaped like its params",
                 id="list"),
    pytest.param(lambda dp, dx: ({"w": dp["w"]}, dx), "dparams shaped like its params",
                 id="missing_leaf"),
    pytest.param(lambda dp, dx: ({**dp, "b": dp["b"][None]}, dx),
                 r"shape \(1, 3\) for the param b of shape \(3,\)", id="bias_keepdims"),
    pytest.param(lambda dp, dx: (dp, dx[:, :1]), r"dx of shape \(6, 1\) for an input of shape "
                 r"\(6, 4\)", id="dx_broadcasts"),
    pytest.param(lambda dp, dx: (dp, None), "returned dx None", id="dx_none"),
])
def test_serial_names_a_custom_backward_of_the_wrong_shape(fix, message):
    """A hand-written backward whose dparams or dx are not shaped like the params and the
    input is named where it happens, not left to broadcast through the layers before it."""
    model = layers.serial(layers.dense(4), layers.tanh(), _custom_dense(fix))
    _, params, state = model.init(jax.random.PRNGKey(0), (4,))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    _, _, residuals = model.forward(params, state, x)
    with pytest.raises(ValueError, match=rf"layers/2 \(mine\): backward.*{message}"):
        model.backward(params, residuals, jnp.ones((6, 3)))


def test_serial_names_a_forward_without_state():
    d = layers.dense(3)
    forgetful = layers.Layer(d.init, lambda p, s, x, **kw: (x @ p["w"], x), d.backward, "mine")
    model = layers.serial(layers.tanh(), forgetful)
    _, params, state = model.init(jax.random.PRNGKey(0), (4,))
    with pytest.raises(ValueError, match=r"layers/1 \(mine\): forward must return \(y, "
                                         r"new_state, residuals\), got a tuple of 2"):
        model.forward(params, state, jnp.ones((2, 4)))
