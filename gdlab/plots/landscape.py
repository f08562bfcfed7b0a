"""Descent paths over the contours of 2-D landscapes, one panel per landscape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from gdlab.landscapes import Landscape
from gdlab.plots.common import save

LINESTYLES = ("-", "--", ":", "-.")


def contour_levels(values: np.ndarray, *, log: bool, count: int = 18) -> np.ndarray:
    """Contour levels for a grid of values: log-spaced (deep, narrow valleys) or
    quadratically spaced (so a quadratic bowl's ellipses come out evenly apart)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if log:
        positive = values[values > 0]
        floor = max(float(np.min(positive)) if positive.size else 1e-3, hi * 1e-6, 1e-3)
        return np.geomspace(floor, hi, count)
    return lo + (hi - lo) * np.linspace(0.0, 1.0, count + 1)[1:] ** 2


def plot_landscapes(panels: Sequence[tuple[Landscape, Sequence[dict]]], path, *,
                    title: str, grid: int = 240) -> None:
    """One panel per landscape: contours, minima, and each run's path from its start.

    ``panels`` holds ``(landscape, runs)``; a run is a dict with ``points`` (n, 2),
    ``label`` (for the legend), ``color`` (an index: one colour per learning rate)
    and ``style`` (an index: one line style per optimizer). Paths that leave the
    plotting box are clipped by the axes.
    """
    n = len(panels)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 6.4 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (landscape, runs) in zip(axes.flat, panels):
        x0, x1, y0, y1 = landscape.box
        gx, gy = np.meshgrid(np.linspace(x0, x1, grid), np.linspace(y0, y1, grid))
        values = np.asarray(landscape.value(np.stack([gx, gy], axis=-1)), np.float64)
        levels = contour_levels(values, log=landscape.log_levels)
        norm = matplotlib.colors.LogNorm() if landscape.log_levels else None
        ax.contour(gx, gy, values, levels=levels, cmap="Greys", norm=norm, linewidths=0.7,
                   alpha=0.8)
        for run in runs:
            pts = np.asarray(run["points"], np.float64)
            ax.plot(pts[:, 0], pts[:, 1], color=colors[run["color"] % len(colors)],
                    linestyle=LINESTYLES[run["style"] % len(LINESTYLES)], linewidth=1.2, alpha=0.9,
                    marker=".", markersize=3, markevery=max(1, (len(pts) - 1) // 60),
                    label=run["label"])
        sx, sy = landscape.start
        ax.plot([sx], [sy], "o", color="black", markersize=7, markerfacecolor="white",
                markeredgewidth=1.5, label="start", zorder=5)
        mx, my = zip(*landscape.minima)
        ax.plot(mx, my, "*", color="crimson", markersize=13, markeredgecolor="black",
                label="minimum" if len(landscape.minima) == 1 else "minima", zorder=5)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"{landscape.name}: f = {landscape.formula}"
                     + (" (log contours)" if landscape.log_levels else ""), fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2,
                  frameon=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
