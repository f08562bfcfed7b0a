"""Atomic writers and the metrics files."""

from __future__ import annotations

import csv
import json
import os

import pytest

from gdlab.records import (MetricsWriter, TensorBoard, eta_seconds, progress_line,
                           write_json_atomic, write_text_atomic)


def test_atomic_write_replaces_whole_file_with_umask_permissions(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2, "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1, 2]}
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temporary file left


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.json"
    write_text_atomic(path, "old\n")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"x": object()})  # not serialisable
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_metrics_writer_keeps_every_row_as_it_comes(tmp_path):
    with MetricsWriter(tmp_path, ["epoch", "loss", "accuracy"]) as writer:
        writer.write({"epoch": 1, "loss": 0.5})
        # Flushed at once: readable before the writer closes.
        assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"epoch": 1, "loss": 0.5}
        writer.write({"epoch": 2, "loss": 0.25, "accuracy": 0.9, "extra": 1})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["extra"] == 1
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert table == [{"epoch": "1", "loss": "0.5", "accuracy": ""},
                     {"epoch": "2", "loss": "0.25", "accuracy": "0.9"}]


def test_progress_line():
    row = {"epoch": 3, "train_loss": 0.123456, "test_loss": 0.2, "test_accuracy": 0.95,
           "examples_per_second": 12345.6}
    assert progress_line(row, epochs=10) == (
        "epoch  3/10  train_loss 0.1235  test_loss 0.2  test_acc 0.9500  12,346 ex/s")
    # regression without a test split: the training RMSE, as accuracy falls back too
    assert progress_line({"epoch": 1, "train_loss": 0.25, "train_rmse": 3.5}, epochs=3) == (
        "epoch 1/3  train_loss 0.25  train_rmse 3.5")


def test_tensorboard_logs_every_real_scalar_and_no_bool():
    """NumPy and JAX scalars (and one-element arrays) are numbers to log; a bool is not."""
    import jax.numpy as jnp
    import numpy as np

    from gdlab.records import _scalar

    assert [_scalar(v) for v in (2, 0.5, np.float32(0.75), jnp.float32(1.5), np.array([3.0]),
                                 jnp.bfloat16(2), np.uint8(7))] == [2, 0.5, 0.75, 1.5, 3, 2, 7]
    assert [_scalar(v) for v in (True, np.bool_(True), jnp.array([True]), None, "0.5",
                                 np.array([1.0, 2.0]), np.complex64(1))] == [None] * 7


def test_tensorboard_writer_does_not_import_torch(tmp_path):
    # tensorboardX imports torch where it is installed, seconds at every run's start. A
    # stand-in torch package here records whether anything imported it.
    import subprocess
    import sys

    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\nTensor = object\n")
    marker = str(tmp_path / "imported")
    script = ("import os\n"
              "from gdlab.records import TensorBoard\n"
              f"board = TensorBoard({str(tmp_path / 'tb')!r})\n"
              "board.write({'train_loss': 0.5, 'test_loss': float('nan')}, 3)\n"
              "board.close()\n"
              f"assert not os.path.exists({marker!r}), 'torch was imported'\n"
              "import torch  # the stand-in works, and is still importable afterwards\n"
              f"assert torch.Tensor is object and os.path.exists({marker!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    (events,) = (tmp_path / "tb").iterdir()
    assert events.name.startswith("events.out.tfevents.") and b"loss/train" in events.read_bytes()
    assert b"loss/test" not in events.read_bytes()  # NaN is not logged


def test_eta_is_the_mean_epoch_since_the_first_times_the_epochs_left():
    # rows every 12 epochs: the first row's own epoch time would say 12x too little
    assert eta_seconds(12, 0.5, epochs=24, first_end=(1, 100.0), now=111.0) == 12.0
    assert eta_seconds(1, 0.5, epochs=24, first_end=None, now=111.0) == 0.5 * 23
    assert eta_seconds(5, 0.5, epochs=5, first_end=(1, 100.0), now=104.0) == 0.0


def read_events(path) -> list:
    """The events of one TensorBoard event file."""
    import struct

    from tensorboardX.proto import event_pb2

    data, events, i = path.read_bytes(), [], 0
    while i < len(data):  # TFRecord framing: length, its CRC, the event, its CRC
        (n,) = struct.unpack("<Q", data[i:i + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[i + 12:i + 12 + n])
        events.append(event)
        i += 16 + n
    return events


def test_a_resumed_runs_tensorboard_purges_what_the_stopped_run_logged_after(tmp_path):
    board = TensorBoard(tmp_path, purge_step=7)
    board.write({"train_loss": 0.5, "batch_loss": 0.4, "sharpness": 3.0}, 9)
    board.close()
    (path,) = tmp_path.iterdir()
    events = read_events(path)
    starts = [e.step for e in events if e.HasField("session_log")]
    assert starts == [7]  # TensorBoard drops earlier files' events from step 7 on
    tags = {v.tag for e in events for v in e.summary.value}
    assert {"loss/train", "loss/batch_mean", "curvature/sharpness"} <= tags


def test_resumed_metrics_keep_an_earlier_versions_csv_columns(tmp_path):
    """A run written with a column this version no longer writes (a renamed one) keeps it
    in the rewritten CSV: the kept rows' values from the JSONL, empty for the new rows."""
    with MetricsWriter(tmp_path, ["epoch", "loss", "old_bound"]) as writer:
        for epoch in (1, 2, 3):
            writer.write({"epoch": epoch, "loss": 1 / epoch, "old_bound": 2.5})
    with MetricsWriter(tmp_path, ["epoch", "loss", "bound"], keep_rows=2) as writer:
        writer.write({"epoch": 3, "loss": 0.3, "bound": 4.0})
    with open(tmp_path / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert table == [{"epoch": "1", "loss": "1.0", "bound": "", "old_bound": "2.5"},
                     {"epoch": "2", "loss": "0.5", "bound": "", "old_bound": "2.5"},
                     {"epoch": "3", "loss": "0.3", "bound": "4.0", "old_bound": ""}]
    # A fresh start writes just the columns asked for.
    MetricsWriter(tmp_path, ["epoch", "loss"]).close()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,loss"]
