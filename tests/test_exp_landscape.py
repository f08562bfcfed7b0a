"""The landscape experiment end to end: a small run's outputs, and bad flags."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import assert_bad_input, run_experiment
from gdlab import landscapes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    return run_experiment("landscape", *args, timeout=120)


def test_small_run_writes_plot_and_json(tmp_path):
    proc = _run("--functions=bowl,himmelblau", "--momentum=0.9", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "landscape.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "config.json").read_text())["functions"] == ["bowl", "himmelblau"]
    result = json.loads((tmp_path / "landscape.json").read_text())
    assert [f["name"] for f in result["functions"]] == ["bowl", "himmelblau"]
    bowl, himmelblau = result["functions"]
    defaults = landscapes.bowl()
    assert len(bowl["runs"]) == 2 * len(defaults.lrs)  # gd and momentum, each lr
    assert {r["optimizer"] for r in bowl["runs"]} == {"gd", "momentum"}
    by_key = {(r["optimizer"], r["lr"]): r for r in bowl["runs"]}
    _, good, large = defaults.lrs
    assert by_key["gd", good]["distance_to_minimum"] < 0.05  # the good lr ends near (0, 0)
    assert not by_key["gd", good]["diverged"]
    assert by_key["gd", large]["diverged"]                    # α > 2/b on the bowl
    assert by_key["gd", large]["diverged_at_step"] >= 1
    assert not by_key["momentum", large]["diverged"]          # momentum's bound is 2(1+β)/b
    for run in bowl["runs"] + himmelblau["runs"]:
        assert len(run["final_point"]) == 2
        assert run["final_loss"] >= 0
    assert len(himmelblau["minima"]) == 4
    assert "device" in result and "jax_version" in result


def test_lrs_steps_and_plain_gd_only(tmp_path):
    proc = _run("--functions=rosenbrock", "--lrs=0.001", "--steps=5", "--momentum=0",
                f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    (fn,) = json.loads((tmp_path / "landscape.json").read_text())["functions"]
    assert [(r["optimizer"], r["lr"], r["steps"]) for r in fn["runs"]] == [("gd", 0.001, 5)]


@pytest.mark.parametrize("flag", [
    "--functions=volcano", "--lrs=0.1,fast", "--momentum=1", "--steps=0",
])
def test_bad_flags_exit_2_with_one_sentence(flag, tmp_path):
    proc = _run(flag, f"--workdir={tmp_path / 'out'}")
    assert_bad_input(proc, flag.split("=")[0])
    assert not (tmp_path / "out").exists()  # nothing written


def test_help_lists_every_flag():
    proc = _run("--help")
    assert proc.returncode == 0
    for flag in ("functions", "lrs", "momentum", "steps", "workdir"):
        assert f"--{flag}" in proc.stdout, flag
