"""Writing results: atomic files, metrics as JSONL and CSV, progress lines.

Every file is written to a temporary sibling and renamed into place, so a
crash or a bad input never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would (the umask's),
    and a failure leaves ``path`` as it was and no temporary file behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
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


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """``obj`` as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class MetricsWriter:
    """Append one row per epoch to ``metrics.jsonl`` and ``metrics.csv`` in a folder.

    Each row is written and flushed as it comes, so a run that stops early
    (diverged, interrupted) keeps every row it reached. The CSV columns are
    fixed by ``columns``; a row's missing keys are left empty.
    """

    def __init__(self, workdir: str | os.PathLike, columns: list[str], *, stem: str = "metrics"):
        self.columns = list(columns)
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, f"{stem}.jsonl"), "w")
        self._csv = open(os.path.join(workdir, f"{stem}.csv"), "w", newline="")
        self._csv_writer = csv.DictWriter(self._csv, fieldnames=self.columns, extrasaction="ignore")
        self._csv_writer.writeheader()
        self._csv.flush()

    def write(self, row: dict) -> None:
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        self._csv_writer.writerow({k: row.get(k, "") for k in self.columns})
        self._csv.flush()

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_line(row: dict, *, epochs: int) -> str:
    """One line per epoch: epoch, losses, accuracy when there is one, examples/s."""
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}",
             f"train_loss {row['train_loss']:.4g}"]
    if "test_loss" in row:
        parts.append(f"test_loss {row['test_loss']:.4g}")
    if "test_accuracy" in row:
        parts.append(f"test_acc {row['test_accuracy']:.4f}")
    elif "train_accuracy" in row:
        parts.append(f"train_acc {row['train_accuracy']:.4f}")
    parts.append(f"{row['examples_per_second']:,.0f} ex/s")
    return "  ".join(parts)


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
