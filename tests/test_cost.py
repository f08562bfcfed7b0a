"""gdlab.cost: slope fitting, parameter counts, the FD gradient against backprop,
operation counts, and the timing helpers. No assertion depends on how fast anything is."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gdlab import backprop, cost, gradcheck, layers, losses, tolerances


def mlp_param_count(width: int, depth: int, input_dim: int, outputs: int) -> int:
    """P written out layer by layer: weights + biases of each dense layer."""
    first = input_dim * width + width
    hidden = (depth - 1) * (width * width + width)
    last = width * outputs + outputs
    return first + hidden + last


@pytest.mark.parametrize("exponent", [1.0, 2.0, 0.5])
def test_fit_slope_recovers_an_exact_power_law(exponent):
    p = np.array([93, 217, 561, 1633, 5313, 18817], np.float64)
    t = 3e-6 * p ** exponent
    slope, intercept = cost.fit_slope(p, t)
    assert slope == pytest.approx(exponent, abs=1e-12)
    assert intercept == pytest.approx(math.log(3e-6), abs=1e-9)


def test_fit_slope_rejects_what_it_cannot_fit():
    with pytest.raises(ValueError, match="two different sizes"):
        cost.fit_slope([10, 10], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        cost.fit_slope([10, 20], [1.0, 0.0])


@pytest.mark.parametrize(("width", "depth", "input_dim", "outputs"),
                         [(2, 2, 3, 1), (8, 2, 16, 1), (5, 3, 4, 2), (128, 2, 16, 1)])
def test_param_count_matches_the_model(width, depth, input_dim, outputs):
    p = cost.param_count(width, depth=depth, input_dim=input_dim, outputs=outputs)
    assert p == mlp_param_count(width, depth, input_dim, outputs)
    _, params, x, y = cost.build_problem(width, depth=depth, input_dim=input_dim,
                                         outputs=outputs, batch_size=2, seed=0)
    assert ravel_pytree(params)[0].size == p
    assert x.shape == (2, input_dim) and y.shape == (2, outputs)


def test_fd_gradient_equals_backprop():
    model, params, x, y = cost.build_problem(6, depth=2, input_dim=5, outputs=2, batch_size=7,
                                             seed=1)
    assert ravel_pytree(params)[0].dtype == jnp.float64
    fd = jax.jit(cost.fd_gradient_fn(model, losses.mse(), params))(params, x, y)
    state = layers.init_shapes(model, x.shape[1:])[2]  # an MLP's state: no leaves
    assert jax.tree_util.tree_leaves(state) == []
    _, manual = backprop.manual(model, losses.mse())(params, state, x, y)
    check = gradcheck.compare(ravel_pytree(fd)[0], ravel_pytree(manual)[0],
                              tolerances.FINITE_DIFF["float64"])
    assert check.passed, check
    fns = cost.gradient_fns(model, losses.mse(), params)
    assert set(fns) == set(cost.METHODS)
    for fn in fns.values():
        assert jax.tree_util.tree_structure(fn(params, x, y)) == jax.tree_util.tree_structure(params)


def test_measure_size_reports_a_consistent_row():
    r = cost.measure_size(3, depth=2, input_dim=4, outputs=1, batch_size=5, repeats=2, seed=0,
                          min_seconds=1e-4)
    assert (r.width, r.depth) == (3, 2)
    assert r.params == mlp_param_count(3, 2, 4, 1) and r.forward_passes_fd == 2 * r.params
    assert set(r.seconds) == set(cost.METHODS) and all(s > 0 for s in r.seconds.values())
    assert r.fd_over_backprop == pytest.approx(r.seconds["finite_differences"] / r.seconds["backprop"])
    assert r.fd_matches_backprop and r.fd_max_rel_err < tolerances.FINITE_DIFF["float64"].rtol * 10
    assert set(r.flops) == set(cost.METHODS)
    assert r.runs == {m: 2 for m in cost.METHODS}  # min_method_seconds 0: just the repeats


def test_measure_sizes_times_fast_methods_in_more_rounds():
    results = cost.measure_sizes([(2, 1), (3, 1)], input_dim=2, outputs=1, batch_size=3,
                                 repeats=2, seed=0, min_seconds=1e-3, min_method_seconds=0.3)
    assert [r.params for r in results] == [mlp_param_count(2, 1, 2, 1), mlp_param_count(3, 1, 2, 1)]
    for r in results:
        # a round of two sizes lasts ≈ 2 ms (≪ 0.15 s even on a busy machine), so
        # 0.3 s of runs takes more than the 2 repeats
        assert all(runs > 2 for runs in r.runs.values()), r.runs
        assert r.runs == results[0].runs  # every size is timed in every round
        assert r.fd_matches_backprop


def test_flop_counts_are_2p_forward_passes_against_a_few():
    """FD = 2P × one forward pass; a forward pass costs at least its matmuls, 2·B·(weights)
    operations; backprop adds at least the dW matmuls and stays within a few forward passes."""
    model, params, x, y = cost.build_problem(8, depth=3, input_dim=8, outputs=1, batch_size=16,
                                             seed=0)
    flat = ravel_pytree(params)[0]
    weights = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params) if leaf.ndim == 2)
    matmul = 2 * 16 * weights  # B·d_in·d_out multiply-adds per dense layer
    forward = cost.xla_flops(cost.objective_fn(model, losses.mse(), params), flat, x, y)
    assert matmul <= forward <= 1.5 * matmul
    flops = cost.flop_counts(model, losses.mse(), params, x, y)
    assert flops["finite_differences"] == 2 * flat.size * forward
    for method in ("backprop", "autodiff"):
        assert 2 * matmul <= flops[method] <= 4 * forward, method


def test_calibrate_makes_a_run_last_min_seconds():
    def fn():
        time.sleep(0.002)
        return 0

    n, per_call = cost.calibrate(fn, min_seconds=0.02)
    assert n >= 2 and n * per_call >= 0.02 and per_call >= 0.002


def test_time_call_is_positive_and_calls_the_function():
    calls = []

    def fn(x):
        calls.append(1)
        return x + 1

    seconds = cost.time_call(fn, jnp.ones(3), repeats=3, min_seconds=1e-4)
    assert seconds > 0 and len(calls) >= 4  # warm-up + at least one call per run



def test_time_call_is_the_median_of_its_runs(monkeypatch):
    """One slow run among five (a machine's hiccup) moves a mean, not the median."""
    runs = iter([0.5, 0.1, 0.1, 9.0, 0.1])  # seconds for each run of n = 1 call
    monkeypatch.setattr(cost, "calibrate", lambda fn, *a, min_seconds: (1, next(runs)))
    monkeypatch.setattr(cost, "_run", lambda fn, args, n: next(runs))
    assert cost.time_call(lambda: 0, repeats=5, warm_up=False) == 0.1


def test_build_problem_draws_weights_with_variance_one_over_fan_in():
    _, params, x, y = cost.build_problem(256, depth=2, input_dim=400, outputs=3,
                                         batch_size=8, seed=0, dtype=jnp.float64)
    assert x.shape == (8, 400) and y.shape == (8, 3)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(params)]
    weights = [w for w in leaves if w.ndim == 2]
    assert [w.shape[0] for w in weights] == [400, 256, 256]
    for w in weights:  # ~N(0, 1/fan_in): the std within a few per cent of 1/√fan_in
        assert np.std(w) * np.sqrt(w.shape[0]) == pytest.approx(1.0, rel=0.05)
    for b in (leaf for leaf in leaves if leaf.ndim == 1):
        assert np.std(b) == pytest.approx(0.1, rel=0.25) and np.all(b != 0)
