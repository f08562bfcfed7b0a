"""Tests for gdlab.optim: every optimizer against an independent NumPy recurrence,
tree/dtype handling, jit and scan, convergence on a quadratic, and the schedules."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_tree_allclose

from gdlab import models, optim, train
from gdlab.optim import schedules

# ----------------------------------------------------------------------------- fixtures

N_STEPS = 3
"""Steps checked against the NumPy references."""


def _params64():
    """A two-leaf float64 tree; leaves flatten in key order a, b (7 numbers)."""
    return {
        "a": jnp.array([0.5, -1.0, 2.0], jnp.float64),
        "b": jnp.array([[1.5, -0.25], [0.0, 3.0]], jnp.float64),
    }


def _grads_seq(scales=(1.0, 1.0, 1.0)):
    """Fixed gradients for steps 0, 1, 2 (independent of the params), float64 trees."""
    rng = np.random.default_rng(1234)
    out = []
    for s in scales:
        out.append({"a": jnp.asarray(s * rng.normal(size=3)), "b": jnp.asarray(s * rng.normal(size=(2, 2)))})
    return out


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree_util.tree_leaves(tree)])


def _run(opt, params, grads_seq):
    """Params after each step, applying ``opt`` eagerly."""
    state = opt.init(params)
    out = []
    for g in grads_seq:
        updates, state = opt.update(g, state, params)
        params = optim.apply_updates(params, updates)
        out.append(params)
    return out


# ------------------------------------------------- independent NumPy recurrences (float64)
# Each takes the flat initial params w and the list of flat gradients, and returns the
# flat params after every step. ``lr`` is a function of the 0-based step t.


def _const(lr):
    return lambda t: lr


def np_gd(w, gs, lr):
    out = []
    for t, g in enumerate(gs):
        w = w - lr(t) * g
        out.append(w)
    return out


def np_momentum(w, gs, lr, beta, nesterov=False):
    v = np.zeros_like(w)
    out = []
    for t, g in enumerate(gs):
        v = beta * v + g
        step = g + beta * v if nesterov else v
        w = w - lr(t) * step
        out.append(w)
    return out


def np_adagrad(w, gs, lr, eps, init_acc):
    s = np.full_like(w, init_acc)
    out = []
    for t, g in enumerate(gs):
        s = s + g**2
        w = w - lr(t) * g / (np.sqrt(s) + eps)
        out.append(w)
    return out


def np_rmsprop(w, gs, lr, rho, eps):
    s = np.zeros_like(w)
    out = []
    for t, g in enumerate(gs):
        s = rho * s + (1 - rho) * g**2
        w = w - lr(t) * g / (np.sqrt(s) + eps)
        out.append(w)
    return out


def np_adam(w, gs, lr, b1, b2, eps, decoupled=0.0, l2=0.0, decays=1.0):
    """``decays``: 1 where a weight decay reaches the flat entry, 0 where it does not."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    out = []
    decoupled = decoupled * np.asarray(decays)
    l2 = l2 * np.asarray(decays)
    for i, g in enumerate(gs):
        g = g + l2 * w
        t = i + 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        w = w - lr(i) * (m_hat / (np.sqrt(v_hat) + eps) + decoupled * w)
        out.append(w)
    return out


def np_gd_l2(w, gs, lr, coeff, decays=1.0):
    out = []
    coeff = coeff * np.asarray(decays)
    for t, g in enumerate(gs):
        w = w - lr(t) * (g + coeff * w)
        out.append(w)
    return out


def np_gd_clip(w, gs, lr, max_norm, l2=0.0):
    out = []
    for t, g in enumerate(gs):
        g = g * min(1.0, max_norm / np.linalg.norm(g))
        g = g + l2 * w
        w = w - lr(t) * g
        out.append(w)
    return out


# Closed-form learning rates for the schedule cases.
def _exp_half(t):
    return 0.1 * 0.5**t  # exponential_decay(0.1, 0.5, 1)


def _warmup2(t):
    return 0.1 * min(t, 2) / 2  # linear_warmup(0.1, 2): 0, 0.05, 0.1


def _cos4(t):
    return 0.01 * 0.5 * (1 + math.cos(math.pi * min(t, 4) / 4))  # cosine_decay(0.01, 4)


ONLY_B = np.array([0, 0, 0, 1, 1, 1, 1.0])
"""The flat entries of ``_params64``'s 2-D leaf ``b``: the ones ``weights_only`` decays."""

S = schedules
CASES = {
    # id: (optimizer, reference(w, gs), gradient scales per step)
    "gd": (optim.gd(0.1), lambda w, gs: np_gd(w, gs, _const(0.1)), None),
    "momentum": (
        optim.momentum(0.1, beta=0.8),
        lambda w, gs: np_momentum(w, gs, _const(0.1), 0.8),
        None,
    ),
    "momentum_nesterov_flag": (
        optim.momentum(0.1, beta=0.8, nesterov=True),
        lambda w, gs: np_momentum(w, gs, _const(0.1), 0.8, nesterov=True),
        None,
    ),
    "nesterov": (
        optim.nesterov(0.1, beta=0.7),
        lambda w, gs: np_momentum(w, gs, _const(0.1), 0.7, nesterov=True),
        None,
    ),
    "adagrad": (
        optim.adagrad(0.5, eps=1e-3, initial_accumulator=0.1),
        lambda w, gs: np_adagrad(w, gs, _const(0.5), 1e-3, 0.1),
        None,
    ),
    "rmsprop": (
        optim.rmsprop(0.01, decay=0.8, eps=1e-3),
        lambda w, gs: np_rmsprop(w, gs, _const(0.01), 0.8, 1e-3),
        None,
    ),
    "adam": (
        optim.adam(0.01, b1=0.8, b2=0.99, eps=1e-3),
        lambda w, gs: np_adam(w, gs, _const(0.01), 0.8, 0.99, 1e-3),
        None,
    ),
    "adam_defaults": (
        optim.adam(0.01),
        lambda w, gs: np_adam(w, gs, _const(0.01), 0.9, 0.999, 1e-8),
        None,
    ),
    "adamw": (
        optim.adamw(0.01, b1=0.8, b2=0.99, eps=1e-3, weight_decay=0.1),
        lambda w, gs: np_adam(w, gs, _const(0.01), 0.8, 0.99, 1e-3, decoupled=0.1),
        None,
    ),
    "adam_then_decayed_weights_is_adamw": (
        optim.chain(optim.adam(0.01), optim.add_decayed_weights(0.1, learning_rate=0.01)),
        lambda w, gs: np_adam(w, gs, _const(0.01), 0.9, 0.999, 1e-8, decoupled=0.1),
        None,
    ),
    "adamw_weights_only": (
        optim.adamw(0.01, weight_decay=0.1, mask=optim.weights_only),
        lambda w, gs: np_adam(w, gs, _const(0.01), 0.9, 0.999, 1e-8, decoupled=0.1, decays=ONLY_B),
        None,
    ),
    "adamw_weights_only_get": (
        optim.get("adamw", 0.01, weight_decay=0.1, weight_decay_mask=optim.weights_only),
        lambda w, gs: np_adam(w, gs, _const(0.01), 0.9, 0.999, 1e-8, decoupled=0.1, decays=ONLY_B),
        None,
    ),
    "adamw_cosine_schedule_decays_on_schedule": (
        optim.adamw(S.cosine_decay(0.01, 4), weight_decay=0.5),
        lambda w, gs: np_adam(w, gs, _cos4, 0.9, 0.999, 1e-8, decoupled=0.5),
        None,
    ),
    "gd_l2_chain": (
        optim.chain(optim.add_weight_decay(0.05), optim.gd(0.1)),
        lambda w, gs: np_gd_l2(w, gs, _const(0.1), 0.05),
        None,
    ),
    "gd_l2_get": (
        optim.get("gd", 0.1, weight_decay=0.05),
        lambda w, gs: np_gd_l2(w, gs, _const(0.1), 0.05),
        None,
    ),
    "gd_l2_weights_only": (
        optim.chain(optim.add_weight_decay(0.05, mask=optim.weights_only), optim.gd(0.1)),
        lambda w, gs: np_gd_l2(w, gs, _const(0.1), 0.05, decays=ONLY_B),
        None,
    ),
    "gd_l2_get_with_a_mask_tree": (
        optim.get("gd", 0.1, weight_decay=0.05, weight_decay_mask={"a": True, "b": False}),
        lambda w, gs: np_gd_l2(w, gs, _const(0.1), 0.05, decays=1.0 - ONLY_B),
        None,
    ),
    "gd_decoupled_decay": (
        optim.chain(optim.gd(0.1), optim.add_decayed_weights(0.05, learning_rate=0.1)),
        lambda w, gs: np_gd_l2(w, gs, _const(0.1), 0.05),
        None,
    ),
    "gd_decoupled_decay_folded_rate_masked": (
        optim.chain(optim.gd(0.1), optim.add_decayed_weights(0.005, mask=optim.weights_only)),
        lambda w, gs: np_gd_l2(w, gs, _const(0.1), 0.05, decays=ONLY_B),
        None,
    ),
    "adam_l2_get": (
        optim.get("adam", 0.01, weight_decay=0.1),
        lambda w, gs: np_adam(w, gs, _const(0.01), 0.9, 0.999, 1e-8, l2=0.1),
        None,
    ),
    # Gradient norms ≈ 8, 0.3, 2.6: steps 0 and 2 are clipped, step 1 is not.
    "gd_clip": (
        optim.chain(optim.clip_by_global_norm(1.0), optim.gd(0.1)),
        lambda w, gs: np_gd_clip(w, gs, _const(0.1), 1.0),
        (3.0, 0.1, 1.0),
    ),
    "gd_clip_l2_get": (
        optim.get("gd", 0.1, clip_norm=1.0, weight_decay=0.05),
        lambda w, gs: np_gd_clip(w, gs, _const(0.1), 1.0, l2=0.05),
        (3.0, 0.1, 1.0),
    ),
    "gd_schedule": (
        optim.gd(S.exponential_decay(0.1, 0.5, 1)),
        lambda w, gs: np_gd(w, gs, _exp_half),
        None,
    ),
    "momentum_warmup_schedule": (
        optim.get("momentum", S.linear_warmup(0.1, 2), momentum=0.5),
        lambda w, gs: np_momentum(w, gs, _warmup2, 0.5),
        None,
    ),
    "adam_cosine_schedule": (
        optim.adam(S.cosine_decay(0.01, 4)),
        lambda w, gs: np_adam(w, gs, _cos4, 0.9, 0.999, 1e-8),
        None,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_first_steps_match_numpy(case):
    opt, reference, scales = CASES[case]
    params = _params64()
    grads = _grads_seq(scales or (1.0,) * N_STEPS)
    got = _run(opt, params, grads)
    want = reference(_flat(params), [_flat(g) for g in grads])
    assert len(got) == len(want) == N_STEPS
    for t, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(_flat(g), w, rtol=1e-12, atol=1e-14, err_msg=f"step {t}")


def test_clip_case_exercises_both_branches():
    norms = [np.linalg.norm(_flat(g)) for g in _grads_seq((3.0, 0.1, 1.0))]
    assert norms[0] > 1.0 and norms[1] < 1.0 and norms[2] > 1.0


# ------------------------------------------------------------ trees, dtypes, jit, scan

TREES = {
    "dict": lambda dt: {"w": jnp.ones((2, 3), dt), "b": jnp.zeros((3,), dt)},
    "tuple": lambda dt: (jnp.ones((4,), dt), jnp.full((2, 2), 0.5, dt)),
    "nested": lambda dt: {
        "layers": ({"w": jnp.ones((2, 2), dt), "b": jnp.zeros((2,), dt)}, {"w": jnp.ones((2, 1), dt)}),
        "scale": jnp.asarray(2.0, dt),
    },
}


def _grads_like(params, t=0):
    """Deterministic non-zero gradients shaped like ``params``."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    out = [
        jnp.asarray(np.sin(np.arange(x.size) + 1.0 + 7 * i + 3 * t).reshape(x.shape), x.dtype)
        for i, x in enumerate(leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


@pytest.mark.parametrize("tree", list(TREES))
@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_tree_structure_and_float32_dtype_preserved(name, tree):
    params = TREES[tree](jnp.float32)
    # A float64 schedule value (x64 is on) must not promote float32 leaves.
    opt = optim.get(name, schedules.constant(0.1), clip_norm=10.0)
    state0 = opt.init(params)
    updates, state1 = opt.update(_grads_like(params), state0, params)
    new = optim.apply_updates(params, updates)
    treedef = jax.tree_util.tree_structure(params)
    assert jax.tree_util.tree_structure(updates) == treedef
    assert jax.tree_util.tree_structure(new) == treedef
    assert jax.tree_util.tree_structure(state1) == jax.tree_util.tree_structure(state0)
    for leaf in jax.tree_util.tree_leaves((updates, new)):
        assert leaf.dtype == jnp.float32
    for a, b in zip(jax.tree_util.tree_leaves(state0), jax.tree_util.tree_leaves(state1)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert not any(np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(new)))


def _step_fn(opt):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    return step


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_jit_matches_eager(name):
    opt = optim.get(name, schedules.exponential_decay(0.05, 0.5, 2))
    params = TREES["nested"](jnp.float64)
    step = _step_fn(opt)
    jstep = jax.jit(step)
    p_e, s_e = params, opt.init(params)
    p_j, s_j = params, jax.jit(opt.init)(params)
    for t in range(N_STEPS):
        g = _grads_like(params, t)
        p_e, s_e = step(p_e, s_e, g)
        p_j, s_j = jstep(p_j, s_j, g)
    assert_tree_allclose(p_j, p_e, dtype=jnp.float64)
    assert_tree_allclose(s_j, s_e, dtype=jnp.float64)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_runs_inside_scan(name):
    opt = optim.get(name, 0.05, weight_decay=0.01, clip_norm=2.0)
    params = TREES["dict"](jnp.float64)
    grads = [_grads_like(params, t) for t in range(N_STEPS)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)
    step = _step_fn(opt)

    def body(carry, g):
        params, state = carry
        return step(params, state, g), None

    (p_scan, s_scan), _ = jax.jit(lambda c, xs: jax.lax.scan(body, c, xs))(
        (params, opt.init(params)), stacked
    )
    p_loop, s_loop = params, opt.init(params)
    for g in grads:
        p_loop, s_loop = step(p_loop, s_loop, g)
    assert_tree_allclose(p_scan, p_loop, dtype=jnp.float64)
    assert_tree_allclose(s_scan, s_loop, dtype=jnp.float64)


def test_vmap_over_learning_rates():
    params = {"w": jnp.array([1.0, -2.0], jnp.float64)}
    grads = {"w": jnp.array([0.5, 0.25], jnp.float64)}

    def one_step(lr):
        opt = optim.momentum(lr, beta=0.9)
        updates, _ = opt.update(grads, opt.init(params), params)
        return optim.apply_updates(params, updates)["w"]

    lrs = jnp.array([0.0, 0.1, 1.0])
    got = jax.vmap(one_step)(lrs)
    want = np.asarray(params["w"])[None, :] - np.asarray(lrs)[:, None] * np.asarray(grads["w"])[None, :]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


# ------------------------------------------------------------------------- convergence

A_DIAG = np.array([1.0, 10.0, 100.0])  # condition number 100
B_VEC = np.array([1.0, -2.0, 3.0])
CONVERGE_STEPS = 1000

CONVERGENCE = {
    # id: (optimizer, closed-form minimiser, tolerance on max |w − w*|)
    "gd": (optim.gd(0.019), B_VEC / A_DIAG, 1e-8),  # α < 2/λ_max = 0.02
    "momentum": (optim.momentum(0.01, beta=0.9), B_VEC / A_DIAG, 1e-10),
    "nesterov": (optim.nesterov(0.01, beta=0.9), B_VEC / A_DIAG, 1e-10),
    "adagrad": (optim.adagrad(1.0), B_VEC / A_DIAG, 1e-10),
    # The adaptive methods hover within O(α) of the minimum at a constant α; a cosine
    # schedule anneals α to 0.
    "rmsprop": (optim.rmsprop(schedules.cosine_decay(0.05, CONVERGE_STEPS)), B_VEC / A_DIAG, 1e-10),
    "adam": (optim.adam(schedules.cosine_decay(0.1, CONVERGE_STEPS)), B_VEC / A_DIAG, 1e-10),
    # Decoupled decay moves the end point by O(λ); a tiny λ keeps it within 1e-7.
    "adamw": (
        optim.adamw(schedules.cosine_decay(0.1, CONVERGE_STEPS), weight_decay=1e-6),
        B_VEC / A_DIAG,
        1e-7,
    ),
    # L2 weight decay minimises f + λ/2‖w‖², whose minimiser is (A + λI)⁻¹b.
    "gd_l2": (optim.get("gd", 0.019, weight_decay=0.5), B_VEC / (A_DIAG + 0.5), 1e-8),
}


@pytest.mark.parametrize("case", list(CONVERGENCE))
def test_converges_on_ill_conditioned_quadratic(case):
    opt, w_star, tol = CONVERGENCE[case]
    a, b = jnp.asarray(A_DIAG), jnp.asarray(B_VEC)

    def loss(params):  # f(w) = ½ wᵀAw − bᵀw with A = diag(a)
        w = params["w"]
        return 0.5 * jnp.sum(a * w * w) - jnp.dot(b, w)

    step = _step_fn(opt)

    def body(carry, _):
        params, state = carry
        return step(params, state, jax.grad(loss)(params)), None

    params = {"w": jnp.zeros(3, jnp.float64)}
    (params, _), _ = jax.jit(
        lambda c: jax.lax.scan(body, c, None, length=CONVERGE_STEPS)
    )((params, opt.init(params)))
    np.testing.assert_allclose(np.asarray(params["w"]), w_star, rtol=0, atol=tol)


# --------------------------------------------------------------------------- schedules

SCHEDULE_CASES = {
    "constant": (schedules.constant(0.3), lambda t: 0.3),
    "piecewise_constant": (
        schedules.piecewise_constant([10, 50], [1.0, 0.5, 0.1]),
        lambda t: 1.0 if t < 10 else (0.5 if t < 50 else 0.1),
    ),
    "exponential": (schedules.exponential_decay(0.5, 0.1, 100), lambda t: 0.5 * 0.1 ** (t / 100)),
    "exponential_staircase": (
        schedules.exponential_decay(0.5, 0.1, 20, staircase=True),
        lambda t: 0.5 * 0.1 ** (t // 20),
    ),
    "inverse_time": (schedules.inverse_time_decay(0.2, 3.0, 50), lambda t: 0.2 / (1 + 3.0 * t / 50)),
    "cosine": (
        schedules.cosine_decay(1.0, 100, alpha=0.1),
        lambda t: 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100)) + 0.1,
    ),
    "linear_warmup": (schedules.linear_warmup(0.4, 10), lambda t: 0.4 * min(t, 10) / 10),
    "linear_warmup_then_cosine": (
        schedules.linear_warmup(0.4, 10, then=schedules.cosine_decay(0.4, 90)),
        lambda t: 0.4 * t / 10 if t < 10 else 0.4 * 0.5 * (1 + math.cos(math.pi * min(t - 10, 90) / 90)),
    ),
}
SCHEDULE_STEPS = (0, 1, 5, 9, 10, 11, 19, 20, 49, 50, 99, 100, 150)


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_schedule_values_eager_jit_and_vectorised(case):
    schedule, closed_form = SCHEDULE_CASES[case]
    want = np.array([closed_form(t) for t in SCHEDULE_STEPS])
    eager = np.array([float(schedule(jnp.int32(t))) for t in SCHEDULE_STEPS])
    jitted = jax.jit(schedule)
    traced = np.array([float(jitted(jnp.int32(t))) for t in SCHEDULE_STEPS])
    vectorised = np.asarray(schedule(jnp.asarray(SCHEDULE_STEPS, jnp.int32)))
    vmapped = np.asarray(jax.vmap(schedule)(jnp.asarray(SCHEDULE_STEPS, jnp.int32)))
    for got in (eager, traced, vectorised, vmapped):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "steps_and_values"),
    [
        ("constant", {0: 0.1, 50: 0.1, 100: 0.1}),
        ("step", {0: 0.1, 49: 0.1, 50: 0.01, 74: 0.01, 75: 0.001, 100: 0.001}),
        ("exponential", {0: 0.1, 50: 0.01, 100: 0.001}),
        ("inverse_time", {0: 0.1, 50: 0.1 / 5.5, 100: 0.01}),
        ("cosine", {0: 0.1, 50: 0.05, 100: 0.0}),
        ("warmup_cosine", {0: 0.0, 5: 0.05, 10: 0.1, 55: 0.05, 100: 0.0}),
    ],
)
def test_get_schedule(name, steps_and_values):
    schedule = optim.get_schedule(name, 0.1, 100)
    for step, value in steps_and_values.items():
        np.testing.assert_allclose(float(jax.jit(schedule)(jnp.int32(step))), value, rtol=1e-12, atol=1e-15)
    assert name in optim.SCHEDULES


def test_get_schedule_unknown_and_bad_total():
    with pytest.raises(ValueError, match="unknown schedule 'linear'; choose one of: constant, step"):
        optim.get_schedule("linear", 0.1, 100)
    with pytest.raises(ValueError, match="total_steps"):
        optim.get_schedule("cosine", 0.1, 0)


def test_schedules_take_numpy_integer_steps():
    """Step counts computed with NumPy (np.int64) are ints too: the same schedule."""
    for total, boundary in ((100, 10), (np.int64(100), np.int64(10))):
        cosine = optim.get_schedule("cosine", 0.1, total)
        steps = schedules.piecewise_constant([boundary], [1.0, 0.5])
        assert float(cosine(25)) == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi / 4)), rel=1e-6)
        assert (float(steps(9)), float(steps(10))) == (1.0, 0.5)
    with pytest.raises(ValueError, match="total_steps"):
        optim.get_schedule("cosine", 0.1, np.True_)


def test_schedule_input_errors():
    with pytest.raises(ValueError, match="len"):
        schedules.piecewise_constant([10, 20], [1.0, 0.5])
    with pytest.raises(ValueError, match="increase"):
        schedules.piecewise_constant([20, 10], [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.exponential_decay(0.1, 0.5, 0)
    # a boundary past the int32 step count: one sentence, not NumPy's OverflowError
    with pytest.raises(ValueError, match=r"boundary must be at most 2147483647 .*got 2147483648"):
        schedules.piecewise_constant([2**31], [1.0, 0.5])
    assert float(schedules.piecewise_constant([2**31 - 1], [1.0, 0.5])(3)) == 1.0


@pytest.mark.parametrize("build, argument", [
    (lambda v: schedules.constant(v), "constant value"),
    (lambda v: schedules.piecewise_constant([5], [0.1, v]), "piecewise_constant value"),
    (lambda v: schedules.exponential_decay(v, 0.5, 10), "exponential_decay init_value"),
    (lambda v: schedules.exponential_decay(0.1, v, 10), "exponential_decay decay_rate"),
    (lambda v: schedules.inverse_time_decay(v, 0.5, 10), "inverse_time_decay init_value"),
    (lambda v: schedules.inverse_time_decay(0.1, v, 10), "inverse_time_decay decay_rate"),
    (lambda v: schedules.cosine_decay(v, 10), "cosine_decay init_value"),
    (lambda v: schedules.cosine_decay(0.1, 10, alpha=v), "cosine_decay alpha"),
    (lambda v: schedules.linear_warmup(v, 10), "linear_warmup peak_value"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_schedules_refuse_a_value_that_is_not_a_finite_non_negative_number(build, argument):
    """inverse_time_decay(1, inf, 10) gave NaN at step 0 (inf·0), and the other values were
    not checked at all: a negative learning rate ascends."""
    for bad in (math.inf, math.nan, -0.5, None, "0.1"):
        with pytest.raises(ValueError, match=rf"^{argument} must be a finite number"):
            build(bad)


def test_cosine_decay_alpha_is_a_fraction_of_the_initial_value():
    """alpha=2 was accepted, and the "decay" rose from init_value to twice it."""
    with pytest.raises(ValueError, match=r"^cosine_decay alpha must be a finite number in \[0, 1\]"):
        schedules.cosine_decay(0.1, 10, alpha=2.0)
    assert float(schedules.cosine_decay(0.1, 10, alpha=1.0)(5)) == pytest.approx(0.1)


# ------------------------------------------------------------------ factory and helpers


def test_get_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        optim.get("sgdx", 0.1)
    message = str(err.value)
    assert message.startswith("unknown optimizer 'sgdx'; choose one of: gd, momentum")
    for name in optim.OPTIMIZERS:
        assert name in message


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_get_builds_every_name(name):
    params = {"w": jnp.ones(2, jnp.float64)}
    opt = optim.get(name, 0.1)
    assert isinstance(opt, optim.Optimizer)
    updates, _ = opt.update({"w": jnp.ones(2, jnp.float64)}, opt.init(params), params)
    assert np.all(np.asarray(updates["w"]) < 0)  # a descent step for a positive gradient


def test_get_option_errors():
    with pytest.raises(ValueError, match="momentum= applies to 'momentum' and 'nesterov' only"):
        optim.get("adam", 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="takes no option decay"):
        optim.get("adam", 0.1, decay=0.9)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.get("gd", 0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="clip_norm"):
        optim.get("gd", 0.1, clip_norm=0.0)
    with pytest.raises(ValueError, match="beta"):
        optim.momentum(0.1, beta=1.0)


def test_get_weight_decay_routing():
    # adamw takes weight_decay itself (adam, then its decoupled decay); the others get an
    # L2 chain; 0 adds nothing.
    params = {"w": jnp.ones(2, jnp.float64)}
    adamw_state = optim.get("adamw", 0.1, weight_decay=0.2).init(params)
    assert isinstance(adamw_state[0], optim.AdamState)
    assert isinstance(adamw_state[1], optim.EmptyState)  # a constant rate needs no count
    scheduled = optim.adamw(schedules.cosine_decay(0.1, 4)).init(params)
    assert isinstance(scheduled[1], optim.DecayState)
    assert isinstance(optim.get("adam", 0.1, weight_decay=0.0).init(params), optim.AdamState)
    chained = optim.get("adam", 0.1, weight_decay=0.2, clip_norm=1.0).init(params)
    assert isinstance(chained, tuple) and len(chained) == 3
    assert isinstance(chained[2], optim.AdamState)


def test_chain_state_is_tuple_of_states():
    params = {"w": jnp.ones(2, jnp.float64)}
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.momentum(0.1))
    state = opt.init(params)
    assert isinstance(state[0], optim.EmptyState)
    assert isinstance(state[1], optim.MomentumState)
    assert state[1].count.dtype == jnp.int32 and int(state[1].count) == 0
    _, state = opt.update(params, state, params)
    assert int(state[1].count) == 1


def test_transforms_that_read_params_require_them():
    grads = {"w": jnp.ones(2, jnp.float64)}
    for opt in (optim.add_weight_decay(0.1), optim.add_decayed_weights(0.1), optim.adamw(0.1)):
        with pytest.raises(ValueError, match="reads the parameters"):
            opt.update(grads, opt.init(grads))


@pytest.mark.parametrize("model, in_shape", [
    (models.cnn(10, channels=(4,), hidden=(6,)), (8, 8, 1)),
    (models.transformer(11, 3, max_len=5, width=8, depth=1, num_heads=2), (5,)),
], ids=["cnn", "transformer"])
def test_weights_only_marks_kernels_and_tables_not_biases_or_norms(model, in_shape):
    params, _ = train.init_model(model, jax.random.key(0), in_shape)
    marks = optim.weights_only(params)
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    for (path, _), mark in zip(paths, jax.tree_util.tree_leaves(marks), strict=True):
        name = path[-1].key
        assert mark is (name in ("w", "table")), jax.tree_util.keystr(path)
    # A decoupled decay under that mask moves exactly the marked leaves.
    opt = optim.add_decayed_weights(0.5, mask=optim.weights_only)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = opt.update(zeros, opt.init(params), params)
    for w, u, mark in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(updates),
                          jax.tree_util.tree_leaves(marks), strict=True):
        np.testing.assert_array_equal(np.asarray(u), -0.5 * np.asarray(w) if mark else 0.0)


def test_a_mask_prefix_marks_every_leaf_below_it():
    params = {"layers": ({"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, {"w": jnp.ones((2, 1))})}
    opt = optim.add_decayed_weights(0.5, mask={"layers": (True, False)})  # first layer only
    updates, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    assert float(jnp.sum(updates["layers"][0]["w"])) == -2.0
    assert float(jnp.sum(updates["layers"][0]["b"])) == -1.0
    assert float(jnp.sum(jnp.abs(updates["layers"][1]["w"]))) == 0.0


def test_masked_decay_under_jit_and_vmap_over_the_learning_rate():
    params = _params64()
    grads = _grads_seq()[0]

    def step(lr):
        opt = optim.adamw(lr, weight_decay=0.1, mask=optim.weights_only)
        updates, _ = opt.update(grads, opt.init(params), params)
        return optim.apply_updates(params, updates)

    lrs = jnp.array([0.01, 0.02], jnp.float64)
    batched = jax.jit(jax.vmap(step))(lrs)
    for i, lr in enumerate([0.01, 0.02]):
        want = np_adam(_flat(params), [_flat(grads)], _const(lr), 0.9, 0.999, 1e-8,
                       decoupled=0.1, decays=ONLY_B)[0]
        np.testing.assert_allclose(_flat(jax.tree.map(lambda x, i=i: x[i], batched)), want,
                                   rtol=1e-14, atol=0)


def test_a_bad_mask_is_refused():
    params = _params64()
    grads = _grads_seq()[0]
    with pytest.raises(ValueError, match="add_weight_decay mask must be None, a pytree of Python bools"):
        optim.add_weight_decay(0.1, mask={"a": jnp.array(True), "b": False})
    wrong_tree = optim.add_decayed_weights(0.1, mask={"a": True, "c": False})
    with pytest.raises(ValueError, match="add_decayed_weights mask must have the params' structure"):
        wrong_tree.update(grads, wrong_tree.init(params), params)
    from_params = optim.adamw(0.1, mask=lambda p: jax.tree.map(lambda w: w.sum() > 0, p))
    with pytest.raises(ValueError, match="mask must be None, a pytree of Python bools"):
        from_params.update(grads, from_params.init(params), params)  # arrays, not bools
    with pytest.raises(ValueError, match="weight_decay_mask needs a weight decay"):
        optim.get("gd", 0.1, weight_decay_mask=optim.weights_only)
    with pytest.raises(ValueError, match="weight_decay_mask needs a weight decay"):
        optim.get("momentum", 0.1, weight_decay=0.0, weight_decay_mask=optim.weights_only)
    with pytest.raises(ValueError, match="weight_decay_mask needs a weight decay"):
        optim.get("adamw", 0.1, weight_decay=0.0, weight_decay_mask=optim.weights_only)
    optim.get("adamw", 0.1, weight_decay_mask=optim.weights_only)  # adamw's own default λ
    with pytest.raises(ValueError, match="takes no option mask"):
        optim.get("adamw", 0.1, mask=optim.weights_only)  # get's name for it is weight_decay_mask


def test_global_norm_and_apply_updates():
    tree = {"a": jnp.array([3.0, 0.0], jnp.float64), "b": (jnp.array([[4.0]], jnp.float64),)}
    assert float(optim.global_norm(tree)) == pytest.approx(5.0)
    params = {"w": jnp.array([1.0, 2.0], jnp.float32)}
    new = optim.apply_updates(params, {"w": jnp.array([0.5, -0.5], jnp.float64)})
    assert new["w"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(new["w"]), [1.5, 1.5])


# ------------------------------------------- non-finite or negative learning rates, decays

BAD_NUMBERS = [math.nan, math.inf, -math.inf, -0.1, np.float32("nan"), np.float64(-1.0),
               np.array(math.inf), jnp.asarray(math.nan, jnp.float32), np.array([0.1, -0.1])]
BAD_IDS = ["nan", "inf", "-inf", "negative", "np.float32 nan", "np.float64 negative",
           "0-d np inf", "concrete jax nan", "np array with a negative"]

BUILDERS = {
    "gd": optim.gd,
    "momentum": optim.momentum,
    "nesterov": optim.nesterov,
    "adagrad": optim.adagrad,
    "rmsprop": optim.rmsprop,
    "adam": optim.adam,
    "adamw": optim.adamw,
    "add_decayed_weights(lr)": lambda lr: optim.add_decayed_weights(0.1, learning_rate=lr),
}
"""Everything that takes a learning rate, as ``lr -> Optimizer``."""

DECAYS = {
    "get(weight_decay)": (lambda wd: optim.get("gd", 0.1, weight_decay=wd), "weight_decay"),
    "get(adamw, weight_decay)": (lambda wd: optim.get("adamw", 0.1, weight_decay=wd),
                                 "weight_decay"),
    "adamw": (lambda wd: optim.adamw(0.1, weight_decay=wd), "adamw weight_decay"),
    "add_weight_decay": (optim.add_weight_decay, "add_weight_decay coeff"),
    "add_decayed_weights": (optim.add_decayed_weights, "add_decayed_weights coeff"),
}
"""Everything that takes a weight decay, as ``(wd -> Optimizer, the name its error gives)``."""


def test_every_optimizer_is_covered():
    assert set(optim.OPTIMIZERS) <= set(BUILDERS)


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=BAD_IDS)
@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_get_rejects_a_bad_learning_rate(name, bad):
    with pytest.raises(ValueError, match=r"^learning_rate must be a finite number >= 0 or a schedule \(step -> value\); got "):
        optim.get(name, bad)


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=BAD_IDS)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_builders_reject_a_bad_learning_rate(name, bad):
    with pytest.raises(ValueError, match=r"^learning_rate must be a finite number >= 0 or a schedule \(step -> value\); got "):
        BUILDERS[name](bad)


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=BAD_IDS)
@pytest.mark.parametrize("name", list(DECAYS))
def test_weight_decays_reject_a_bad_value(name, bad):
    build, argument = DECAYS[name]
    with pytest.raises(ValueError, match=rf"^{argument} must be a finite number >= 0; got "):
        build(bad)


def test_bad_value_message_is_one_sentence():
    with pytest.raises(ValueError) as err:
        optim.adam(math.inf)
    assert str(err.value) == ("learning_rate must be a finite number >= 0 or a schedule "
                              "(step -> value); got inf")
    with pytest.raises(ValueError) as err:
        optim.momentum(0.1, beta=math.nan)
    assert str(err.value) == "momentum beta must be a finite number in [0, 1); got nan"


NOT_NUMBERS = [None, "0.1", 1 + 2j, np.complex64(1.0), jnp.asarray(1 + 1j), [0.1]]
NOT_NUMBER_IDS = ["None", "str", "complex", "np.complex64", "complex jax array", "list"]


@pytest.mark.parametrize("bad", NOT_NUMBERS, ids=NOT_NUMBER_IDS)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_builders_refuse_a_learning_rate_that_is_not_a_number(name, bad):
    """None, a string or a complex number used to pass the check and fail at the first update
    (or, complex, drop its imaginary part silently). add_decayed_weights takes None: no
    learning rate, its decay then λ·w."""
    if bad is None and name == "add_decayed_weights(lr)":
        assert isinstance(BUILDERS[name](bad), optim.Optimizer)
        return
    with pytest.raises(ValueError, match=r"^learning_rate must be a finite number >= 0 or a "
                                         r"schedule \(step -> value\); got "):
        BUILDERS[name](bad)


@pytest.mark.parametrize("build", [
    lambda bad: optim.momentum(0.1, beta=bad), lambda bad: optim.adam(0.1, eps=bad),
    lambda bad: optim.adam(0.1, b2=bad), lambda bad: optim.rmsprop(0.1, decay=bad),
    lambda bad: optim.adagrad(0.1, initial_accumulator=bad), optim.add_weight_decay,
    optim.clip_by_global_norm,
], ids=["beta", "eps", "b2", "decay", "initial_accumulator", "add_weight_decay", "clip"])
def test_coefficients_refuse_none_and_what_is_not_a_number(build):
    for bad in (None, "0.5", 0.5 + 0j):
        with pytest.raises(ValueError, match=r"must be a finite number .*; got "):
            build(bad)
    with pytest.raises(ValueError, match=r"must be a finite number .*; got "):
        build(lambda step: 0.5)  # only a learning rate may be a schedule


def test_add_decayed_weights_takes_no_learning_rate_but_not_a_bad_one():
    assert isinstance(optim.add_decayed_weights(0.1, learning_rate=None), optim.Optimizer)
    with pytest.raises(ValueError, match="learning_rate must be"):
        optim.add_decayed_weights(0.1, learning_rate="0.1")


@pytest.mark.parametrize("zero", [0.0, 0, np.float32(0.0), np.array(0.0), jnp.asarray(0.0)])
def test_a_mask_without_a_weight_decay_is_refused_whatever_the_zero(zero):
    """A zero weight decay as a 0-d array slipped past 'no decay to mask'."""
    with pytest.raises(ValueError, match="weight_decay_mask needs a weight decay to mask"):
        optim.get("gd", 0.1, weight_decay=zero, weight_decay_mask=optim.weights_only)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_init_refuses_parameters_that_are_not_floating_point(name, dtype):
    """An integer weight rounded every step to 0 (gd, adam) or to ±1e7 (rmsprop, dividing
    by ε), silently."""
    params = {"b": jnp.zeros(2, jnp.float32), "w": jnp.ones(2, dtype)}
    with pytest.raises(ValueError, match=rf"^the optimizers update floating-point parameters "
                                         rf"only; the leaf \['w'\] is {jnp.dtype(dtype).name}$"):
        optim.get(name, 0.1).init(params)


def test_a_bool_is_not_a_learning_rate():
    with pytest.raises(ValueError, match="learning_rate must be .*, not a bool"):
        optim.gd(True)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_good_learning_rates_are_accepted(name):
    for lr in (0.0, 0.1, 3, np.float32(0.1), np.int64(1), np.array(0.5), jnp.asarray(0.1),
               optim.cosine_decay(0.1, 10)):
        assert isinstance(BUILDERS[name](lr), optim.Optimizer)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_traced_learning_rates_and_decays_are_accepted(name):
    """``train.sweep`` vmaps over the learning rate: a tracer cannot be checked, and is not,
    even when its value is bad (a NaN rate then gives NaN steps, which the divergence
    guard reports)."""
    params = {"w": jnp.array([1.0, -2.0], jnp.float64)}
    grads = {"w": jnp.array([0.5, 0.25], jnp.float64)}

    def step(lr, wd):
        opt = optim.get(name, lr, weight_decay=wd)
        updates, _ = opt.update(grads, opt.init(params), params)
        return updates["w"]

    lrs = jnp.array([0.1, 0.2, math.nan, -1.0], jnp.float64)
    wds = jnp.array([0.0, 0.01, 0.01, math.inf], jnp.float64)
    out = jax.jit(jax.vmap(step))(lrs, wds)
    assert out.shape == (4, 2)
    assert np.all(np.asarray(out[:2]) < 0)  # descent steps for positive gradients
    assert np.all(np.isnan(np.asarray(out[2])))
    assert out[0, 0] == pytest.approx(jax.jit(step)(0.1, 0.0)[0])  # a traced scalar, too


@pytest.mark.parametrize("total, expected", [
    (1, [1.0]), (2, [1.0, 0.1]), (3, [1.0, 1.0, 0.1]), (4, [1.0, 1.0, 0.1, 0.01]),
    (5, [1.0, 1.0, 1.0, 0.1, 0.01]),
])
def test_step_schedule_drops_at_the_first_steps_past_half_and_three_quarters(total, expected):
    """×0.1 from the first step at or past 50% of total_steps, ×0.01 from 75%, also for runs
    of a handful of updates (a one-update run used to take its only step at lr/100)."""
    rates = optim.get_schedule("step", 1.0, total)(jnp.arange(total))
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


@pytest.mark.parametrize("b2", [0.999, 0.99999])
def test_adam_float32_bias_correction_is_exact_to_float32(b2):
    """At t = 1, v̂ = g² exactly, so Adam's first step is −α·sign(g) (ε aside). In float32
    ``1 − β₂**t`` rounded β₂ first: 6.8e-4 off for β₂ = 0.99999. The float64 reference is
    the docstring's formula in NumPy doubles, over 5 steps. With 64-bit types off, as a
    float32 user runs (the suite turns them on, and then ``1 − β**t`` was float64)."""
    rng = np.random.default_rng(0)
    gs = [rng.normal(size=4) for _ in range(5)]
    expected = np_adam(np.zeros(4), gs, lambda i: 1.0, 0.9, b2, 1e-12)
    with jax.enable_x64(False):
        opt = optim.adam(1.0, b2=b2, eps=1e-12)
        params = {"w": jnp.zeros(4, jnp.float32)}
        state = opt.init(params)
        w = params["w"]
        for g, want in zip(gs, expected):
            updates, state = opt.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
            w = w + updates["w"]
            assert w.dtype == jnp.float32
            np.testing.assert_allclose(np.asarray(w, np.float64), want, rtol=1e-6, atol=0)


def test_adam_keeps_stepping_at_the_int32_step_limit():
    """``count + 1`` wrapped to −2³¹ at the int32 maximum, making every later step 0; the
    count saturates, as the other optimizers' do, and the bias corrections are then 1."""
    opt = optim.adam(0.1)
    params = {"w": jnp.ones(2, jnp.float64)}
    g = {"w": jnp.array([0.5, -0.5], jnp.float64)}
    _, state = opt.update(g, opt.init(params), params)
    state = state._replace(count=jnp.int32(2**31 - 2))
    for _ in range(3):
        mu, nu = state.mu["w"], state.nu["w"]
        updates, state = opt.update(g, state, params)
        m, v = 0.9 * mu + 0.1 * g["w"], 0.999 * nu + 0.001 * g["w"] ** 2  # β^t ≈ 0: no bias
        np.testing.assert_allclose(updates["w"], -0.1 * m / (np.sqrt(v) + 1e-8), rtol=1e-14)
        assert int(state.count) == 2**31 - 1


@pytest.mark.parametrize("make", [optim.adam, optim.adagrad, optim.rmsprop])
def test_adaptive_optimizers_refuse_eps_zero(make):
    """ε keeps a coordinate whose gradient is exactly 0 (an unused embedding row, a dead
    relu) at a zero step; ε = 0 would make it 0/0."""
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        make(0.1, eps=0.0)
    opt = make(0.1, eps=1e-8)
    params = {"w": jnp.array([1.0, 2.0])}
    updates, _ = opt.update({"w": jnp.array([0.5, 0.0])}, opt.init(params), params)
    assert updates["w"][1] == 0.0 and updates["w"][0] < 0


def test_apply_updates_refuses_an_update_of_another_shape():
    """NumPy would broadcast a (2, 3) update onto a (3,) weight, changing its shape."""
    with pytest.raises(ValueError, match=r"an update of shape \(2, 3\) for a param of shape \(3,\)"):
        optim.apply_updates({"w": jnp.zeros(3)}, {"w": jnp.ones((2, 3))})
    out = optim.apply_updates({"w": jnp.zeros(3)}, {"w": jnp.ones(3)})
    np.testing.assert_array_equal(out["w"], np.ones(3))


@pytest.mark.parametrize("b1, b2", [(0.0, 0.99), (0.8, 0.0), (0.0, 0.0)])
def test_adam_with_a_zero_beta_matches_numpy(b1, b2):
    """β = 0 is in [0, 1), so accepted (torch.optim.Adam(betas=(0, β₂)) is RMSProp with a
    bias-corrected second moment): its bias correction 1 − 0ᵗ is 1 for every t ≥ 1."""
    params, grads = _params64(), _grads_seq()
    got = _run(optim.adam(0.01, b1=b1, b2=b2, eps=1e-3), params, grads)
    want = np_adam(_flat(params), [_flat(g) for g in grads], _const(0.01), b1, b2, 1e-3)
    for t, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(_flat(g), w, rtol=1e-12, atol=1e-14, err_msg=f"step {t}")


def test_adam_with_array_betas_concrete_and_vmapped_matches_numpy():
    """Betas given as arrays (accepted by the builders) take the other bias-correction
    branch, −expm1(t·log β) with a jnp log: concrete 0-d arrays and a vmapped β₁."""
    params, grads = _params64(), _grads_seq()
    flat_g = [_flat(g) for g in grads]
    got = _run(optim.adam(0.01, b1=np.asarray(0.8), b2=jnp.asarray(0.99), eps=1e-3), params, grads)
    want = np_adam(_flat(params), flat_g, _const(0.01), 0.8, 0.99, 1e-3)
    for g, w in zip(got, want):
        np.testing.assert_allclose(_flat(g), w, rtol=1e-12, atol=1e-14)

    def three_steps(b1):
        return _run(optim.adam(0.01, b1=b1, b2=0.99, eps=1e-3), params, grads)[-1]

    b1s = jnp.array([0.5, 0.8], jnp.float64)
    batched = jax.jit(jax.vmap(three_steps))(b1s)
    for i, b1 in enumerate([0.5, 0.8]):
        want = np_adam(_flat(params), flat_g, _const(0.01), b1, 0.99, 1e-3)[-1]
        np.testing.assert_allclose(_flat(jax.tree.map(lambda x, i=i: x[i], batched)), want,
                                   rtol=1e-12, atol=1e-14)


def test_adagrad_follows_its_schedule():
    """Adagrad's count is the schedule's step: α(t) = 0.5·0.5ᵗ on the 0-based update t."""
    params, grads = _params64(), _grads_seq()
    opt = optim.adagrad(schedules.exponential_decay(0.5, 0.5, 1), eps=1e-3, initial_accumulator=0.1)
    got = _run(opt, params, grads)
    want = np_adagrad(_flat(params), [_flat(g) for g in grads], lambda t: 0.5 * 0.5**t, 1e-3, 0.1)
    for t, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(_flat(g), w, rtol=1e-12, atol=1e-14, err_msg=f"step {t}")


def test_linear_warmup_hands_over_to_then_at_the_warmup_step():
    """lr(step) = then(step − w) from step w on, also when then(0) is not the peak."""
    schedule = schedules.linear_warmup(0.4, 10, then=schedules.constant(0.1))
    steps = jnp.asarray([0, 9, 10, 11], jnp.int32)
    np.testing.assert_allclose(np.asarray(schedule(steps)), [0.0, 0.36, 0.1, 0.1], rtol=1e-12)
    np.testing.assert_allclose(float(jax.jit(schedule)(jnp.int32(10))), 0.1, rtol=1e-12)


def test_get_nesterov_and_momentum_take_their_own_steps():
    """With g = 1 twice, α = 0.1, β = 0.5: momentum steps −0.1, −0.15 (u = −α·v); Nesterov
    steps −0.15, −0.175 (u = −α·(g + β·v)). Giving β as both momentum= and beta= is refused."""
    params = {"w": jnp.zeros(1, jnp.float64)}
    grads = {"w": jnp.ones(1, jnp.float64)}
    for name, expected in (("momentum", (-0.1, -0.15)), ("nesterov", (-0.15, -0.175))):
        opt = optim.get(name, 0.1, momentum=0.5)
        state = opt.init(params)
        for want in expected:
            updates, state = opt.update(grads, state, params)
            np.testing.assert_allclose(np.asarray(updates["w"]), [want], rtol=1e-12)
        with pytest.raises(ValueError, match="momentum= or beta=, not both"):
            optim.get(name, 0.1, momentum=0.5, beta=0.5)
