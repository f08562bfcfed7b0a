"""experiments/descent_modes.py: a tiny run's outputs, and bad flags."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import assert_bad_input, run_experiment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_modes(*args: str) -> subprocess.CompletedProcess:
    return run_experiment("descent_modes", *args)


def test_three_modes_same_budget_on_digits(tmp_path):
    proc = run_modes("--epochs=2", "--batch_size=50", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "modes.json").read_text())
    n = out["n_train"]
    assert out["epochs"] == 2 and set(out["modes"]) == {"batch", "minibatch", "sgd"}
    expected = {"batch": (n, 1), "minibatch": (50, -(-n // 50)), "sgd": (1, n)}
    initial = None
    for mode, run in out["modes"].items():
        assert (run["batch_size"], run["steps_per_epoch"]) == expected[mode]
        assert run["status"] == "completed" and run["diverged_at_step"] is None
        rows = run["history"]
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        assert [r["examples"] for r in rows] == [0, n, 2 * n]  # same examples processed
        assert [r["step"] for r in rows] == [0, run["steps_per_epoch"], 2 * run["steps_per_epoch"]]
        walls = [r["wall_seconds"] for r in rows]
        assert walls[0] == 0 and walls == sorted(walls)
        assert walls[-1] == pytest.approx(sum(r["seconds"] for r in rows))
        assert run["train_seconds"] == pytest.approx(walls[-1])
        for r in rows:
            assert {"train_loss", "test_loss", "test_accuracy"} <= set(r)
        assert rows[-1]["train_loss"] < rows[0]["train_loss"]
        initial = initial or rows[0]
        assert rows[0] == initial  # one shared starting point
    assert out["modes"]["sgd"]["lr"] == 0.01 and out["modes"]["batch"]["lr"] == 1.0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dataset"] == "digits" and config["batch_size"] == 50 and config["epochs"] == 2
    assert (tmp_path / "modes.png").read_bytes().startswith(PNG_MAGIC)
    assert "outputs in" in proc.stdout


@pytest.mark.parametrize("args, name", [
    (["--lr_sgd=0"], "--lr_sgd"),
    (["--dataset=houses", "--batch_size=5000"], "--batch_size"),
])
def test_bad_flags_exit_2_with_one_sentence(tmp_path, args, name):
    workdir = tmp_path / "out"
    proc = run_modes(*args, f"--workdir={workdir}")
    assert_bad_input(proc, name)
    assert not workdir.exists()
