"""Runs that survive, through the train and evaluate commands: bitwise resume after
SIGKILL, SIGTERM, one run per workdir, start-up failures that leave an earlier run
untouched, evaluate. The checkpoint API itself is tested in test_checkpoint.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, assert_bad_input, assert_tree_equal, run_experiment

from gdlab import checkpoint

# SGD on digits: ~1400 updates per epoch, so an epoch lasts long enough to be interrupted.
FLAGS = ["--hidden=16", "--descent=sgd", "--optimizer=gd", "--lr=0.01",
         "--checkpoint_seconds=0"]
TIMING = ("seconds", "examples_per_second")


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "experiments.train", *args], cwd=ROOT,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def _rows(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]



@pytest.mark.slow
def test_sigkill_after_the_second_checkpoint_then_resume_is_bitwise_identical(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # 30 epochs: after the second checkpoint the run still has many seconds to go, so the
    # kill lands mid-run however late a loaded machine lets this process look. The
    # sharpness probe too must give the same bits after the resume.
    args = [*FLAGS, "--epochs=30", "--sharpness_every=5", "--sharpness_examples=64"]
    proc = _start(*args, f"--workdir={killed}")
    _wait_for(lambda: checkpoint.epochs(killed)[-1:] >= [2], proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.latest_epoch(killed) < 30
    trained_before = checkpoint.read_meta(killed)["meta"]["wall_seconds"]  # up to the save
    assert trained_before > 0
    r = run_experiment("train", *args, f"--workdir={killed}", "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout
    r = run_experiment("train", *args, f"--workdir={whole}")
    assert r.returncode == 0, r.stderr
    # bitwise: the same bits, not merely close
    assert_tree_equal(checkpoint.restore(whole), checkpoint.restore(killed))
    assert _rows(killed) == _rows(whole)
    assert [r["epoch"] for r in _rows(whole)] == list(range(31))
    assert all(r["sharpness"] > 0 for r in _rows(whole) if r["epoch"] % 5 == 0)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "completed"
    # the run's time counts the part before the kill too (up to its checkpoint), and each
    # checkpoint keeps the time up to it
    assert summary["wall_seconds"] > trained_before
    assert checkpoint.read_meta(killed)["meta"]["wall_seconds"] > trained_before
    assert checkpoint.epochs(whole) == [28, 29, 30]  # --keep_checkpoints=3


@pytest.mark.slow
def test_sigterm_finishes_the_epoch_checkpoints_and_says_interrupted(tmp_path):
    proc = _start(*FLAGS, "--epochs=50", "--eval_every=3", f"--workdir={tmp_path}")
    _wait_for(lambda: checkpoint.latest_epoch(tmp_path) is not None, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert "interrupted after epoch" in stdout and "--resume" in stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_run"] < 50
    state = checkpoint.restore(tmp_path)  # loadable, and the epoch the summary names
    assert summary["checkpoint_epoch"] == summary["epochs_run"] == checkpoint.latest_epoch(tmp_path)
    assert int(state.step) == summary["steps"]
    # the epoch it stopped after, though metrics rows come every third epoch (and epoch 0)
    assert [r["epoch"] for r in _rows(tmp_path)] == list(range(0, summary["epochs_run"] + 1, 3))


@pytest.mark.slow
def test_a_second_run_into_a_busy_workdir_exits_2_and_the_first_finishes(tmp_path):
    # 20 epochs: still running when the second process, started after it, looks
    first = _start(*FLAGS, "--epochs=20", f"--workdir={tmp_path}")
    _wait_for(lambda: (tmp_path / "flags.txt").exists(), first)
    second = run_experiment("train", "--hidden=8", "--epochs=1", f"--workdir={tmp_path}",
                            "--overwrite")
    assert_bad_input(second, "in use by another running gdlab run")
    _, stderr = first.communicate(timeout=240)
    assert first.returncode == 0, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 20
    assert [r["epoch"] for r in _rows(tmp_path)] == list(range(21))
    assert json.loads((tmp_path / "config.json").read_text())["hidden"] == ["16"]


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    r = run_experiment("train", "--hidden=8", "--epochs=2", f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr
    return workdir


@pytest.mark.parametrize("args, needle", [
    (["--seed=18446744073709551616"], "--seed"),
    (["--seed=-1"], "--seed"),
    (["--lr=-1"], "--lr"),
    (["--weight_decay=nan"], "--weight_decay"),
    (["--weight_decay=inf"], "--weight_decay"),
    (["--lr=1e39"], "overflows float32"),
    (["--data_dir=/tmp"], "--data_dir"),
    (["--hidden=8", "--epochs=2"], "already holds a run"),
    (["--hidden=9", "--epochs=2", "--resume"], "--hidden=8, not --hidden=9"),
    (["--hidden=8", "--epochs=2", "--seed=1", "--resume"], "--seed=0, not --seed=1"),
    # every flag that differs, in one sentence, --model first: it sets the others' defaults,
    # which differ too (a user told only the first would fix one flag per attempt)
    (["--epochs=3", "--model=cnn", "--resume"],
     "was trained with --model=mlp --epochs=2 --hidden=8 --lr=0.05 --optimizer=momentum "
     "--schedule=constant, not --model=cnn --epochs=3 --hidden=64 --lr=0.002 --optimizer=adam "
     "--schedule=cosine; resume with the same flags"),
    (["--hidden=9", "--model=cnn", "--resume"], "--hidden is for --model=mlp"),
    (["--hidden=8", "--epochs=2", "--resume", "--overwrite"], "contradict"),
])
def test_a_failed_start_leaves_the_earlier_run_byte_for_byte(finished_run, args, needle):
    before = _snapshot(finished_run)
    r = run_experiment("train", *args, f"--workdir={finished_run}")
    assert_bad_input(r, needle)
    assert _snapshot(finished_run) == before


def test_a_short_run_checkpoints_only_at_its_end(finished_run):
    """Two quick epochs under the default --checkpoint_seconds=60: no periodic checkpoint
    is due, the one at the end is saved."""
    assert checkpoint.epochs(finished_run) == [2]


def test_evaluate_reads_the_latest_checkpoint_or_the_epoch_asked_for(tmp_path):
    """--checkpoint_every=2 over 3 epochs keeps the checkpoints of epochs 2 and 3 (the
    end); evaluate reads the latest, whose metrics are the summary's, or --epoch's."""
    workdir = tmp_path / "run"
    r = run_experiment("train", "--hidden=8", "--epochs=3", "--checkpoint_every=2",
                       "--checkpoint_seconds=0", f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr
    assert checkpoint.epochs(workdir) == [2, 3]
    summary = json.loads((workdir / "summary.json").read_text())

    def evaluate(*args):
        r = run_experiment("evaluate", f"--workdir={workdir}", *args)
        assert r.returncode == 0, r.stderr
        test_line = next(line for line in r.stdout.splitlines() if line.startswith("test:"))
        return r.stdout, dict(zip(test_line.split()[1::2], map(float, test_line.split()[2::2])))

    out, latest = evaluate()
    assert "checkpoint of epoch 3" in out
    assert latest["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    out, second = evaluate("--epoch=2")
    assert "checkpoint of epoch 2" in out
    assert second["loss"] != pytest.approx(latest["loss"], rel=1e-5)


def test_evaluate_reloads_the_run_and_matches_its_summary(finished_run):
    r = run_experiment("evaluate", f"--workdir={finished_run}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((finished_run / "summary.json").read_text())
    test_line = next(line for line in r.stdout.splitlines() if line.startswith("test:"))
    values = dict(zip(test_line.split()[1::2], map(float, test_line.split()[2::2])))
    assert values["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert values["accuracy"] == pytest.approx(summary["test_accuracy"], rel=1e-6)
    assert_bad_input(run_experiment("evaluate", f"--workdir={finished_run / 'nope'}"),
                     "no config.json")
    # data or model flags would be replaced by the run's own: refused, not silently ignored
    r = run_experiment("evaluate", f"--workdir={finished_run}", "--dataset=moons", "--hidden=5")
    assert_bad_input(r, "evaluate takes only --workdir and --epoch")
    assert "--dataset, --hidden would be ignored" in r.stderr


def test_orbax_says_nothing_of_a_damaged_metadata_file_it_reads_past(finished_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    (copy / "checkpoints" / "2" / "_CHECKPOINT_METADATA").write_text("garbage{")
    r = run_experiment("evaluate", f"--workdir={copy}")
    assert r.returncode == 0, r.stderr
    assert "checkpoint of epoch 2" in r.stdout
    assert "Failed to json parse" not in r.stderr and r.stderr.strip() == "", r.stderr


@pytest.mark.parametrize("edit, needle", [
    (lambda config: {**config, "hidden": ["a"]}, "--hidden must be comma-separated positive"),
    (lambda config: {**config, "lr": "fast"}, "'fast' is not a valid --lr"),
    (lambda config: [1, 2], "must hold a JSON object of flag values, not list"),
])
def test_evaluate_checks_a_hand_edited_config_like_a_command_line(finished_run, tmp_path, edit,
                                                                 needle):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(edit(config)))
    assert_bad_input(run_experiment("evaluate", f"--workdir={copy}"), needle)


def _damage(workdir):
    """The latest checkpoint's largest array file, cut to 100 bytes."""
    latest = workdir / "checkpoints" / str(checkpoint.latest_epoch(workdir))
    biggest = max((p for p in latest.rglob("*") if p.is_file() and p.parent.name == "d"),
                  key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as f:
        f.truncate(100)


def _foreign_config(workdir):
    config = json.loads((workdir / "config.json").read_text())
    (workdir / "config.json").write_text(json.dumps({**config, "dtype": "float64",
                                                     "layers": "all"}))


def _folder_for(workdir, name):
    (workdir / name).unlink()
    (workdir / name).mkdir()
    (workdir / name / "notes.txt").write_text("kept")


@pytest.mark.parametrize("harm, extra, needle", [
    (_damage, [], "cannot be read (Exception: Encountered error while reading array"),
    (lambda w: (w / "checkpoints" / "7").mkdir(), [], "checkpoints/7 cannot be read"),
    # without its config.json the folder is no run to go on with (its flags are unknown)
    (lambda w: (w / "config.json").unlink(), ["--optimizer=adam"],
     "--resume: {w} holds files but no run (a run's config.json and flags.txt are not both "
     "there"),
    # metrics.jsonl lost since the checkpoint: going on would rewrite metrics.csv without them
    (lambda w: (w / "metrics.jsonl").unlink(), [],
     "{w}/metrics.jsonl holds 0 rows where the run had written 3 when its checkpoint was saved"),
    # a file the run rewrites replaced by a folder: one sentence before anything is written,
    # not a traceback (for summary.json, at the end of the resumed run)
    (lambda w: _folder_for(w, "metrics.jsonl"), [], "--resume: {w}/metrics.jsonl is a folder"),
    (lambda w: _folder_for(w, "summary.json"), [], "--resume: {w}/summary.json is a folder"),
    (lambda w: (shutil.rmtree(w / "checkpoints"), _folder_for(w, "metrics.csv")), [],
     "--resume: {w}/metrics.csv is a folder where the run writes its metrics.csv"),
    # another experiment's folder (gradcheck's flags) whose shared flags happen to match
    (_foreign_config, [], "holds the run of another program (its config.json has --dtype, "
                          "--layers, which this one does not take)"),
    (lambda w: (w / "config.json").write_text("[1, 2]"), [],
     "--resume: {w}/config.json holds a JSON list, not the object of flag values a run "
     "writes"),
])
def test_resume_from_a_checkpoint_it_cannot_use_is_one_sentence(finished_run, tmp_path, harm,
                                                               extra, needle):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    harm(copy)
    before = _snapshot(copy)
    r = run_experiment("train", "--hidden=8", "--epochs=2", *extra, "--resume",
                       f"--workdir={copy}")
    assert_bad_input(r, needle.format(w=copy))
    assert _snapshot(copy) == before
    if harm is _damage:  # evaluate says the same
        assert_bad_input(run_experiment("evaluate", f"--workdir={copy}"), "cannot be read")


def test_overwrite_replaces_a_run_but_not_a_folder_that_holds_no_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "src").mkdir()
    (tmp_path / "config.json").write_text('{"name": "my-app"}')  # a project's own config
    before = _snapshot(tmp_path)
    r = run_experiment("train", "--hidden=8", "--epochs=1", "--overwrite",
                       f"--workdir={tmp_path}")
    assert_bad_input(r, "holds files but no run (a run's config.json and flags.txt are not "
                        "both there: config.json, notes.txt, src)")
    assert _snapshot(tmp_path) == before
    (tmp_path / "metrics.csv").write_text("a,b\n")  # --resume must not write over them either
    before = _snapshot(tmp_path)
    r = run_experiment("train", "--hidden=8", "--epochs=1", "--resume", f"--workdir={tmp_path}")
    assert_bad_input(r, f"--resume: {tmp_path} holds files but no run (a run's config.json "
                        "and flags.txt are not both there: config.json, metrics.csv, notes.txt, "
                        "src); choose the run's own workdir")
    assert _snapshot(tmp_path) == before


def test_an_unset_variable_in_a_path_flag_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.delenv("GDLAB_NO_SUCH_VAR", raising=False)
    r = run_experiment("train", "--hidden=8", "--epochs=1",
                       f"--workdir={tmp_path}/$GDLAB_NO_SUCH_VAR/run")
    assert_bad_input(r, "the environment variable $GDLAB_NO_SUCH_VAR is not set")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_compares_the_checkpoints_own_digest_and_summary_for_older_ones(tmp_path):
    """evaluate compares the data read now with the digest of the checkpoint it reads; a
    checkpoint saved before checkpoints kept one falls back to summary.json's."""
    workdir = tmp_path / "run"
    r = run_experiment("train", "--hidden=8", "--epochs=1", f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr
    digest = checkpoint.read_meta(workdir, 1)["meta"]["data_digest"]
    summary_path = workdir / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["data_digest"] == digest
    summary["data_digest"] = "0" * 64  # as if the run had ended on other data
    summary_path.write_text(json.dumps(summary))
    checkpoint.save(workdir, checkpoint.restore(workdir, 1), epoch=2, metrics_rows=1,
                    meta={"wall_seconds": 1.0})  # the meta record of an older checkpoint
    r = run_experiment("evaluate", f"--workdir={workdir}", "--epoch=1")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = run_experiment("evaluate", f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(
        "warning: the data (digits) as read now is not what the run trained on up to epoch 2 "
        "(summary.json's data_digest)"), r.stderr
    # a run saving beside prunes epoch 1 once its state is read: its digest (which matched)
    # is unknown then, and summary.json's, another data set's, is not compared instead
    pruned = ("import os, sys\n"
              "from gdlab import checkpoint\n"
              "restore = checkpoint.restore\n"
              "def pruned(workdir, epoch=None):\n"
              "    state = restore(workdir, epoch)\n"
              "    os.rename(os.path.join(checkpoint.directory(workdir), '1'),\n"
              "              os.path.join(checkpoint.directory(workdir), '3'))\n"
              "    return state\n"
              "checkpoint.restore = pruned\n"
              "from experiments import evaluate\n"
              f"sys.argv = ['evaluate', '--workdir={workdir}', '--epoch=1']\n"
              "evaluate.cli()\n")
    r = subprocess.run([sys.executable, "-c", pruned], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)},
                       timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "checkpoint of epoch 1" in r.stdout


def test_a_table_run_keeps_its_data_path_and_resume_refuses_changed_data(tmp_path):
    """config.json holds the table's absolute path, so evaluate works from any folder and
    reports the RMSE in the target's units as the summary does; after a price is edited,
    evaluate and --resume warn; a --resume after the table gained a category (one more
    input column) is one sentence and leaves the run as it was."""
    rng = np.random.default_rng(0)
    colours = rng.choice(["red", "green"], 60)
    x = rng.normal(size=60)
    price = 1000.0 * (3 * x + (colours == "red")) + rng.normal(scale=100.0, size=60)
    table = tmp_path / "prices.csv"
    table.write_text("colour,x,price\n" + "".join(
        f"{c},{a:.4f},{p:.2f}\n" for c, a, p in zip(colours, x, price)))
    workdir = tmp_path / "run"
    args = ["--dataset=csv", f"--csv_path={os.path.relpath(table, ROOT)}", "--target=price",
            "--hidden=8", "--epochs=3", "--checkpoint_seconds=0", f"--workdir={workdir}"]
    r = run_experiment("train", *args)
    assert r.returncode == 0, r.stderr
    assert json.loads((workdir / "config.json").read_text())["csv_path"] == str(table)
    summary = json.loads((workdir / "summary.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}"],
                       cwd=elsewhere, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    test_line = next(line for line in r.stdout.splitlines() if line.startswith("test:"))
    values = dict(zip(test_line.split()[1::2], map(float, test_line.split()[2::2])))
    assert summary["test_rmse"] > 50  # in dollars, not in standardised units
    assert values["rmse"] == pytest.approx(summary["test_rmse"], rel=1e-5)
    assert "warning" not in r.stderr and len(summary["data_digest"]) == 64
    # a price edited since (the shapes kept): the metrics are not the run's, and evaluate says so
    lines = table.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",99999.00"
    table.write_text("\n".join(lines) + "\n")
    r = run_experiment("evaluate", f"--workdir={workdir}")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == (
        "warning: the data (csv) as read now is not what the run trained on up to epoch 3 "
        "(its checkpoint's data_digest): it changed since, or was read on another machine; "
        "these metrics are not the run's own")
    # a --resume says so too (the checkpoint keeps the digest), and summary.json keeps it:
    # here of a run stopped after epoch 2, so its third epoch trains on the table read now
    shutil.rmtree(workdir / "checkpoints" / "3")
    r = run_experiment("train", *args, "--resume")
    assert r.returncode == 0, r.stderr
    warning = ("--resume: the data (csv) as read now is not what the run trained on up to "
               "epoch 2 (its checkpoint's data_digest): it changed since, or was read on "
               "another machine; the run goes on on the data read now")
    assert r.stderr.strip() == f"warning: {warning}"
    resumed = json.loads((workdir / "summary.json").read_text())
    assert resumed["data_warnings"] == [warning]
    assert resumed["data_digest"] != summary["data_digest"]
    # epoch 3's checkpoint was trained on the table read now, epoch 2's on the one before
    assert run_experiment("evaluate", f"--workdir={workdir}").stderr == ""
    r = run_experiment("evaluate", f"--workdir={workdir}", "--epoch=2")
    assert r.returncode == 0, r.stderr
    assert "not what the run trained on up to epoch 2 (its checkpoint's" in r.stderr

    with table.open("a") as f:
        f.write("blue,0.5,1500.00\n")
    before = _snapshot(workdir)
    r = run_experiment("train", *args, "--resume")
    assert_bad_input(r, "--resume: the checkpoint in")
    assert "does not fit this run" in r.stderr and "have the data, the flags or gdlab's version changed" in r.stderr
    assert _snapshot(workdir) == before


def test_workdir_outputs_flags_replay_and_tilde(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    r = subprocess.run([sys.executable, "-m", "experiments.train", "--hidden=8", "--epochs=1",
                        "--workdir=~/runs/a"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "HOME": str(home)}, timeout=300)
    assert r.returncode == 0, r.stderr
    workdir = home / "runs" / "a"
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["gdlab_version"] and "git_commit" in summary
    assert any(p.name.startswith("events.out.tfevents") for p in workdir.iterdir())
    flags_txt = (workdir / "flags.txt").read_text()
    assert "--hidden=8" in flags_txt and "--epochs=1" in flags_txt
    # flags.txt replays the run: the same config into another workdir
    replay = tmp_path / "replay"
    r = run_experiment("train", f"--flagfile={workdir / 'flags.txt'}", f"--workdir={replay}")
    assert r.returncode == 0, r.stderr
    a = json.loads((workdir / "config.json").read_text())
    b = json.loads((replay / "config.json").read_text())
    assert {k: v for k, v in a.items() if k != "workdir"} == {
        k: v for k, v in b.items() if k != "workdir"}
    assert _rows(workdir) == _rows(replay)


def test_no_nan_token_in_json_outputs(tmp_path):
    r = run_experiment("train", "--dataset=houses", "--model=linear", "--loss=mse", "--lr=100",
                       "--epochs=5", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    for name in ("summary.json", "metrics.jsonl", "config.json"):
        text = (tmp_path / name).read_text()
        assert "NaN" not in text and "Infinity" not in text, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["test_rmse"] is not None


def test_quiet_prints_only_the_last_line_and_tensorboard_has_the_scalars(tmp_path):
    quiet = tmp_path / "quiet"
    r = run_experiment("train", "--hidden=8", "--epochs=2", "--quiet", f"--workdir={quiet}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [r.stdout.strip()] and r.stdout.startswith("done:")
    events = [p for p in quiet.iterdir() if p.name.startswith("events.out.tfevents")]
    assert len(events) == 1
    blob = events[0].read_bytes()
    for tag in (b"loss/train", b"loss/test", b"loss/batch_mean", b"accuracy/test", b"norms/gradient",
                b"learning_rate", b"speed/examples_per_second"):
        assert tag in blob, tag
    loud = run_experiment("train", "--hidden=8", "--epochs=2", f"--workdir={tmp_path / 'loud'}")
    assert "compiling" in loud.stdout and "eta" in loud.stdout and "elapsed" in loud.stdout


def test_resume_without_a_checkpoint_starts_over_and_tensorboard_drops_the_first_attempt(
        finished_run, tmp_path):
    """A workdir whose checkpoints are gone: --resume starts the run over, and its new event
    file tells TensorBoard (a purge from step 0) to drop everything the first attempt logged,
    as metrics.jsonl is rewritten."""
    import shutil

    from test_records import read_events

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    shutil.rmtree(copy / "checkpoints")
    before = set((copy).glob("events.out.tfevents.*"))
    r = run_experiment("train", "--hidden=8", "--epochs=2", "--resume", f"--workdir={copy}")
    assert r.returncode == 0, r.stderr
    assert "has no checkpoint yet; starting the run" in r.stdout
    (new,) = set(copy.glob("events.out.tfevents.*")) - before
    starts = [e.step for e in read_events(new) if e.HasField("session_log")]
    assert starts == [0]
    rows = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in rows] == [0, 1, 2]


@pytest.mark.parametrize("every", ["0", "60"])  # a checkpoint each epoch, or none so far
def test_a_write_that_fails_mid_run_is_one_sentence_and_the_run_resumes(tmp_path, every):
    """A write that fails mid-run (a full disk; here the file-size limit, 8 KiB, past which
    a write fails with EFBIG) used to end in a traceback of tensorboardX's, orbax's or
    json's, with tensorboardX's exit hook failing again; now one sentence and exit 1, the
    rows written kept, and --resume finishes the run."""
    run = tmp_path / "run"
    args = ["-m", "experiments.train", "--hidden=8", "--epochs=30", "--quiet",
            f"--checkpoint_seconds={every}", f"--workdir={run}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    limited = ["bash", "-c", 'trap "" XFSZ; ulimit -f 8; exec "$0" "$@"', sys.executable]
    r = subprocess.run([*limited, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr[-3000:]
    assert r.stderr.startswith("error: ") and r.stderr.rstrip().endswith(
        "(File too large); the run stops, keeping what it wrote before: make room (or make "
        "the folder writable) and continue it with --resume"), r.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 2 < len(rows) < 31 and [row["epoch"] for row in rows] == list(range(len(rows)))
    r = subprocess.run([sys.executable, *args, "--resume"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(31))
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_the_signal_lines_are_seen_while_a_checkpoint_save_silences_stderr(capfd):
    """A checkpoint save points file descriptor 2 at /dev/null (orbax's threads' noise): a
    signal arriving meanwhile (a quick second Ctrl-C usually lands in the save) still says
    what happens, on the real standard error, the second one before exiting at once."""
    from experiments import _cli
    from gdlab import checkpoint

    signals = _cli.Signals()
    with checkpoint._Silenced():
        signals._handle(signal.SIGTERM, None)
    assert signals.received == signal.SIGTERM
    assert capfd.readouterr().err == ("SIGTERM: finishing this epoch, then checkpointing and "
                                      "stopping (send it again to stop at once)\n")
    script = ("import signal\nfrom experiments import _cli\nfrom gdlab import checkpoint\n"
              "signals = _cli.Signals()\nsignals.received = signal.SIGINT\n"
              "with checkpoint._Silenced():\n    signals._handle(signal.SIGINT, None)\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 128 + signal.SIGINT
    assert r.stderr == "SIGINT again: stopping now, without a checkpoint of this epoch\n"


def test_training_signal_handlers_are_taken_back_when_training_ends():
    """After training, a signal stops the program where it is: 'finishing this epoch' would
    be false then (the run went on to complete and exit 0)."""
    from experiments import _cli

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signals = _cli.Signals().install()
    assert signal.getsignal(signal.SIGTERM) == signals._handle
    signals.uninstall()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_process_scratch_folder_goes_when_the_process_stops_at_once():
    """A process other than 0 writes into a scratch folder; the stops that skip the
    interpreter's shutdown (a lost peer, a failed write, a signal) remove it first."""
    script = ("import os\nfrom experiments import _cli\n_cli.is_primary = lambda: False\n"
              "folder, scratch = _cli.output_dir('unused')\nprint(folder, flush=True)\n"
              "open(os.path.join(folder, 'metrics.jsonl'), 'w').close()\n"
              "_cli._stop('error: stopping', 1)\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 1 and r.stderr == "error: stopping\n", r.stderr
    folder = r.stdout.strip()
    assert "gdlab-process-" in folder and not os.path.exists(folder)


def _cache_env(**extra) -> dict:
    """The environment of a run without the tests' compilation cache or its settings
    (``extra`` may name a cache of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")
           and k != "JAX_COMPILATION_CACHE_DIR"}
    return {**env, **extra}


def _train(tmp_path, env, name):
    return run_experiment("train", "--hidden=8", "--epochs=1", "--quiet",
                          f"--workdir={tmp_path / name}", env=env)


def _kept(cache) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.endswith("-cache"))


def test_with_the_cache_a_second_run_loads_the_programs_the_first_compiled(tmp_path):
    """jax's own account (JAX_EXPLAIN_CACHE_MISSES): the first run compiles every program
    and keeps it (jax alone would keep none: none takes it a second to compile here); the
    second, the same run, compiles none, and trains to the same numbers."""
    cache = tmp_path / "cache"
    env = _cache_env(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_EXPLAIN_CACHE_MISSES="1")
    miss = "PERSISTENT COMPILATION CACHE MISS"
    first = _train(tmp_path, env, "a")
    assert first.returncode == 0, first.stderr
    kept = _kept(cache)
    assert len(kept) >= 5 and any("epoch" in name for name in kept), kept
    assert first.stderr.count(miss) >= len(kept)  # each kept program was compiled once
    second = _train(tmp_path, env, "b")
    assert second.returncode == 0, second.stderr
    assert miss not in second.stderr
    assert _kept(cache) == kept
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("a", "b"))
    for key in ("train_loss", "test_loss", "test_accuracy"):  # the loaded programs compute
        assert a[key] == b[key], key                          # what the compiled ones did


@pytest.mark.parametrize("where, problem", [("file/cache", "Not a directory"),
                                             ("file", "not a folder")])
def test_a_cache_folder_that_cannot_be_made_is_one_warning_and_the_run_goes_on(tmp_path, where,
                                                                              problem):
    (tmp_path / "file").write_text("a file where the cache's folder, or its parent, would be")
    cache = tmp_path / where
    env = _cache_env(JAX_COMPILATION_CACHE_DIR=str(cache))
    r = _train(tmp_path, env, "a")
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"warning: JAX_COMPILATION_CACHE_DIR={str(cache)!r} cannot hold the "
                        f"compilation cache ({problem}): the run compiles without it\n")
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["status"] == "completed"
    # --help and a bad flag end before the cache is set up: nothing of it
    for args, code in ((["--help"], 0), (["--epochs=-1"], 2)):
        r = run_experiment("train", *args, env=env, timeout=120)
        assert r.returncode == code and "JAX_COMPILATION_CACHE_DIR" not in r.stderr, r.stderr


def test_a_replay_and_a_resume_keep_a_default_lr_the_run_gave(tmp_path):
    # --lr=0.05 is the default, given: on diabetes (mse) the default would be scaled down,
    # but flags.txt lists --lr=0.05, the rate the run used, and both replay it
    first, replay = tmp_path / "first", tmp_path / "replay"
    r = run_experiment("train", "--dataset=diabetes", "--lr=0.05", "--epochs=1",
                       f"--workdir={first}")
    assert r.returncode == 0, r.stderr
    assert json.loads((first / "config.json").read_text())["lr"] == 0.05
    r = run_experiment("train", f"--flagfile={first / 'flags.txt'}", f"--workdir={replay}")
    assert r.returncode == 0, r.stderr
    assert json.loads((replay / "config.json").read_text())["lr"] == 0.05
    r = run_experiment("train", f"--flagfile={first / 'flags.txt'}", "--resume")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("dataset, computed, near, far, said", [
    # diabetes' default is scaled to 0.031 here; another machine's curvature may round to
    # 0.032, and its resume of this run must go on at the run's rate, not be refused
    ("diabetes", 0.031, 0.032, 0.05,
     ("lr=0.032, the default 0.05 scaled by 30/49",
      "(the rate the run recorded; here it comes to 0.031); --lr sets it")),
    # a run whose machine put the curvature just above the threshold recorded 0.048; this
    # machine's digits (33) leave the default 0.05, within 10%: the run goes on at 0.048
    ("digits", 0.05, 0.048, 0.04, ("lr=0.048, the rate the run recorded",)),
])
def test_a_resume_keeps_a_recorded_rate_within_ten_percent_of_the_default_computed_here(
        tmp_path, dataset, computed, near, far, said):
    r = run_experiment("train", f"--dataset={dataset}", "--epochs=1", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lr"] == computed

    def resume_recorded(lr):
        (tmp_path / "config.json").write_text(json.dumps({**config, "lr": lr}))
        return run_experiment("train", f"--dataset={dataset}", "--epochs=1", "--resume",
                              f"--workdir={tmp_path}")

    r = resume_recorded(near)
    assert r.returncode == 0, r.stderr
    for text in said:
        assert text in r.stdout
    # a rate the rule would not come to is another run's: refused as before
    r = resume_recorded(far)
    assert (r.returncode == 2
            and f"was trained with --lr={far:g}, not --lr={computed:g}" in r.stderr), r.stderr


def test_evaluate_help_lists_only_the_flags_it_takes():
    r = run_experiment("evaluate", "--help")
    assert r.returncode == 0, r.stderr
    listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", r.stdout, flags=re.M))
    assert listed == {"epoch", "workdir"}, listed
