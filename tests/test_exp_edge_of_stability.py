"""experiments/edge_of_stability.py end to end on a reduced configuration, and bad flags.

The acceptance run (default flags: four learning rates, 4,000 steps on 1,000 digits) takes
minutes and is run by hand; its numbers are in the README. Here a small net on 100 digits
checks the outputs and what holds at any size.
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from conftest import assert_bad_input, run_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_KEYS = {"lr", "sharpness_init", "sharpness_last_third_median", "two_over_lr", "final_loss",
            "steps"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_experiment("edge_of_stability", *args, timeout=240)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eos")
    proc = _run("--lrs=1.2,0.3,0.6", "--steps=60", "--sharpness_every=10", "--examples=100",
                "--hidden=12", "--minibatch_size=10", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr
    return proc, workdir, json.loads((workdir / "eos.json").read_text())


def test_eos_json_has_a_run_per_learning_rate(small):
    proc, workdir, eos = small
    runs = eos["runs"]
    assert [r["lr"] for r in runs] == [0.3, 0.6, 1.2]  # sorted
    for r in runs:
        assert RUN_KEYS <= set(r)
        assert r["steps"] == 60 and r["two_over_lr"] == pytest.approx(2 / r["lr"])
        curve = r["curve"]
        assert curve["step"] == [0, 10, 20, 30, 40, 50, 60]
        assert len(curve["loss"]) == len(curve["sharpness"]) == 7
        # The summary numbers are read off the curves: λ at step 0, the median of the
        # measurements in the last third of the steps (40, 50, 60), the last loss.
        assert r["sharpness_init"] == curve["sharpness"][0]
        assert r["sharpness_last_third_median"] == pytest.approx(np.median(curve["sharpness"][4:]))
        assert r["final_loss"] == curve["loss"][-1] and r["initial_loss"] == curve["loss"][0]
        assert r["ratio_last_third"] == pytest.approx(r["sharpness_last_third_median"] / (2 / r["lr"]),
                                                      rel=1e-5)
        assert r["at_edge"] == (0.9 <= r["ratio_last_third"] <= 1.2)
        assert r["started_below"] == (r["ratio_init"] < 0.5)
        assert r["estimates_converged"] == 1.0 and r["hvp_per_estimate"] >= 1
        assert not r["diverged"] and r["final_loss"] < r["initial_loss"]
    # Every run starts from the same weights: the same initial loss and sharpness.
    assert len({r["initial_loss"] for r in runs}) == 1 and len({r["sharpness_init"] for r in runs}) == 1
    assert runs[0]["sharpness_init"] > 0  # λmax of an MSE Hessian at init: positive
    assert eos["at_edge_count"] == sum(r["started_below"] and r["at_edge"] for r in runs)
    assert (workdir / "eos.png").read_bytes()[:8] == PNG_MAGIC
    config = json.loads((workdir / "config.json").read_text())
    assert config["steps"] == 60 and config["hidden"] == ["12"]
    assert "ended at the edge of stability" in proc.stdout


def test_minibatch_run_at_the_middle_learning_rate(small):
    _, _, eos = small
    mb = eos["minibatch"]
    assert RUN_KEYS <= set(mb) and mb["batch_size"] == 10
    assert mb["lr"] == 0.6  # unset --minibatch_lr: the middle of --lrs
    assert mb["sharpness_init"] == eos["runs"][0]["sharpness_init"]  # same start, same λ0
    assert mb["final_loss"] < mb["initial_loss"]


@pytest.mark.parametrize("extra, lr", [([], 0.2),  # even count: the lower of the two middle
                                       (["--minibatch_lr=0.1"], 0.1)])
def test_minibatch_learning_rate_is_the_lower_middle_or_the_one_given(tmp_path, extra, lr):
    proc = _run("--lrs=0.2,0.4", "--steps=10", "--sharpness_every=10", "--examples=20",
                "--hidden=4", "--minibatch_size=5", *extra, f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eos.json").read_text())["minibatch"]["lr"] == lr


def test_plot_without_minibatch_and_with_a_diverged_run(tmp_path):
    """eos.png's function in-process (no subprocess: cheap): no mini-batch run, and a run
    whose curve went non-finite (None in the JSON) still draws."""
    from gdlab.plots import plot_edge_of_stability

    curve = {"step": [0, 10, 20], "loss": [0.2, 0.1, None], "sharpness": [1.0, 2.0, None]}
    runs = [{"lr": 0.5, "two_over_lr": 4.0, "curve": curve}]
    plot_edge_of_stability(runs, tmp_path / "eos.png", title="t", minibatch=None)
    assert (tmp_path / "eos.png").read_bytes()[:8] == PNG_MAGIC


def test_bad_flag_exits_2_with_one_sentence(tmp_path):
    """One case (each costs a process start): the other checks are _cli's, tested elsewhere."""
    proc = _run("--sharpness_every=7", f"--workdir={tmp_path / 'out'}")
    assert_bad_input(proc, "--sharpness_every")
    assert "--steps=4000" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written
    # a Lanczos basis of 10⁵ vectors of 4.2·10⁶ parameters (1.7 TB) is counted, with its
    # 10⁵ × 10⁵ Ritz problems, not left to run out of memory
    proc = _run("--hidden=2000,2000", "--max_iters=100000", f"--workdir={tmp_path / 'out'}")
    assert_bad_input(proc, "or --max_iters (the Lanczos basis)")
    assert not (tmp_path / "out").exists()
    # more steps than a run counts, and a mini-batch rate with the mini-batch run off
    for args, needle in ((["--steps=100000000000000000000"], "its step counter is an int32"),
                         (["--minibatch_size=0", "--minibatch_lr=0.3"],
                          "--minibatch_size=0 turns that run off")):
        proc = _run(*args, f"--workdir={tmp_path / 'out'}")
        assert_bad_input(proc, needle)
        assert not (tmp_path / "out").exists()


def test_a_run_that_diverges_says_so(tmp_path):
    proc = _run("--lrs=50", "--steps=40", "--sharpness_every=20", "--examples=100",
                "--hidden=8", "--minibatch_size=0", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert "η=50 diverged: the loss was no longer finite by step" in proc.stdout
    run = json.loads((tmp_path / "eos.json").read_text())["runs"][0]
    assert run["diverged"] and run["diverged_by_step"] in (20, 40)


def test_help_lists_every_flag():
    proc = _run("--help")
    assert proc.returncode == 0
    for flag in ("lrs", "steps", "sharpness_every", "examples", "hidden", "init_variance",
                 "pixel_scaling", "minibatch_size", "minibatch_lr", "tol", "max_iters", "seed",
                 "workdir"):
        assert f"--{flag}" in proc.stdout, flag


def test_table_rows_keep_their_columns_for_a_huge_initial_variance(tmp_path):
    """--init_variance=1e6 starts the loss near 10⁶; fixed-point cells (1045280.0000) used to
    push every later column out from under its header."""
    proc = _run("--lrs=0.5", "--steps=20", "--sharpness_every=10", "--examples=50",
                "--hidden=8", "--minibatch_size=0", "--init_variance=1e6",
                f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["η", "2/η", "λ0"])
    row = lines[header + 1]
    run = json.loads((tmp_path / "eos.json").read_text())["runs"][0]
    assert run["initial_loss"] > 1e5  # the case in point

    def ends(line):
        return {m.end() for m in re.finditer(r"\S+", line)}

    assert len(row) == len(lines[header]) and ends(row) <= ends(lines[header]), (lines[header], row)
    cells = [float(c) for c in row.split()]
    assert cells[6] == pytest.approx(run["initial_loss"], rel=1e-2)
    assert cells[7] == pytest.approx(run["final_loss"], rel=1e-2)
