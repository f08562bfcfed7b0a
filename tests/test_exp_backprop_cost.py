"""The gradient-cost experiment: the figure's reference lines, a tiny end-to-end run and
its flags (gdlab.cost itself is tested in test_cost.py). No assertion depends on how
fast anything is."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, assert_bad_input, run_experiment
from test_cost import mlp_param_count
from gdlab import cost

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    # depths in any order, one given twice: each is timed once, shallowest first
    proc = _run("--depths=2,1,3,1", "--width=3", "--repeats=1", "--batch_size=4", "--input_dim=2",
                f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cost.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "config.json").read_text())["depths"] == ["2", "1", "3", "1"]
    result = json.loads((tmp_path / "cost.json").read_text())
    model = result["model"]
    assert model["input_dim"] == 2 and model["batch_size"] == 4 and model["width"] == 3
    assert model["depths"] == [1, 2, 3] and model["grows"] == "depth"
    assert (model["activation"], model["loss"], model["dtype"]) == ("tanh", "mse", "float64")
    expected = [mlp_param_count(3, d, 2, model["outputs"]) for d in (1, 2, 3)]
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
        assert row["fd_matches_backprop"] is True and 0 <= row["fd_max_rel_err"] < 1
        # its line of the table: depth, P, ..., whether FD matched and its error
        (line,) = [ln for ln in proc.stdout.splitlines()
                   if ln.startswith(f"{depth:>6} {row['params']:>8,} ")]
        assert line.endswith(f"  yes (rel err {row['fd_max_rel_err']:.1e})")
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
    slope, flop = result["slopes"], result["flop_slopes"]
    assert (f"log-log slopes of measured seconds: finite differences "
            f"{slope['finite_differences']:.2f}, backprop {slope['backprop']:.2f}, jax.grad "
            f"{slope['autodiff']:.2f} (theory 2, 1, 1)") in proc.stdout
    assert (f"log-log slopes of XLA's operation counts: finite differences "
            f"{flop['finite_differences']:.2f}, backprop {flop['backprop']:.2f}, jax.grad "
            f"{flop['autodiff']:.2f}") in proc.stdout
    last = result["sizes"][-1]
    assert (f"at P={last['params']:,} finite differences take {last['fd_over_backprop']:,.0f}× "
            f"as long as backprop") in proc.stdout


# The experiment with gdlab.cost.measure_sizes replaced by a recorder that returns made-up
# sizes at once: what the flags pass on, and what is written of it, without the timing.
_RECORDED_RUN = """
import json, sys
from gdlab import cost
calls = []
def measure_sizes(sizes, **kw):
    calls.append({"sizes": [list(s) for s in sizes], **{k: v for k, v in kw.items() if k != "progress"}})
    rows = []
    for i, (width, depth) in enumerate(sizes, 1):
        s = {"finite_differences": 2e-3 * i * i, "backprop": 1e-4 * i, "autodiff": 1.5e-4 * i}
        rows.append(cost.SizeResult(width, depth, 10 * i, 20 * i, s, {m: 3 for m in s},
                                    {m: 100.0 * i for m in s}, 20.0 * i, 1e-9, True))
    return rows
cost.measure_sizes = measure_sizes
from experiments import backprop_cost
sys.argv = ["backprop_cost", *sys.argv[1:]]
try:
    backprop_cost.cli()
finally:
    print("CALLS=" + json.dumps(calls))
"""


@pytest.mark.parametrize("input_dim", [None, 5])
def test_flags_reach_the_measurement_and_its_record(tmp_path, input_dim):
    flags = ["--depths=3,1", "--width=4", "--batch_size=6", "--repeats=3", "--seed=11",
             f"--workdir={tmp_path}"] + ([f"--input_dim={input_dim}"] if input_dim else [])
    proc = subprocess.run([sys.executable, "-c", _RECORDED_RUN, *flags], cwd=ROOT, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (calls,) = [json.loads(ln[len("CALLS="):]) for ln in proc.stdout.splitlines() if ln.startswith("CALLS=")]
    # sizes shallowest first; size i is drawn with seed + i inside measure_sizes
    assert calls == [{"sizes": [[4, 1], [4, 3]], "input_dim": input_dim or 4, "outputs": 1,
                      "batch_size": 6, "repeats": 3, "seed": 11, "min_seconds": 0.02,
                      "min_method_seconds": pytest.approx(0.6 * 3)}]
    result = json.loads((tmp_path / "cost.json").read_text())
    assert result["timing"]["repeats"] == 3 and result["timing"]["run_seconds"] == 0.02
    assert result["timing"]["min_seconds_per_method"] == pytest.approx(0.6 * 3)
    assert result["model"]["input_dim"] == (input_dim or 4) and result["model"]["depths"] == [1, 3]
    assert [r["seconds"]["finite_differences"] for r in result["sizes"]] == [2e-3, 8e-3]
    # FD's seconds grow as i² against P = 10·i: slope 2; backprop's as i: slope 1
    assert result["slopes"]["finite_differences"] == pytest.approx(2)
    assert result["slopes"]["backprop"] == pytest.approx(1)


@pytest.mark.parametrize("flag", [
    "--depths=8", "--depths=0,4", "--depths=4,1000", "--repeats=0", "--width=0",
    "--batch_size=-1", "stray", "--seed=-1", "--depths=4,4",
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
    if flag == "--depths=4,1000":  # the depth over the limit, and its P
        p = mlp_param_count(32, 1000, 32, 1)
        assert f"depth 1000 at --width=32 gives P={p:,} parameters" in proc.stderr
    if flag == "--batch_size=1000000000":
        # float64 inputs and each layer's pre- and post-activations of the deepest MLP (8
        # layers of 32, one output; the input is --width wide), three times over
        need = 3 * 8 * 1_000_000_000 * (32 + 2 * (8 * 32 + 1))
        assert f"the batch and its forward values take about {need / 2**30:.1f} GiB" in proc.stderr


@pytest.mark.parametrize("flags, refused", [
    # P = (D + 1)·w + (depth − 1)·(w + 1)·w + (w + 1): 99,995 inputs to one unit, depth 2
    (["--width=1", "--input_dim=99995", "--depths=1,2"], None),        # P = FD_MAX_PARAMS
    (["--width=1", "--input_dim=99996", "--depths=1,2"], "--depths"),  # one more
    (["--seed=4294967290"], None),  # six sizes use seeds up to 2³² − 1
])
def test_the_largest_model_and_seed_allowed_are_taken(tmp_path, flags, refused):
    """Taken: the run goes on to the batch's memory check, which a batch of 10⁹ fails."""
    from gdlab.gradcheck import FD_MAX_PARAMS

    assert mlp_param_count(1, 2, 99995, 1) == FD_MAX_PARAMS
    proc = _run(*flags, "--batch_size=1000000000", f"--workdir={tmp_path / 'out'}")
    assert_bad_input(proc, refused or "--batch_size=1,000,000,000: the batch")
    assert not (tmp_path / "out").exists()


def test_help_lists_every_flag():
    proc = _run("--help")
    assert proc.returncode == 0
    for flag in ("depths", "width", "batch_size", "input_dim", "repeats", "seed", "workdir"):
        assert f"--{flag}" in proc.stdout, flag
