"""Tests for gdlab.losses: values against closed forms written in NumPy, hand-written
backwards against ``jax.vjp`` with a random scalar cotangent (jit, eager, vmap), per-token
cross-entropy (logits (B, T, C), labels (B, T)) against NumPy and ``jax.grad``, stability
for large logits, and the L2 penalty."""

from __future__ import annotations

import math

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose
from hypothesis import given, settings
from hypothesis import strategies as st

from gdlab import losses

DTYPES = ("float64", "float32")
HUBER_DELTA = 0.8

# ------------------------------------------------------------ closed forms (NumPy, float64)
# Each gives the per-example losses ℓ_b (B,); J = Σ_b ω_b ℓ_b with ω_b = 1/B, or w_b / Σw.


def np_mse(p, t):
    return ((p - t.reshape(p.shape)) ** 2).reshape(len(p), -1).mean(-1)


def np_huber(p, t, delta):
    """½·min(|r|, δ)² + δ·max(|r| − δ, 0): quadratic inside δ, linear with slope δ outside."""
    a = np.abs(p - t.reshape(p.shape))
    per = 0.5 * np.minimum(a, delta) ** 2 + delta * np.maximum(a - delta, 0.0)
    return per.reshape(len(p), -1).mean(-1)


def np_logsumexp(z):
    m = z.max(-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[..., 0]


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_xent(z, labels):
    """−log softmax(z_b)[y_b]."""
    logp = z - np_logsumexp(z)[..., None]
    return -np.take_along_axis(logp, labels[..., None].astype(np.int64), axis=-1)[..., 0]


def np_xent_tokens(z, labels):
    """ℓ_b = (1/T) Σ_t −log softmax(z_bt)[y_bt]: the mean over an example's T positions."""
    return np_xent(z, labels).mean(-1)


def np_bce(z, y):
    """−[y·log σ(z) + (1 − y)·log(1 − σ(z))], with −log σ(z) = log(1 + e^{−z})."""
    y = y.reshape(z.shape)
    per = y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)
    return per.reshape(len(z), -1).mean(-1)


def np_loss(name, p, t, w=None):
    """J = Σ_b ω_b ℓ_b."""
    per = CLOSED_FORMS[name](np.asarray(p, np.float64), np.asarray(t))
    omega = np.full(len(per), 1.0 / len(per)) if w is None else np.asarray(w) / np.sum(w)
    return float(np.sum(omega * per))


@functools.cache
def _loss(name):
    """One Loss object per name, so jitted functions taking it statically stay cached."""
    return losses.huber(HUBER_DELTA) if name == "huber" else losses.get(name)


CLOSED_FORMS = {
    "mse": np_mse,
    "huber": lambda p, t: np_huber(p, t, HUBER_DELTA),
    "xent": np_xent,
    "bce": np_bce,
}


def _inputs(name, rng, batch, width, dtype, lead=()):
    """(preds, targets) suiting each loss; targets keep their natural dtype."""
    if name == "xent":
        classes = width + 1
        preds = 2.0 * rng.normal(size=(*lead, batch, classes))
        targets = rng.integers(0, classes, size=(*lead, batch))
    elif name == "bce":
        preds = 2.0 * rng.normal(size=(*lead, batch, 1))
        targets = rng.integers(0, 2, size=(*lead, batch)).astype(np.float64)
    else:
        preds = rng.normal(size=(*lead, batch, width))
        targets = preds + 1.5 * rng.normal(size=(*lead, batch, width))
    return jnp.asarray(preds, dtype), jnp.asarray(targets)


def _weights(rng, batch, dtype, lead=()):
    """Per-example weights in [0, 2), some exactly 0 (masked), never all 0."""
    w = rng.uniform(0.0, 2.0, size=(*lead, batch))
    w[rng.uniform(size=w.shape) < 0.3] = 0.0
    w[..., 0] = 1.0
    return jnp.asarray(w, dtype)


def _both(loss, preds, targets, weights, g):
    """(value, manual g·∂J/∂preds, jax.vjp's g·∂J/∂preds)."""
    value, residuals = loss.forward(preds, targets, weights)
    manual = loss.backward(residuals, g)
    _, vjp = jax.vjp(lambda p: loss.value(p, targets, weights), preds)
    return value, manual, vjp(g)[0]


_both_jit = jax.jit(_both, static_argnums=0)
_both_vmap_jit = jax.jit(jax.vmap(_both, in_axes=(None, 0, 0, 0, 0)), static_argnums=0)


# ------------------------------------------------------------------ value and backward


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(losses.LOSSES))
@settings(max_examples=3)
@given(batch=st.integers(1, 4), width=st.integers(1, 4), seed=st.integers(0, 2**20),
       g=st.floats(-3.0, 3.0).filter(lambda v: abs(v) > 0.1), weighted=st.booleans())
def test_value_and_backward(name, dtype, batch, width, seed, g, weighted):
    """Under jit: value = NumPy closed form, and backward(g) = jax.vjp of the value with
    cotangent g; with and without per-example weights."""
    loss = _loss(name)
    rng = np.random.default_rng(seed)
    preds, targets = _inputs(name, rng, batch, width, dtype)
    weights = _weights(rng, batch, dtype) if weighted else None
    value, manual, ref = _both_jit(loss, preds, targets, weights, jnp.asarray(g, dtype))
    assert value.shape == () and value.dtype == preds.dtype
    assert manual.shape == preds.shape and manual.dtype == preds.dtype
    assert_tree_allclose(value, jnp.asarray(np_loss(name, preds, targets, weights)), dtype=dtype)
    assert_tree_allclose(manual, ref, dtype=dtype)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_value_and_backward_eager_and_vmap(name):
    """float64, eagerly and under vmap over an extra leading axis of preds, targets,
    weights and g: the same closed forms and jax.vjp references."""
    loss = _loss(name)
    rng = np.random.default_rng(6)
    preds, targets = _inputs(name, rng, 3, 2, "float64")
    value, residuals = loss.forward(preds, targets)  # eager
    assert_tree_allclose(value, jnp.asarray(np_loss(name, preds, targets)))
    _, vjp = jax.vjp(lambda p: loss.value(p, targets), preds)
    # default g = 1: the loss as the objective, backward is ∂J/∂preds
    assert_tree_allclose(loss.backward(residuals), vjp(jnp.asarray(1.0))[0])
    assert_tree_allclose(loss.backward(residuals, 0.3), vjp(jnp.asarray(0.3))[0])

    n = 3
    preds_v, targets_v = _inputs(name, rng, 3, 2, "float64", lead=(n,))
    weights_v = _weights(rng, 3, "float64", lead=(n,))
    gs = jnp.asarray(rng.uniform(0.5, 2.0, size=n))
    values_v, manual_v, ref_v = _both_vmap_jit(loss, preds_v, targets_v, weights_v, gs)
    assert manual_v.shape == preds_v.shape
    assert_tree_allclose(manual_v, ref_v)
    preds_v, targets_v, weights_v, values_v = map(np.asarray, (preds_v, targets_v, weights_v, values_v))
    for i in range(n):
        assert_tree_allclose(values_v[i], np_loss(name, preds_v[i], targets_v[i], weights_v[i]))


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_zero_weights_mask_examples(name):
    """Examples with weight 0 drop out: the value is the plain mean over the others and
    their gradient rows are exactly 0."""
    loss = _loss(name)
    rng = np.random.default_rng(8)
    preds, targets = _inputs(name, rng, 5, 3, "float64")
    keep = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    value, manual, _ = _both_jit(loss, preds, targets, jnp.asarray(keep), jnp.asarray(1.0))
    kept = keep == 1.0
    sub_value, sub_manual, _ = _both_jit(loss, preds[kept], targets[kept], None, jnp.asarray(1.0))
    assert_tree_allclose(value, sub_value)
    np.testing.assert_array_equal(np.asarray(manual)[~kept], 0.0)
    assert_tree_allclose(np.asarray(manual)[kept], sub_manual)


# ------------------------------------------------------------------------ closed-form grads


def test_mse_gradient_and_target_reshape():
    p = np.array([[0.5], [-1.0], [2.0]])
    t = np.array([1.0, -1.5, 0.0])  # (B,) targets against (B, 1) predictions
    loss = _loss("mse")
    value, res = loss.forward(jnp.asarray(p), jnp.asarray(t))
    np.testing.assert_allclose(value, np.mean((p[:, 0] - t) ** 2), rtol=1e-14)
    np.testing.assert_allclose(loss.backward(res, 1.5), 1.5 * 2.0 * (p - t[:, None]) / 3, rtol=1e-14)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_both_sides_of_delta(delta):
    """Residuals inside (quadratic) and outside (linear) ±δ, value and gradient."""
    r = np.array([-3.0, -1.2, -0.4, 0.1, 0.7, 1.6, 4.0]) * delta
    inside = np.abs(r) <= delta
    assert inside.any() and (~inside).any()
    t = np.linspace(-1.0, 1.0, r.size)
    p = t + r
    loss = losses.huber(delta)
    g = 0.7
    value, grad, ref = _both_jit(loss, jnp.asarray(p), jnp.asarray(t), None, jnp.asarray(g))
    per = np.where(inside, 0.5 * r**2, delta * np.abs(r) - 0.5 * delta**2)
    np.testing.assert_allclose(value, per.mean(), rtol=1e-13)
    np.testing.assert_allclose(value, np_huber(p, t, delta).mean(), rtol=1e-13)
    grad = np.asarray(grad)
    np.testing.assert_allclose(grad[inside], g * r[inside] / r.size, rtol=1e-12)
    np.testing.assert_allclose(grad[~inside], g * delta * np.sign(r[~inside]) / r.size, rtol=1e-12)
    assert_tree_allclose(grad, ref)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_xent_backward_is_softmax_minus_onehot(label_dtype):
    rng = np.random.default_rng(1)
    z = 3.0 * rng.normal(size=(5, 4))
    y = rng.integers(0, 4, size=5).astype(label_dtype)
    loss = _loss("xent")
    value, res = loss.forward(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(value, np_xent(z, y).mean(), rtol=1e-13)
    onehot = np.eye(4)[y]
    g = 1.3
    np.testing.assert_allclose(loss.backward(res, g), g * (np_softmax(z) - onehot) / 5,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bad_label", [-1, -4, 4])
def test_xent_label_outside_the_classes_is_nan_with_the_same_gradient_both_ways(bad_label):
    # −1 must not wrap to the last class in the forward while the backward's onehot is 0.
    z = jnp.asarray([[2.0, 0.5, -1.0, 0.3], [0.1, 0.2, 0.3, 0.4]])
    y = jnp.asarray([bad_label, 1])
    loss = _loss("xent")
    value, res = loss.forward(z, y)
    assert np.isnan(float(value))
    manual = loss.backward(res)
    reference = jax.grad(lambda logits: loss.forward(logits, y)[0])(z)
    np.testing.assert_allclose(manual, reference, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(manual[0], np_softmax(np.asarray(z[:1]))[0] / 2, rtol=1e-13)


def test_bce_autodiff_at_logits_of_exactly_zero():
    """z = ±0 (an all-zero input row with zero biases): jax.grad of the forward, the
    reference of the gradient checks, must give σ(0) − y = ½ − y there as the manual
    backward does; jnp.maximum(z, 0) and jnp.abs(z) in the forward made it −y."""
    z = jnp.asarray([[0.0], [-0.0], [0.0], [1.5]], jnp.float64)
    y = jnp.asarray([1.0, 0.0, 0.0, 1.0], jnp.float64)
    loss = _loss("bce")
    _, res = loss.forward(z, y)
    manual = np.asarray(loss.backward(res))
    auto = np.asarray(jax.grad(lambda z_: loss.forward(z_, y)[0])(z))
    expected = (1 / (1 + np.exp(-np.asarray(z))) - np.asarray(y)[:, None]) / 4
    np.testing.assert_allclose(manual, expected, rtol=1e-15)
    np.testing.assert_allclose(auto, expected, rtol=1e-15)


def test_huber_needs_a_positive_delta():
    for delta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="huber's delta must be a positive number"):
            losses.huber(delta)


def test_bce_gradient_closed_form():
    rng = np.random.default_rng(2)
    z = 2.0 * rng.normal(size=(6, 1))
    y = rng.integers(0, 2, size=6).astype(np.float64)
    loss = _loss("bce")
    _, res = loss.forward(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(loss.backward(res), (1 / (1 + np.exp(-z)) - y[:, None]) / 6,
                               rtol=1e-12)


# ------------------------------------------------------------------- per-token cross-entropy

TOKENS_B, TOKENS_T, TOKENS_C = 4, 5, 6


def _token_inputs(rng, dtype, label_dtype=np.int32):
    z = 2.0 * rng.normal(size=(TOKENS_B, TOKENS_T, TOKENS_C))
    labels = rng.integers(0, TOKENS_C, size=(TOKENS_B, TOKENS_T)).astype(label_dtype)
    return jnp.asarray(z, dtype), jnp.asarray(labels)


def _jnp_token_xent(z, labels, weights):
    """An independent jnp objective: Σ_b ω_b · mean_t(−log_softmax(z_bt)[y_bt])."""
    logp = jax.nn.log_softmax(z, axis=-1)
    per_token = -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    per_example = per_token.mean(-1)
    if weights is None:
        return per_example.mean()
    return jnp.sum(weights * per_example) / jnp.sum(weights)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_xent_per_token_value_and_gradient(dtype, weighted, label_dtype):
    """Logits (B, T, C) with labels (B, T): the value is Σ_b ω_b ℓ_b with ℓ_b the mean over
    the example's positions of −log softmax (NumPy), unweighted simply the mean over all
    B·T tokens; ∂J/∂z = (ω_b/T)(softmax − onehot) = jax.grad of the value and of an
    independent jnp objective; a cotangent g scales it (= jax.vjp, under jit)."""
    rng = np.random.default_rng(31)
    z, labels = _token_inputs(rng, dtype, label_dtype)
    weights = jnp.asarray([1.0, 0.0, 0.4, 1.7], dtype) if weighted else None  # one masked
    loss = _loss("xent")
    value, res = loss.forward(z, labels, weights)
    assert value.shape == () and value.dtype == z.dtype
    z64, y = np.asarray(z, np.float64), np.asarray(labels)
    per_example = np_xent_tokens(z64, y)
    omega = (np.full(TOKENS_B, 1.0 / TOKENS_B) if weights is None
             else np.asarray(weights, np.float64) / np.sum(np.asarray(weights, np.float64)))
    assert_tree_allclose(value, jnp.asarray(np.sum(omega * per_example)), dtype=dtype)
    if not weighted:
        assert_tree_allclose(value, jnp.asarray(np_xent(z64, y).mean()), dtype=dtype)

    manual = loss.backward(res)
    assert manual.shape == z.shape and manual.dtype == z.dtype
    auto = jax.grad(lambda z_: loss.value(z_, labels, weights))(z)
    independent = jax.grad(lambda z_: _jnp_token_xent(z_, labels, weights))(z)
    closed = omega[:, None, None] / TOKENS_T * (np_softmax(z64) - np.eye(TOKENS_C)[y])
    assert_tree_allclose(manual, auto, dtype=dtype)
    assert_tree_allclose(manual, independent, dtype=dtype)
    assert_tree_allclose(manual, jnp.asarray(closed), dtype=dtype)
    assert_tree_allclose(_jnp_token_xent(z, labels, weights), value, dtype=dtype)
    if weighted:  # examples of weight 0 get no gradient at any position
        zero = np.asarray(weights) == 0.0
        np.testing.assert_array_equal(np.asarray(manual)[zero], 0.0)

    g = jnp.asarray(-0.7, dtype)
    value_jit, manual_g, ref_g = _both_jit(loss, z, labels, weights, g)
    assert_tree_allclose(value_jit, value, dtype=dtype)
    assert_tree_allclose(manual_g, ref_g, dtype=dtype)
    assert_tree_allclose(manual_g, -0.7 * np.asarray(manual, np.float64), dtype=dtype)


@pytest.mark.parametrize("weighted", [False, True])
def test_xent_single_token_equals_plain_classification(weighted):
    """(B, 1, C) logits with (B, 1) labels are (B, C) logits with (B,) labels: same value,
    same gradient (with a length-1 axis)."""
    rng = np.random.default_rng(32)
    z = jnp.asarray(2.0 * rng.normal(size=(TOKENS_B, 1, TOKENS_C)))
    labels = jnp.asarray(rng.integers(0, TOKENS_C, size=(TOKENS_B, 1)))
    weights = _weights(rng, TOKENS_B, "float64") if weighted else None
    loss = _loss("xent")
    value_tok, res_tok = loss.forward(z, labels, weights)
    value, res = loss.forward(z[:, 0], labels[:, 0], weights)
    np.testing.assert_allclose(value_tok, value, rtol=1e-14)
    np.testing.assert_allclose(value, np_loss("xent", z[:, 0], labels[:, 0], weights), rtol=1e-13)
    grad_tok, grad = loss.backward(res_tok, 1.3), loss.backward(res, 1.3)
    assert grad_tok.shape == (TOKENS_B, 1, TOKENS_C) and grad.shape == (TOKENS_B, TOKENS_C)
    np.testing.assert_allclose(grad_tok[:, 0], grad, rtol=1e-14, atol=1e-16)


def test_xent_per_token_vmap():
    """Per-token xent under vmap over an extra leading axis of logits, labels, weights and
    g: the vmapped manual gradient = jax.vjp, the values = the NumPy closed form."""
    rng = np.random.default_rng(33)
    n = 3
    z = jnp.asarray(2.0 * rng.normal(size=(n, TOKENS_B, TOKENS_T, TOKENS_C)))
    labels = jnp.asarray(rng.integers(0, TOKENS_C, size=(n, TOKENS_B, TOKENS_T)))
    weights = _weights(rng, TOKENS_B, "float64", lead=(n,))
    gs = jnp.asarray(rng.uniform(0.5, 2.0, size=n))
    values, manual, ref = _both_vmap_jit(_loss("xent"), z, labels, weights, gs)
    assert manual.shape == z.shape
    assert_tree_allclose(manual, ref)
    for i in range(n):
        w = np.asarray(weights[i])
        want = np.sum(w * np_xent_tokens(np.asarray(z[i]), np.asarray(labels[i]))) / w.sum()
        np.testing.assert_allclose(values[i], want, rtol=1e-12)


# -------------------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_stable_for_large_logits(dtype):
    z = np.array([[1000.0, -1000.0, 0.0], [1000.0, -1000.0, 0.0], [-1000.0, 999.0, 1000.0]])
    y = np.array([0, 1, 2])
    # row 0: label holds the max → −log p ≈ 0; row 1: 2000; row 2: log(1 + e^{−1})
    expected = np.mean([0.0, 2000.0, np.log1p(np.exp(-1.0))])
    loss = _loss("xent")
    value, manual, ref = _both_jit(loss, jnp.asarray(z, dtype), jnp.asarray(y), None,
                                   jnp.asarray(1.0, dtype))
    assert np.isfinite(value) and np.all(np.isfinite(manual)) and np.all(np.isfinite(ref))
    assert_tree_allclose(value, jnp.asarray(expected), dtype=dtype)
    np.testing.assert_allclose(value, np_loss("xent", z, y), rtol=1e-6)
    assert_tree_allclose(manual, jnp.asarray((np_softmax(z) - np.eye(3)[y]) / 3), dtype=dtype)
    assert_tree_allclose(manual, ref, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_stable_for_large_logits(dtype):
    z = np.array([[1000.0], [1000.0], [-1000.0], [-1000.0]])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    expected = np.mean([0.0, 1000.0, 1000.0, 0.0])
    loss = _loss("bce")
    value, manual, ref = _both_jit(loss, jnp.asarray(z, dtype), jnp.asarray(y), None,
                                   jnp.asarray(1.0, dtype))
    assert np.isfinite(value) and np.all(np.isfinite(manual)) and np.all(np.isfinite(ref))
    assert_tree_allclose(value, jnp.asarray(expected), dtype=dtype)
    np.testing.assert_allclose(value, np_loss("bce", z, y), rtol=1e-6)
    # σ(z) − y is 0, 1, −1, 0, divided by n = 4
    assert_tree_allclose(manual, jnp.asarray([[0.0], [0.25], [-0.25], [0.0]]), dtype=dtype)
    assert_tree_allclose(manual, ref, dtype=dtype)


# ---------------------------------------------------------------------------- L2 penalty


@pytest.mark.parametrize("coeff", [0.0, 0.3, 2.0])
def test_l2_penalty(coeff):
    rng = np.random.default_rng(4)
    params = {"layers": ({"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}, {}),
              "extra": rng.normal(size=4)}
    params = jax.tree.map(jnp.asarray, params)
    penalty = losses.l2_penalty(coeff)
    value, res = penalty.forward(params)
    leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(params)]
    np.testing.assert_allclose(value, 0.5 * coeff * sum((v**2).sum() for v in leaves), rtol=1e-13)
    g = 1.7
    grads = penalty.backward(res, g)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    auto = jax.grad(lambda p: g * penalty.forward(p)[0])(params)
    assert_tree_allclose(grads, auto)
    assert_tree_allclose(grads, jax.tree.map(lambda p: g * coeff * p, params))


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, None, "0.1"])
def test_l2_penalty_refuses_a_coefficient_add_weight_decay_refuses(bad):
    with pytest.raises(ValueError, match="^l2_penalty coeff must be a finite number >= 0"):
        losses.l2_penalty(bad)


def test_get_and_names():
    assert set(losses.LOSSES) == {"mse", "huber", "xent", "bce"}
    for name in losses.LOSSES:
        assert isinstance(losses.get(name), losses.Loss)
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        losses.get("nope")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_gradient_keeps_its_relative_precision_where_sigmoid_rounds_to_one(dtype):
    """A confident, correct logit: σ(z) − y = ∓σ(−|z|), tiny but not 0. Formed as σ(z) − 1
    it cancels to exactly 0 (σ(40) is 1.0 in float64, σ(20) in float32); the stated
    (1 − y)·σ(z) − y·σ(−z) keeps every digit. (jax.grad of the forward loses them, its
    cotangents 1 − y cancelling first: only a closed form can check this.)"""
    z = np.array([[40.0], [-40.0], [20.0], [-20.0], [17.0]])
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    tail = np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z)))      # σ(−|z|), to full precision
    expected = np.where(y[:, None] == 1.0, -tail, tail) / len(z)
    loss = _loss("bce")
    _, res = loss.forward(jnp.asarray(z, dtype), jnp.asarray(y))
    manual = np.asarray(loss.backward(res), np.float64)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(manual, expected, rtol=rtol, atol=0)
    # the value too: every example right, ℓ = log(1 + e^{−|z|}), which log(1 + ·) rounds to 0
    value = float(loss.value(jnp.asarray(z, dtype), jnp.asarray(y)))
    np.testing.assert_allclose(value, np.mean(np.log1p(np.exp(-np.abs(z)))), rtol=rtol, atol=0)
