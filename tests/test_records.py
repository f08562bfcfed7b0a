"""Atomic writers and the metrics files."""

from __future__ import annotations

import csv
import math
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


def test_tensorboard_rows_are_in_the_file_when_write_returns(tmp_path):
    """A run killed (kill -9) after a checkpoint keeps the TensorBoard scalars of every row
    that checkpoint counts, as metrics.jsonl does: each write is in the file when it
    returns, not left to a writer thread that would write it minutes later."""
    import subprocess
    import sys

    script = ("import os\n"
              "from gdlab.records import TensorBoard\n"
              f"board = TensorBoard({str(tmp_path)!r}, purge_step=3)\n"
              "for step in (4, 9, 14):\n"
              "    board.write({'train_loss': step / 10, 'test_loss': step / 5}, step)\n"
              "os._exit(9)  # killed: no close, no exit hooks\n")
    from conftest import ROOT

    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    (path,) = tmp_path.iterdir()
    events = read_events(path)
    assert [e.step for e in events if e.HasField("session_log")] == [3]
    logged = {(v.tag, e.step): v.simple_value for e in events for v in e.summary.value}
    assert logged == pytest.approx({(tag, step): value for step in (4, 9, 14)
                                    for tag, value in (("loss/train", step / 10),
                                                       ("loss/test", step / 5))})


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


def test_json_has_null_for_every_non_finite_number():
    """NaN and both infinities, as Python, NumPy and JAX floats and inside arrays, are null:
    strict JSON that any reader takes."""
    import jax.numpy as jnp
    import numpy as np

    from gdlab.records import json_safe, to_json

    obj = {"nan": float("nan"), "inf": float("inf"), "-inf": -math.inf,
           "np": np.float32("nan"), "jax": jnp.asarray([1.0, jnp.inf]), "ok": [1.5, 2]}
    text = to_json(obj)
    assert json.loads(text) == {"nan": None, "inf": None, "-inf": None, "np": None,
                                "jax": [1.0, None], "ok": [1.5, 2]}
    for token in ("NaN", "Infinity"):
        assert token not in text
    assert json_safe((np.array([[0.5]]), np.int64(3))) == [[[0.5]], 3]


def test_metrics_writer_writes_nan_as_null_and_an_empty_cell(tmp_path):
    import numpy as np

    with MetricsWriter(tmp_path, ["epoch", "loss", "accuracy"]) as writer:
        writer.write({"epoch": 1, "loss": float("nan"), "accuracy": np.float64("inf")})
        writer.write({"epoch": 2, "loss": 0.5, "accuracy": None})
        assert writer.rows == 2
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == [
        '{"epoch": 1, "loss": null, "accuracy": null}',
        '{"epoch": 2, "loss": 0.5, "accuracy": null}']
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "epoch,loss,accuracy", "1,,", "2,0.5,"]


def test_metrics_csv_rows_are_readable_before_the_writer_closes(tmp_path):
    writer = MetricsWriter(tmp_path, ["epoch", "loss"])
    try:
        writer.write({"epoch": 1, "loss": 0.5})
        assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch,loss", "1,0.5"]
    finally:
        writer.close()


def test_resumed_metrics_count_the_kept_rows_and_refuse_missing_ones(tmp_path):
    """keep_rows=k keeps exactly the first k rows and counts them; asking for more rows than
    the file holds is refused and leaves both files as they were."""
    from gdlab.workdir import WorkdirError

    with MetricsWriter(tmp_path, ["epoch"]) as writer:
        for epoch in (1, 2, 3):
            writer.write({"epoch": epoch})
    jsonl, csv_text = ((tmp_path / f"metrics.{ext}").read_text() for ext in ("jsonl", "csv"))
    for rows in (4, 5):
        with pytest.raises(WorkdirError, match=f"holds 3 rows where the run had written {rows}"):
            MetricsWriter(tmp_path, ["epoch"], keep_rows=rows)
        assert (tmp_path / "metrics.jsonl").read_text() == jsonl
        assert (tmp_path / "metrics.csv").read_text() == csv_text
    with MetricsWriter(tmp_path, ["epoch"], keep_rows=3) as writer:
        assert writer.rows == 3
        writer.write({"epoch": 4})
        assert writer.rows == 4
    assert [json.loads(x)["epoch"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4]
    with MetricsWriter(tmp_path, ["epoch"], keep_rows=1) as writer:
        assert writer.rows == 1
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["epoch", "1"]


def test_a_torn_line_ends_the_rows_of_a_jsonl_file(tmp_path):
    from gdlab.records import read_jsonl

    path = tmp_path / "m.jsonl"
    path.write_text('{"epoch": 1}\n{"epo\n{"epoch": 3}\n')
    assert read_jsonl(path) == [{"epoch": 1}]
    assert read_jsonl(tmp_path / "none.jsonl") == []


def test_a_write_that_fails_part_way_keeps_the_old_file_and_no_temporary(tmp_path):
    """The text cannot be encoded (a lone surrogate): the failure comes while writing, and
    the file that was there is left whole, with nothing beside it."""
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "new " * 10_000 + "\ud800")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_duration_formats():
    from gdlab.records import duration

    assert [duration(s) for s in (0, 42.4, 59.6, 60, 125, 3599, 3600, 3725, 36000)] == [
        "0s", "42s", "1m00s", "1m00s", "2m05s", "59m59s", "1h00m", "1h02m", "10h00m"]


def test_progress_line_with_elapsed_time_eta_and_one_accuracy():
    row = {"epoch": 7, "train_loss": 0.5, "train_accuracy": 0.8, "test_accuracy": 0.75}
    assert progress_line(row, epochs=100, elapsed=125, eta=3725) == (
        "epoch   7/100  train_loss 0.5  test_acc 0.7500  elapsed 2m05s  eta 1h02m")
    assert progress_line(row, epochs=9, elapsed=5) == (
        "epoch 7/9  train_loss 0.5  test_acc 0.7500  elapsed 5s")


def test_tensorboard_logs_each_metric_under_its_own_tag_and_step(tmp_path):
    metrics = {key: float(i + 1) for i, key in enumerate(TensorBoard.TAGS)}
    board = TensorBoard(tmp_path)
    board.write(metrics, 5)
    board.close()
    (path,) = tmp_path.iterdir()
    logged = {(v.tag, e.step): v.simple_value for e in read_events(path) for v in e.summary.value}
    assert logged == {
        ("loss/train", 5): metrics["train_loss"], ("loss/test", 5): metrics["test_loss"],
        ("loss/batch_mean", 5): metrics["batch_loss"],
        ("accuracy/train", 5): metrics["train_accuracy"],
        ("accuracy/test", 5): metrics["test_accuracy"],
        ("rmse/train", 5): metrics["train_rmse"], ("rmse/test", 5): metrics["test_rmse"],
        ("norms/gradient", 5): metrics["grad_norm"],
        ("norms/displacement", 5): metrics["displacement"],
        ("norms/params", 5): metrics["param_norm"],
        ("learning_rate", 5): metrics["learning_rate"],
        ("curvature/sharpness", 5): metrics["sharpness"],
        ("curvature/stability_bound", 5): metrics["stability_bound"],
        ("speed/examples_per_second", 5): metrics["examples_per_second"]}


def test_provenance_names_this_checkout_s_commit():
    import subprocess

    import gdlab
    from gdlab.records import provenance

    root = os.path.dirname(os.path.dirname(os.path.abspath(gdlab.__file__)))
    out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                         text=True, timeout=10)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    assert provenance() == {"gdlab_version": gdlab.__version__, "git_commit": out.stdout.strip()}
