"""Saving figures atomically."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt

from gdlab.records import atomic_path


def save(fig, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (PNG) via a temporary file and a rename, then close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)


def decorate(ax, *, xlabel: str, ylabel: str, title: str, xlog: bool = False, ylog: bool = False,
          legend: bool = True) -> None:
    """A panel's labelled axes, title, log scales, legend and grid, the same in every figure."""
    if xlog:
        ax.set_xscale("log")
    if ylog:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
