"""The gradient-cost experiment: slope fitting, parameter counts, operation counts,
the FD gradient, the figure's reference lines, and a tiny end-to-end run. No
assertion depends on how fast anything is."""

from __future__ import annotations

import json
import math
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from conftest import assert_bad_input, run_experiment
from gdlab import backprop, cost, gradcheck, layers, losses, tolerances

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _mlp_params(width: int, depth: int, input_dim: int, outputs: int) -> int:
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
    assert p == _mlp_params(width, depth, input_dim, outputs)
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
    assert r.params == _mlp_params(3, 2, 4, 1) and r.forward_passes_fd == 2 * r.params
    assert set(r.seconds) == set(cost.METHODS) and all(s > 0 for s in r.seconds.values())
    assert r.fd_over_backprop == pytest.approx(r.seconds["finite_differences"] / r.seconds["backprop"])
    assert r.fd_matches_backprop and r.fd_max_rel_err < tolerances.FINITE_DIFF["float64"].rtol * 10
    assert set(r.flops) == set(cost.METHODS)
    assert r.runs == {m: 2 for m in cost.METHODS}  # min_method_seconds 0: just the repeats


def test_measure_sizes_times_fast_methods_in_more_rounds():
    results = cost.measure_sizes([(2, 1), (3, 1)], input_dim=2, outputs=1, batch_size=3,
                                 repeats=2, seed=0, min_seconds=1e-3, min_method_seconds=0.3)
    assert [r.params for r in results] == [_mlp_params(2, 1, 2, 1), _mlp_params(3, 1, 2, 1)]
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


def _power_law_data():
    p = np.array([1089, 2145, 3201, 4257, 6369, 8481], np.float64)
    seconds = {"finite_differences": 7e-8 * p ** 2.03, "backprop": 6e-8 * p ** 0.96,
               "autodiff": 5.5e-8 * p ** 0.98}
    return p, seconds


def _lines(ax, prefix: str):
    return [line for line in ax.get_lines() if line.get_label().startswith(prefix)]


def test_cost_figure_draws_p_and_p_squared_reference_lines():
    from gdlab.plots import cost as cost_plots

    p, seconds = _power_law_data()
    fits = {m: cost.fit_slope(p, t) for m, t in seconds.items()}
    flops = {m: 3.0 * t * 1e9 for m, t in seconds.items()}
    fig = cost_plots.cost_figure(p, seconds, fits, title="t", flops=flops,
                                 flop_fits={m: cost.fit_slope(p, f) for m, f in flops.items()},
                                 reference_slopes={"finite_differences": 2, "backprop": 1,
                                                   "autodiff": 1})
    time_ax, flop_ax, ratio_ax = fig.axes
    assert "seconds" in time_ax.get_title() and "XLA" in flop_ax.get_title()
    for ax, values in ((time_ax, seconds), (flop_ax, flops)):
        squared, linear = _lines(ax, "reference ∝ P²"), _lines(ax, "reference ∝ P ")
        assert len(squared) == 1 and len(linear) == 1  # one per slope, not per method
        for (line,), slope, method in ((squared, 2, "finite_differences"),
                                       (linear, 1, "backprop")):
            xs, ys = (np.asarray(v, np.float64) for v in line.get_data())
            assert xs.min() == pytest.approx(p.min()) and xs.max() == pytest.approx(p.max())
            fitted = np.polyfit(np.log(xs), np.log(ys), 1)[0]
            assert fitted == pytest.approx(slope, abs=1e-9)
            # through the method's points: the mean log residual is zero
            residual = np.log(values[method]) - np.log(ys[0] * (p / xs[0]) ** slope)
            assert np.mean(residual) == pytest.approx(0.0, abs=1e-9)
        fd_label = next(t.get_text() for t in ax.get_legend().get_texts()
                        if t.get_text().startswith("finite differences"))
        assert f"slope {cost.fit_slope(p, values['finite_differences'])[0]:.2f}" in fd_label
    ratio = _lines(ratio_ax, "measured seconds")[0].get_ydata()
    np.testing.assert_allclose(ratio, seconds["finite_differences"] / seconds["backprop"])
    fig = cost_plots.cost_figure(p, seconds, fits, title="no counts",
                                 flops={m: [math.nan] * len(p) for m in seconds})
    assert len(fig.axes) == 2  # no operation panel without counts


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_experiment("backprop_cost", *args, timeout=120)


def _lstsq_slope(xs, ys) -> tuple[float, float]:
    """An independent fit: least squares through (ln x, ln y) by numpy.linalg.lstsq."""
    a = np.stack([np.log(xs), np.ones(len(xs))], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(a, np.log(ys), rcond=None)
    return float(slope), float(intercept)


def test_tiny_run_writes_cost_json_and_png(tmp_path):
    proc = _run("--depths=1,2,3", "--width=3", "--repeats=1", "--batch_size=4", "--input_dim=3",
                f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cost.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "config.json").read_text())["depths"] == ["1", "2", "3"]
    result = json.loads((tmp_path / "cost.json").read_text())
    model = result["model"]
    assert model["input_dim"] == 3 and model["batch_size"] == 4 and model["width"] == 3
    assert model["depths"] == [1, 2, 3] and model["grows"] == "depth"
    expected = [_mlp_params(3, d, 3, model["outputs"]) for d in (1, 2, 3)]
    assert result["params"] == expected == [r["params"] for r in result["sizes"]]
    assert expected == sorted(expected) and len(set(expected)) == 3
    for row, depth in zip(result["sizes"], (1, 2, 3)):
        assert (row["width"], row["depth"]) == (3, depth)
        assert set(row["seconds"]) == set(cost.METHODS) == set(row["flops"])
        assert all(s > 0 for s in row["seconds"].values())
        assert all(f > 0 for f in row["flops"].values())
        assert row["forward_passes_fd"] == 2 * row["params"]
        assert row["fd_over_backprop"] == pytest.approx(
            row["seconds"]["finite_differences"] / row["seconds"]["backprop"])
        assert row["fd_matches_backprop"] is True
        assert all(runs >= 1 for runs in row["runs"].values())
    assert result["reference_slopes"] == {"finite_differences": 2, "backprop": 1, "autodiff": 1}
    # the stored slopes are the least-squares fits of the stored numbers
    for key, measure in (("slopes", "seconds"), ("flop_slopes", "flops")):
        assert set(result[key]) == set(cost.METHODS)
        for method in cost.METHODS:
            ys = [row[measure][method] for row in result["sizes"]]
            slope, intercept = _lstsq_slope(result["params"], ys)
            assert result[key][method] == pytest.approx(slope, rel=1e-9, abs=1e-12)
            assert result["fits"][measure][method] == pytest.approx(
                {"slope": slope, "intercept": intercept}, rel=1e-9, abs=1e-12)
    assert result["timing"]["repeats"] == 1 and result["timing"]["statistic"] == "median"
    assert result["jax_version"] == jax.__version__ and result["device"]
    assert "slopes of measured seconds" in proc.stdout


@pytest.mark.parametrize("flag", [
    "--depths=8", "--depths=0,4", "--depths=4,1000", "--repeats=0", "--width=0",
    "--batch_size=-1", "stray", "--seed=-1",
    "--batch_size=1000000000",  # the batch alone would not fit: one sentence, not a traceback
    "--seed=4294967291",  # six sizes use seeds up to seed + 5
])
def test_bad_flags_exit_2_with_one_sentence(flag, tmp_path):
    proc = _run(flag, f"--workdir={tmp_path / 'out'}")
    assert_bad_input(proc, flag.split("=")[0])
    assert not (tmp_path / "out").exists()  # nothing written
    if flag == "--seed=4294967291":  # the seed given is quoted, with the bound it must meet
        assert "--seed must be at most 4294967290 for 6 depths" in proc.stderr
        assert proc.stderr.rstrip().endswith("got 4294967291")


def test_help_lists_every_flag():
    proc = _run("--help")
    assert proc.returncode == 0
    for flag in ("depths", "width", "batch_size", "input_dim", "repeats", "seed", "workdir"):
        assert f"--{flag}" in proc.stdout, flag
