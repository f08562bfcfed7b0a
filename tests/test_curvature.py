"""gdlab.curvature: H·v through the hand-written backward against jax.hessian, for every layer
family; power iteration and Lanczos against numpy's eigvalsh; --sharpness_every in train."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_experiment
from jax.flatten_util import ravel_pytree

from gdlab import curvature, layers, losses, models, optim, tolerances
from gdlab.layers import (
    avg_pool,
    batch_norm,
    conv2d,
    dense,
    dropout,
    embedding,
    flatten,
    global_avg_pool,
    max_pool,
    parallel,
    positional_embedding,
    residual,
    serial,
    transformer_block,
)

F64 = jnp.float64
HVP_RTOL = tolerances.ANALYTIC["float64"].rtol  # ‖H·v − jax.hessian·v‖ / ‖jax.hessian·v‖


# ----------------------------------------------------------------------------- helpers
# Test data is drawn in NumPy and every comparison runs inside one jax.jit: eager ops would
# compile one by one and dominate the run time.


def _rng(salt: int) -> np.random.Generator:
    return np.random.default_rng(1234 + salt)


def _setup(model, in_shape, batch, *, salt=0, tokens=None):
    """Random params (non-zero biases, non-unit norm scales) and state, drawn in NumPy from
    the shapes alone (``init_shapes``: no eager ops to compile), and inputs."""
    _, shapes, state_shapes = layers.init_shapes(model, in_shape)
    rng = _rng(salt)
    params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), F64), shapes)
    state = jax.tree.map(lambda s: jnp.asarray(0.5 + rng.random(s.shape), F64), state_shapes)
    if tokens is None:
        x = jnp.asarray(rng.standard_normal((batch, *in_shape)), F64)
    else:
        x = jnp.asarray(rng.integers(0, tokens, (batch, *in_shape)), jnp.int32)
    return params, state, x


def _targets(loss_name, out_shape, batch, salt=0):
    rng = _rng(100 + salt)
    if loss_name == "xent":
        return jnp.asarray(rng.integers(0, out_shape[-1], (batch, *out_shape[:-1])), jnp.int32)
    if loss_name == "bce":
        return jnp.asarray(rng.integers(0, 2, (batch, *out_shape)), F64)
    return jnp.asarray(rng.standard_normal((batch, *out_shape)), F64)


FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
"""XLA options for these tiny programs, whose compilation takes far longer than their run."""


def _program(fn, *args):
    """``fn`` jitted and compiled with ``FAST_COMPILE`` for arguments like ``args``."""
    return jax.jit(fn).lower(*args).compile(FAST_COMPILE)


def _compiled(fn, *args):
    """``fn(*args)``, jitted and compiled with ``FAST_COMPILE``."""
    return _program(fn, *args)(*args)


def _hvp_and_reference(model, loss, params, state, x, y, v, *, train=True, key=None):
    """(manual H·v, jax.hessian(autodiff J)·v, the dense Hessian), flat: two compiled programs."""
    flat, unravel = ravel_pytree(params)

    def objective(theta):
        preds = model.forward(unravel(theta), state, x, key=key, train=train)[0]
        return loss.value(preds, y)

    def manual(params, v):
        hv = curvature.hvp(model, loss, params, state, x, y, unravel(v), key=key, train=train)
        return ravel_pytree(hv)[0]

    hessian = _compiled(jax.hessian(objective), flat)
    return _compiled(manual, params, v), hessian @ v, hessian


def _check_hvp(model, in_shape, loss_name="mse", *, batch=4, salt=0, tokens=None, train=True,
               key=None):
    params, state, x = _setup(model, in_shape, batch, salt=salt, tokens=tokens)
    out_shape = jax.eval_shape(lambda p: model.forward(p, state, x, key=key, train=train)[0],
                               params).shape[1:]
    y = _targets(loss_name, out_shape, batch, salt)
    flat, _ = ravel_pytree(params)
    v = jnp.asarray(_rng(200 + salt).standard_normal(flat.shape), F64)
    hv, reference, hessian = _hvp_and_reference(model, losses.get(loss_name), params, state, x, y,
                                                v, train=train, key=key)
    hv, reference = np.asarray(hv), np.asarray(reference)
    assert hv.shape == flat.shape and hv.dtype == np.float64
    # The check can fail: the Hessian has curvature here, and in more than its diagonal.
    assert np.linalg.norm(reference) > 1e-3
    assert np.abs(np.asarray(hessian) - np.diag(np.diag(hessian))).max() > 1e-3
    err = np.linalg.norm(hv - reference) / np.linalg.norm(reference)
    assert err <= HVP_RTOL, f"{model.name}: relative error {err:.2e}"
    return err


# ----------------------------------------------------------------------- H·v per layer family
# Every family appears in at least one model below; each model is compiled twice (manual H·v,
# jax.hessian), so families share models (the transformer block holds layer norm, causal
# attention, gelu and residuals; the activations and pooling models concatenate branches).

ACTIVATIONS = list(layers.ACTIVATIONS)


def test_hvp_mlp_every_activation():
    """One model, a branch per activation (dense → activation), concatenated: the error is
    reported per branch, so a failure names the activation."""
    branches = [serial(dense(2, dtype=F64), layers.activation(a)) for a in ACTIVATIONS]
    model = serial(dense(3, dtype=F64), parallel(*branches, merge="concat"), dense(3, dtype=F64))
    params, state, x = _setup(model, (3,), 4, salt=1)
    y = _targets("xent", (3,), 4, 1)
    flat, unravel = ravel_pytree(params)
    v = jnp.asarray(_rng(201).standard_normal(flat.shape), F64)
    hv, reference, _ = _hvp_and_reference(model, losses.get("xent"), params, state, x, y, v)
    per_branch = zip(unravel(hv)["layers"][1]["branches"],
                     unravel(reference)["layers"][1]["branches"])
    errors = {}
    for name, (a, b) in zip(ACTIVATIONS, per_branch):
        a, b = ravel_pytree(a)[0], ravel_pytree(b)[0]
        assert np.linalg.norm(b) > 1e-3, name
        errors[name] = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    assert max(errors.values()) <= HVP_RTOL, errors
    err = np.linalg.norm(np.asarray(hv - reference)) / np.linalg.norm(np.asarray(reference))
    assert err <= HVP_RTOL


@pytest.mark.parametrize("loss_name", ["huber", "bce"])  # mse and xent: in every other test
def test_hvp_other_losses(loss_name):
    outputs = 1 if loss_name == "bce" else 3
    _check_hvp(models.mlp([4, outputs], "tanh", dtype=F64), (3,), loss_name, salt=2)


CASES = {
    "conv2d_strided_dilated_grouped": (
        serial(conv2d(2, 2, strides=2, dilation=(1, 2), feature_groups=2, padding="SAME",
                      dtype=F64), layers.gelu(), flatten(), dense(2, dtype=F64)), (4, 4, 2)),
    "conv2d_max_avg_global_pool": (  # the three poolings as concatenated branches
        serial(conv2d(2, 2, dtype=F64), layers.tanh(),
               parallel(serial(max_pool(2, strides=1, padding="SAME"), flatten()),
                        serial(avg_pool(2, strides=1, padding="SAME", count_include_pad=False),
                               flatten()),
                        global_avg_pool(), merge="concat"),
               dense(2, dtype=F64)), (3, 3, 1)),
    "batch_norm_dense": (serial(dense(3, dtype=F64), batch_norm(dtype=F64), layers.tanh(),
                                dense(2, dtype=F64)), (3,)),
    "batch_norm_nhwc": (serial(conv2d(2, 2, use_bias=False, dtype=F64), batch_norm(dtype=F64),
                               layers.relu(), flatten(), dense(2, dtype=F64)), (3, 3, 1)),
    "residual_parallel_sum": (
        serial(dense(3, dtype=F64), residual(serial(dense(3, dtype=F64), layers.tanh())),
               parallel(dense(2, dtype=F64), serial(dense(2, dtype=F64), layers.sigmoid()))),
        (3,)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hvp_layer_family(name):
    model, in_shape = CASES[name]
    _check_hvp(model, in_shape, "mse", salt=3)


def test_hvp_dropout_with_a_fixed_key():
    model = serial(dense(4, dtype=F64), layers.tanh(), dropout(0.3), dense(2, dtype=F64))
    _check_hvp(model, (3,), "mse", salt=4, key=jax.random.PRNGKey(7))


def test_hvp_batch_norm_evaluation_mode():
    model, in_shape = CASES["batch_norm_dense"]
    _check_hvp(model, in_shape, "mse", salt=5, train=False)


SEQUENCE_CASES = {  # multi-head attention (causal: the mask too) inside a transformer block
    "embedding_positional_causal_transformer_block": serial(
        embedding(5, 4, dtype=F64), positional_embedding(3, dtype=F64),
        transformer_block(4, 2, mlp_ratio=1, causal=True, dtype=F64), dense(5, dtype=F64)),
}


@pytest.mark.parametrize("name", list(SEQUENCE_CASES))
def test_hvp_sequence_layers(name):
    _check_hvp(SEQUENCE_CASES[name], (3,), "xent", batch=3, salt=6, tokens=5)


def test_hvp_is_forward_over_the_manual_backward():
    """H·v differentiates the hand-written backward, not jax.grad: break one backward
    (dense's dW scaled by 1.5) and H·v moves away from the true Hessian's product."""
    good = dense(2, dtype=F64)

    def backward(params, x, dy):
        dparams, dx = good.backward(params, x, dy)
        return {"w": 1.5 * dparams["w"], "b": dparams["b"]}, dx

    broken = serial(dense(3, dtype=F64), layers.tanh(), layers.Layer(
        good.init, good.forward, backward, "broken_dense"))
    with pytest.raises(AssertionError, match="relative error"):
        _check_hvp(broken, (3,), "mse", salt=8)


# ------------------------------------------------------------------------------ eigenvalues


def _spd(n, salt, top=None):
    """A symmetric matrix with a known spectrum (one negative eigenvalue)."""
    rng = _rng(300 + salt)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    values = np.sort(np.concatenate([[-0.5], rng.uniform(0.0, 1.0, n - 1)]))
    if top is not None:
        values[-len(top):] = top
    return (q * values) @ q.T, values


def test_power_iteration_matches_eigvalsh_and_honours_tol_and_cap():
    a, _ = _spd(30, 0, top=[2.0, 3.0])
    matvec = lambda u: jnp.asarray(a) @ u  # noqa: E731
    v0 = jnp.asarray(_rng(1).standard_normal(30))
    def run(v0, tol, cap):
        return _compiled(lambda v: curvature.power_iteration(matvec, v, tol=tol, max_iters=cap),
                         v0)

    out = run(v0, 1e-12, 500)
    assert bool(out.converged) and 5 < int(out.iterations) < 500
    np.testing.assert_allclose(float(out.value), 3.0, rtol=1e-10)
    np.testing.assert_allclose(abs(float(np.asarray(out.vector) @ np.linalg.eigh(a)[1][:, -1])),
                               1.0, rtol=1e-5)
    loose = run(v0, 1e-2, 500)  # a looser tolerance stops earlier, within it
    assert bool(loose.converged) and int(loose.iterations) < int(out.iterations)
    assert abs(float(loose.value) - 3.0) <= 0.05 * 3.0
    capped = run(v0, 1e-12, 3)  # the cap is honoured, and reported as not converged
    assert int(capped.iterations) == 3 and not bool(capped.converged)
    warm = run(out.vector, 1e-10, 500)  # a warm start from the eigenvector: done at once
    assert int(warm.iterations) <= 3


def test_lanczos_top_k_matches_eigvalsh_and_honours_tol_and_cap():
    a, values = _spd(40, 1, top=[1.5, 1.8, 2.4, 3.0])
    matvec = lambda u: jnp.asarray(a) @ u  # noqa: E731
    v0 = jnp.asarray(_rng(2).standard_normal(40))
    def run(v0, k, tol, cap):
        return _compiled(lambda v: curvature.lanczos(matvec, v, k=k, tol=tol, max_iters=cap), v0)

    out = run(v0, 4, 1e-10, 40)
    assert bool(out.converged) and int(out.iterations) < 40
    np.testing.assert_allclose(np.asarray(out.values), values[::-1][:4], rtol=1e-9)
    vectors = np.asarray(out.vectors)
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(4), atol=1e-9)
    np.testing.assert_allclose(vectors @ a, np.asarray(out.values)[:, None] * vectors, atol=1e-8)
    assert np.all(np.asarray(out.residuals) <= 1e-10 * 3.0)
    capped = run(v0, 4, 1e-10, 6)
    assert int(capped.iterations) == 6 and not bool(capped.converged)
    assert np.all(np.asarray(capped.values) <= values[::-1][:4] + 1e-12)  # Ritz values: from below
    whole = run(v0, 2, 1e-14, 100)  # the cap is clipped to P; an exhausted space is exact
    assert int(whole.iterations) <= 40 and bool(whole.converged)
    np.testing.assert_allclose(np.asarray(whole.values), [3.0, 2.4], rtol=1e-10)
    with pytest.raises(ValueError, match="k="):
        curvature.lanczos(matvec, v0, k=5, max_iters=4)


def test_lanczos_sees_a_repeated_eigenvalue_once_and_runs_bfloat16_in_float32():
    # eigenvalues 5, 5, 5, 1, 0.5, ...: one start vector spans one copy of 5
    a = np.diag([5.0, 5.0, 5.0, 1.0, 0.5, 0.25])
    out = _compiled(lambda v: curvature.lanczos(lambda u: jnp.asarray(a) @ u, v, k=3, tol=1e-10),
                    jnp.ones(6))
    np.testing.assert_allclose(np.asarray(out.values), [5.0, 1.0, 0.5], rtol=1e-9)  # as documented
    # bfloat16 products, a float32 basis: the top pair of an SPD matrix to bfloat16's accuracy
    b, values = _spd(30, 3, top=[2.0, 3.0])
    bf16 = jnp.asarray(b, jnp.bfloat16)
    out = _compiled(lambda v: curvature.lanczos(lambda u: bf16 @ u, v, k=2, tol=1e-2),
                    jnp.asarray(_rng(4).standard_normal(30), jnp.bfloat16))
    assert out.vectors.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out.values, np.float64), values[::-1][:2], rtol=2e-2)
    with pytest.raises(ValueError, match=r"tol must be in \(0, 1\)"):
        curvature.make_sharpness(models.mlp([3], "tanh"), losses.get("xent"), tol=5.0)
    for solver in (curvature.power_iteration, curvature.top_eigenvalue, curvature.lanczos):
        with pytest.raises(ValueError, match=r"tol must be in \(0, 1\)"):  # 5 passed anything
            solver(lambda u: jnp.asarray(a) @ u, jnp.ones(6), tol=5.0)


def test_top_eigenvalue_is_the_largest_not_the_largest_in_magnitude():
    a, values = _spd(20, 2, top=[2.0])
    values[0] = -3.0  # |λmin| > λmax: plain power iteration finds −3
    q = np.linalg.eigh(a)[1]
    a = (q * values) @ q.T
    matvec = lambda u: jnp.asarray(a) @ u  # noqa: E731
    v0 = jnp.asarray(_rng(3).standard_normal(20))
    plain = _compiled(lambda v: curvature.power_iteration(matvec, v, tol=1e-10, max_iters=500), v0)
    top = _compiled(lambda v: curvature.top_eigenvalue(matvec, v, tol=1e-10, max_iters=500), v0)
    np.testing.assert_allclose(float(plain.value), -3.0, rtol=1e-8)
    np.testing.assert_allclose(float(top.value), 2.0, rtol=1e-8)
    assert bool(top.converged) and int(top.iterations) > int(plain.iterations)


def test_power_iteration_is_not_fooled_by_lambda_and_minus_lambda():
    # Eigenvalues 3 and −3 share the largest magnitude: v never settles and the Rayleigh
    # quotient stalls anywhere in [−3, 3], so a test on its change alone stopped early.
    a, values = _spd(12, 4, top=[1.0, 3.0])
    values[0] = -3.0
    q = np.linalg.eigh(a)[1]
    a = (q * values) @ q.T
    matvec = lambda u: jnp.asarray(a) @ u  # noqa: E731
    v0 = jnp.asarray(_rng(5).standard_normal(12))
    plain = _compiled(lambda v: curvature.power_iteration(matvec, v, tol=1e-3, max_iters=200), v0)
    assert not bool(plain.converged) and int(plain.iterations) < 20  # settled, not converged
    assert abs(float(plain.value)) < 2.9  # the stall: between the eigenvalues, at neither
    top = _compiled(lambda v: curvature.top_eigenvalue(matvec, v, tol=1e-6, max_iters=400), v0)
    assert bool(top.converged) and int(top.iterations) < 400
    np.testing.assert_allclose(float(top.value), 3.0, rtol=1e-5)
    vector = np.asarray(top.vector)  # the value is the returned vector's Rayleigh quotient
    np.testing.assert_allclose(vector @ a @ vector / (vector @ vector), 3.0, rtol=1e-5)


def test_top_eigenvalue_returns_a_capped_slow_run_as_it_is():
    # λ₂/λ₁ = 0.98: 30 products do not converge; a shifted retry would only be slower.
    a, _ = _spd(50, 6, top=[0.98, 1.0])
    matvec = lambda u: jnp.asarray(a) @ u  # noqa: E731
    v0 = jnp.asarray(_rng(7).standard_normal(50))
    plain = _compiled(lambda v: curvature.power_iteration(matvec, v, tol=1e-6, max_iters=30), v0)
    top = _compiled(lambda v: curvature.top_eigenvalue(matvec, v, tol=1e-6, max_iters=30), v0)
    assert not bool(top.converged) and int(top.iterations) == 30
    np.testing.assert_array_equal(np.asarray(top.vector), np.asarray(plain.vector))
    assert float(top.value) == float(plain.value)


def test_sharpness_at_a_saddle_with_a_symmetric_spectrum():
    # A tanh MLP at all-zero weights: its Hessian's extreme eigenvalues are ±c.
    model = models.mlp([2, 1], "tanh", dtype=F64)
    params, state, x = _setup(model, (2,), 16, salt=11)
    params = jax.tree.map(jnp.zeros_like, params)
    y = _targets("mse", (1,), 16, 11) + 1.0
    loss = losses.mse()
    eigs = np.linalg.eigvalsh(np.asarray(_compiled(
        lambda p: curvature.dense_hessian(model, loss, p, state, x, y), params)))
    np.testing.assert_allclose(eigs[0], -eigs[-1], rtol=1e-10)  # the saddle's ±c
    sharpness = curvature.make_sharpness(model, loss, tol=1e-4, max_iters=300)
    v0s = [curvature.random_direction(jax.random.PRNGKey(seed), params) for seed in range(3)]
    probe = _program(lambda v: sharpness(params, state, x, y, v), v0s[0])  # for all three
    for v0 in v0s:
        out = probe(v0)
        assert bool(out.converged)
        np.testing.assert_allclose(float(out.value), eigs[-1], rtol=1e-3)


@pytest.fixture(scope="module")
def small_mlp():
    """A tanh MLP under mse, and its Hessian's eigenvalues by jax.hessian and eigvalsh."""
    model = models.mlp([6, 3], "tanh", dtype=F64)
    params, state, x = _setup(model, (4,), 12, salt=9)
    y = _targets("mse", (3,), 12, 9)
    loss = losses.mse()
    flat, unravel = ravel_pytree(params)
    objective = lambda t: loss.value(model.forward(unravel(t), state, x)[0], y)  # noqa: E731
    hessian = np.asarray(_compiled(jax.hessian(objective), flat))
    eigs = np.linalg.eigvalsh(hessian)
    assert eigs[-1] > abs(eigs[0])  # λmax is also the largest in magnitude here
    return model, loss, params, state, x, y, hessian, eigs


@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_make_sharpness_matches_eigvalsh_of_jax_hessian(small_mlp, method):
    model, loss, params, state, x, y, _, eigs = small_mlp
    v0 = curvature.random_direction(jax.random.PRNGKey(0), params)
    # λ₂/λ₁ = 0.96 here: power iteration needs some 200 products, and its error can be
    # 1/(1 − 0.96²) ≈ 12 times the last change, so tol is set below the asserted 1e-8.
    sharpness = curvature.make_sharpness(model, loss, method=method, k=3, tol=1e-10,
                                         max_iters=1000 if method == "power" else 30)
    out = sharpness(params, state, x, y, v0)
    assert bool(out.converged)
    if method == "power":
        np.testing.assert_allclose(float(out.value), eigs[-1], rtol=1e-8)
        assert jax.tree_util.tree_structure(out.vector) == jax.tree_util.tree_structure(params)
    else:
        np.testing.assert_allclose(np.asarray(out.values), eigs[::-1][:3], rtol=1e-8)
        assert jax.tree.leaves(out.vectors)[0].shape[0] == 3


@pytest.mark.parametrize("mask", [None, optim.weights_only])
def test_a_coupled_weight_decay_adds_its_l2_terms_hessian(small_mlp, mask):
    """weight_decay c: the Hessian of J + (c/2)·‖w‖² over the leaves the mask marks (all,
    or the kernels), against jax.hessian of that sum, product by product and as λmax."""
    model, loss, params, state, x, y, hessian, _ = small_mlp
    c = 0.7
    flat, unravel = ravel_pytree(params)
    marked = lambda w: mask is None or w.ndim >= 2  # noqa: E731
    penalty = lambda t: 0.5 * c * sum(  # noqa: E731
        jnp.sum(w * w) for w in jax.tree.leaves(unravel(t)) if marked(w))
    expected = hessian + np.asarray(_compiled(jax.hessian(penalty), flat))
    assert not np.allclose(expected, hessian)
    matvec, _ = curvature.linearized_hvp(model, loss, params, state, x, y, weight_decay=c,
                                         weight_decay_mask=mask)
    dense = _compiled(lambda: jax.vmap(matvec)(jnp.eye(flat.size, dtype=F64)).T)
    np.testing.assert_allclose(np.asarray(dense), expected, rtol=1e-10, atol=1e-12)
    sharpness = curvature.make_sharpness(model, loss, method="lanczos", tol=1e-10,
                                         max_iters=30, weight_decay=c, weight_decay_mask=mask)
    out = sharpness(params, state, x, y, curvature.random_direction(jax.random.PRNGKey(0), params))
    np.testing.assert_allclose(float(out.values[0]), np.linalg.eigvalsh(expected)[-1], rtol=1e-8)


def test_dense_hessian_equals_jax_hessian(small_mlp):
    model, loss, params, state, x, y, hessian, _ = small_mlp
    dense = _compiled(lambda p: curvature.dense_hessian(model, loss, p, state, x, y), params)
    np.testing.assert_allclose(np.asarray(dense), hessian, rtol=1e-10, atol=1e-12)


def test_hvp_and_dense_hessian_called_as_they_are_compile_once_per_shape(small_mlp):
    """Called outside jit, hvp, make_hvp's function and dense_hessian run as one compiled
    program each (eagerly, every operation would compile on its own): the same values as the
    dense Hessian, and a second call with new values compiles nothing."""
    model, loss, params, state, x, y, hessian, _ = small_mlp
    flat, unravel = ravel_pytree(params)
    shifted = jax.tree.map(lambda w: w + 0.25, params)
    dense = curvature.dense_hessian(model, loss, params, state, x, y)
    np.testing.assert_allclose(np.asarray(dense), hessian, rtol=1e-10, atol=1e-12)
    v = jnp.asarray(_rng(5).standard_normal(flat.shape), F64)
    made = curvature.make_hvp(model, loss)
    for hv in (curvature.hvp(model, loss, params, state, x, y, unravel(v)),
               made(params, state, x, y, unravel(v))):
        np.testing.assert_allclose(np.asarray(ravel_pytree(hv)[0]), hessian @ np.asarray(v),
                                   rtol=1e-10, atol=1e-12)
    programs = (curvature.hvp._cache_size(), made._cache_size(),
                curvature.dense_hessian._cache_size())
    curvature.hvp(model, loss, shifted, state, x, y, unravel(2 * v))
    made(shifted, state, x, y, unravel(2 * v))
    again = curvature.dense_hessian(model, loss, shifted, state, x, y)
    assert (curvature.hvp._cache_size(), made._cache_size(),
            curvature.dense_hessian._cache_size()) == programs
    assert not np.allclose(np.asarray(again), hessian)


def test_sharpness_path_is_plain_gd_with_exact_sharpness(small_mlp):
    """make_sharpness_path: its weights are those of a hand-rolled gd loop, its losses and
    λmax those of the dense Hessian at the start and at the end (float64, tight tol)."""
    model, loss, params, state, x, y, _, eigs = small_mlp
    lr, steps = 0.3, 6
    path = curvature.make_sharpness_path(model, loss, steps=steps, every=3, tol=1e-12,
                                         max_iters=2000)
    out = path(params, state, x, y, lr, jax.random.PRNGKey(0))
    grad = jax.jit(lambda p: jax.grad(lambda q: loss.value(model.forward(q, state, x)[0], y))(p))
    expected = params
    for _ in range(steps):
        expected = jax.tree.map(lambda w, g: w - lr * g, expected, grad(expected))
    flat_out, flat_expected = ravel_pytree(out.params)[0], ravel_pytree(expected)[0]
    np.testing.assert_allclose(np.asarray(flat_out), np.asarray(flat_expected), rtol=1e-12,
                               atol=1e-14)
    assert out.sharpness.shape == out.loss.shape == (3,)  # steps 0, 3, 6
    np.testing.assert_allclose(float(out.sharpness[0]), eigs[-1], rtol=1e-8)
    final = np.linalg.eigvalsh(np.asarray(
        _compiled(lambda p: curvature.dense_hessian(model, loss, p, state, x, y), expected)))
    np.testing.assert_allclose(float(out.sharpness[-1]), final[-1], rtol=1e-8)
    np.testing.assert_allclose(float(out.loss[-1]),
                               float(loss.value(model.forward(expected, state, x)[0], y)),
                               rtol=1e-12)
    assert bool(np.all(out.converged)) and float(out.loss[-1]) < float(out.loss[0])
    with pytest.raises(ValueError, match="divides"):
        curvature.make_sharpness_path(model, loss, steps=5, every=3)
    with pytest.raises(ValueError, match="unknown eigenvalue method 'bogus'"):  # when built,
        curvature.make_sharpness_path(model, loss, steps=3, every=3, method="bogus")  # as
    with pytest.raises(ValueError, match="tol"):  # make_sharpness: not at the first call
        curvature.make_sharpness_path(model, loss, steps=3, every=3, tol=5.0)


def test_sharpness_path_minibatch_of_every_example_is_full_batch(small_mlp):
    """Mini-batches drawn without replacement: B = N draws every example once per step, so
    the path is full-batch GD's up to the order of the sums; B < N moves elsewhere."""
    model, loss, params, state, x, y, _, _ = small_mlp
    n, key = x.shape[0], jax.random.PRNGKey(4)
    args = (params, state, x, y, 0.3, key)
    paths = {b: _compiled(curvature.make_sharpness_path(model, loss, steps=6, every=3,
                                                        batch_size=b, tol=1e-12, max_iters=2000),
                          *args)
             for b in (None, n, n // 2)}
    flat = {b: np.asarray(ravel_pytree(p.params)[0]) for b, p in paths.items()}
    np.testing.assert_allclose(flat[n], flat[None], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(paths[n].sharpness), np.asarray(paths[None].sharpness),
                               rtol=1e-8)
    assert np.abs(flat[n // 2] - flat[None]).max() > 1e-6


def test_sharpness_path_of_a_dropout_model_measures_one_fixed_mask():
    """Dropout: a mask per training step, one fixed mask (from the path's key) for every
    measurement; the first λmax is the dense Hessian's under that mask."""
    model = models.mlp([6, 3], "tanh", dropout_rate=0.3, dtype=F64)
    params, state, x = _setup(model, (4,), 12, salt=5)
    y = _targets("mse", (3,), 12, 5)
    loss, key = losses.mse(), jax.random.PRNGKey(3)
    path = curvature.make_sharpness_path(model, loss, steps=2, every=1, tol=1e-12,
                                         max_iters=2000)
    out = path(params, state, x, y, 0.1, key)
    mask = jax.random.fold_in(key, 2)
    dense = _compiled(lambda p: curvature.dense_hessian(model, loss, p, state, x, y, key=mask),
                      params)
    np.testing.assert_allclose(float(out.sharpness[0]), np.linalg.eigvalsh(np.asarray(dense))[-1],
                               rtol=1e-8)
    np.testing.assert_allclose(float(out.loss[0]), float(loss.value(
        model.forward(params, state, x, train=True, key=mask)[0], y)), rtol=1e-12)
    assert bool(np.all(out.converged)) and np.all(np.isfinite(np.asarray(out.loss)))


def test_fixed_subset_is_fixed_and_bounded():
    x = jnp.arange(50.0).reshape(25, 2)
    y = jnp.arange(25)
    a, b = curvature.fixed_subset(x, y, 10, seed=3)
    c, _ = curvature.fixed_subset(x, y, 10, seed=3)
    assert a.shape == (10, 2) and np.array_equal(np.asarray(a), np.asarray(c))
    assert np.array_equal(np.asarray(a[:, 0]) // 2, np.asarray(b))  # rows kept together
    assert len(set(np.asarray(b).tolist())) == 10
    assert curvature.fixed_subset(x, y, 100)[0].shape == (25, 2)


# ------------------------------------------------------------------ experiments.train --sharpness_every


def test_train_logs_sharpness_equal_to_the_dense_hessian(tmp_path):
    """Two epochs of full-batch momentum (β = 0.5) with weight decay 0.3 on the kernels, on
    200 digits, with --sharpness_every=1: every row has λmax and momentum's stability bound
    2(1+β)/α, and the last λmax is the top eigenvalue of the Hessian of the loss plus the
    decay's L2 term (the objective the optimizer descends) at the checkpointed weights,
    computed independently (jax.hessian, numpy's eigvalsh). Without that term a run could
    log a λmax below its bound and diverge."""
    wd = tmp_path / "run"
    decay = 0.3
    proc = run_experiment("train", "--dataset=digits", "--hidden=3", "--activation=tanh",
                          "--descent=batch", "--optimizer=momentum", "--momentum=0.5",
                          f"--weight_decay={decay}", "--weight_decay_on=weights", "--lr=0.5",
                          "--epochs=2", "--sharpness_every=1", "--sharpness_examples=200",
                          f"--workdir={wd}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["epoch"] >= 1]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["stability_bound"] == pytest.approx(2 * (1 + 0.5) / 0.5)
        assert r["sharpness"] > 0
    assert "sharpness" in (wd / "metrics.csv").read_text().splitlines()[0]

    from gdlab import checkpoint, data

    state = checkpoint.restore(str(wd))
    ds = data.load("digits", seed=0, standardize="global")
    model = models.mlp([3, 10], "tanh")
    loss = losses.softmax_cross_entropy()
    x, y = curvature.fixed_subset(jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), 200)
    flat, unravel = ravel_pytree(jax.tree.map(lambda p: jnp.asarray(p, F64), state.params))
    state64 = jax.tree.map(lambda s: jnp.asarray(s, F64), state.model_state)
    objective = lambda t: loss.value(model.forward(unravel(t), state64, jnp.asarray(x, F64),  # noqa: E731
                                                   train=True)[0], y) + 0.5 * decay * sum(
        jnp.sum(w * w) for w in jax.tree.leaves(unravel(t)) if w.ndim >= 2)
    top = np.linalg.eigvalsh(np.asarray(_compiled(jax.hessian(objective), flat)))[-1]
    assert rows[-1]["sharpness"] == pytest.approx(top, rel=1e-4)  # a float32 run


@pytest.mark.parametrize("batch_size, needle", [
    (0, "an int >= 1"), (-4, "an int >= 1"), (2.5, "an int >= 1"),
    (100, "batch_size=100 exceeds the 6 examples"),
])
def test_sharpness_path_refuses_a_batch_it_cannot_draw(batch_size, needle):
    """Batches are drawn without replacement: sizes outside 1..N (a negative one used to
    slice perm[:-4], a larger one to run full batch) are refused."""
    model, loss = layers.dense(1), losses.get("mse")
    _, params, state = model.init(jax.random.PRNGKey(0), (3,))
    x, y = jnp.ones((6, 3)), jnp.ones((6, 1))
    with pytest.raises(ValueError, match=needle):
        curvature.make_sharpness_path(model, loss, steps=2, every=1, batch_size=batch_size,
                                      method="power")(params, state, x, y, 0.1,
                                                      jax.random.PRNGKey(1))




def test_power_iteration_on_a_zero_hessian_keeps_a_unit_vector():
    """H = 0 (a flat region, a ReLU net with every unit dead): λ = 0, converged at once, and
    the vector stays the (unit) start, finite, so a warm start from it works."""
    v0 = jnp.asarray(_rng(20).standard_normal(7))
    for solver in (curvature.power_iteration, curvature.top_eigenvalue):
        out = _compiled(lambda v, solver=solver: solver(lambda u: 0.0 * u, v, tol=1e-6,
                                                        max_iters=50), v0)
        assert float(out.value) == 0.0 and bool(out.converged) and int(out.iterations) == 1
        np.testing.assert_allclose(np.asarray(out.vector), np.asarray(v0) / np.linalg.norm(v0),
                                   rtol=1e-14)


def test_top_eigenvalue_iterations_count_every_product():
    """``iterations`` is the number of H·v products computed, counted here by the matvec
    itself: both runs, and the product that measures ρ in the ±λ case."""
    def spectrum(salt, top, bottom):
        a, values = _spd(16, salt, top=top)
        values[0] = bottom
        q = np.linalg.eigh(a)[1]
        return (q * values) @ q.T

    for a in (spectrum(12, [2.0], -3.0),         # negative: a second run on H − λmin·I
              spectrum(13, [1.0, 3.0], -3.0)):   # ±3: ρ measured, then a run on H + ρI
        calls, h = [], jnp.asarray(a)

        def matvec(u, h=h, calls=calls):
            jax.debug.callback(lambda: calls.append(1), ordered=True)
            return h @ u

        out = jax.jit(lambda v, matvec=matvec: curvature.top_eigenvalue(
            matvec, v, tol=1e-8, max_iters=500))(jnp.asarray(_rng(14).standard_normal(16)))
        jax.effects_barrier()
        np.testing.assert_allclose(float(out.value), np.linalg.eigvalsh(a)[-1], rtol=1e-6)
        assert int(out.iterations) == len(calls), (int(out.iterations), len(calls))


def test_lanczos_residuals_are_those_of_the_returned_ritz_pairs():
    """Each reported residual is ‖A·u_i − θ_i·u_i‖ of the returned pair, computed here with
    NumPy, and not zero: for a run stopped by the cap and for one stopped by ``tol``."""
    a, _ = _spd(40, 1, top=[1.5, 1.8, 2.4, 3.0])
    v0 = jnp.asarray(_rng(2).standard_normal(40))
    for tol, cap, converged in ((1e-10, 6, False), (1e-3, 40, True)):
        out = _compiled(lambda v, tol=tol, cap=cap: curvature.lanczos(
            lambda w: jnp.asarray(a) @ w, v, k=3, tol=tol, max_iters=cap), v0)
        assert bool(out.converged) == converged and int(out.iterations) <= cap
        vectors, theta = np.asarray(out.vectors), np.asarray(out.values)
        direct = np.linalg.norm(vectors @ a - theta[:, None] * vectors, axis=1)
        assert np.all(direct > 1e-8), direct
        np.testing.assert_allclose(np.asarray(out.residuals), direct, rtol=1e-5)


def test_lanczos_an_exhausted_krylov_space_gives_nan_beyond_its_dimension():
    """Eigenvalues 5, 5, 1, 1 (rotated): a start vector spans a Krylov space of dimension 2,
    so k = 3 gives [5, 1, NaN] after 2 products, exact and converged."""
    q, _ = np.linalg.qr(_rng(21).standard_normal((4, 4)))
    a = (q * np.array([5.0, 5.0, 1.0, 1.0])) @ q.T
    out = _compiled(lambda v: curvature.lanczos(lambda u: jnp.asarray(a) @ u, v, k=3,
                                                tol=1e-10, max_iters=4),
                    jnp.asarray(_rng(22).standard_normal(4)))
    values = np.asarray(out.values)
    np.testing.assert_allclose(values[:2], [5.0, 1.0], rtol=1e-12)
    assert np.isnan(values[2]) and int(out.iterations) == 2 and bool(out.converged)
    with pytest.raises(ValueError, match="k="):  # the cap is clipped to P = 4 before k is checked
        curvature.lanczos(lambda u: jnp.asarray(a) @ u, jnp.ones(4), k=5, max_iters=50)


def test_lanczos_on_a_negative_definite_matrix_finds_its_largest_eigenvalues():
    """Every eigenvalue negative (a local maximum of J): λmax is the one nearest 0, not 0."""
    q, _ = np.linalg.qr(_rng(23).standard_normal((12, 12)))
    spec = -np.array([1.0, 1.5, 2.0, 100, 200, 300, 400, 500, 600, 700, 800, 900])
    a = (q * spec) @ q.T
    for k in (1, 3):
        out = _compiled(lambda v, k=k: curvature.lanczos(lambda u: jnp.asarray(a) @ u, v, k=k,
                                                         tol=1e-8, max_iters=12),
                        jnp.asarray(_rng(24).standard_normal(12)))
        np.testing.assert_allclose(np.asarray(out.values), [-1.0, -1.5, -2.0][:k], rtol=1e-8)


def test_lanczos_keeps_its_ritz_vectors_orthonormal_on_a_wide_spectrum():
    """Two large eigenvalues over 198 in [0, 1]: once they converge, each new Lanczos vector
    is a small remainder of H·q, and one Gram–Schmidt pass leaves it visibly non-orthogonal
    (about 1e-9 in float64); two passes keep the Ritz vectors orthonormal to rounding."""
    rng = _rng(25)
    n = 200
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    spec = np.concatenate([[1e3, 9e2], rng.uniform(0, 1, n - 2)])
    a = (q * spec) @ q.T
    out = _compiled(lambda v: curvature.lanczos(lambda u: jnp.asarray(a) @ u, v, k=4, tol=1e-7,
                                                max_iters=150),
                    jnp.asarray(rng.standard_normal(n)))
    vectors = np.asarray(out.vectors)
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(4), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out.values), np.sort(spec)[::-1][:4], rtol=1e-6)


def test_random_direction_is_a_unit_vector_and_fixed_subset_keeps_the_order():
    params = {"w": jnp.zeros((5, 3), F64), "b": jnp.zeros((3,), F64)}
    for seed in range(3):
        v = curvature.random_direction(jax.random.PRNGKey(seed), params)
        assert float(jnp.linalg.norm(ravel_pytree(v)[0])) == pytest.approx(1.0, rel=1e-12)
    x = jnp.arange(100.0).reshape(50, 2)
    for seed in range(5):
        _, rows = curvature.fixed_subset(x, jnp.arange(50), 20, seed=seed)
        assert np.all(np.diff(np.asarray(rows)) > 0)  # the original order


def test_sharpness_path_minibatches_are_drawn_by_the_key(small_mlp):
    """B < N: the batches are random draws, so another key takes other steps; full-batch GD
    does not depend on the key at all (the key only starts the eigenvector there)."""
    model, loss, params, state, x, y, _, _ = small_mlp
    final = {}
    for b in (None, x.shape[0] // 2):
        path = curvature.make_sharpness_path(model, loss, steps=4, every=2, batch_size=b,
                                             method="power", tol=1e-3, max_iters=20)
        final[b] = [np.asarray(ravel_pytree(path(params, state, x, y, 0.3,
                                                 jax.random.PRNGKey(s)).params)[0])
                    for s in (0, 1)]
    np.testing.assert_array_equal(final[None][0], final[None][1])
    assert np.abs(final[x.shape[0] // 2][0] - final[x.shape[0] // 2][1]).max() > 1e-6


def test_top_eigenvalue_tol_is_relative_to_h_not_to_the_shifted_matrix():
    """λmax = 0.01 under strong negative curvature (λmin = −3): the second run iterates on
    H + 3I, whose top eigenvalue is 3.01, and ``tol`` is a fraction of H's λ (0.01), not of
    3.01, so the estimate is good to well under 1%, not 10-20% low."""
    q, _ = np.linalg.qr(_rng(26).standard_normal((10, 10)))
    spec = np.array([-3.0, -2.8, -2.5, -2.0, -1.8, -1.5, -1.2, -1.1, -1.0, 0.01])
    a = (q * spec) @ q.T
    for salt in range(3):
        out = _compiled(lambda v: curvature.top_eigenvalue(lambda u: jnp.asarray(a) @ u, v,
                                                           tol=1e-3, max_iters=2000),
                        jnp.asarray(_rng(27 + salt).standard_normal(10)))
        assert bool(out.converged)
        np.testing.assert_allclose(float(out.value), 0.01, rtol=1e-2)
