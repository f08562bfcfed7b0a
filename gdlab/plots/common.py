"""New figures, saved atomically.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no backend is
chosen or changed (a notebook that imports gdlab keeps its own), no display is needed,
and nothing keeps a figure alive once its caller drops it.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from gdlab.records import atomic_path


def figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **subplots):
    """``(fig, axes)``: a new figure of ``figsize`` inches and its grid of panels, as
    ``pyplot.subplots`` returns them (``subplots``: its keyword arguments, e.g. squeeze)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save(fig, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (PNG) via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")


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


def log_values(*arrays) -> tuple[list[np.ndarray] | None, float | None]:
    """``arrays`` ready for a log axis, and the floor their exact zeros are drawn at (a
    decade below the smallest positive value; None when no value is 0): a loss that
    reaches 0 stays on the figure. ``(None, None)`` when a log axis cannot show them: a
    negative value, or no positive one. Non-finite values are left as they are (not
    drawn)."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    values = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays]) if arrays else np.zeros(0)
    if not values.size or values.min() < 0 or values.max() <= 0:
        return None, None
    if values.min() > 0:
        return arrays, None
    floor = values[values > 0].min() / 10
    return [np.where(a == 0, floor, a) for a in arrays], float(floor)


def plot_log_if_possible(ax, curves) -> None:
    """Plot each ``(x, y, style)`` of ``curves`` (``style``: ``ax.plot``'s keywords) on a
    log y axis when ``log_values`` can show them there (exact zeros at a floor, marked),
    else as they are on a linear one."""
    shown, floor = log_values(*(y for _, y, _ in curves))
    for (x, _, style), drawn in zip(curves, shown or [y for _, y, _ in curves]):
        ax.plot(x, drawn, **style)
    if shown is not None:
        ax.set_yscale("log")
        mark_floor(ax, floor)


def mark_floor(ax, floor: float | None) -> None:
    """The line that says where ``log_values`` drew exact zeros, labelled for the legend."""
    if floor is not None:
        ax.axhline(floor, color="0.55", ls=":", lw=0.8, label=f"exactly 0, drawn at {floor:.2g}")
