"""scripts/bench.py --quick runs (a smoke test, not a timing test) and reports every target."""

from __future__ import annotations

import importlib.util
import itertools
import json
import operator
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_the_report(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, "scripts/bench.py", "--quick", "--repeats=1", "--torch=off",
         f"--json_out={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["quick"] is True
    for key in ("device", "backend", "jax_version", "jaxlib_version", "date", "cpu"):
        assert report["device"][key], key
    # the tests' compilation cache (conftest), as jax's settings have it: the bench adds none
    assert report["device"]["compilation_cache"] == os.environ["JAX_COMPILATION_CACHE_DIR"]
    modes = {(row["size"], row["mode"]) for row in report["step_times"]}
    assert modes == {("tiny", "sgd"), ("tiny", "minibatch"), ("tiny", "full-batch")}
    for row in report["step_times"]:
        assert row["manual_step_s"] > 0 and row["autodiff_step_s"] > 0
        assert abs(row["ratio_manual_over_autodiff"] - row["manual_step_s"] / row["autodiff_step_s"]) < 1e-9
        # 6·B·P minus the first layer's input gradient, for 64-64-10.
        p = 64 * 64 + 64 + 64 * 10 + 10
        assert row["model_flops_per_step"] == 6 * row["batch_size"] * p - 2 * row["batch_size"] * 64 * 64
    assert report["matmul_peak"]["flops_per_s"] > 0
    assert report["scan_vs_loop"]["speedup_scan_over_loop"] > 0
    assert report["sweep"]["num_lrs"] == 4
    # the shuffle: gdlab's and JAX's per call and vmapped, and the tiny epoch with each and none
    calls = report["shuffle"]["calls"]
    assert [(c["rows"], c["keys"], c["rounds"]) for c in calls] == [(512, 1, 2), (512, 16, 2)]
    for c in calls:
        assert abs(c["jax_over_gdlab"] - c["jax_s"] / c["gdlab_s"]) < 1e-9
    assert set(report["shuffle"]["tiny_epoch_step_s"]) == {"gdlab", "jax", "none"}
    assert report["torch"]["available"] is False
    # the CNN and transformer rows
    assert [row["model"] for row in report["models"]] == ["cnn_digits", "transformer_sort"]
    for row in report["models"]:
        assert row["manual_step_s"] > 0 and row["autodiff_step_s"] > 0
        assert abs(row["ratio_manual_over_autodiff"] - row["manual_step_s"] / row["autodiff_step_s"]) < 1e-9
    names = [t["name"] for t in report["targets"]]
    assert any("CNN and transformer" in n for n in names)
    # the flax + optax peer: one row per size, each ratio the quotient of its step times
    (peer,) = report["flax_optax"]["sizes"]
    assert peer["size"] == "tiny" and peer["peer_step_s"] > 0
    for g in ("manual", "autodiff"):
        assert abs(peer[f"ratio_{g}_over_peer"] - peer[f"{g}_step_s"] / peer["peer_step_s"]) < 1e-9
        assert f"gdlab {g} step / flax+optax step (tiny)" in names
    # and again with 128-step epochs, where a call's fixed cost weighs less per step
    (long,) = report["flax_optax_long"]["sizes"]
    assert long["size"] == "tiny" and long["steps"] == 128 and peer["steps"] == 16
    for g in ("manual", "autodiff"):
        assert abs(long[f"ratio_{g}_over_peer"] - long[f"{g}_step_s"] / long["peer_step_s"]) < 1e-9
        assert f"gdlab {g} step / flax+optax step (tiny, 128-step epochs)" in names
    (sweep,) = report["sweep_throughput"]
    assert sweep["configs"] == 2 and sweep["epochs"] == 5
    assert abs(sweep["config_epochs_per_s"] - 2 * 5 / sweep["call_s"]) < 1e-6 * sweep["config_epochs_per_s"]
    # data parallel on the devices the benchmark sees (one here): the ratio to itself is 1
    dp = report["data_parallel"]
    assert dp["devices"] == [1] and {r["grad"] for r in dp["steps"]} == {"manual", "autodiff"}
    assert all(r["ratio_over_one_device"] == 1.0 and r["step_s"] > 0 for r in dp["steps"])
    assert [r["devices"] for r in dp["sweep"]] == [1]
    mixed = report["mixed_precision"]  # bfloat16 mixed precision against float32, tiny
    assert mixed["size"] == "tiny" and mixed["bfloat16_peak"]["dtype"] == "bfloat16"
    assert abs(mixed["speedup_bfloat16_over_float32"]
               - mixed["float32_step_s"] / mixed["bfloat16_step_s"]) < 1e-9
    assert abs(mixed["bfloat16_of_peak"] - mixed["achieved_flops_bfloat16"]
               / mixed["bfloat16_peak"]["flops_per_s"]) < 1e-9
    assert len(names) == 10 and all({"name", "ratio", "goal", "met"} <= set(t) for t in report["targets"])
    assert "targets" in r.stdout


def test_bad_size_exits_2():
    r = subprocess.run([sys.executable, "scripts/bench.py", "--sizes=huge"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--sizes" in r.stderr


def test_empty_sizes_or_unwritable_json_out_exit_2_before_any_timing(tmp_path):
    for args, needle in ((["--sizes="], "--sizes must name at least one size"),
                         ([f"--json_out={tmp_path}/no/such/dir/b.json"], "--json_out"),
                         ([f"--json_out={tmp_path}"], "--json_out")):
        r = subprocess.run([sys.executable, "scripts/bench.py", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
        assert r.returncode == 2 and "Traceback" not in r.stderr and needle in r.stderr, r.stderr
        assert "matmul peak" not in r.stdout  # nothing was timed


def test_profile_step_times_every_piece_and_writes_the_hlo(tmp_path):
    out = tmp_path / "profile"
    r = subprocess.run(
        [sys.executable, "scripts/profile_step.py", "--sizes=tiny", "--unrolls=1,2",
         "--unroll_models=cnn_digits", "--repeats=1", f"--out={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "profile.json").read_text())
    peak = report["matmul_peak"]["flops_per_s"]
    tiny = report["sizes"]["tiny"]
    assert set(tiny["steps"]) == {"floor", "grad only (manual)", "gdlab manual", "gdlab jax.grad",
                                  "flax+optax", "gdlab manual, norms", "gdlab manual, unroll 1",
                                  "gdlab manual, no guard", "gdlab manual, dW plain xᵀ·g"}
    for row in tiny["steps"].values():  # each share of the peak is the quotient it names
        assert row["step_s"] > 0
        assert abs(row["of_peak"] - tiny["model_flops_per_step"] / row["step_s"] / peak) < 1e-9
    for label in ("gdlab_manual", "gdlab_autodiff", "flax_optax", "floor"):
        assert (out / f"hlo-tiny-{label}.txt").read_text().startswith("HloModule")
        assert tiny["kernels"][label].get("dot", 0) + sum(
            n for k, n in tiny["kernels"][label].items() if "gemm" in k or "matmul" in k) >= 5
    assert set(report["unroll"]["scan_step_s"]) == {"1", "2"}
    assert report["unroll"]["loop_step_s"] > 0
    (cnn,) = report["unroll_models"].values()  # the CNN's epoch at each unroll factor
    assert set(report["unroll_models"]) == {"cnn_digits"} and set(cnn) == {"1", "2"}
    assert all(row["step_s"] > 0 and row["compile_s"] > 0 for row in cnn.values())
    grads = report["models"]["cnn_digits"]  # its manual epoch against its jax.grad one
    assert set(report["models"]) == {"cnn_digits"}
    assert abs(grads["ratio_manual_over_autodiff"]
               - grads["manual"]["step_s"] / grads["autodiff"]["step_s"]) < 1e-12
    for g in ("manual", "autodiff"):
        assert grads[g]["kernel_total"] == sum(grads[g]["kernels"].values()) > 0
        assert (out / f"hlo-model-cnn_digits-{g}.txt").read_text().startswith("HloModule")


def test_profile_step_bad_flags_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    for args, needle in ((["--sizes=huge"], "--sizes"), (["--sizes="], "--sizes"),
                         (["--unroll_models=rnn"], "--unroll_models"),
                         ([f"--out={tmp_path}/file"], "--out"), (["--unrolls=1,x"], "--unrolls"),
                         (["--unrolls=²"], "--unrolls must be comma-separated positive integers"),
                         (["--json_out=p.json"], "Unknown command line flag 'json_out'")):
        r = subprocess.run([sys.executable, "scripts/profile_step.py", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
        assert r.returncode == 2 and "Traceback" not in r.stderr and needle in r.stderr, r.stderr


def test_fused_update_probe_kernels_match_the_xla_step(tmp_path):
    """scripts/probe_fused_update.py on a CPU: the Pallas kernel (in Pallas's interpreter)
    gives the momentum step of the XLA program, fused and as a plain weight gradient; the
    Mosaic GPU kernels still lower for a GPU."""
    out = tmp_path / "fused.json"
    r = subprocess.run([sys.executable, "scripts/probe_fused_update.py", f"--json_out={out}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    variants = json.loads(out.read_text())["variants"]
    pallas = {k: v for k, v in variants.items() if k.startswith("pallas")}
    assert {k.split()[1] for k in pallas} == {"fused", "gemm", "fused-raw"}
    for name, row in pallas.items():  # float32, sums in another order: a few ulps of the change
        errors = [row[k] for k in ("err_v", "err_w", "err_g") if k in row]
        assert errors and max(errors) < 1e-4, (name, row)
    mosaic = {k: v for k, v in variants.items() if k.startswith("mgpu")}
    assert len(mosaic) >= 2 and all(row.get("lowered") for row in mosaic.values()), mosaic


def test_fused_update_probe_bad_flags_exit_2(tmp_path):
    for args, needle in (([f"--json_out={tmp_path}"], "is a folder"),
                         (["--size=300"], "multiple of 256"), (["--repeats=0"], "--repeats"),
                         (["--variants=nosuch"], "no variant's name begins with 'nosuch'")):
        r = subprocess.run([sys.executable, "scripts/probe_fused_update.py", *args], cwd=ROOT,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
        assert r.returncode == 2 and "Traceback" not in r.stderr and needle in r.stderr, r.stderr


def test_shell_scripts_answer_help_and_refuse_stray_options(tmp_path):
    """--help prints the script's own header (exit 0) and runs nothing; any other option is
    one sentence, exit 2, and writes nothing (make_figures.sh handed it to mkdir)."""
    for script, line in (("demo.sh", "scripts/demo.sh DIR"),
                         ("make_figures.sh", "scripts/make_figures.sh runs/figs"),
                         ("launch_local.sh", "scripts/launch_local.sh 2 --")):
        r = subprocess.run(["bash", str(ROOT / "scripts" / script), "--help"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and line in r.stdout and not r.stderr, (script, r)
    for script in ("demo.sh", "make_figures.sh"):
        r = subprocess.run(["bash", str(ROOT / "scripts" / script), "--quick"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.startswith(f"error: scripts/{script} takes one "
                                                         f"argument"), (script, r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_demo_replaces_only_an_earlier_demo(tmp_path):
    """scripts/demo.sh DIR trains with --overwrite; a DIR holding another run is refused
    before anything runs, and the run is left as it was."""
    other = tmp_path / "houses"
    other.mkdir()
    config = {"dataset": "houses", "model": "linear", "epochs": 5}
    (other / "config.json").write_text(json.dumps(config))
    (other / "summary.json").write_text("{}")
    r = subprocess.run(["bash", "scripts/demo.sh", str(other)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    # the last line: .venv's set-up, should it run (pyproject.toml changed), may speak first
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"error: {other} holds a run that is not the demo's; give scripts/demo.sh another "
        f"folder (it replaces only an earlier demo)") and "Traceback" not in r.stderr, (
        r.stdout + r.stderr)
    assert json.loads((other / "config.json").read_text()) == config
    assert sorted(p.name for p in other.iterdir()) == ["config.json", "summary.json"]


# --------------------------------------------------------------------------- the script's helpers
# Each called in this process with known inputs; the timing helpers (alternate, median_time)
# and the compiled programs are replaced where a test checks only what is made of their times.


@pytest.fixture(scope="module")
def bench():
    """scripts/bench.py as a module (its flags defined once, under its own name)."""
    spec = importlib.util.spec_from_file_location("gdlab_bench_script", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # flax's dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


class _Clock:
    """``perf_counter`` that each fake call moves on by its own scripted duration."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_alternate_warms_each_variant_up_then_takes_turns_and_reports_medians(bench, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(bench, "time", clock)
    durations = {"a": [100.0, 3.0, 1.0, 7.0, 2.0, 5.0], "b": [100.0, 4.0, 9.0, 6.0, 8.0, 0.5]}
    calls = []

    def variant(name):
        def fn():
            clock.now += durations[name][sum(c == name for c in calls)]
            calls.append(name)
        return fn

    times = bench.alternate({"a": variant("a"), "b": variant("b")}, repeats=5)
    assert calls == ["a", "b"] + ["a", "b"] * 5  # one warm-up each, then in turn
    assert times == {name: float(np.median(d[1:])) for name, d in durations.items()}


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_plan_times_what_the_issue_and_readme_name_on_each_backend(bench, backend):
    gpu = backend == "gpu"
    p = bench.plan(backend, False, ["tiny", "small", "medium", "large"], 7, 64)
    assert p["repeats"] == 7 and p["sweep_lrs"] == 64
    # large: 4096³ at B = 1024 on a GPU, 1024³ at B = 256 on a CPU
    large = ((4096, 4096, 4096, 10), 1024) if gpu else ((1024, 1024, 1024, 10), 256)
    assert p["sizes"] == {"tiny": ((64, 64, 10), 32), "small": ((784, 256, 10), 128),
                          "medium": ((784, 512, 512, 10), 128), "large": large}
    assert list(p["long_sizes"]) == ["tiny", "small", "medium"]  # 128-step epochs but at large
    assert p["peak_n"] == (8192 if gpu else 2048)  # the README's TF32 / CPU peak matmuls
    assert p["mixed_size"] == ("large" if gpu else "small")
    # the issue's K = 1, 64, 1024, 8192, 131072 on a GPU, smaller on a CPU
    assert p["sweep_counts"] == ((1, 64, 1024, 8192, 131072) if gpu else (1, 16, 64, 256))
    assert p["shuffle_rows"] == (512, 1438, 4096, 60000) and p["shuffle_keys"] == (1024, 1438)
    assert p["torch_compile"] is True
    assert p["models"] == list(bench._model_cases()) and {"cnn_digits", "transformer_sort"} <= set(p["models"])
    # the sizes asked for only, in their order
    assert list(bench.plan(backend, False, ["medium", "tiny"], 7, 64)["sizes"]) == ["medium", "tiny"]
    # --quick: the tiny MLP, at most 3 repeats and 4 learning rates, whatever else was asked
    q = bench.plan(backend, True, ["small", "large"], 9, 512)
    assert q["sizes"] == {"tiny": ((64, 64, 10), 32)} and q["long_sizes"] == q["sizes"]
    assert (q["repeats"], q["sweep_lrs"]) == (3, 4)
    assert bench.plan(backend, True, ["tiny"], 1, 2)["repeats"] == 1
    assert (q["peak_n"], q["mixed_size"], q["sweep_counts"]) == (1024, "tiny", (2,))
    assert (q["shuffle_rows"], q["shuffle_keys"]) == ((512,), (16, 512))
    assert q["torch_compile"] is False and q["models"] == ["cnn_digits", "transformer_sort"]


@pytest.mark.parametrize("op", ["<=", ">="])
def test_target_is_met_on_the_goals_side_and_unknown_without_a_ratio(bench, op):
    compare = {"<=": operator.le, ">=": operator.ge}[op]
    for ratio in (0.5, 1.0, 1.5):
        assert bench.target("t", ratio, 1.0, op) == {"name": "t", "ratio": ratio, "goal": f"{op} 1.0",
                                                     "met": compare(ratio, 1.0)}
    assert bench.target("t", None, 1.0, op)["met"] is None


def _results(with_peers=True):
    """A report's timings, made up, as ``main`` hands them to ``targets_for``."""
    rng = np.random.default_rng(0)
    steps = []
    for size, widths, batch in (("tiny", (64, 64, 10), 32), ("large", (1024, 1024, 1024, 10), 256)):
        for mode, b in (("sgd", 1), ("minibatch", batch), ("full-batch", 4 * batch)):
            steps.append({"size": size, "mode": mode, "batch_size": b,
                          "ratio_manual_over_autodiff": float(rng.uniform(0.8, 1.2)),
                          "model_flops_per_step": 6.0 * b * sum(widths),
                          "achieved_flops_manual": float(rng.uniform(1e9, 5e10))})
    results = {
        "step_times": steps, "matmul_peak": {"flops_per_s": 4e10},
        "models": [{"ratio_manual_over_autodiff": r} for r in (0.9, 1.07, 1.01)],
        "scan_vs_loop": {"speedup_scan_over_loop": 4.5},
        "sweep": {"num_lrs": 64, "vmapped_over_one_run": 1.5},
        "sweep_throughput": [{"configs": k, "call_s": 0.01 * k ** 0.5} for k in (1, 64, 131072)],
        "mixed_precision": {"size": "large", "bfloat16_of_peak": 0.45},
        "flax_optax": {"available": False, "note": "optax is not installed"},
        "torch": {"available": False, "note": "torch is not installed"},
    }
    if with_peers:
        results["flax_optax"] = {"available": True, "sizes": [
            {"size": "tiny", "steps": 16, "ratio_manual_over_peer": 1.04, "ratio_autodiff_over_peer": 1.06}]}
        results["flax_optax_long"] = {"available": True, "sizes": [
            {"size": "tiny", "steps": 128, "ratio_manual_over_peer": 0.98, "ratio_autodiff_over_peer": 1.1}]}
        results["torch"] = {"available": True, "sizes": [
            {"size": "tiny", "speedup_gdlab_over_torch_eager": 9.0},
            {"size": "medium", "speedup_gdlab_over_torch_eager": 1.2}]}
    return results


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
@pytest.mark.parametrize("with_peers", [True, False])
def test_targets_take_each_ratio_from_its_rows_with_the_documented_goals(bench, backend, with_peers):
    """Each target against the README's goal (≤ for slowdowns, ≥ for speed-ups and shares
    of the peak), its ratio recomputed from the rows; without optax or torch their targets
    have no ratio (torch) or are left out (flax + optax)."""
    results = _results(with_peers)
    steps, peak = results["step_times"], results["matmul_peak"]["flops_per_s"]
    full = [r for r in steps if r["mode"] == "full-batch"]
    largest = full[int(np.argmax([r["model_flops_per_step"] for r in full]))]
    (large_minibatch,) = [r for r in steps if r["size"] == "large" and r["mode"] == "minibatch"]
    expected = {  # name: (ratio, goal)
        "manual / autodiff step time (median over sizes and modes)":
            (float(np.median([r["ratio_manual_over_autodiff"] for r in steps])), "<= 1.02"),
        "manual / autodiff step time, CNN and transformer (worst model)": (1.07, "<= 1.05"),
        "scanned epoch speed-up per step over a Python loop (tiny)": (4.5, ">= 5.0"),
        "gdlab scanned step speed-up over PyTorch eager (tiny)": (9.0 if with_peers else None, ">= 10.0"),
        "gdlab scanned step speed-up over PyTorch eager (medium)": (1.2 if with_peers else None, ">= 1.0"),
    }
    if with_peers:
        for suffix, ratios in (("", (1.04, 1.06)), (", 128-step epochs", (0.98, 1.1))):
            for g, ratio in zip(("manual", "autodiff"), ratios, strict=True):
                expected[f"gdlab {g} step / flax+optax step (tiny{suffix})"] = (ratio, "<= 1.05")
    if backend == "gpu":
        expected.update({
            "sweep of 131,072 lrs × 5 epochs of digits, seconds after compiling":
                (0.01 * 131072 ** 0.5, "<= 3.0"),
            "vmapped sweep of 64 lrs / one run": (1.5, "<= 2.0"),
            "achieved FLOP/s / TF32 matmul peak (large 4096³, B = 1024)":
                (large_minibatch["achieved_flops_manual"] / peak, ">= 0.7"),
            "achieved FLOP/s / TF32 matmul peak (large, full batch B = 4096)":
                (largest["achieved_flops_manual"] / peak, ">= 0.7"),
            "bfloat16 mixed precision: achieved FLOP/s / bfloat16 matmul peak (large, B = 1024; optional)":
                (0.45, ">= 0.5"),
        })
    else:
        expected["achieved FLOP/s / matmul peak (largest size, full batch)"] = (
            largest["achieved_flops_manual"] / peak, ">= 0.75")
    targets = bench.targets_for(results, backend)
    assert [t["name"] for t in targets] == list(expected)
    for t in targets:
        ratio, goal = expected[t["name"]]
        assert t["goal"] == goal and t["ratio"] == (ratio and pytest.approx(ratio, rel=1e-12)), t
        op, value = goal.split()
        met = None if ratio is None else {"<=": operator.le, ">=": operator.ge}[op](ratio, float(value))
        assert t["met"] is met, t


def test_mlp_flops_are_six_b_p_less_the_first_input_gradient(bench):
    """6·B·P (P from the model gdlab builds) less 2·B·D·H₁, the input gradient no step needs."""
    import jax

    from gdlab import models, train

    for widths, batch in [*bench.SIZES.values(), bench.CPU_LARGE, ((20, 7, 30, 3), 5)]:
        params = jax.eval_shape(lambda widths=widths: train.init_model(  # shapes only: 34 M at large
            models.mlp(list(widths[1:]), "relu"), jax.random.PRNGKey(0), (widths[0],))[0])
        p = sum(leaf.size for leaf in jax.tree.leaves(params))
        first_w = params["layers"][0]["w"].shape
        assert bench.mlp_flops_per_step(widths, batch) == 6 * batch * p - 2 * batch * first_w[0] * first_w[1]


def test_matmul_peak_and_xla_flop_count_are_two_n_cubed(bench, monkeypatch):
    import jax
    import jax.numpy as jnp

    n, seconds = 48, 0.25
    a = jnp.ones((n, n), jnp.float32)
    assert bench.cost_flops(jax.jit(jnp.matmul).lower(a, a).compile()) == 2 * n ** 3
    monkeypatch.setattr(bench, "median_time", lambda fn, repeats: (fn(), seconds)[1])
    peak = bench.bench_matmul_peak(n, 1, jax.random.PRNGKey(0), dtype="bfloat16")
    assert peak["n"] == n and peak["dtype"] == "bfloat16" and peak["seconds"] == seconds
    assert peak["flops_per_s"] == 2 * n ** 3 / seconds


def test_cost_flops_reads_the_first_analysis_and_none_where_there_is_none(bench):
    class Compiled:
        def __init__(self, analysis):
            self.analysis = analysis

        def cost_analysis(self):
            if isinstance(self.analysis, Exception):
                raise self.analysis
            return self.analysis

    assert bench.cost_flops(Compiled({"flops": 12.0})) == 12.0
    assert bench.cost_flops(Compiled([{"flops": 7}, {"flops": 9}])) == 7.0
    for analysis in ([], None, {}, {"bytes accessed": 3.0}, NotImplementedError("no")):
        assert bench.cost_flops(Compiled(analysis)) is None


class _FakeRunner:
    """What the bench reads of a ``Runner``: every construction recorded, nothing compiled."""

    made: ClassVar[list] = []

    def __init__(self, widths, n, batch, grad, key, **epoch_kw):
        import jax.numpy as jnp

        self.widths, self.n, self.batch, self.grad, self.key, self.epoch_kw = (
            widths, n, batch, grad, key, epoch_kw)
        self.steps = -(-n // batch)
        self.compile_seconds = 0.1 * len(self.made)
        self.x, self.y, self.state = jnp.zeros((n, widths[0])), jnp.zeros(n, jnp.int32), None
        self.made.append(self)

    @classmethod
    def mlp(cls, widths, n, batch, grad, key, **epoch_kw):
        return cls(widths, n, batch, grad, key, **epoch_kw)

    def __call__(self):
        pass


@pytest.fixture
def fakes(bench, monkeypatch):
    """bench.Runner replaced by _FakeRunner and bench.alternate by a recorder whose times
    are drawn at random (each call to alternate recorded with its variants and repeats)."""
    _FakeRunner.made = []
    rng = np.random.default_rng(1)
    calls = []

    def alternate(fns, repeats):
        for fn in fns.values():
            fn()
        times = {name: float(rng.uniform(0.5, 2.0)) for name in fns}
        calls.append((list(fns), repeats, times))
        return times

    monkeypatch.setattr(bench, "Runner", _FakeRunner)
    monkeypatch.setattr(bench, "alternate", alternate)
    return calls


def test_step_time_rows_divide_each_variants_time_by_its_steps(bench, monkeypatch, fakes):
    monkeypatch.setattr(bench, "_single_step", lambda runner: lambda state, x, y: None)
    monkeypatch.setattr(bench, "timed_compile", lambda jitted, *args: ("compiled", 0.0))
    monkeypatch.setattr(bench, "cost_flops", lambda compiled: 1234.0)
    sizes = {"tiny": bench.SIZES["tiny"], "small": bench.SIZES["small"]}
    rows = bench.bench_step_times(sizes, 3, "key")
    plan = [(name, widths, mode, b, n) for name, (widths, batch) in sizes.items()
            for mode, b, n in (("sgd", 1, 256), ("minibatch", batch, 16 * batch),
                               ("full-batch", 4 * batch, 4 * batch))]
    assert [(r["size"], tuple(r["widths"]), r["mode"], r["batch_size"]) for r in rows] == [
        p[:4] for p in plan]
    # each row: a manual and an autodiff runner of the same model and data, timed in turn
    made = _FakeRunner.made
    assert [(r.widths, r.n, r.batch, r.grad, r.key) for r in made] == [
        (widths, n, b, g, "key") for _, widths, _, b, n in plan for g in ("manual", "autodiff")]
    assert [(names, repeats) for names, repeats, _ in fakes] == [(["manual", "autodiff"], 3)] * len(plan)
    for i, (row, (_, widths, _, b, n), (_, _, times)) in enumerate(zip(rows, plan, fakes, strict=True)):
        steps = -(-n // b)
        flops = 6.0 * b * sum(x * y + y for x, y in itertools.pairwise(widths)) - 2.0 * b * widths[0] * widths[1]
        assert row["steps_per_epoch"] == steps and row["model_flops_per_step"] == flops
        assert row["manual_step_s"] == times["manual"] / steps
        assert row["autodiff_step_s"] == times["autodiff"] / steps
        assert row["ratio_manual_over_autodiff"] == times["manual"] / times["autodiff"]
        assert row["achieved_flops_manual"] == pytest.approx(flops * steps / times["manual"], rel=1e-12)
        assert row["achieved_flops_autodiff"] == pytest.approx(flops * steps / times["autodiff"], rel=1e-12)
        assert row["compile_s"] == {"manual": made[2 * i].compile_seconds,
                                    "autodiff": made[2 * i + 1].compile_seconds}
        assert row["xla_flops_per_step"] == 1234.0


def test_flax_optax_rows_time_the_peer_with_gdlab_on_the_same_data(bench, monkeypatch, fakes):
    pytest.importorskip("optax")
    peers = []

    def flax_optax_epoch(widths, n, batch, key):
        def epoch(carry, x, y):
            peers[-1]["data"].append((x, y))
            return carry + 1, y
        peers.append({"args": (widths, n, batch, key), "data": []})
        return epoch, 0

    monkeypatch.setattr(bench, "flax_optax_epoch", flax_optax_epoch)
    sizes = {"tiny": bench.SIZES["tiny"], "medium": bench.SIZES["medium"]}
    for steps in (16, 128):
        fakes.clear()
        _FakeRunner.made = []
        peers.clear()
        out = bench.bench_flax_optax(sizes, 2, "key", steps)
        assert out["available"] is True
        for i, (row, (name, (widths, batch)), (names, repeats, times)) in enumerate(
                zip(out["sizes"], sizes.items(), fakes, strict=True)):
            n = steps * batch
            manual, autodiff = _FakeRunner.made[2 * i: 2 * i + 2]
            assert [(r.widths, r.n, r.batch, r.grad, r.key) for r in (manual, autodiff)] == [
                (widths, n, batch, "manual", "key"), (widths, n, batch, "autodiff", "key")]
            assert peers[i]["args"] == (widths, n, batch, "key")
            assert all(x is manual.x and y is manual.y for x, y in peers[i]["data"])
            assert names == ["peer", "manual", "autodiff"] and repeats == 3 * 2
            assert (row["size"], row["batch_size"], row["steps"]) == (name, batch, steps)
            assert row["peer_step_s"] == times["peer"] / steps
            for g in ("manual", "autodiff"):
                assert row[f"{g}_step_s"] == times[g] / steps
                assert row[f"ratio_{g}_over_peer"] == times[g] / times["peer"]


def _momentum_epoch(layers, x, y, batches, lr):
    """``(layers, losses)`` after heavy-ball momentum 0.9 (v = 0.9 v + g, w -= lr v) at
    ``lr`` on the mean cross-entropy of the relu MLP of ``layers`` (``(w, b)`` pairs, w of
    shape (in, out)), one step per row of example indices in ``batches``: the peers' epoch."""
    import jax
    import jax.numpy as jnp

    def loss(layers, xb, yb):
        h = xb
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < len(layers) - 1:
                h = jnp.maximum(h, 0.0)
        return jnp.mean(jax.nn.logsumexp(h, axis=1) - h[jnp.arange(len(yb)), yb])

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    x64, y, velocity, losses = np.asarray(x, np.float64), np.asarray(y), [(0.0, 0.0)] * len(layers), []
    for idx in batches:
        value, grads = value_and_grad(layers, x64[idx], y[idx])
        losses.append(float(value))
        velocity = [(0.9 * vw + gw, 0.9 * vb + gb) for (vw, vb), (gw, gb) in zip(velocity, grads)]
        layers = [(w_ - lr * vw, b_ - lr * vb) for (w_, b_), (vw, vb) in zip(layers, velocity)]
    return layers, losses


def test_torch_peer_is_the_mlp_of_gdlabs_weights_and_momentum_sgd_over_its_permutation(bench):
    """The PyTorch peer: gdlab's relu MLP with its very weights (the same outputs), and an
    epoch of momentum 0.9 at the bench's rate over torch.randperm's batches, recomputed."""
    torch = pytest.importorskip("torch")
    import jax
    import jax.numpy as jnp

    from gdlab import layers as gl
    from gdlab import models, train

    widths, n, batch = (5, 7, 6, 3), 12, 4
    model = models.mlp(list(widths[1:]), "relu")
    params, state = train.init_model(model, jax.random.PRNGKey(4), (widths[0],))
    x = jax.random.normal(jax.random.PRNGKey(5), (n, widths[0]), jnp.float32)
    y = jnp.arange(n) % widths[-1]
    net, make_epoch = bench.torch_peer(params, x, y, batch, "cpu")
    with torch.no_grad():
        out = net(torch.from_numpy(np.array(x))).numpy()
    np.testing.assert_allclose(out, np.asarray(gl.apply(model, params, state, x)), rtol=1e-5, atol=1e-6)
    layers = [(np.asarray(p["w"], np.float64), np.asarray(p["b"], np.float64))
              for p in params["layers"] if "w" in p]
    order = torch.randperm(n, generator=torch.Generator("cpu").manual_seed(0)).numpy()
    layers, _ = _momentum_epoch(layers, x, y, order.reshape(-1, batch), bench.LR)
    make_epoch(net)()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for lin, (w, b) in zip(linears, layers, strict=True):
        np.testing.assert_allclose(lin.weight.detach().numpy().T, w, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(lin.bias.detach().numpy(), b, rtol=1e-4, atol=1e-6)


def test_flax_optax_peer_is_momentum_sgd_of_the_mlp_on_gdlabs_batches(bench):
    """The peer's epoch, recomputed: the relu MLP of the widths, heavy-ball momentum 0.9 at
    the bench's rate, over descent.epoch_batches of the key its carry holds."""
    pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    from gdlab import descent

    widths, n, batch = (5, 7, 6, 3), 12, 4
    x = jax.random.normal(jax.random.PRNGKey(2), (n, widths[0]), jnp.float32)
    y = jnp.arange(n) % widths[-1]
    epoch, (params, opt_state, key) = bench.flax_optax_epoch(widths, n, batch, jax.random.PRNGKey(3))
    layers = [(np.asarray(d["kernel"], np.float64), np.asarray(d["bias"], np.float64))
              for _, d in sorted(params["params"].items(), key=lambda kv: int(kv[0].split("_")[1]))]
    assert [w.shape for w, _ in layers] == list(itertools.pairwise(widths))
    indices, weights = descent.epoch_batches(jax.random.split(key)[1], n, batch)
    assert np.asarray(weights).all()  # N is a multiple of B: no padding
    layers, expected = _momentum_epoch(layers, x, y, np.asarray(indices), bench.LR)
    carry, values = epoch((params, opt_state, key), x, y)
    assert values.shape == (n // batch,)
    np.testing.assert_allclose(np.asarray(values), expected, rtol=1e-5)
    final = [np.asarray(d["kernel"]) for _, d in sorted(carry[0]["params"].items(),
                                                        key=lambda kv: int(kv[0].split("_")[1]))]
    for got, (want, _) in zip(final, layers, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_sweep_throughput_is_the_configurations_and_epochs_each_call_ran(bench, monkeypatch):
    from gdlab import train

    ran = []

    def sweep(model, loss, optimizer_for, lrs, train_data, *, epochs, batch_size):
        ran.append((np.asarray(lrs), epochs, batch_size, train_data[0].shape))

    seconds = 0.125
    monkeypatch.setattr(train, "sweep", sweep)
    monkeypatch.setattr(bench, "median_time", lambda fn, repeats: (fn(), seconds)[1])
    rows = bench.bench_sweep_throughput((1, 3), 1)
    assert len(ran) == 4  # the compiling call, then the timed one, for each K
    for row, (first, timed) in zip(rows, (ran[:2], ran[2:]), strict=True):
        lrs, epochs, batch, shape = timed
        assert (row["configs"], row["epochs"]) == (len(lrs), epochs) and shape[1] == 64
        assert row["call_s"] == seconds and row["first_call_s"] > 0
        assert row["config_epochs_per_s"] == len(lrs) * epochs / seconds
        assert (epochs, batch) == first[1:3] == (5, 32)
        # other rates than the first call's, in the same log-spaced grid
        assert not np.array_equal(lrs, first[0])
        np.testing.assert_allclose(lrs / lrs[0], first[0] / first[0][0])


def test_sweep_row_times_one_vmapped_call_against_one_and_every_run(bench, monkeypatch, fakes):
    import jax

    calls = []

    def timed_compile(jitted, *args):
        vmapped = np.ndim(args[0]) == 1

        def program(lrs, keys, x, y):
            calls.append(("vmapped" if vmapped else "single", np.asarray(lrs)))
        return program, 0.5 if vmapped else 0.25

    monkeypatch.setattr(bench, "timed_compile", timed_compile)
    monkeypatch.setattr(bench, "median_time", lambda fn, repeats: (fn(), 7.0)[1])
    row = bench.bench_sweep(5, 3, jax.random.PRNGKey(0))
    ((names, repeats, times),) = fakes
    assert names == ["one", "together"] and repeats == 3
    lrs = np.logspace(-3, 0, 5)
    # warm-up of each, then the sequential runs: every rate once
    assert [c[0] for c in calls] == ["single", "vmapped"] + ["single"] * 5
    np.testing.assert_allclose(calls[1][1], lrs, rtol=1e-6)
    np.testing.assert_allclose([c[1] for c in calls[2:]], lrs, rtol=1e-6)
    assert (row["one_run_s"], row["vmapped_s"], row["sequential_s"]) == (times["one"], times["together"], 7.0)
    assert row["vmapped_over_one_run"] == times["together"] / times["one"]
    assert row["sequential_over_vmapped"] == 7.0 / times["together"]
    assert row["compile_s"] == {"single": 0.25, "vmapped": 0.5} and row["num_lrs"] == 5


def test_mixed_precision_row_times_bfloat16_against_float32_of_one_model(bench, monkeypatch, fakes):
    import jax.numpy as jnp

    peaks = []

    def peak(n, repeats, key, dtype="float32"):
        peaks.append((n, dtype))
        return {"dtype": dtype, "flops_per_s": 3e11}

    monkeypatch.setattr(bench, "bench_matmul_peak", peak)
    widths, batch = bench.SIZES["small"]
    row = bench.bench_mixed_precision("small", widths, batch, 2, "key", 512)
    ((names, repeats, times),) = fakes
    f32, bf16 = _FakeRunner.made
    assert [(r.widths, r.n, r.batch, r.grad, r.key) for r in (f32, bf16)] == [
        (widths, 16 * batch, batch, "manual", "key")] * 2
    assert f32.epoch_kw == {} and bf16.epoch_kw == {"compute_dtype": jnp.bfloat16}
    assert names == ["float32", "bfloat16"] and repeats == 2 and peaks == [(512, "bfloat16")]
    flops = bench.mlp_flops_per_step(widths, batch)
    assert row["float32_step_s"] == times["float32"] / 16 and row["bfloat16_step_s"] == times["bfloat16"] / 16
    assert row["achieved_flops_bfloat16"] == pytest.approx(flops * 16 / times["bfloat16"], rel=1e-12)
    assert row["bfloat16_of_peak"] == pytest.approx(flops * 16 / times["bfloat16"] / 3e11, rel=1e-12)
    assert row["speedup_bfloat16_over_float32"] == times["float32"] / times["bfloat16"]


def test_scan_vs_loop_speed_up_is_the_loops_time_over_the_scans(bench, monkeypatch, fakes):
    import jax

    from gdlab import losses, models, optim

    def mlp(widths, n, batch, grad, key, **kw):
        runner = _FakeRunner(widths, n, batch, grad, key, **kw)
        runner.model, runner.loss, runner.optimizer = (
            models.mlp(list(widths[1:]), "relu"), losses.get("xent"), optim.momentum(bench.LR))
        return runner

    monkeypatch.setattr(_FakeRunner, "mlp", staticmethod(mlp))
    monkeypatch.setattr(bench, "alternate", lambda fns, repeats: fakes.append(list(fns)) or {
        "scan": 1.5, "loop": 6.0})
    row = bench.bench_scan_vs_loop((64, 64, 10), 32, 2, jax.random.PRNGKey(0))
    (scanned,) = _FakeRunner.made
    assert (scanned.n, scanned.batch, scanned.grad) == (128 * 32, 32, "manual")
    assert fakes == [["scan", "loop"]] and row["steps"] == 128
    assert row["scan_step_s"] == 1.5 / 128 and row["loop_step_s"] == 6.0 / 128
    assert row["speedup_scan_over_loop"] == 6.0 / 1.5


def test_missing_peers_are_reported_and_leave_their_targets_open(bench, monkeypatch):
    import importlib.metadata

    monkeypatch.setitem(sys.modules, "optax", None)  # import optax / torch: ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    flax_optax = bench.bench_flax_optax({"tiny": bench.SIZES["tiny"]}, 1, "key")
    torch = bench.bench_torch({"tiny": bench.SIZES["tiny"]}, 1, "key", try_compile=False)
    for out, package in ((flax_optax, "optax"), (torch, "torch")):
        assert out["available"] is False and "sizes" not in out and package in out["note"]
        assert "pip install -e '.[peer]'" in out["note"]
    results = {**_results(with_peers=False), "flax_optax": flax_optax, "flax_optax_long": flax_optax,
               "torch": torch}
    targets = {t["name"]: t for t in bench.targets_for(results, "cpu")}
    assert not any("flax+optax" in name for name in targets)
    for size in ("tiny", "medium"):
        t = targets[f"gdlab scanned step speed-up over PyTorch eager ({size})"]
        assert t["ratio"] is None and t["met"] is None
    version = importlib.metadata.version

    def without_peers(package):
        if package in ("optax", "torch"):
            raise importlib.metadata.PackageNotFoundError(package)
        return version(package)

    monkeypatch.setattr(importlib.metadata, "version", without_peers)
    info = bench.device_info()
    assert info["optax_version"] is None and info["torch_version"] is None
    assert info["flax_version"] == version("flax")


def test_device_info_names_this_device_versions_date_and_commit(bench):
    import datetime
    import importlib.metadata

    import jax

    import gdlab

    info = bench.device_info()
    assert info["date"] == datetime.date.today().isoformat()
    assert info["backend"] == jax.default_backend() == "cpu" and "gpu" not in info
    assert info["device"] == jax.devices()[0].device_kind
    assert info["jax_version"] == jax.__version__ and info["gdlab_version"] == gdlab.__version__
    assert info["cpu_count"] == os.cpu_count()
    assert info["compilation_cache"] == os.environ["JAX_COMPILATION_CACHE_DIR"]  # conftest's
    for package in ("flax", "optax", "torch"):
        try:
            assert info[f"{package}_version"] == importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            assert info[f"{package}_version"] is None
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert info["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)


def test_data_parallel_ratios_are_against_one_device_and_the_sweep_spans_each_mesh(bench, monkeypatch,
                                                                                    fakes):
    import jax

    from gdlab import parallel, train

    meshes, rng = [], np.random.default_rng(2)
    # nothing built or placed: the epochs are not run
    monkeypatch.setattr(parallel, "make_epoch", lambda *args, **kwargs: lambda *epoch_args: None)
    monkeypatch.setattr(parallel, "replicate", lambda tree, mesh: tree)
    monkeypatch.setattr(train, "create_state", lambda *args: None)
    monkeypatch.setattr(train, "sweep", lambda *a, mesh, **kw: meshes.append(
        None if mesh is None else mesh.devices.size))
    # times drawn for each variant
    monkeypatch.setattr(bench, "alternate", lambda fns, repeats: fakes.append((
        list(fns), repeats, {d: float(rng.uniform(0.5, 2.0)) for d in fns})) or fakes[-1][2])
    out = bench.bench_data_parallel(2, jax.random.PRNGKey(0))
    counts = [d for d in (1, 2, 4, 8) if d <= len(jax.devices())]
    assert out["devices"] == counts and len(counts) > 1  # tests/conftest.py: four CPU devices
    steps = {(r["grad"], r["devices"]): r for r in out["steps"]}
    assert [names for names, _, _ in fakes] == [counts] * 3
    for (_, _, times), grad in zip(fakes, ("manual", "autodiff", None)):
        for d in counts:
            if grad:
                assert steps[grad, d]["step_s"] == times[d] / 16
                assert steps[grad, d]["ratio_over_one_device"] == times[d] / times[1]
    times = fakes[2][2]
    assert [r["devices"] for r in out["sweep"]] == counts
    for r in out["sweep"]:
        assert r["config_epochs_per_s"] == r["configs"] * r["epochs"] / times[r["devices"]]
        assert r["ratio_over_one_device"] == times[r["devices"]] / times[1]
    assert meshes == [None, *counts[1:]]  # each sweep compiled on its own mesh


def test_make_figures_records_the_numbers_of_the_edge_of_stability_table(tmp_path):
    """docs/figures.json keeps the numbers the README quotes from each figure: for eos.png,
    its table's, per full-batch run and for the mini-batch run (they are nested in
    eos.json, below the top level that was all it kept)."""
    program = (ROOT / "scripts" / "make_figures.sh").read_text().split("<<'PY'\n", 1)[1]
    program = program.split("\nPY\n", 1)[0]
    run = {"lr": 0.4, "two_over_lr": 5.0, "sharpness_init": 1.58, "ratio_init": 0.316,
           "sharpness_last_third_median": 5.036, "ratio_last_third": 1.007,
           "initial_loss": 0.147, "final_loss": 0.00243, "started_below": True, "at_edge": True,
           "diverged": False, "curve": {"step": [0, 20], "loss": [0.147, 0.1],
                                        "sharpness": [1.58, 1.6]}}
    minibatch = {**run, "lr": 0.45, "two_over_lr": 2 / 0.45, "sharpness_last_third_median": 3.209,
                 "ratio_last_third": 0.722, "final_loss": 0.00318, "at_edge": False,
                 "batch_size": 20}
    workdir = tmp_path / "eos"
    workdir.mkdir()
    (workdir / "eos.json").write_text(json.dumps({"steps": 4000, "at_edge_count": 1,
                                                  "runs": [run], "minibatch": minibatch}))
    manifest = tmp_path / "figures.tsv"
    manifest.write_text(f"eos\t{workdir}\tpython -m experiments.edge_of_stability\n")
    out = tmp_path / "figures.json"
    r = subprocess.run([sys.executable, "-c", program, str(manifest), str(out)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    numbers = json.loads(out.read_text())["eos"]["numbers"]
    assert numbers["at_edge_count"] == 1 and numbers["steps"] == 4000
    (row,) = numbers["runs"]
    assert {k: row[k] for k in ("lr", "sharpness_init", "sharpness_last_third_median",
                                "ratio_last_third", "initial_loss", "final_loss")} == {
        "lr": 0.4, "sharpness_init": 1.58, "sharpness_last_third_median": 5.036,
        "ratio_last_third": 1.007, "initial_loss": 0.147, "final_loss": 0.00243}
    assert "curve" not in row
    assert numbers["minibatch"]["batch_size"] == 20
    assert numbers["minibatch"]["sharpness_last_third_median"] == 3.209
