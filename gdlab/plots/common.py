"""Saving figures atomically."""

from __future__ import annotations

import os
import tempfile

import matplotlib.pyplot as plt


def save(fig, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (PNG) via a temporary file and a rename, then close it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".plot.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
