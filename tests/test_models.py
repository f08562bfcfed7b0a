"""Tests for gdlab.models: an ``mlp`` and a ``cnn`` against equivalent ``flax.linen`` models
(same params and state, same outputs, same gradients), ``linear``, default initialisation,
shapes, the ``transformer``'s shapes and causality, and parameter counts in closed form."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose

from gdlab import backprop, gradcheck, layers, losses, models, tolerances

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
    def fn(params, state, x, y):
        ours = layers.apply(model, params, state, x), manual(params, state, x, y)
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
    """(params, state): the params perturbed, the state as init gives it (no leaves)."""
    _, params, state = _mlp(activation).init(jax.random.PRNGKey(seed), (IN_DIM,))
    assert jax.tree_util.tree_leaves(state) == []
    rng = np.random.default_rng(seed)
    # non-zero biases, so a bias mix-up would show
    return jax.tree.map(lambda p: p + 0.2 * rng.normal(size=p.shape), params), state


@pytest.mark.parametrize("activation, loss_name", [
    ("relu", "mse"), ("tanh", "xent"), ("sigmoid", "mse"), ("gelu", "xent"),
    ("gelu_tanh", "mse"), ("elu", "xent"), ("softplus", "mse"), ("leaky_relu", "xent"),
    ("identity", "mse"),
])
def test_mlp_matches_flax(activation, loss_name):
    params, state = _params(activation)
    x, y = _data(loss_name)
    (out, ((value, new_state), grads)), (flax_out, (flax_value, flax_grads)) = _compare_fn(
        activation, loss_name)(params, state, x, y)
    assert out.shape == (BATCH, SIZES[-1])
    chex.assert_shape(out, (BATCH, SIZES[-1]))
    assert new_state == state
    assert_tree_allclose(out, flax_out)
    assert_tree_allclose(value, flax_value)
    assert_tree_allclose(to_flax(grads), flax_grads)
    chex.assert_tree_all_finite(grads)
    chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)  # one gradient leaf per param
    tol = tolerances.ANALYTIC["float64"]
    chex.assert_trees_all_close(to_flax(grads), flax_grads, rtol=tol.rtol, atol=tol.atol)


def test_flax_param_shapes_match():
    """flax's own init gives the same parameter shapes as the gdlab mlp, mapped."""
    key = jax.random.PRNGKey(0)
    _, params, _ = jax.eval_shape(lambda: _mlp("tanh").init(key, (IN_DIM,)))
    flax_params = jax.eval_shape(FlaxMLP(SIZES, jnp.tanh).init, key, jnp.zeros((1, IN_DIM), F64))
    assert jax.tree.map(jnp.shape, to_flax(params)) == jax.tree.map(jnp.shape, flax_params)
    chex.assert_trees_all_equal_shapes(to_flax(params), flax_params)


# -------------------------------------------------------------------------------- linear


def test_linear_is_affine():
    model = models.linear(2, dtype=F64)
    out_shape, params, state = model.init(jax.random.PRNGKey(1), (3,))
    assert out_shape == (2,)
    assert len(params["layers"]) == 1 and state == {"layers": ({},)}
    rng = np.random.default_rng(2)
    params = {"layers": ({"w": jnp.asarray(rng.normal(size=(3, 2))),
                          "b": jnp.asarray(rng.normal(size=2))},)}
    x = rng.normal(size=(4, 3))
    w, b = (np.asarray(params["layers"][0][k]) for k in ("w", "b"))
    np.testing.assert_allclose(layers.apply(model, params, state, jnp.asarray(x)), x @ w + b,
                               rtol=1e-13)


def test_linear_default_init_is_lecun_normal():
    fan_in, fan_out = 400, 300
    _, params, _ = models.linear(fan_out, dtype=F64).init(jax.random.PRNGKey(3), (fan_in,))
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
    _, params, _ = model.init(jax.random.PRNGKey(0), (FAN_IN,))
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
    _, params, _ = model.init(jax.random.PRNGKey(0), (FAN_IN,))
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
    got_shape, params, state = model.init(jax.random.PRNGKey(0), in_shape)  # eager: real arrays
    assert got_shape == out_shape
    assert state == {"layers": ({},) * (2 * len(sizes) - 1)}
    dense = params["layers"][::2]
    assert len(params["layers"]) == 2 * len(sizes) - 1
    fan_ins = [in_shape[-1], *sizes[:-1]]
    for p, fan_in, size in zip(dense, fan_ins, sizes, strict=True):
        assert p["w"].shape == (fan_in, size) and p["b"].shape == (size,)
        chex.assert_shape(p["w"], (fan_in, size))
        chex.assert_shape(p["b"], (size,))
        assert p["w"].dtype == F64
    y = jax.eval_shape(lambda x: layers.apply(model, params, state, x),
                       jnp.zeros((3, *in_shape), F64))
    assert y.shape == (3, *out_shape) and y.dtype == F64


def test_mlp_with_layer_norm_and_dropout():
    model = models.mlp([4, 4, 2], "relu", layer_norm=True, dropout_rate=0.5, dtype=F64)
    _, params, state = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), (3,)))
    # dense, relu, layer_norm, dropout  ×2, then the output dense
    assert len(params["layers"]) == 9
    assert set(params["layers"][2]) == {"scale", "shift"}
    assert params["layers"][3] == {}
    assert [set(p) for p in params["layers"][::4]] == [{"w", "b"}] * 3
    assert state == {"layers": ({},) * 9}  # layer norm and dropout keep no state


def test_mlp_rejects_bad_sizes():
    for sizes in ([], [4, 0], [-1]):
        with pytest.raises(ValueError, match="mlp sizes"):
            models.mlp(sizes)


@pytest.mark.parametrize("sizes", [[2.5], [4, 3.0], [True], [4, False], [np.float64(3)], "32", 3,
                                   None])
def test_mlp_rejects_non_integer_sizes_instead_of_truncating(sizes):
    with pytest.raises(ValueError, match="mlp sizes must be a (non-empty )?sequence of positive "
                                         "integers"):
        models.mlp(sizes)


@pytest.mark.parametrize("build", [
    lambda rate: models.mlp([3, 2], dropout_rate=rate),
    lambda rate: models.mlp([3], dropout_rate=rate),            # no hidden layer to drop in
    lambda rate: models.cnn(3, hidden=(4,), dropout_rate=rate),
    lambda rate: models.cnn(3, dropout_rate=rate),
], ids=["mlp", "mlp_no_hidden", "cnn", "cnn_no_hidden"])
@pytest.mark.parametrize("rate", [-0.5, 1.0, 1.5, math.nan, True, "0.1"])
def test_a_dropout_rate_outside_0_1_is_refused_even_where_no_dropout_is_built(build, rate):
    # a negative rate used to build no dropout layer, silently
    with pytest.raises(ValueError, match=r"dropout_rate must be a number in \[0, 1\)"):
        build(rate)


def test_mlp_refuses_an_unknown_activation_even_without_hidden_layers():
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        models.mlp([3], "nope")


def test_sizes_accept_numpy_integers():
    assert models.mlp([np.int64(3), np.int32(2)]).name == "mlp(3-2, relu)"
    models.linear(np.int64(2))
    models.cnn(np.int64(3), channels=np.array([4, 6]), hidden=(np.int16(5),), kernel_size=(3, 3))
    models.transformer(np.int64(5), 5, max_len=np.int64(4), width=8, num_heads=2)


@pytest.mark.parametrize("num_outputs", [0, -1, 2.5, 1.0, True, "1", None])
def test_linear_rejects_bad_num_outputs(num_outputs):
    with pytest.raises(ValueError, match="linear num_outputs must be a positive integer"):
        models.linear(num_outputs)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"num_outputs": 0}, "num_outputs"),
    ({"num_outputs": 2.5}, "num_outputs"),
    ({"channels": (2.5,)}, "channels"),
    ({"channels": (4, 0)}, "channels"),
    ({"channels": ()}, "channels"),
    ({"channels": (True,)}, "channels"),
    ({"hidden": (3.5,)}, "hidden"),
    ({"hidden": (0,)}, "hidden"),
    ({"kernel_size": 2.5}, "kernel_size"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"kernel_size": (3, 2.5)}, "kernel_size"),
    ({"pool_size": 1.5}, "pool_size"),
])
def test_cnn_rejects_bad_sizes(kwargs, name):
    kwargs = {"num_outputs": 10, **kwargs}
    with pytest.raises(ValueError, match=f"cnn {name} must be"):
        models.cnn(**kwargs)


TF_SIZE_ARGS = ("vocab_size", "num_outputs", "max_len", "width", "depth", "num_heads",
                "mlp_ratio")


@pytest.mark.parametrize("bad", [0, -2, 2.5, 4.0, True])
@pytest.mark.parametrize("name", TF_SIZE_ARGS)
def test_transformer_rejects_bad_sizes(name, bad):
    kwargs = {"vocab_size": 5, "num_outputs": 5, "max_len": 4, "width": 8, "num_heads": 2,
              name: bad}
    with pytest.raises(ValueError, match=f"transformer {name} must be a positive integer"):
        models.transformer(**kwargs)


# ------------------------------------------------------------- relu at exactly zero
# The stated convention is relu'(0) = 0. Manual backprop and jax.grad of the forward
# (``where(x > 0, x, 0)``) both follow it. Central finite differences do not: at a kink
# they return the mean of the two one-sided slopes (½ for relu), so they are no reference
# for the leaves whose gradient passes through a unit sitting exactly at 0.


def _zero_row_batch():
    x, y = _data("xent", seed=3)
    return x.at[2].set(0.0), y  # one example is exactly the zero vector


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relu_mlp_zero_input_row_manual_equals_autodiff(dtype):
    """Biases start at 0, so the zero row puts every hidden unit exactly on the kink."""
    model = _mlp("relu")
    _, params, state = model.init(jax.random.PRNGKey(0), (IN_DIM,))
    assert all(float(np.max(np.abs(p["b"]))) == 0.0 for p in params["layers"] if p)
    x, y = _zero_row_batch()
    # cast on the host: an eager astype would compile a program per shape
    params, x = jax.tree.map(lambda a: jnp.asarray(np.asarray(a).astype(dtype)), (params, x))
    loss = losses.get("xent")
    manual_vg, auto_vg = jax.jit(backprop.manual(model, loss)), jax.jit(backprop.autodiff(model, loss))
    (_, _), manual = manual_vg(params, state, x, y)
    (_, _), auto = auto_vg(params, state, x, y)
    assert_tree_allclose(manual, auto, dtype=dtype)  # tolerances.ANALYTIC for the dtype
    # the zero row alone: the first layer's weights see x = 0 and get exactly 0 from it,
    # and no unit at the kink passes any gradient to the bias (relu'(0) = 0, both ways)
    (_, _), manual_row = manual_vg(params, state, x[2:3], y[2:3])
    (_, _), auto_row = auto_vg(params, state, x[2:3], y[2:3])
    for grads in (manual_row, auto_row):
        for leaf in (grads["layers"][0]["b"], grads["layers"][0]["w"], grads["layers"][2]["b"]):
            np.testing.assert_array_equal(np.asarray(leaf), 0.0)


def test_relu_mlp_zero_input_row_gradient_checker():
    """``check_model`` on the batch with a zero row: manual == jax.grad on every leaf;
    finite differences agree on every leaf but the hidden biases, whose units sit on
    the kink for that row (finite differences see the half slope there, see above)."""
    model = _mlp("relu")
    _, params, state = model.init(jax.random.PRNGKey(0), (IN_DIM,))
    x, y = _zero_row_batch()
    report = gradcheck.check_model(model, losses.get("xent"), params, state, x, y)
    kink_leaves = {"layers/0/b", "layers/2/b"}
    for row in report.leaves:
        assert row.vs_autodiff.passed, report.table()
        if row.path not in kink_leaves:
            assert row.manual_vs_fd.passed and row.autodiff_vs_fd.passed, report.table()


def test_relu_mlp_zero_input_row_off_the_kink_passes_every_check():
    """With non-zero biases the zero row's units are off the kink: every row passes,
    finite differences included."""
    params, state = _params("relu")
    x, y = _zero_row_batch()
    report = gradcheck.check_model(_mlp("relu"), losses.get("xent"), params, state, x, y)
    assert report.passed, report.table()


# ----------------------------------------------------------------------------------- cnn

POOL = 2
CNN_CONFIGS = {
    # name: (cnn kwargs, one example's (H, W, C)); odd sizes make the SAME pools pad
    "two_stages_hidden_dropout": (dict(channels=(4, 6), kernel_size=3, hidden=(5,),
                                       dropout_rate=0.5), (7, 5, 2)),
    "one_stage_k5": (dict(channels=(3,), kernel_size=5, hidden=()), (6, 9, 1)),
}
CNN_OUTPUTS, CNN_BATCH = 4, 3


class FlaxCNN(nn.Module):
    """conv (no bias) → batch norm (running statistics) → relu → max-pool (SAME) per
    stage, flatten, dense hidden layers with relu, a dense head: flax.linen, float64."""

    num_outputs: int
    channels: tuple[int, ...]
    kernel_size: int
    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=F64, param_dtype=F64)
        for c in self.channels:
            x = nn.Conv(c, (self.kernel_size, self.kernel_size), padding="SAME", use_bias=False,
                        precision="highest", **kw)(x)
            x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, **kw)(x)
            x = nn.relu(x)
            x = nn.max_pool(x, (POOL, POOL), strides=(POOL, POOL), padding="SAME")
        x = x.reshape(x.shape[0], -1)
        for h in self.hidden:
            x = nn.relu(nn.Dense(h, precision="highest", **kw)(x))
        return nn.Dense(self.num_outputs, precision="highest", **kw)(x)


def cnn_to_flax(params, state) -> dict:
    """gdlab cnn params/state → flax variables, by what each entry of ``layers`` holds:
    a 4-D ``w`` is ``Conv_i`` {"kernel"} (both HWIO), ``scale``/``shift`` with running
    ``mean``/``var`` is ``BatchNorm_i`` {"scale", "bias"} + batch_stats, a 2-D ``w`` with
    ``b`` is ``Dense_i``; the parameter-free layers (relu, pools, flatten, dropout) are {}."""
    flax_params, stats, counts = {}, {}, {"Conv": 0, "BatchNorm": 0, "Dense": 0}

    def name(kind):
        counts[kind] += 1
        return f"{kind}_{counts[kind] - 1}"

    for p, s in zip(params["layers"], state["layers"], strict=True):
        if "scale" in p:
            n = name("BatchNorm")
            flax_params[n] = {"scale": p["scale"], "bias": p["shift"]}
            stats[n] = {"mean": s["mean"], "var": s["var"]}
        elif "w" in p and p["w"].ndim == 4:
            assert "b" not in p  # the conv before a batch norm has no bias
            flax_params[name("Conv")] = {"kernel": p["w"]}
        elif "w" in p:
            flax_params[name("Dense")] = {"kernel": p["w"], "bias": p["b"]}
        else:
            assert p == {} and s == {}
    return {"params": flax_params, "batch_stats": stats}


def _cnn_inputs(config):
    """(model, flax model, params, state, x, y): params and running statistics perturbed
    away from their init (scale ≠ 1, shift ≠ 0, mean ≠ 0, var ≠ 1)."""
    kwargs, in_shape = CNN_CONFIGS[config]
    model = models.cnn(CNN_OUTPUTS, **kwargs, dtype=F64)
    flax_model = FlaxCNN(CNN_OUTPUTS, kwargs["channels"], kwargs["kernel_size"], kwargs["hidden"])
    _, params, state = model.init(jax.random.PRNGKey(0), in_shape)
    rng = np.random.default_rng(1)

    def perturb(path, p):
        leaf = path[-1].key
        if leaf == "scale":
            return jnp.asarray(rng.uniform(0.5, 1.5, p.shape))
        if leaf == "var":
            return jnp.asarray(rng.uniform(0.5, 2.0, p.shape))
        return jnp.asarray(np.asarray(p) + 0.3 * rng.normal(size=p.shape))  # on the host

    params = jax.tree_util.tree_map_with_path(perturb, params)
    state = jax.tree_util.tree_map_with_path(perturb, state)
    x = jnp.asarray(rng.normal(size=(CNN_BATCH, *in_shape)))
    y = jnp.asarray(rng.integers(0, CNN_OUTPUTS, size=CNN_BATCH))
    return model, flax_model, params, state, x, y


@pytest.mark.parametrize("config", list(CNN_CONFIGS))
def test_cnn_matches_flax_in_eval_mode(config):
    """Evaluation mode (batch norm on its running statistics, dropout off): the same
    outputs as the flax.linen CNN given the mapped params and batch_stats, the state
    unchanged, and the manual gradients equal jax.grad of the flax model's loss."""
    model, flax_model, params, state, x, y = _cnn_inputs(config)
    manual = backprop.manual(model, losses.get("xent"))

    @jax.jit
    def both(params, state, x, y):
        variables = cnn_to_flax(params, state)
        ours = layers.apply(model, params, state, x), manual(params, state, x, y)
        theirs = flax_model.apply(variables, x), jax.value_and_grad(
            lambda fp: _flax_loss("xent", flax_model.apply(
                {"params": fp, "batch_stats": variables["batch_stats"]}, x), y))(
                    variables["params"])
        return ours, theirs

    (out, ((value, new_state), grads)), (flax_out, (flax_value, flax_grads)) = both(
        params, state, x, y)
    assert out.shape == (CNN_BATCH, CNN_OUTPUTS) and out.dtype == F64
    chex.assert_shape(out, (CNN_BATCH, CNN_OUTPUTS))
    chex.assert_tree_all_finite((out, grads, new_state))
    chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)
    chex.assert_trees_all_equal_shapes(new_state, state)
    assert np.std(np.asarray(out)) > 1e-2  # not a degenerate all-equal output
    assert_tree_allclose(out, flax_out)
    assert_tree_allclose(new_state, state)  # evaluation leaves the running statistics alone
    assert_tree_allclose(value, flax_value)
    assert_tree_allclose(cnn_to_flax(grads, state)["params"], flax_grads)


@pytest.mark.parametrize("config", list(CNN_CONFIGS))
def test_cnn_param_tree_matches_flax_init(config):
    """flax's own init gives the same params and batch_stats shapes as the gdlab cnn, mapped."""
    kwargs, in_shape = CNN_CONFIGS[config]
    model = models.cnn(CNN_OUTPUTS, **kwargs, dtype=F64)
    flax_model = FlaxCNN(CNN_OUTPUTS, kwargs["channels"], kwargs["kernel_size"], kwargs["hidden"])
    key = jax.random.PRNGKey(0)
    _, params, state = jax.eval_shape(lambda: model.init(key, in_shape))
    flax_vars = jax.eval_shape(flax_model.init, key, jnp.zeros((1, *in_shape), F64))
    assert jax.tree.map(jnp.shape, cnn_to_flax(params, state)) == \
        jax.tree.map(jnp.shape, dict(flax_vars))


# --------------------------------------------------------------------------- transformer

TF_VOCAB, TF_T, TF_MAX_LEN, TF_WIDTH, TF_OUT = 7, 6, 8, 8, 5


@functools.cache
def _transformer_fn(causal):
    model = models.transformer(TF_VOCAB, TF_OUT, max_len=TF_MAX_LEN, width=TF_WIDTH, depth=2,
                               num_heads=2, causal=causal, dtype=F64)
    return model, jax.jit(functools.partial(layers.apply, model))


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_shapes(causal):
    model, apply = _transformer_fn(causal)
    out_shape, params, state = model.init(jax.random.PRNGKey(0), (TF_T,))
    assert out_shape == (TF_T, TF_OUT)
    assert jax.tree_util.tree_leaves(state) == []
    ids = jnp.asarray(np.random.default_rng(0).integers(0, TF_VOCAB, size=(3, TF_T)), jnp.int32)
    y = apply(params, state, ids)
    assert y.shape == (3, TF_T, TF_OUT) and y.dtype == F64
    chex.assert_shape(y, (3, TF_T, TF_OUT))
    assert np.all(np.isfinite(np.asarray(y)))
    chex.assert_tree_all_finite(y)
    # a shorter sequence (T' ≤ max_len) runs through the same params
    y_short = apply(params, state, ids[:, :4])
    assert y_short.shape == (3, 4, TF_OUT)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("changed", [0, 3, TF_T - 1])
def test_transformer_causality(causal, changed):
    """Change the token at one position: outputs at that position and (through attention)
    later ones change; earlier positions change only when causal=False (a causal model's
    position t sees positions ≤ t only). Other examples of the batch never change."""
    model, apply = _transformer_fn(causal)
    _, params, state = model.init(jax.random.PRNGKey(1), (TF_T,))
    ids = np.random.default_rng(2).integers(0, TF_VOCAB, size=(2, TF_T)).astype(np.int32)
    other = ids.copy()
    other[0, changed] = (ids[0, changed] + 1) % TF_VOCAB
    y = np.asarray(apply(params, state, jnp.asarray(ids)))
    y2 = np.asarray(apply(params, state, jnp.asarray(other)))
    diff = np.max(np.abs(y - y2), axis=-1)  # (B, T): largest change per position
    np.testing.assert_array_equal(diff[1], 0.0)  # example 1 untouched
    assert np.all(diff[0, changed:] > 1e-6)       # this and later positions see the change
    if changed == 0:
        return
    if causal:
        np.testing.assert_allclose(y2[0, :changed], y[0, :changed], rtol=0.0, atol=1e-13)
    else:
        assert np.all(diff[0, :changed] > 1e-6)


# --------------------------------------------------------------------------- param counts


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("kwargs, in_shape", [
    ({}, (8, 8, 1)),                                                   # the defaults, digits
    (dict(channels=(4, 6), kernel_size=3, hidden=(5,)), (7, 5, 2)),
    (dict(channels=(3, 5, 2), kernel_size=5, hidden=(7, 4), dropout_rate=0.2), (9, 11, 3)),
    (dict(channels=(4,), kernel_size=3, padding="VALID", pool_size=3), (10, 8, 2)),
])
def test_cnn_param_count(kwargs, in_shape):
    """Per stage k²·C_in·C_out (no conv bias) + 2·C_out (batch norm's γ, β); the map shrinks
    by k − 1 under VALID, then to ⌈·/p⌉ in the SAME pool; dense layers D_in·D_out + D_out.
    The state is batch norm's running mean and variance: 2·C_out per stage."""
    model = models.cnn(CNN_OUTPUTS, **kwargs)
    k = kwargs.get("kernel_size", 3)
    p = kwargs.get("pool_size", 2)
    (h, w, c), expected, expected_state = in_shape, 0, 0
    for c_out in kwargs.get("channels", (32, 64)):
        expected += k * k * c * c_out + 2 * c_out
        expected_state += 2 * c_out
        if kwargs.get("padding", "SAME") == "VALID":
            h, w = h - k + 1, w - k + 1
        h, w, c = math.ceil(h / p), math.ceil(w / p), c_out
    width = h * w * c
    for size in (*kwargs.get("hidden", ()), CNN_OUTPUTS):
        expected += width * size + size
        width = size
    _, params, state = layers.init_shapes(model, in_shape)
    assert _count(params) == expected
    assert _count(state) == expected_state
    if not kwargs:
        assert expected == 19940  # 3·3·1·32 + 64 + 3·3·32·64 + 128 + (2·2·64)·4 + 4


@pytest.mark.parametrize("kwargs", [
    dict(vocab_size=10, num_outputs=10, max_len=8),                    # the defaults
    dict(vocab_size=TF_VOCAB, num_outputs=TF_OUT, max_len=TF_MAX_LEN, width=TF_WIDTH, depth=2,
         num_heads=2),
    dict(vocab_size=13, num_outputs=3, max_len=5, width=12, depth=3, num_heads=3, mlp_ratio=2,
         causal=True),
])
def test_transformer_param_count(kwargs):
    """V·D (tokens) + L·D (positions) + depth·[(4 + 2r)·D² + (8 + r)·D] + 2D (final layer
    norm) + D·K + K (head), per block: two layer norms 2·2D, attention 4D² + 3D (W_q, W_k,
    W_v, W_out; biases on query, value and out, none on the key), MLP D·rD + rD + rD·D + D."""
    model = models.transformer(**kwargs)
    v, k, length = kwargs["vocab_size"], kwargs["num_outputs"], kwargs["max_len"]
    d, depth, r = kwargs.get("width", 64), kwargs.get("depth", 2), kwargs.get("mlp_ratio", 4)
    expected = v * d + length * d + depth * ((4 + 2 * r) * d * d + (8 + r) * d) + 2 * d + d * k + k
    _, params, state = layers.init_shapes(model, (length,))
    assert _count(params) == expected
    assert _count(state) == 0
    if kwargs == dict(vocab_size=10, num_outputs=10, max_len=8):
        assert expected == 101770


def test_cnn_init_is_he_normal_before_each_relu_and_glorot_for_the_head():
    """The conv and the hidden dense layers feed a relu: He-normal, Var 2/fan_in (unbounded);
    the linear head is Glorot-uniform, bounded by √(6/(fan_in + fan_out))."""
    model = models.cnn(10, channels=(64,), kernel_size=3, hidden=(300,))
    _, params, _ = model.init(jax.random.PRNGKey(0), (8, 8, 16))
    # layers: conv, batch norm, relu, max_pool, flatten, dense(300), relu, dense(10)
    conv_w, hidden_w, head_w = (np.asarray(params["layers"][i]["w"]) for i in (0, 5, 7))
    assert conv_w.shape == (3, 3, 16, 64) and hidden_w.shape == (4 * 4 * 64, 300)
    for w, fan_in in ((conv_w, 3 * 3 * 16), (hidden_w, 4 * 4 * 64)):
        assert abs(w.var() * fan_in / 2.0 - 1.0) < 0.06
        assert np.abs(w).max() > 3.5 * math.sqrt(2.0 / fan_in)
    fan = 300 + 10
    assert abs(head_w.var() * fan / 2.0 - 1.0) < 0.1
    assert np.abs(head_w).max() <= math.sqrt(6.0 / fan)
