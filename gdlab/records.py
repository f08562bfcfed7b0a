"""Writing results: atomic files, metrics as JSONL and CSV, progress lines.

Every file is written to a temporary sibling and renamed into place, so a
crash or a bad input never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import numbers
import os
import sys
import tempfile
import threading
import time
from typing import ClassVar


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would (the umask's),
    and a failure leaves ``path`` as it was and no temporary file behind. A path in a
    run's workdir that was moved or deleted meanwhile is a ``WorkdirError``
    (``workdir.check_in_place``).
    """
    from gdlab.workdir import check_in_place

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    check_in_place(folder)  # a run's workdir moved away meanwhile: not recreated here
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` all at once: a temp file in the same folder, then rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def json_safe(obj):
    """``obj`` with every NaN or infinite float replaced by None (JSON ``null``), NumPy
    scalars and arrays turned into Python numbers and lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # NumPy / JAX values
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(obj, **kwargs) -> str:
    """Strict JSON: NaN and infinities become null, never the invalid ``NaN`` token."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON (NaN as null), written atomically."""
    write_text_atomic(path, to_json(obj, indent=2, sort_keys=False) + "\n")


class MetricsWriter:
    """Append one row per epoch to ``metrics.jsonl`` and ``metrics.csv`` in a folder.

    Each row is written and flushed as it comes, so a run that stops early
    (diverged, interrupted) keeps every row it reached. The CSV columns are
    fixed by ``columns``; a row's missing keys are left empty; NaN is written as
    null (JSONL) and an empty cell (CSV).

    ``keep_rows=None`` starts both files afresh. ``keep_rows=k`` continues a
    resumed run: the first k rows already there are kept (both files are
    rewritten atomically with just those), later ones dropped, and new rows are
    appended after them. If ``metrics.jsonl`` holds fewer than k rows (lost or
    cut short since), a ``WorkdirError`` says so and neither file is touched. A
    column of the CSV there that ``columns`` lacks (written by an earlier version)
    stays, after the others: its kept rows keep their values, new rows leave it empty.
    """

    def __init__(self, workdir: str | os.PathLike, columns: list[str], *, stem: str = "metrics",
                 keep_rows: int | None = None):
        self.columns = list(columns)
        os.makedirs(workdir, exist_ok=True)
        jsonl, csv_path = (os.path.join(workdir, f"{stem}.{ext}") for ext in ("jsonl", "csv"))
        kept = [] if keep_rows is None else check_rows(workdir, keep_rows, stem=stem)
        if kept:
            self.columns += [c for c in _csv_header(csv_path) if c not in self.columns]
        write_text_atomic(jsonl, "".join(to_json(row) + "\n" for row in kept))
        with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            for row in kept:
                writer.writerow(self._csv_row(row))
        self.rows = len(kept)
        self._jsonl = open(jsonl, "a")
        self._csv = open(csv_path, "a", newline="")
        self._csv_writer = csv.DictWriter(self._csv, fieldnames=self.columns, extrasaction="ignore")

    def _csv_row(self, row: dict) -> dict:
        return {k: "" if row.get(k) is None else row.get(k) for k in self.columns}

    def write(self, row: dict) -> None:
        row = json_safe(row)
        self._jsonl.write(to_json(row) + "\n")
        self._jsonl.flush()
        self._csv_writer.writerow(self._csv_row(row))
        self._csv.flush()
        self.rows += 1

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _csv_header(path: str) -> list[str]:
    """The column names in a CSV file's first line ([] when there is none)."""
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])
    except (FileNotFoundError, UnicodeDecodeError, csv.Error):
        return []


def check_rows(workdir: str | os.PathLike, rows: int, *, stem: str = "metrics") -> list[dict]:
    """The first ``rows`` rows of ``<stem>.jsonl`` in ``workdir``, which a resumed run keeps;
    a ``WorkdirError`` if the file holds fewer (lost or cut short since the checkpoint that
    counted them was saved)."""
    path = os.path.join(workdir, f"{stem}.jsonl")
    kept = read_jsonl(path)[:rows]
    if len(kept) < rows:
        from gdlab.workdir import WorkdirError

        raise WorkdirError(
            f"{path} holds {len(kept)} row{'' if len(kept) == 1 else 's'} where the run had "
            f"written {rows} when its "
            f"checkpoint was saved; going on would lose them from {stem}.csv too: put the file "
            f"back, or start the run again in a new workdir")
    return kept


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSONL file ([] when it does not exist); a torn last line is dropped."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut short by a kill: it and anything after are not rows
    except FileNotFoundError:
        pass
    return rows


def first_line(error: BaseException) -> str:
    """An error's message for a one-sentence report: its first line, at most 200 characters
    (its type's name when it has no message)."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def duration(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_seconds(epoch: int, epoch_seconds: float, *, epochs: int,
                first_end: tuple[int, float] | None, now: float) -> float:
    """Seconds left after ``epoch`` of ``epochs``: the epochs left times the mean epoch
    since ``first_end`` = (the first epoch trained, the clock when it ended), so compiling
    is not counted; this epoch's own ``epoch_seconds`` while there is no such mean yet.
    Rows logged every few epochs (``--eval_every``) are fine: the mean spans them all."""
    if first_end is None or first_end[0] >= epoch:
        per_epoch = epoch_seconds
    else:
        first, clock = first_end
        per_epoch = (now - clock) / (epoch - first)
    return per_epoch * (epochs - epoch)


def progress_line(row: dict, *, epochs: int, elapsed: float | None = None,
                  eta: float | None = None) -> str:
    """One line per epoch: epoch, losses, accuracy when there is one, RMSE in the target's
    units for regression, examples/s, and elapsed time and ETA when given."""
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}",
             f"train_loss {row['train_loss']:.4g}"]
    if "test_loss" in row:
        parts.append(f"test_loss {row['test_loss']:.4g}")
    if "test_accuracy" in row:
        parts.append(f"test_acc {row['test_accuracy']:.4f}")
    elif "train_accuracy" in row:
        parts.append(f"train_acc {row['train_accuracy']:.4f}")
    if row.get("test_rmse") is not None:
        parts.append(f"test_rmse {row['test_rmse']:.4g}")
    elif row.get("train_rmse") is not None:
        parts.append(f"train_rmse {row['train_rmse']:.4g}")
    if row.get("examples_per_second") is not None:  # epoch 0 (the initial params) trains nothing
        parts.append(f"{row['examples_per_second']:,.0f} ex/s")
    if elapsed is not None:
        parts.append(f"elapsed {duration(elapsed)}" + ("" if eta is None else f"  eta {duration(eta)}"))
    return "  ".join(parts)


class TensorBoard:
    """TensorBoard event files (tensorboardX's format) in ``logdir``: one scalar per metric
    and step.

    ``write(row, step)`` logs every finite number of ``row`` whose key is in ``TAGS``
    (metric name → TensorBoard tag, e.g. ``"train_loss" → "loss/train"``), and returns
    once it is in the file, as a metrics row is: a run killed after its next checkpoint
    keeps it (tensorboardX's ``SummaryWriter`` hands events to a thread that writes them
    to the file every two minutes, so a ``kill -9`` lost rows the checkpoint counted). A
    resumed run passes ``purge_step``, its checkpoint's step + 1: TensorBoard then drops
    what the stopped run had logged from there on, as the metrics files do.
    """

    TAGS: ClassVar[dict[str, str]] = {"train_loss": "loss/train", "test_loss": "loss/test",
            "batch_loss": "loss/batch_mean",
            "train_accuracy": "accuracy/train", "test_accuracy": "accuracy/test",
            "train_rmse": "rmse/train", "test_rmse": "rmse/test", "grad_norm": "norms/gradient",
            "displacement": "norms/displacement", "param_norm": "norms/params",
            "learning_rate": "learning_rate", "sharpness": "curvature/sharpness",
            "stability_bound": "curvature/stability_bound",
            "examples_per_second": "speed/examples_per_second"}

    def __init__(self, logdir: str | os.PathLike, *, purge_step: int | None = None):
        tensorboardx = _tensorboardx()
        self._event = tensorboardx.proto.event_pb2
        self._scalar = tensorboardx.summary.scalar
        logdir = os.fspath(logdir)
        os.makedirs(logdir, exist_ok=True)
        # the file's name and first event (its version) as SummaryWriter writes them
        self._writer = tensorboardx.event_file_writer.EventsWriter(os.path.join(logdir, "events"))
        if purge_step is not None:  # what SummaryWriter(purge_step=...) writes first
            self._add(self._event.Event(step=purge_step, file_version="brain.Event:2"))
            self._add(self._event.Event(step=purge_step, session_log=self._event.SessionLog(
                status=self._event.SessionLog.START)))
        self._writer.flush()

    def _add(self, event) -> None:
        event.wall_time = time.time()
        self._writer.write_event(event)

    def write(self, row: dict, step: int) -> None:
        for key, tag in self.TAGS.items():
            value = _scalar(row.get(key))
            if value is not None and math.isfinite(value):
                self._add(self._event.Event(step=int(step), summary=self._scalar(tag, value)))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _scalar(value) -> float | None:
    """``value`` as a float when it is one real number (a Python, NumPy or JAX scalar, or an
    array of one element), not a bool; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):  # NumPy's integer and float scalars too
        return float(value)
    if getattr(value, "shape", None) is None or getattr(value, "dtype", None) is None:
        return None
    import numpy as np  # here: reading records needs no more than the standard library

    dtype = np.dtype(value.dtype)
    real = dtype.kind in "iuf" or dtype.name == "bfloat16"  # ml_dtypes' bfloat16: kind V
    if np.prod(value.shape) != 1 or not real:
        return None
    return float(np.asarray(value, np.float64).reshape(()))


def _tensorboardx():
    """The ``tensorboardX`` package (its event file writer, protos and summaries loaded),
    imported here so that only runs that log pay for it, and without PyTorch: where torch is
    installed, tensorboardX imports it (to accept torch tensors, which gdlab never passes),
    about 2 s at the start of every run. The block holds for the whole process while
    tensorboardX loads, so it is taken only when this is the process's one thread: no other
    thread can be importing torch meanwhile."""
    if "torch" in sys.modules or threading.active_count() > 1:
        import tensorboardX
    else:
        sys.modules["torch"] = None  # for this import, `import torch` raises ImportError
        try:
            import tensorboardX
        finally:
            del sys.modules["torch"]
    import tensorboardX.event_file_writer
    import tensorboardX.proto.event_pb2
    import tensorboardX.summary

    return tensorboardX


def provenance() -> dict:
    """What made the outputs: gdlab's version and, in a git checkout, the commit."""
    import subprocess

    import gdlab

    commit = None
    root = os.path.dirname(os.path.dirname(os.path.abspath(gdlab.__file__)))
    if os.path.exists(os.path.join(root, ".git")):  # a folder, or a file in a worktree
        try:
            out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=10)
            commit = out.stdout.strip() or None if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"gdlab_version": gdlab.__version__, "git_commit": commit}


def host_memory() -> int | None:
    """This machine's RAM in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def environment() -> dict:
    """Where a run ran: device, backend, versions (for summaries and benchmark files)."""
    import jax

    device = jax.devices()[0]
    return {
        "device": getattr(device, "device_kind", str(device)),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
    }


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None
