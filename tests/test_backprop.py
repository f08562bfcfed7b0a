"""Tests for gdlab.backprop: manual, custom_vjp and autodiff value-and-grad agree; jax.grad
through ``custom_vjp_layer``/``custom_vjp_loss`` really runs the hand-written backward;
custom_vjp under jit and vmap; dropout in training mode; models with state (batch norm)
and branches (residual attention blocks), whose new state agrees across methods too."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose, tree_allclose

from gdlab import backprop, layers, losses, models, tolerances

F64 = jnp.float64
BATCH, IN_DIM, HIDDEN, CLASSES = 4, 3, 5, 3


@functools.cache
def _model(activation, loss, *, layer_norm=False, dropout_rate=0.0):
    """One model object per configuration, so jitted functions taking it statically stay cached."""
    outputs = 1 if loss == "bce" else CLASSES
    return models.mlp([HIDDEN, outputs], activation, layer_norm=layer_norm,
                      dropout_rate=dropout_rate, dtype=F64)


_LOSSES = {name: losses.get(name) for name in losses.LOSSES}


def _data(loss, seed=0, batch=BATCH):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, IN_DIM)))
    if loss == "xent":
        y = jnp.asarray(rng.integers(0, CLASSES, size=batch))
    elif loss == "bce":
        y = jnp.asarray(rng.integers(0, 2, size=batch).astype(np.float64))
    else:
        y = jnp.asarray(rng.normal(size=(batch, CLASSES)))
    return x, y


def _params(model, seed=0, in_shape=(IN_DIM,)):
    """Init params plus noise on every leaf, so biases are not all zero."""
    _, params, _ = model.init(jax.random.PRNGKey(seed), in_shape)
    rng = np.random.default_rng(seed + 100)
    # on the host: eagerly each leaf's shape would compile a program of its own
    return jax.tree.map(lambda p: jnp.asarray(np.asarray(p) + 0.3 * rng.normal(size=p.shape)),
                        params)


def _state(model, in_shape=(IN_DIM,)):
    return model.init(jax.random.PRNGKey(0), in_shape)[2]


def _all_methods(model, loss, train, params, state, x, y, key, weights=None):
    """{method: (loss, grads)} and, separately, {method: new model state}."""
    out, states = {}, {}
    for m in backprop.METHODS:
        (value, states[m]), grads = backprop.value_and_grad(model, loss, m)(
            params, state, x, y, weights, key=key, train=train)
        out[m] = (value, grads)
    return out, states


_all_methods_jit = jax.jit(_all_methods, static_argnums=(0, 1, 2))


def _assert_same(results, params):
    """Every method gives autodiff's loss and grads, shaped like the params."""
    results, states = results
    ref_value, ref_grads = results["autodiff"]
    for method, (value, grads) in results.items():
        assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params), method
        for g, p in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(params)):
            assert g.shape == p.shape and g.dtype == p.dtype, method
        assert_tree_allclose(value, ref_value)
        assert_tree_allclose(grads, ref_grads)
        assert_tree_allclose(states[method], states["autodiff"])


# Full cross for three activations, and each other activation with one loss.
COMBOS = [(a, loss) for a in ("relu", "tanh", "gelu") for loss in _LOSSES] + [
    ("sigmoid", "bce"), ("leaky_relu", "mse"), ("elu", "huber"), ("softplus", "xent"),
    ("gelu_tanh", "bce"), ("identity", "mse"),
]


@pytest.mark.parametrize("activation, loss", COMBOS)
def test_methods_agree(activation, loss):
    model = _model(activation, loss)
    params = _params(model)
    x, y = _data(loss)
    results = _all_methods_jit(model, _LOSSES[loss], False, params, _state(model), x, y, None)
    _assert_same(results, params)
    assert all(np.abs(g).max() > 1e-3 for g in jax.tree_util.tree_leaves(results[0]["manual"][1]))


@pytest.mark.parametrize("loss", ["huber", "xent"])
def test_methods_agree_with_weights(loss):
    """Per-example weights (some 0, masking padding) flow through all three methods."""
    model = _model("tanh", loss)
    params = _params(model)
    x, y = _data(loss)
    weights = jnp.asarray([1.0, 0.0, 2.0, 0.5])
    results = _all_methods_jit(model, _LOSSES[loss], False, params, _state(model), x, y, None,
                               weights)
    _assert_same(results, params)
    # a weight-0 example does not matter: drop it and get the same loss and grads
    keep = np.asarray(weights) != 0
    dropped = _all_methods_jit(model, _LOSSES[loss], False, params, _state(model), x[keep],
                               y[keep], None, weights[keep])
    assert_tree_allclose(results[0]["manual"], dropped[0]["manual"])


def test_methods_agree_eagerly():
    model = _model("tanh", "xent")
    params = _params(model)
    x, y = _data("xent")
    _assert_same(_all_methods(model, _LOSSES["xent"], False, params, _state(model), x, y, None),
                 params)


def test_dropout_train_mode_same_grads_in_all_methods():
    model = _model("tanh", "mse", layer_norm=True, dropout_rate=0.5)
    params = _params(model)
    x, y = _data("mse")
    key = jax.random.PRNGKey(5)
    state = _state(model)
    train = _all_methods_jit(model, _LOSSES["mse"], True, params, state, x, y, key)
    _assert_same(train, params)
    # the mask really applies: training grads differ from evaluation grads
    evaluation = _all_methods_jit(model, _LOSSES["mse"], False, params, state, x, y, None)
    w_train = np.asarray(train[0]["manual"][1]["layers"][0]["w"])
    w_eval = np.asarray(evaluation[0]["manual"][1]["layers"][0]["w"])
    assert not np.allclose(w_train, w_eval)
    # another key, another mask, other grads; still equal across methods
    other = _all_methods_jit(model, _LOSSES["mse"], True, params, state, x, y,
                             jax.random.PRNGKey(6))
    _assert_same(other, params)
    assert not np.allclose(other[0]["manual"][1]["layers"][0]["w"], w_train)


# ------------------------------------------------- custom_vjp really uses the manual backward


def _scaled_tanh(scale):
    """tanh whose hand-written backward is wrong by a factor ``scale``."""

    def fn(x):
        y = jnp.tanh(x)
        return y, y

    return layers.stateless(f"tanh_x{scale}", fn, lambda y, dy: scale * dy * (1.0 - y * y))


def test_custom_vjp_follows_a_wrong_layer_backward():
    model = layers.serial(layers.dense(4, dtype=F64), _scaled_tanh(2.0), layers.dense(2, dtype=F64))
    params = _params(model)
    x, y = _data("mse")
    y = y[:, :2]
    results, _ = _all_methods_jit(model, _LOSSES["mse"], False, params, _state(model), x, y, None)
    auto = results["autodiff"][1]
    for method in ("manual", "custom_vjp"):
        value, grads = results[method]
        assert_tree_allclose(value, results["autodiff"][0])
        # after the broken layer (in backward order) nothing changes ...
        assert_tree_allclose(grads["layers"][2], auto["layers"][2])
        # ... before it every gradient is doubled
        assert_tree_allclose(grads["layers"][0], jax.tree.map(lambda g: 2.0 * g, auto["layers"][0]))
        assert not np.allclose(grads["layers"][0]["w"], auto["layers"][0]["w"])


def test_custom_vjp_layer_direct():
    """jax.grad and jax.vjp through custom_vjp_layer return the (wrong) hand-written dx."""
    layer = _scaled_tanh(3.0)
    apply = backprop.custom_vjp_layer(layer)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)))
    dy = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3)))
    y, vjp = jax.vjp(lambda x_: apply({}, {}, x_)[0], x)
    assert_tree_allclose(y, jnp.tanh(x))
    true_dx = dy * (1.0 - jnp.tanh(x) ** 2)
    assert_tree_allclose(vjp(dy)[0], 3.0 * true_dx)
    assert_tree_allclose(jax.grad(lambda x_: jnp.sum(apply({}, {}, x_)[0] * dy))(x), 3.0 * true_dx)
    # the plain forward differentiates to the true dx
    assert_tree_allclose(jax.grad(lambda x_: jnp.sum(layers.apply(layer, {}, {}, x_) * dy))(x),
                         true_dx)


def test_custom_vjp_follows_a_wrong_loss_backward():
    mse = losses.mse()
    wrong = losses.Loss(mse.forward, lambda r, g=1.0: 3.0 * mse.backward(r, g), "mse_x3")
    p = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)))
    t = jnp.asarray(np.random.default_rng(1).normal(size=(4, 2)))
    w = jnp.asarray([1.0, 0.0, 2.0, 0.5])
    value = backprop.custom_vjp_loss(wrong)
    assert_tree_allclose(value(p, t, w), mse.value(p, t, w))
    true_grad = jax.grad(mse.value)(p, t, w)
    assert_tree_allclose(jax.grad(value)(p, t, w), 3.0 * true_grad)
    # and the cotangent g reaches the backward
    _, vjp = jax.vjp(lambda p_: value(p_, t, w), p)
    assert_tree_allclose(vjp(jnp.asarray(0.5))[0], 1.5 * true_grad)


# --------------------------------------------------------------------- custom_vjp: jit, vmap


def test_custom_vjp_under_jit_and_vmap():
    loss = _LOSSES["xent"]
    model = _model("gelu", "xent")
    params = _params(model)
    x, y = _data("xent", batch=3)
    state = _state(model)
    custom = jax.jit(backprop.custom_vjp(model, loss))
    auto = jax.jit(backprop.autodiff(model, loss))
    assert_tree_allclose(custom(params, state, x, y), auto(params, state, x, y))

    # per-example gradients: vmap over the batch, params shared; the loss is a batch mean,
    # so their mean is the batch gradient
    vg = backprop.custom_vjp(model, loss)
    custom_v = jax.jit(jax.vmap(lambda xi, yi: vg(params, state, xi[None], yi[None])))(x, y)
    assert custom_v[0][0].shape == (3,)
    assert_tree_allclose(jax.tree.map(lambda g: g.mean(0), custom_v), auto(params, state, x, y))

    # vmap over a stack of two parameter sets (say, two seeds), data shared
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, _params(model, seed=1))
    custom_p = jax.jit(jax.vmap(vg, in_axes=(0, None, None, None)))(stacked, state, x, y)
    for i in range(2):
        def pick(tree, i=i):
            return jax.tree.map(lambda a: a[i], tree)

        assert_tree_allclose(pick(custom_p), auto(pick(stacked), state, x, y))


# ------------------------------------------------------- state and branches: cnn, transformer


def _cnn():
    return models.cnn(3, channels=(3, 4), kernel_size=3, hidden=(5,), dtype=F64)


def _transformer(causal):
    return models.transformer(5, 5, max_len=4, width=8, depth=2, num_heads=2, mlp_ratio=2,
                              causal=causal, dtype=F64)


@pytest.mark.parametrize("weights", [None, (1.0, 1.0, 0.0, 2.0, 0.0)], ids=["plain", "masked"])
def test_methods_agree_on_a_cnn_with_batch_norm(weights):
    """Training mode: batch statistics in the forward, running statistics out; the same loss,
    grads and new state from all three methods, with and without padded (weight-0) rows."""
    model, shape = _cnn(), (6, 6, 1)
    params, state = _params(model, in_shape=shape), _state(model, shape)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(5, *shape)))
    y = jnp.asarray(rng.integers(0, 3, size=5))
    w = None if weights is None else jnp.asarray(weights)
    results = _all_methods_jit(model, _LOSSES["xent"], True, params, state, x, y, None, w)
    _assert_same(results, params)
    new_state = results[1]["manual"]
    assert not tree_allclose(new_state, state)  # the running statistics moved
    if w is not None:  # padded rows neither change the loss, the grads nor the statistics
        keep = np.asarray(weights) != 0
        x_kept, y_kept, w_kept = (jnp.asarray(np.asarray(a)[keep]) for a in (x, y, w))  # host
        dropped = _all_methods_jit(model, _LOSSES["xent"], True, params, state, x_kept, y_kept,
                                   None, w_kept)
        assert_tree_allclose(results[0]["manual"], dropped[0]["manual"])
        assert_tree_allclose(new_state, dropped[1]["manual"])


@pytest.mark.parametrize("causal", [False, True])
def test_methods_agree_on_a_transformer(causal):
    model = _transformer(causal)
    params, state = _params(model, in_shape=(4,)), _state(model, (4,))
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.integers(0, 5, size=(3, 4)))
    y = jnp.asarray(np.sort(np.asarray(x), axis=1))
    results = _all_methods_jit(model, _LOSSES["xent"], True, params, state, x, y, None)
    _assert_same(results, params)
    assert all(np.abs(g).max() > 1e-6 for g in jax.tree_util.tree_leaves(results[0]["manual"][1]))


def test_value_and_grad_by_name():
    model, loss = _model("tanh", "xent"), _LOSSES["xent"]
    assert backprop.METHODS == ("manual", "custom_vjp", "autodiff")
    with pytest.raises(ValueError, match="unknown gradient method 'adjoint'"):
        backprop.value_and_grad(model, loss, "adjoint")


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def _jitted(model, loss, method, **kw):
    """``backprop.value_and_grad``, jitted as training runs it (``train`` static): called
    eagerly, each of its ops would compile a program of its own."""
    return jax.jit(backprop.value_and_grad(model, loss, method, **kw), static_argnames="train")


@pytest.mark.parametrize("method", backprop.METHODS)
def test_mixed_precision_gradient_is_the_float32_one_to_bfloat16_accuracy(method):
    """A CNN with batch norm in float32 master params, computed in bfloat16: the gradient is
    float32 like the params, within ``tolerances.MIXED`` of the float32 gradient, and not
    equal to it (the passes really ran in bfloat16); the loss is float32; the batch-norm
    statistics stay float32."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    x = jax.random.normal(k1, (16, 6, 6, 1), jnp.float32)
    y = jax.random.randint(k2, (16,), 0, 3)
    model = models.cnn(3, channels=(4,))
    _, params, state = model.init(k3, (6, 6, 1))
    loss = losses.get("xent")
    (v32, s32), g32 = _jitted(model, loss, method)(params, state, x, y, train=True)
    (v16, s16), g16 = _jitted(model, loss, method, compute_dtype=jnp.bfloat16)(
        params, state, x, y, train=True)
    assert v16.dtype == jnp.float32
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((g16, s16)))
    error = np.linalg.norm(_flat(g16) - _flat(g32)) / np.linalg.norm(_flat(g32))
    assert 1e-5 < error <= tolerances.MIXED["bfloat16"], error  # vs float32 here
    np.testing.assert_allclose(v16, v32, rtol=tolerances.MIXED["bfloat16"])
    state_error = np.linalg.norm(_flat(s16) - _flat(s32)) / np.linalg.norm(_flat(s32))
    assert state_error <= tolerances.MIXED["bfloat16"]  # the running statistics, updated


def test_mixed_precision_in_evaluation_mode_stays_in_the_compute_dtype():
    """Batch norm's running statistics stay float32; in evaluation mode they must not turn a
    bfloat16 activation into float32 (two conv stages: the second conv then refused mixed
    dtypes). The layer's forward is the same for every gradient method: manual checks it."""
    method = "manual"
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
    x = jax.random.normal(k1, (8, 6, 6, 1), jnp.float32)
    y = jax.random.randint(k2, (8,), 0, 3)
    model = models.cnn(3, channels=(2, 2))
    _, params, state = model.init(k3, (6, 6, 1))
    loss = losses.get("xent")
    low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    # jitted (a mixed dtype is refused while tracing, as eagerly): eagerly each op would
    # compile a program of its own
    preds, _, _ = jax.jit(functools.partial(model.forward, train=False))(
        low, state, x.astype(jnp.bfloat16))
    assert preds.dtype == jnp.bfloat16
    (v16, _), g16 = _jitted(model, loss, method, compute_dtype=jnp.bfloat16)(
        params, state, x, y, train=False)
    v32 = jax.jit(lambda p, s, x, y: loss.value(model.forward(p, s, x, train=False)[0], y))(
        params, state, x, y)
    np.testing.assert_allclose(v16, v32, rtol=tolerances.MIXED["bfloat16"])
    assert all(a.dtype == jnp.float32 and np.all(np.isfinite(a)) for a in jax.tree.leaves(g16))


def test_the_upcast_loss_runs_in_float32_and_hands_back_the_compute_dtype():
    rng = np.random.default_rng(0)
    preds = jnp.asarray(rng.normal(size=(8, 5)) * 4, jnp.bfloat16)
    labels = jnp.asarray(rng.integers(0, 5, size=8))
    xent = losses.get("xent")
    up = losses.upcast(xent, jnp.bfloat16)
    value, res = up.forward(preds, labels)
    ref_value, ref_res = xent.forward(preds.astype(jnp.float32), labels)
    assert value.dtype == jnp.float32 and up.name == "xent"
    np.testing.assert_array_equal(value, ref_value)
    dpreds = up.backward(res)
    assert dpreds.dtype == jnp.bfloat16
    np.testing.assert_array_equal(dpreds, xent.backward(ref_res).astype(jnp.bfloat16))


def test_float16_is_refused_for_want_of_loss_scaling():
    model = _model("tanh", "xent")
    with pytest.raises(ValueError, match="bfloat16"):
        backprop.value_and_grad(model, losses.get("xent"), compute_dtype=jnp.float16)


@pytest.mark.parametrize("method", backprop.METHODS)
def test_mixed_precision_dropout_draws_the_float32_runs_mask(method):
    """In training mode the key reaches the dropout layers in mixed precision too: the same
    key drops the same units, so the bfloat16 gradient is the float32 one to bfloat16
    accuracy, and another key gives another gradient."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(5), 3)
    x = jax.random.normal(k1, (16, 6), jnp.float32)
    y = jax.random.randint(k2, (16,), 0, 3)
    model = models.mlp([12, 3], dropout_rate=0.5)
    _, params, state = model.init(k3, (6,))
    loss = losses.get("xent")
    key = jax.random.PRNGKey(11)
    _, g32 = _jitted(model, loss, method)(params, state, x, y, key=key, train=True)
    mixed = _jitted(model, loss, method, compute_dtype=jnp.bfloat16)
    _, g16 = mixed(params, state, x, y, key=key, train=True)
    _, other = mixed(params, state, x, y, key=jax.random.PRNGKey(12), train=True)
    error = np.linalg.norm(_flat(g16) - _flat(g32)) / np.linalg.norm(_flat(g32))
    assert error <= tolerances.MIXED["bfloat16"], error
    other_error = np.linalg.norm(_flat(other) - _flat(g32)) / np.linalg.norm(_flat(g32))
    assert other_error > 10 * tolerances.MIXED["bfloat16"], other_error
