"""scripts/bench.py --quick runs (a smoke test, not a timing test) and reports every target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
