"""Atomic writers and the metrics files."""

from __future__ import annotations

import csv
import json
import os

import pytest

from gdlab.records import MetricsWriter, progress_line, write_json_atomic, write_text_atomic


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
