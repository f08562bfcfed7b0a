"""Tests for gdlab.models: an ``mlp`` against an equivalent ``flax.linen`` model (same
params, same outputs, same gradients), ``linear``, default initialisation, shapes."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose

from gdlab import backprop, layers, losses, models

F64 = jnp.float64
SIZES = (6, 5, 3)  # two hidden layers, three outputs
IN_DIM, BATCH = 4, 5
LEAKY_SLOPE = 0.01  # gdlab's leaky_relu default, matched on the flax side

FLAX_ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(nn.gelu, approximate=True),
    "elu": nn.elu,
    "softplus": nn.softplus,
    "leaky_relu": functools.partial(nn.leaky_relu, negative_slope=LEAKY_SLOPE),
    "identity": lambda x: x,
}


class FlaxMLP(nn.Module):
    """Dense → act → … → Dense, the textbook MLP in flax.linen (float64, exact matmuls)."""

    sizes: tuple[int, ...]
    act: Callable

    @nn.compact
    def __call__(self, x):
        for size in self.sizes[:-1]:
            x = self.act(nn.Dense(size, dtype=F64, param_dtype=F64, precision="highest")(x))
        return nn.Dense(self.sizes[-1], dtype=F64, param_dtype=F64, precision="highest")(x)


def to_flax(params) -> dict:
    """gdlab ``params["layers"][2*i]`` {"w", "b"} → flax ``Dense_i`` {"kernel", "bias"}
    (the odd entries are the parameter-free activations)."""
    n_dense = (len(params["layers"]) + 1) // 2
    return {"params": {
        f"Dense_{i}": {"kernel": params["layers"][2 * i]["w"], "bias": params["layers"][2 * i]["b"]}
        for i in range(n_dense)
    }}


def _flax_loss(name, out, y):
    """Losses written directly with jnp (not gdlab's), as the flax side's objective."""
    if name == "mse":
        return jnp.mean((out - y) ** 2)
    logp = jax.nn.log_softmax(out)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


@functools.cache
def _mlp(activation):
    return models.mlp(SIZES, activation, dtype=F64)


@functools.cache
def _compare_fn(activation, loss_name):
    """One jitted function per (activation, loss): gdlab outputs and manual grads, flax
    outputs and jax.grad of the flax loss."""
    model = _mlp(activation)
    flax_model = FlaxMLP(SIZES, FLAX_ACTIVATIONS[activation])
    manual = backprop.manual(model, losses.get(loss_name))

    @jax.jit
    def fn(params, x, y):
        ours = layers.apply(model, params, x), manual(params, x, y)
        flax_params = to_flax(params)
        theirs = flax_model.apply(flax_params, x), jax.value_and_grad(
            lambda fp: _flax_loss(loss_name, flax_model.apply(fp, x), y))(flax_params)
        return ours, theirs

    return fn


def _data(loss_name, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(BATCH, IN_DIM)))
    if loss_name == "xent":
        return x, jnp.asarray(rng.integers(0, SIZES[-1], size=BATCH))
    return x, jnp.asarray(rng.normal(size=(BATCH, SIZES[-1])))


def _params(activation, seed=0):
    _, params = _mlp(activation).init(jax.random.PRNGKey(seed), (IN_DIM,))
    rng = np.random.default_rng(seed)
    # non-zero biases, so a bias mix-up would show
    return jax.tree.map(lambda p: p + 0.2 * rng.normal(size=p.shape), params)


@pytest.mark.parametrize("activation, loss_name", [
    ("relu", "mse"), ("tanh", "xent"), ("sigmoid", "mse"), ("gelu", "xent"),
    ("gelu_tanh", "mse"), ("elu", "xent"), ("softplus", "mse"), ("leaky_relu", "xent"),
    ("identity", "mse"),
])
def test_mlp_matches_flax(activation, loss_name):
    params = _params(activation)
    x, y = _data(loss_name)
    (out, (value, grads)), (flax_out, (flax_value, flax_grads)) = _compare_fn(
        activation, loss_name)(params, x, y)
    assert out.shape == (BATCH, SIZES[-1])
    assert_tree_allclose(out, flax_out)
    assert_tree_allclose(value, flax_value)
    assert_tree_allclose(to_flax(grads), flax_grads)


def test_flax_param_shapes_match():
    """flax's own init gives the same parameter shapes as the gdlab mlp, mapped."""
    key = jax.random.PRNGKey(0)
    _, params = jax.eval_shape(lambda: _mlp("tanh").init(key, (IN_DIM,)))
    flax_params = jax.eval_shape(FlaxMLP(SIZES, jnp.tanh).init, key, jnp.zeros((1, IN_DIM), F64))
    assert jax.tree.map(jnp.shape, to_flax(params)) == jax.tree.map(jnp.shape, flax_params)


# -------------------------------------------------------------------------------- linear


def test_linear_is_affine():
    model = models.linear(2, dtype=F64)
    out_shape, params = model.init(jax.random.PRNGKey(1), (3,))
    assert out_shape == (2,)
    assert len(params["layers"]) == 1
    rng = np.random.default_rng(2)
    params = {"layers": ({"w": jnp.asarray(rng.normal(size=(3, 2))),
                          "b": jnp.asarray(rng.normal(size=2))},)}
    x = rng.normal(size=(4, 3))
    w, b = (np.asarray(params["layers"][0][k]) for k in ("w", "b"))
    np.testing.assert_allclose(layers.apply(model, params, jnp.asarray(x)), x @ w + b, rtol=1e-13)


def test_linear_default_init_is_lecun_normal():
    fan_in, fan_out = 400, 300
    _, params = models.linear(fan_out, dtype=F64).init(jax.random.PRNGKey(3), (fan_in,))
    w = np.asarray(params["layers"][0]["w"])
    assert abs(w.var() * fan_in - 1.0) < 0.03  # LeCun: Var = 1/fan_in
    assert np.abs(w).max() > 3.5 / math.sqrt(fan_in)  # normal tails, not a bounded uniform
    np.testing.assert_array_equal(params["layers"][0]["b"], 0.0)


# ------------------------------------------------------------------- init and shapes


@pytest.mark.parametrize("activation, expected", [
    ("relu", "he_normal"), ("leaky_relu", "he_normal"), ("elu", "he_normal"),
    ("gelu", "he_normal"), ("gelu_tanh", "he_normal"), ("softplus", "he_normal"),
    ("tanh", "glorot_uniform"), ("sigmoid", "glorot_uniform"), ("identity", "glorot_uniform"),
])
def test_default_init(activation, expected):
    assert models.default_init(activation) == expected


FAN_IN, WIDTH = 400, 300


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_default_init_statistics(activation):
    """relu's hidden weights are He-normal (Var 2/fan_in, unbounded); tanh's are
    Glorot-uniform (Var 2/(fan_in+fan_out), bounded by √(6/(fan_in+fan_out)))."""
    model = models.mlp([WIDTH, 2], activation)
    _, params = model.init(jax.random.PRNGKey(0), (FAN_IN,))
    w = np.asarray(params["layers"][0]["w"])
    assert w.shape == (FAN_IN, WIDTH) and w.dtype == np.float32
    if activation == "relu":
        assert abs(w.var() * FAN_IN / 2.0 - 1.0) < 0.03
        assert np.abs(w).max() > 4.0 * math.sqrt(2.0 / FAN_IN)
    else:
        fan = FAN_IN + WIDTH
        assert abs(w.var() * fan / 2.0 - 1.0) < 0.03
        assert np.abs(w).max() <= math.sqrt(6.0 / fan)
    for p in params["layers"][::2]:
        np.testing.assert_array_equal(p["b"], 0.0)


def test_mlp_w_init_override():
    model = models.mlp([WIDTH, 2], "relu", w_init="lecun_uniform")
    _, params = model.init(jax.random.PRNGKey(0), (FAN_IN,))
    w = np.asarray(params["layers"][0]["w"])
    assert abs(w.var() * FAN_IN - 1.0) < 0.03
    assert np.abs(w).max() <= math.sqrt(3.0 / FAN_IN)


@pytest.mark.parametrize("sizes, in_shape, out_shape", [
    ([3], (4,), (3,)),
    ([8, 8, 2], (5,), (2,)),
    ([7, 1], (2, 5), (2, 1)),  # extra leading axes pass through dense
])
def test_mlp_shapes(sizes, in_shape, out_shape):
    model = models.mlp(sizes, "tanh", dtype=F64)
    got_shape, params = model.init(jax.random.PRNGKey(0), in_shape)  # eager, to hold real arrays
    assert got_shape == out_shape
    dense = params["layers"][::2]
    assert len(params["layers"]) == 2 * len(sizes) - 1
    fan_ins = [in_shape[-1], *sizes[:-1]]
    for p, fan_in, size in zip(dense, fan_ins, sizes, strict=True):
        assert p["w"].shape == (fan_in, size) and p["b"].shape == (size,)
        assert p["w"].dtype == F64
    y = jax.eval_shape(lambda x: layers.apply(model, params, x), jnp.zeros((3, *in_shape), F64))
    assert y.shape == (3, *out_shape) and y.dtype == F64


def test_mlp_with_layer_norm_and_dropout():
    model = models.mlp([4, 4, 2], "relu", layer_norm=True, dropout_rate=0.5, dtype=F64)
    _, params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), (3,)))
    # dense, relu, layer_norm, dropout  ×2, then the output dense
    assert len(params["layers"]) == 9
    assert set(params["layers"][2]) == {"scale", "shift"}
    assert params["layers"][3] == {}
    assert [set(p) for p in params["layers"][::4]] == [{"w", "b"}] * 3


def test_mlp_rejects_bad_sizes():
    for sizes in ([], [4, 0], [-1]):
        with pytest.raises(ValueError, match="mlp sizes"):
            models.mlp(sizes)
