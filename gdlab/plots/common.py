"""Saving figures atomically."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt

from gdlab.logging import atomic_path


def save(fig, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (PNG) via a temporary file and a rename, then close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
