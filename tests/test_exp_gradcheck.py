"""experiments.gradcheck, the command line: a small config and every layer pass and write
their JSON report, the CNN and the transformer pass, bad flags exit 2 with one line, a
broken backward exits 1 on the right rows, and a workdir gets the config and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, assert_bad_input, run_experiment
from test_gradcheck import assert_json_report, row_prefix

from gdlab import gradcheck

# Every CLI run is a separate Python process that imports JAX (1–2 s each). Each test
# runs its own, so under xdist every process runs once, on the worker that has its test.

SMALL_FLAGS = ["--hidden=8", "--batch_size=4", "--input_dim=3"]

BAD_FLAGS = {
    "loss": (["--loss=nope"], "--loss"),
    "dtype": (["--dtype=float16"], "--dtype"),
    "hidden": (["--hidden=32,abc"], "--hidden"),
    "batch_size": (["--batch_size=0"], "--batch_size"),
    "layers": (["--layers=nope"], "--layers"),
    "model": (["--model=rnn"], "--model"),
    "model_loss": (["--model=cnn", "--loss=mse"], "--model=cnn is checked with --loss=xent"),
    "mixed_dtype": (["--mixed=float16"], "--mixed"),
    "mixed_layers": (["--mixed=bfloat16", "--layers=all"], "--mixed checks a model"),
    # a flag the check would not use is refused, not ignored under a passing report
    "cnn_hidden": (["--model=cnn", "--hidden=64"],
                   "--model=cnn checks a cnn of a fixed shape, so --hidden would be "
                   "ignored"),
    "transformer_input_dim": (["--model=transformer", "--input_dim=3", "--activation=relu"],
                              "so --activation, --input_dim would be ignored"),
    "layers_model": (["--layers=dense", "--model=cnn"],
                     "--layers checks single layers and losses on random inputs of their own, "
                     "so --model would be ignored"),
    "layers_hidden": (["--layers=all", "--hidden=4"], "so --hidden would be ignored"),
    "bce_num_classes": (["--loss=bce", "--num_classes=7"],
                        "--loss=bce checks an MLP of one output (one logit), so --num_classes "
                        "would be ignored"),
    "mixed_dtype_given": (["--mixed=bfloat16", "--dtype=float32"],
                          "--mixed computes in bfloat16 from float32 params, against float64, "
                          "so --dtype would be ignored"),
    "json_out": (["--json_out="], "--json_out must not be empty"),
    # sizes finite differences cannot take: refused, not an aborted interpreter
    "params": (["--input_dim=100000", "--hidden=100000"],
               "the random mlp has 10,000,600,005 parameters, over the 100,000 gradcheck takes"),
    "classes": (["--model=transformer", "--num_classes=100000"],
                "use a smaller --num_classes"),
    "batch_memory": (["--batch_size=1000000000"],
                     "--batch_size=1,000,000,000: the finite differences hold 512 perturbed "
                     "copies"),
    "json_out_folder": (["--json_out=/"], "--json_out=/ is a folder; give a file path"),
    "json_out_new_folder": (["--json_out=/no/such/dir/"],
                            "--json_out=/no/such/dir/ names a folder (it ends with /); give a "
                            "file path, e.g. --json_out=/no/such/dir/gradcheck.json"),
}

BROKEN_TANH_SCRIPT = textwrap.dedent("""
    import sys

    import jax.numpy as jnp

    import experiments.gradcheck
    from experiments import _cli
    from gdlab.layers import activations, stateless


    def broken_tanh():
        def fn(x):
            y = jnp.tanh(x)
            return y, y

        # 1 % too large: dx = 1.01 · dy · (1 − y²)
        return stateless("tanh", fn, lambda y, dy: 1.01 * dy * (1.0 - y * y))


    activations.ACTIVATIONS["tanh"] = broken_tanh
    sys.argv = ["gradcheck", "--activation=tanh", *sys.argv[1:]]
    _cli.run(experiments.gradcheck.main)
""")


def _start(args, *, script=None):
    cmd = [sys.executable, "-c", script, *args] if script else [
        sys.executable, "-m", "experiments.gradcheck", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def _run_cli(args, *, script=None):
    """``(returncode, stdout, stderr)`` of one CLI run."""
    proc = _start(args, script=script)
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


def test_cli_small_config_passes_and_writes_json(tmp_path):
    json_path = tmp_path / "small.json"
    rc, stdout, stderr = _run_cli([*SMALL_FLAGS, f"--json_out={json_path}"])
    assert rc == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].split()[:2] == ["path", "shape"]
    assert any(line.startswith("layers/0/w") and line.endswith("pass") for line in lines)
    assert "FAIL" not in stdout and "float64: 4/4 rows pass" in stdout
    report = json.loads(json_path.read_text())
    assert_json_report(report, "float64")
    assert report["passed"] is True
    assert [leaf["path"] for leaf in report["leaves"]] == [
        "layers/0/b", "layers/0/w", "layers/2/b", "layers/2/w"]
    assert report["leaves"][1]["shape"] == [3, 8]


def test_cli_layers_all_float32_passes(tmp_path):
    # float64 over every name is test_check_all_float64_passes_every_row_for_every_name
    json_path = tmp_path / "all.json"
    rc, stdout, stderr = _run_cli(["--layers=all", "--dtype=float32", f"--json_out={json_path}"])
    assert rc == 0, stderr
    assert "FAIL" not in stdout
    report = json.loads(json_path.read_text())
    assert_json_report(report, "float32")
    assert report["passed"] is True
    for name in gradcheck.CHECK_NAMES:
        assert any(leaf["path"].startswith(row_prefix(name)) for leaf in report["leaves"]), name


@pytest.mark.parametrize("model, dtype", [("cnn", "float64"), ("transformer", "float32")])
def test_cli_model_cnn_and_transformer_pass(tmp_path, model, dtype):
    json_path = tmp_path / f"{model}.json"
    rc, _, stderr = _run_cli([f"--model={model}", f"--dtype={dtype}", f"--json_out={json_path}"])
    assert rc == 0, stderr
    report = json.loads(json_path.read_text())
    assert_json_report(report, dtype)
    assert report["passed"] is True
    paths = [leaf["path"] for leaf in report["leaves"]]
    if model == "cnn":
        assert "layers/0/w" in paths and "layers/1/scale" in paths  # conv, batch norm
    else:
        assert "layers/0/table" in paths and "layers/2/layers/0/body/layers/1/value/b" in paths


@pytest.mark.parametrize("name", list(BAD_FLAGS))
def test_cli_bad_flag_exits_2_with_one_line(name):
    rc, stdout, stderr = _run_cli(BAD_FLAGS[name][0])
    assert rc == 2, (stdout, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert BAD_FLAGS[name][1] in lines[0]


def test_cli_broken_backward_exits_1():
    rc, stdout, stderr = _run_cli(SMALL_FLAGS, script=BROKEN_TANH_SCRIPT)
    assert rc == 1, stderr
    assert "Traceback" not in stderr
    rows = {line.split()[0]: line.split()[-1] for line in stdout.splitlines()[2:-1]}
    assert "FAIL" in stdout
    assert rows == {"layers/0/b": "FAIL", "layers/0/w": "FAIL",
                    "layers/2/b": "pass", "layers/2/w": "pass"}
    assert "float64: 2/4 rows pass" in stdout


def test_cli_workdir_gets_config_and_report(tmp_path):
    wd = tmp_path / "check"
    r = subprocess.run([sys.executable, "-m", "experiments.gradcheck", *SMALL_FLAGS, "--loss=mse",
                        f"--workdir={wd}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    config = json.loads((wd / "config.json").read_text())
    assert config["loss"] == "mse" and config["hidden"] == ["8"] and config["workdir"] == str(wd)
    report = json.loads((wd / "gradcheck.json").read_text())
    assert report["passed"] is True
    assert [leaf["path"] for leaf in report["leaves"]] == [
        "layers/0/b", "layers/0/w", "layers/2/b", "layers/2/w"]
    # A bad flag writes nothing.
    bad = subprocess.run([sys.executable, "-m", "experiments.gradcheck", "--layers=nope",
                          f"--workdir={tmp_path / 'bad'}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert bad.returncode == 2 and not (tmp_path / "bad").exists()


def test_cli_json_out_never_writes_over_a_runs_files(tmp_path):
    run = tmp_path / "run"  # a run's folder: its marks and its metrics
    run.mkdir()
    for name, text in (("config.json", "{}"), ("flags.txt", ""), ("metrics.jsonl", "{}\n")):
        (run / name).write_text(text)
    proc = run_experiment("gradcheck", *SMALL_FLAGS, f"--json_out={run / 'metrics.jsonl'}")
    assert_bad_input(proc, "would replace a file of the run in")
    assert (run / "metrics.jsonl").read_text() == "{}\n"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    proc = run_experiment("gradcheck", *SMALL_FLAGS, f"--workdir={fresh}",
                          f"--json_out={fresh / 'config.json'}")
    assert_bad_input(proc, "is the config.json this run writes into --workdir")
    assert not any(fresh.iterdir())
    proc = run_experiment("gradcheck", *SMALL_FLAGS, f"--json_out={run / 'check.json'}")
    assert proc.returncode == 0, proc.stderr  # a new file beside a run's is no harm
    assert json.loads((run / "check.json").read_text())["passed"] is True
