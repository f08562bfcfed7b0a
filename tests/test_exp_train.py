"""experiments.train end to end: files written, divergence, bad input exits 2."""

from __future__ import annotations

import csv
import errno
import json
import os

import numpy as np
import pytest

from conftest import ROOT, assert_bad_input, run_experiment
from gdlab.data import write_idx

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return run_experiment("train", *args)


def test_tiny_run_writes_every_file_with_consistent_content(tmp_path):
    wd = tmp_path / "run"
    r = run("--dataset=digits", "--hidden=16", "--epochs=2", f"--workdir={wd}")
    assert r.returncode == 0, r.stderr
    config = json.loads((wd / "config.json").read_text())
    assert config["epochs"] == 2 and config["dataset"] == "digits" and config["hidden"] == ["16"]
    assert {"lr", "optimizer", "descent", "batch_size", "grad", "seed", "eval_every"} <= set(config)
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2]  # epoch 0: the initial params
    assert rows[0]["step"] == 0 and {"train_loss", "test_loss", "test_accuracy"} <= set(rows[0])
    for key in ("epoch", "step", "train_loss", "test_loss", "test_accuracy", "grad_norm",
                "displacement", "seconds", "examples_per_second"):
        assert key in rows[1]
    assert rows[2]["step"] == 2 * rows[1]["step"] == 2 * int(np.ceil(1438 / 32))
    with open(wd / "metrics.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 3
    assert float(csv_rows[1]["train_loss"]) == pytest.approx(rows[1]["train_loss"], rel=1e-12)
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["diverged_at_step"] is None
    assert summary["test_accuracy"] == pytest.approx(rows[-1]["test_accuracy"])
    assert summary["test_loss"] == pytest.approx(rows[-1]["test_loss"])
    assert summary["train_loss"] == pytest.approx(rows[-1]["train_loss"])
    assert summary["train_accuracy"] == pytest.approx(rows[-1]["train_accuracy"])
    assert {"wall_seconds", "device", "jax_version"} <= set(summary)
    assert (wd / "loss.png").read_bytes()[:8] == PNG_MAGIC
    assert "epoch 2/2" in r.stdout and "test_acc" in r.stdout and "ex/s" in r.stdout


def test_default_flags_reach_95_percent_on_digits(tmp_path):
    r = run(f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["test_accuracy"] >= 0.95
    config = json.loads((tmp_path / "config.json").read_text())  # the documented command's
    assert (config["model"], config["hidden"], config["optimizer"], config["lr"],
            config["batch_size"], config["epochs"]) == ("mlp", ["64"], "momentum", 0.05, 32, 20)


def test_large_lr_on_houses_ends_diverged_with_status_0(tmp_path):
    r = run("--dataset=houses", "--model=linear", "--loss=mse", "--lr=100", "--epochs=5",
            f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] >= 1
    assert "diverged at step" in r.stdout
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert 2 <= len(rows) <= 6  # the metrics up to the divergence are kept (and epoch 0's)


def test_a_last_update_that_leaves_no_finite_loss_ends_diverged(tmp_path):
    """One full-batch step at lr 1e30: its loss was finite, the next one would not be, and
    no later step comes to see it; the run still ends diverged, with nothing saved."""
    r = run("--descent=batch", "--optimizer=gd", "--lr=1e30", "--epochs=1",
            f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "diverged at step 2" in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 2
    assert summary["steps"] == 1 and summary["checkpoint_epoch"] is None


def test_a_loss_that_rose_short_of_the_blow_up_rule_warns(tmp_path):
    r = run("--dataset=houses", "--model=linear", "--loss=mse", "--descent=batch",
            "--optimizer=gd", "--lr=100", "--epochs=1", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "completed"
    assert 10 * rows[0]["train_loss"] < rows[-1]["train_loss"] < 1e6 * rows[0]["train_loss"]
    assert "warning: the training loss rose from" in r.stderr and "lr=100.0" in r.stderr


def test_regression_and_full_batch_and_autodiff(tmp_path):
    r = run("--dataset=houses", "--model=linear", "--descent=batch", "--optimizer=gd", "--lr=0.3",
            "--epochs=100", "--grad=autodiff", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_accuracy"] is None
    assert summary["steps"] == 100
    assert summary["test_loss"] < 0.05  # the noise variance is 0.01 (σ = 0.1)


def test_bfloat16_mixed_precision_run(tmp_path):
    r = run("--dataset=digits", "--hidden=32", "--epochs=4", "--compute_dtype=bfloat16",
            f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "config.json").read_text())["compute_dtype"] == "bfloat16"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_accuracy"] >= 0.9
    assert "in bfloat16 (mixed precision)" in r.stdout


def test_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
    # given relative to the working folder, kept absolute: evaluate works from anywhere
    r = run("--dataset=mnist", f"--data_dir={os.path.relpath(tmp_path, ROOT)}", "--epochs=1",
            "--hidden=8", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert "60 train / 20 test" in r.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] == str(tmp_path)


def test_csv_table(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3))
    path = tmp_path / "table.csv"
    lines = ["a,b,c,price"] + [f"{a:.4f},{b:.4f},{c:.4f},{2 * a - b + 0.5 * c:.4f}" for a, b, c in x]
    path.write_text("\n".join(lines) + "\n")
    r = run("--dataset=csv", f"--csv_path={path}", "--target=price", "--model=linear",
            "--epochs=3", f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert "regression" in r.stdout


def test_csv_task_flag_overrides_the_inferred_task(tmp_path):
    """Ratings 1..5 (integers, few values) are labels by default; --task=regression makes
    them a target, as the summary's metrics show."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 2))
    rating = np.clip(np.round(3 + x[:, 0] - 0.5 * x[:, 1]), 1, 5).astype(int)
    path = tmp_path / "ratings.csv"
    path.write_text("a,b,rating\n" + "\n".join(f"{a:.4f},{b:.4f},{r}"
                                                for (a, b), r in zip(x, rating)) + "\n")
    for task, present, absent in (("auto", "test_accuracy", "test_rmse"),
                                  ("regression", "test_rmse", "test_accuracy")):
        wd = tmp_path / task
        r = run("--dataset=csv", f"--csv_path={path}", "--target=rating", f"--task={task}",
                "--epochs=2", f"--workdir={wd}")
        assert r.returncode == 0, r.stderr
        summary = json.loads((wd / "summary.json").read_text())
        assert summary[present] is not None and summary[absent] is None, summary


@pytest.mark.parametrize("args, needle", [
    (["--dataset=imagenet"], "--dataset"),
    (["--lr=-0.1"], "--lr"),
    (["--batch_size=0"], "--batch_size"),
    (["--batch_size=5000"], "--batch_size"),
    (["--hidden=32,abc"], "--hidden"),
    (["--hidden="], "--hidden"),
    (["--dataset=mnist"], "--data_dir"),
    (["--dataset=mnist", "--data_dir=/no/such/folder"], "/no/such/folder"),
    (["--optimizer=lbfgs"], "--optimizer"),
    (["--dataset=houses", "--loss=xent"], "--loss"),
    (["--dataset=csv", "--csv_path=/no/such.csv", "--target=y"], "/no/such.csv"),
    (["--epochs=0"], "--epochs"),
    (["stray"], "stray"),
    (["--model=cnn", "--dataset=houses"], "--model=cnn needs image data"),
    (["--model=cnn", "--kernel=9", "--padding=VALID"], "larger than the padded input"),
    (["--model=cnn", "--padding=VALID", "--channels=8,8,8"], "larger than the padded input"),
    (["--model=transformer", "--dataset=sort", "--vocab_size=5"], "--vocab_size=5"),
    (["--model=transformer", "--dataset=sort", "--heads=3"], "--heads=3"),
    (["--dataset=sort"], "--dataset=sort"),
    (["--model=transformer"], "--model=transformer needs token sequences"),
    (["--model=rnn"], "--model"),
    (["--model=cnn", "--hidden=8"], "--hidden is for --model=mlp, but this run's model is cnn"),
    (["--model=cnn", "--hidden=64"], "--hidden is for --model=mlp"),  # the default value, given
    (["--model=linear", "--dataset=houses", "--nocausal"], "--causal is for --model=transformer"),
    (["--dataset=houses", "--model=linear", "--channels=4"],
     "--channels is for --model=cnn, but this run's model is linear"),
    (["--heads=2"], "--heads is for --model=transformer, but this run's model is mlp"),
    (["--task=regression"], "--task is for --dataset=csv/npz"),
    (["--task=ranking"], "--task"),
    (["--drop_columns=a"], "--drop_columns is for --dataset=csv"),
    (["--npz_path=a.npz"], "--npz_path is for --dataset=npz"),
    (["--dataset=npz"], "--dataset=npz needs --npz_path"),
    (["--dataset=images"], "--dataset=images needs --data_dir"),
    (["--dataset=images", "--data_dir=/no/such/folder"], "/no/such/folder"),
    (["--image_size=28"], "--image_size"),
    (["--image_size=28,28"], "--image_size is for --dataset=images"),
    (["--dataset=houses", "--pixel_scaling=per_pixel"], "--pixel_scaling is for image data"),
    (["--checkpoint_seconds=nan"], "--checkpoint_seconds must be a number of seconds >= 0"),
    (["--weight_decay_on=weights"], "--weight_decay_on=weights needs a decay"),
    (["--weight_decay_on=biases"], "--weight_decay_on"),
    (["--hidden=²"], "--hidden must be comma-separated positive integers"),
    (["--epochs=3000000000"], "--epochs=3000000000 makes 135,000,000,000 updates"),
    (["--dataset=images", "--image_size=²,3"], "--image_size must be HEIGHT,WIDTH"),
])
def test_bad_input_exits_2_with_one_sentence(tmp_path, args, needle):
    wd = tmp_path / "run"
    r = run(*args, f"--workdir={wd}")
    assert_bad_input(r, needle)
    assert not (wd / "summary.json").exists()


def test_a_table_smaller_than_the_default_batch_trains_in_full_batches(tmp_path):
    rows = "".join(f"{i % 5},{(i % 5) // 3}\n" for i in range(20))  # 16 train, 4 test
    table = tmp_path / "small.csv"
    table.write_text("x,y\n" + rows)
    r = run("--dataset=csv", f"--csv_path={table}", "--target=y", "--epochs=3",
            f"--workdir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    assert ("warning: csv has 16 training examples, fewer than the default --batch_size=32; "
            "each batch holds all 16") in r.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
            .splitlines()]
    assert [row["step"] for row in rows] == [0, 1, 2, 3]  # one full-batch step an epoch
    # the run records the batch it used, so its flags.txt replays it, and resumes
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == 16
    assert "--batch_size=16\n" in (tmp_path / "run" / "flags.txt").read_text()
    r = run(f"--flagfile={tmp_path / 'run' / 'flags.txt'}", f"--workdir={tmp_path / 'replay'}")
    assert r.returncode == 0, r.stderr
    replayed = [json.loads(line) for line in (tmp_path / "replay" / "metrics.jsonl").read_text()
                .splitlines()]
    assert [row["train_loss"] for row in replayed] == [row["train_loss"] for row in rows]
    r = run("--dataset=csv", f"--csv_path={table}", "--target=y", "--epochs=4", "--resume",
            f"--workdir={tmp_path / 'run'}")
    error = r.stderr.splitlines()[-1]  # after the batch warning: only the flag that differs
    assert r.returncode == 2 and "trained with --epochs=3, not --epochs=4; resume" in error, error
    # a batch size asked for must fit
    r = run("--dataset=csv", f"--csv_path={table}", "--target=y", "--batch_size=32",
            f"--workdir={tmp_path / 'asked'}")
    assert_bad_input(r, "--batch_size must be between 1 and 16")


def test_bad_input_leaves_an_earlier_run_intact(tmp_path):
    assert run("--hidden=8", "--epochs=1", f"--workdir={tmp_path}").returncode == 0
    def snapshot():
        return {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    before = snapshot()
    r = run("--lr=-1", f"--workdir={tmp_path}")
    assert r.returncode == 2
    assert snapshot() == before


def test_cnn_run_on_digits_images(tmp_path):
    """--model=cnn reshapes digits to 8x8x1 images and takes the cnn's descent defaults."""
    r = run("--model=cnn", "--channels=4", "--epochs=4", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "8x8x1 images" in r.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["optimizer"] == "adam" and config["schedule"] == "cosine"  # the cnn's defaults
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"].startswith("cnn(4")
    assert summary["test_accuracy"] > 0.6  # 0.73 measured: 4 epochs of a 4-channel cnn


def test_cnn_flags_override_the_model_defaults(tmp_path):
    r = run("--model=cnn", "--channels=4", "--epochs=1", "--optimizer=momentum", "--lr=0.01",
            "--grad=autodiff", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["optimizer"] == "momentum" and config["lr"] == 0.01 and config["epochs"] == 1
    # flags.txt lists every flag, --hidden too: its replay is no MLP flag given to the CNN
    assert "--hidden=64" in (tmp_path / "flags.txt").read_text().splitlines()
    replay = tmp_path / "replay"
    r = run(f"--flagfile={tmp_path / 'flags.txt'}", f"--workdir={replay}")
    assert r.returncode == 0, r.stderr
    assert json.loads((replay / "config.json").read_text()) == {**config, "workdir": str(replay)}


def test_transformer_run_on_sort(tmp_path):
    r = run("--model=transformer", "--dataset=sort", "--sort_examples=300", "--width=16",
            "--depth=1", "--heads=2", "--epochs=2", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "sequences of 8 tokens" in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["model"].startswith("transformer(d=16")
    assert 0.0 < summary["test_accuracy"] <= 1.0  # per-token accuracy
    config = json.loads((tmp_path / "config.json").read_text())  # the transformer's defaults
    assert (config["optimizer"], config["lr"], config["batch_size"], config["schedule"]) == (
        "adam", 0.003, 64, "cosine")


def test_help_documents_every_flag():
    r = run("--help")
    assert r.returncode == 0
    for flag in ("dataset", "model", "hidden", "activation", "loss", "descent", "batch_size",
                 "optimizer", "lr", "schedule", "momentum", "weight_decay", "weight_decay_on",
                 "epochs", "grad",
                 "seed", "eval_every", "workdir", "channels", "kernel", "padding", "width",
                 "depth", "heads", "vocab_size", "sort_length", "sort_symbols"):
        assert f"--{flag}" in r.stdout, flag
    assert "--[no]causal" in r.stdout


@pytest.mark.parametrize("content, needle", [
    ("--hidden=8\n".encode("utf-16"), "a --flagfile is not UTF-8 text"),
    ("\ufeff--hidden=8\n".encode("utf-8"), "a --flagfile starts with a byte-order mark"),
    (None, "Unable to open flagfile"),
])
def test_a_flagfile_that_cannot_be_read_is_one_sentence(tmp_path, content, needle):
    flagfile = tmp_path / "flags.txt"
    if content is not None:
        flagfile.write_bytes(content)
    r = run(f"--flagfile={flagfile}", f"--workdir={tmp_path / 'run'}")
    assert_bad_input(r, needle)
    assert "ERROR::" not in r.stderr and not (tmp_path / "run").exists()


def test_flagfile(tmp_path):
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text(f"--hidden=8\n--epochs=1\n--workdir={tmp_path / 'run'}\n")
    r = run(f"--flagfile={flagfile}")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["hidden"] == ["8"]


def test_a_run_whose_accuracy_collapses_ends_degraded(tmp_path):
    """A run the collapse rule calls collapsed (test_collapse_rule checks the rule itself;
    here it is made to say so, as no data collapses the same way on every machine) ends
    with status "degraded" in summary.json, its best and last accuracy said, exit 0."""
    import subprocess
    import sys

    program = ("import sys\nfrom experiments import train\n"
               "train.collapsed = lambda rows, num_classes: True\n"
               f"sys.argv = ['gdlab-train', '--hidden=8', '--epochs=2', '--workdir={tmp_path}']\n"
               "train.cli()\n")
    r = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "degraded", summary
    best = max(row["test_accuracy"] for row in rows)
    assert (f"degraded: test accuracy fell to {rows[-1]['test_accuracy']:.4f}, near chance "
            f"(0.100), after reaching {best:.4f}; lower --lr or check the data") in r.stdout


def test_each_row_logs_the_rate_of_the_last_update_under_a_schedule(tmp_path):
    """Full-batch gd, one update an epoch, cosine over two updates: the row after epoch k
    logs the rate of update k (counted from 1), the one at epoch 0 that of the first."""
    from gdlab import optim

    r = run("--hidden=8", "--descent=batch", "--optimizer=gd", "--schedule=cosine",
            "--lr=0.1", "--epochs=2", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    schedule = optim.get_schedule("cosine", 0.1, 2)
    expected = [float(optim.learning_rate_at(schedule, s)) for s in (0, 0, 1)]
    assert [row["learning_rate"] for row in rows] == pytest.approx(expected)
    assert expected[1] != pytest.approx(expected[2])  # the schedule moved


def test_divergence_advice_offers_the_cnn_only_for_images(tmp_path):
    """An MLP (the default model) on a table that diverges is told a smaller lr, not a CNN,
    which needs images."""
    r = run("--dataset=houses", "--lr=100", "--epochs=1", f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "lr=100.0 is likely too large: try --lr=10" in r.stdout, r.stdout
    assert "--model=cnn" not in r.stdout


def test_a_seed_is_any_32_bit_unsigned_integer():
    from experiments import _cli

    assert _cli.check_seed(0) == 0 and _cli.check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(_cli.UsageError, match="--seed must be between 0 and 4294967295"):
            _cli.check_seed(bad)


def test_a_loss_that_ends_over_ten_times_its_start_has_risen():
    from experiments import _builders

    assert _builders.loss_rose(1.0, 10.5) and not _builders.loss_rose(1.0, 9.5)
    assert not _builders.loss_rose(None, 50.0) and not _builders.loss_rose(1.0, None)


@pytest.mark.parametrize("code, verb", [
    (errno.ENOSPC, "write"), (errno.EDQUOT, "write"), (errno.EFBIG, "write"),
    (errno.EROFS, "write"), (errno.EACCES, "access"), (errno.EPERM, "access"),
    (errno.EIO, "access"),
])
def test_a_failed_write_cannot_write_on_a_full_disk_and_cannot_access_a_folder_taken_away(
        code, verb):
    """The sentence a mid-run write failure ends in: a full disk, quota or file-size limit
    (or a folder made read-only) cannot be written; a folder whose permissions changed or
    whose device failed cannot be accessed."""
    from experiments import _cli

    error = OSError(code, os.strerror(code), "/runs/a/metrics.jsonl")
    assert _cli._write_failed(error)
    assert _cli._what_failed(error) == f"cannot {verb} /runs/a/metrics.jsonl ({os.strerror(code)})"
    assert not _cli._write_failed(OSError(errno.ENOENT, os.strerror(errno.ENOENT), "/runs/a"))


def _memory_case(monkeypatch, *, configs: int, basis_vectors: int):
    """An MLP 12-8-3 on 5·10⁷ examples of 12 features (and 30 test ones), and the bytes
    check_memory should count for it: ``train.estimate_memory`` given the data's bytes
    (float32 inputs, int32 labels) and the larger split as the evaluation's rows, plus a
    Lanczos basis of at most one float32 vector per parameter and its m × m problems."""
    from absl import flags

    from experiments import _builders
    from gdlab import data, models, optim, train

    monkeypatch.setattr(_builders, "FLAGS", flags.FlagValues())  # no --image_size here
    shape = data.DataShape(name="table", task="classification", num_classes=3,
                           n_train=50_000_000, n_test=30, input_shape=(12,))
    model, optimizer = models.mlp([8, 3], "tanh"), optim.momentum(0.1, beta=0.9)
    need = train.estimate_memory(model, optimizer, (12,), batch_size=16, input_dtype=np.float32,
                                 data_bytes=(shape.n_train + shape.n_test) * (4 * 12 + 4),
                                 configs=configs, eval_rows=shape.n_train)
    params = (12 + 1) * 8 + (8 + 1) * 3
    m = min(basis_vectors, params)
    need += m * params * 4 + 4 * m * m * 4
    return model, optimizer, shape, need


@pytest.mark.parametrize("configs, basis_vectors", [(1, 0), (3, 0), (1, 40), (1, 10**6)])
def test_a_run_is_refused_one_byte_past_the_devices_memory(monkeypatch, configs, basis_vectors):
    import jax

    from experiments import _builders, _cli
    from gdlab import train

    model, optimizer, shape, need = _memory_case(monkeypatch, configs=configs,
                                                 basis_vectors=basis_vectors)
    for have in (need, None):  # it fits exactly, or the device does not say
        monkeypatch.setattr(train, "device_memory", lambda have=have: have)
        _builders.check_memory(model, optimizer, shape, 16, configs, basis_vectors=basis_vectors)
    monkeypatch.setattr(train, "device_memory", lambda: need - 1)
    with pytest.raises(_cli.UsageError) as refused:
        _builders.check_memory(model, optimizer, shape, 16, configs, basis_vectors=basis_vectors)
    what = f"{configs} configurations of {model.name}" if configs > 1 else model.name
    fixes = "model, batch or sweep" if configs > 1 else "model or batch"
    assert str(refused.value) == (
        f"{what} with batches of 16 needs about {need / 2**30:.1f} GiB, more than the "
        f"{(need - 1) / 2**30:.1f} GiB of the {jax.default_backend()} device; use a smaller "
        f"{fixes}" + (" or --max_iters (the Lanczos basis)" if basis_vectors else ""))


@pytest.mark.parametrize("shape, room", [
    ((600, 800, 1), 0.1), ((600, 800, 3), 0.125), ((4, 6, 1), 1e-6), ((600, 800, 1), 3.0),
])
def test_the_image_size_hint_halves_each_side_until_the_pixels_fit_with_half_to_spare(
        shape, room):
    """``room``: the memory there is over what the run needs; the pixels scale by 1/k², k
    the smallest power of two with 1/k² ≤ room/2, and no side below one pixel."""
    import math

    from experiments import _builders

    height, width, channels = shape
    k = 2 ** max(0, math.ceil(math.log2(math.sqrt(2 / room))))
    k = min(k, 2 ** int(math.log2(min(height, width))))
    assert _builders._smaller_images(shape, room) == (
        f"these are {height}×{width}×{channels}; --image_size resizes them as they are read, "
        f"e.g. --image_size={height // k},{width // k}")
