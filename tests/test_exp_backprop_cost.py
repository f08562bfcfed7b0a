"""The gradient-cost experiment: slope fitting, parameter counts, the FD gradient,
and a tiny end-to-end run. No assertion depends on a timing."""

from __future__ import annotations

import json
import math
import subprocess

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
    assert r.params == _mlp_params(3, 2, 4, 1) and r.forward_passes_fd == 2 * r.params
    assert set(r.seconds) == set(cost.METHODS) and all(s > 0 for s in r.seconds.values())
    assert r.fd_over_backprop == pytest.approx(r.seconds["finite_differences"] / r.seconds["backprop"])
    assert r.fd_matches_backprop and r.fd_max_rel_err < tolerances.FINITE_DIFF["float64"].rtol * 10


def test_time_call_is_positive_and_calls_the_function():
    calls = []

    def fn(x):
        calls.append(1)
        return x + 1

    seconds = cost.time_call(fn, jnp.ones(3), repeats=3, min_seconds=1e-4)
    assert seconds > 0 and len(calls) >= 4  # warm-up + at least one call per run


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_experiment("backprop_cost", *args, timeout=120)


def test_tiny_run_writes_cost_json_and_png(tmp_path):
    proc = _run("--widths=2,4,8", "--repeats=1", "--batch_size=4", "--input_dim=3",
                f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cost.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "config.json").read_text())["widths"] == ["2", "4", "8"]
    result = json.loads((tmp_path / "cost.json").read_text())
    model = result["model"]
    assert model["input_dim"] == 3 and model["batch_size"] == 4
    expected = [_mlp_params(w, model["depth"], 3, model["outputs"]) for w in (2, 4, 8)]
    assert result["params"] == expected == [r["params"] for r in result["sizes"]]
    assert expected == sorted(expected) and len(set(expected)) == 3
    for row in result["sizes"]:
        assert set(row["seconds"]) == set(cost.METHODS)
        assert all(s > 0 for s in row["seconds"].values())
        assert row["forward_passes_fd"] == 2 * row["params"]
        assert row["fd_over_backprop"] == pytest.approx(
            row["seconds"]["finite_differences"] / row["seconds"]["backprop"])
        assert row["fd_matches_backprop"] is True
    assert set(result["slopes"]) == set(cost.METHODS)
    assert all(math.isfinite(s) for s in result["slopes"].values())
    assert result["jax_version"] == jax.__version__ and result["device"]


@pytest.mark.parametrize("flag", [
    "--widths=8", "--widths=0,4", "--widths=4,1000", "--repeats=0",
    "--batch_size=-1", "stray",
])
def test_bad_flags_exit_2_with_one_sentence(flag, tmp_path):
    proc = _run(flag, f"--workdir={tmp_path / 'out'}")
    assert_bad_input(proc, flag.split("=")[0])
    assert not (tmp_path / "out").exists()  # nothing written


def test_help_lists_every_flag():
    proc = _run("--help")
    assert proc.returncode == 0
    for flag in ("widths", "batch_size", "input_dim", "repeats", "seed", "workdir"):
        assert f"--{flag}" in proc.stdout, flag
