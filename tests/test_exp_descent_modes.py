"""experiments/descent_modes.py: a tiny run's outputs, and bad flags."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import assert_bad_input, run_experiment
from gdlab.plots import modes as modes_plots

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
        curve = run["curve"]
        updates = 2 * run["steps_per_epoch"]
        assert sum(curve["count"]) == updates  # every update's batch loss, each in one bin
        assert curve["updates"] == sorted(curve["updates"]) and curve["updates"][0] == 0
        assert curve["examples"][:2] == [0, run["batch_size"]]  # update 0, then update 1 alone
        assert all(loss is not None and loss > 0 for loss in curve["batch_loss"])
    # batch descent's batch is the whole training set: its batch loss at update k is the train
    # loss after k − 1 updates (epochs), each alone in its bin
    batch = out["modes"]["batch"]
    assert batch["curve"]["count"] == [1, 1] and batch["curve"]["examples"] == [0, n]
    assert batch["curve"]["batch_loss"] == pytest.approx(
        [r["train_loss"] for r in batch["history"][:2]], rel=1e-5)
    assert out["modes"]["sgd"]["lr"] == 0.01 and out["modes"]["batch"]["lr"] == 1.0
    assert out["modes"]["minibatch"]["lr"] == 0.3
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dataset"] == "digits" and config["batch_size"] == 50 and config["epochs"] == 2
    assert (tmp_path / "modes.png").read_bytes().startswith(PNG_MAGIC)
    assert "outputs in" in proc.stdout


@pytest.mark.parametrize("args, name", [
    (["--lr_sgd=0"], "--lr_sgd"),
    (["--momentum=1"], "--momentum"),
    (["--weight_decay=nan"], "--weight_decay"),
    (["--dataset=houses", "--batch_size=5000"], "--batch_size"),
    (["--epochs=3000000000"], "--epochs=3000000000 of sgd makes 4,314,000,000,000 updates"),
])
def test_bad_flags_exit_2_with_one_sentence(tmp_path, args, name):
    workdir = tmp_path / "out"
    proc = run_modes(*args, f"--workdir={workdir}")
    assert_bad_input(proc, name)
    assert not workdir.exists()


# --- the figure's data ------------------------------------------------------------------

def test_examples_after_counts_whole_epochs_then_batches():
    kw = {"steps_per_epoch": 10, "batch_size": 5, "num_examples": 48}  # the last batch holds 3
    assert modes_plots.examples_after(0, **kw) == 0
    assert modes_plots.examples_after(9, **kw) == 45
    assert modes_plots.examples_after(10, **kw) == 48
    assert modes_plots.examples_after(13, **kw) == 63
    np.testing.assert_array_equal(modes_plots.examples_after(np.array([20, 21]), **kw), [96, 101])


def test_binned_curve_keeps_every_update_once_and_the_first_exactly():
    losses = np.arange(1.0, 101.0)  # update k has batch loss k
    losses[50] = np.inf              # a non-finite loss is left out of its bin's mean
    curve = modes_plots.binned_curve(losses, steps_per_epoch=10, batch_size=5, num_examples=48,
                                     bins=12)
    assert sum(curve["count"]) == 100
    assert curve["updates"][:2] == [0.0, 1.0] and curve["batch_loss"][:2] == [1.0, 2.0]
    assert curve["count"][:2] == [1, 1]
    start = 0
    for count, updates, loss in zip(curve["count"], curve["updates"], curve["batch_loss"]):
        done = np.arange(start, start + count)  # updates done before each loss of the bin
        assert updates == pytest.approx(done.mean())
        values = losses[done]
        assert loss == pytest.approx(values[np.isfinite(values)].mean())
        start += count
    widths = curve["count"]
    assert widths[-1] > widths[2]  # log-spaced: the bins widen
    assert modes_plots.binned_curve([], steps_per_epoch=1, batch_size=1, num_examples=1)["count"] == []


@pytest.mark.parametrize("epochs", [20, 21, 48, 100, 300])
def test_batch_descents_curve_is_every_update_however_many_epochs(epochs):
    """One update an epoch: every update is its own bin, its own loss (log-spaced edges
    rounded to integers merged neighbours from 21 epochs up); a mini-batch run of no more
    updates than bins + 2 likewise."""
    losses = np.arange(1.0, epochs + 1.0)
    curve = modes_plots.binned_curve(losses, steps_per_epoch=1, batch_size=800,
                                     num_examples=800)
    assert curve["count"] == [1] * epochs
    assert curve["batch_loss"] == list(losses) and curve["updates"] == list(range(epochs))
    short = modes_plots.binned_curve(np.arange(1.0, 51.0), steps_per_epoch=10, batch_size=5,
                                     num_examples=48)
    assert short["count"] == [1] * 50


def test_modes_figure_draws_each_mode_against_updates_and_examples():
    n = 100
    runs = {}
    for mode, b in (("batch", n), ("minibatch", 10), ("sgd", 1)):
        steps = -(-n // b)
        history = [{"epoch": e, "step": e * steps, "examples": e * n, "wall_seconds": 0.1 * e,
                    "train_loss": 1.0 / (1 + e), "test_loss": 1.1 / (1 + e)} for e in range(3)]
        curve = modes_plots.binned_curve(1.0 / (1 + np.arange(2 * steps) / steps),
                                         steps_per_epoch=steps, batch_size=b, num_examples=n)
        runs[mode] = {"label": mode, "history": history, "curve": curve}
    fig = modes_plots.modes_figure(runs, title="t")
    updates_ax, examples_ax, wall_ax = fig.axes
    assert updates_ax.get_xscale() == "symlog" and examples_ax.get_xscale() == "symlog"
    for mode, run in runs.items():
        lines = {ln.get_label(): ln for ln in examples_ax.get_lines()}
        xs = lines[f"{mode}: batch loss of its updates"].get_xdata()
        np.testing.assert_allclose(xs, run["curve"]["examples"])
        dots = lines[f"{mode}: train loss on all N, each epoch's end"]
        np.testing.assert_allclose(dots.get_xdata(), [0, n, 2 * n])
        lines = {ln.get_label(): ln for ln in updates_ax.get_lines()}
        np.testing.assert_allclose(lines[f"{mode}: train loss on all N, each epoch's end"]
                                   .get_xdata(), [r["step"] for r in run["history"]])
    walls = {ln.get_label(): ln.get_xdata() for ln in wall_ax.get_lines()}
    np.testing.assert_allclose(walls["sgd: test"], [0.0, 0.1, 0.2])
    # within the first epoch sgd has points, batch descent none
    assert min(x for x in runs["sgd"]["curve"]["examples"] if x > 0) < n
    assert [x for x in runs["batch"]["curve"]["examples"] if 0 < x < n] == []


def test_diverged_modes_say_so_and_count_the_examples_their_updates_used(tmp_path):
    """At lr 1e4 every mode diverges: its label says at which update, and its last row's
    examples are those of the updates made (a run stopped mid-epoch is not epoch × N)."""
    proc = run_modes("--epochs=2", "--lr_batch=1e4", "--lr_minibatch=1e4", "--lr_sgd=1e4",
                     f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "modes.json").read_text())
    n = out["n_train"]
    for mode, run in out["modes"].items():
        assert run["status"] == "diverged", mode
        assert run["label"] == (f"{mode} (B={run['batch_size']}, lr=10000, diverged at update "
                                f"{run['diverged_at_step']})")
        last = run["history"][-1]
        assert last["step"] == run["diverged_at_step"] - 1
        steps, size = run["steps_per_epoch"], run["batch_size"]
        assert last["examples"] == (last["step"] // steps) * n + (last["step"] % steps) * size
    assert out["modes"]["sgd"]["history"][-1]["examples"] < n  # sgd: within its first epoch
    assert "warning: sgd diverged at update" in proc.stderr
    assert "--lr_sgd=10000 is likely too large: try --lr_sgd=1000\n" in proc.stderr
    assert "--model=cnn" not in proc.stderr  # its plain gd rates do not suit the CNN


def test_a_mode_whose_loss_rose_short_of_diverging_warns(tmp_path):
    """Full-batch gd at lr 100 on houses' linear model: one epoch takes the loss up more
    than tenfold, short of the blow-up rule; the batch mode warns, naming its own flag."""
    proc = run_modes("--dataset=houses", "--model=linear", "--loss=mse", "--lr_batch=100",
                     "--epochs=1", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "modes.json").read_text())
    assert out["modes"]["batch"]["status"] == "completed"
    assert ("warning: batch's training loss rose from" in proc.stderr
            and "--lr_batch=100 is likely too large: try --lr_batch=10\n" in proc.stderr), proc.stderr


def test_default_rates_follow_the_initial_sharpness_on_regression(tmp_path):
    proc = run_modes("--dataset=houses", "--epochs=2", "--lr_sgd=0.001", f"--workdir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "modes.json").read_text())
    for mode, run in out["modes"].items():
        assert run["status"] == "completed", mode
        assert run["history"][-1]["train_loss"] < run["history"][0]["train_loss"]
    assert out["modes"]["batch"]["lr"] < 0.1 and out["modes"]["minibatch"]["lr"] < 0.03
    assert out["modes"]["sgd"]["lr"] == 0.001  # given: it stands
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lr_batch"] == out["modes"]["batch"]["lr"]
    assert "lr_batch=" in proc.stdout and "lr_sgd=" not in proc.stdout.splitlines()[1]


def test_a_replay_keeps_a_default_rate_the_run_gave(tmp_path):
    first, replay = tmp_path / "first", tmp_path / "replay"
    proc = run_modes("--dataset=houses", "--epochs=1", "--lr_batch=1", "--lr_sgd=0.001",
                     f"--workdir={first}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((first / "config.json").read_text())["lr_batch"] == 1.0
    proc = run_modes(f"--flagfile={first / 'flags.txt'}", f"--workdir={replay}")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((replay / "config.json").read_text())
    assert config["lr_batch"] == 1.0 and config["lr_sgd"] == 0.001
