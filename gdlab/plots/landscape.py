"""Descent paths over the contours of 2-D landscapes: one row per landscape, a contour
panel per optimizer, and the loss of every path against the step."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import NamedTuple

import matplotlib
import numpy as np
from matplotlib import transforms

from gdlab.landscapes import Landscape
from gdlab.plots.common import decorate, figure, save

LINESTYLES = ("-", "--", ":", "-.")


class Run(NamedTuple):
    """One descent path as the figure draws it."""

    points: np.ndarray        # (steps+1, 2): the start, then the point after each update
    losses: np.ndarray        # (steps+1,): f at each point
    label: str                # for the legend
    color: int                # index into the colour cycle: one colour per learning rate
    diverged_at: int | None   # the 1-based update that diverged, None if none did


class Row(NamedTuple):
    """One landscape: a contour panel per optimizer, then the losses of all its runs."""

    landscape: Landscape
    optimizers: Sequence[tuple[str, Sequence[Run]]]  # (e.g. "plain GD", its runs), one panel each
    note: str = ""                                   # added to the panel titles, e.g. "2/λmax = 0.2"


def contour_levels(values: np.ndarray, *, log: bool, count: int = 18) -> np.ndarray:
    """Contour levels for a grid of values: log-spaced (deep, narrow valleys) or
    quadratically spaced (so a quadratic bowl's ellipses come out evenly apart)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if log:
        positive = values[values > 0]
        floor = max(float(np.min(positive)) if positive.size else 1e-3, hi * 1e-6, 1e-3)
        return np.geomspace(floor, hi, count)
    return lo + (hi - lo) * np.linspace(0.0, 1.0, count + 1)[1:] ** 2


def _clip(p: np.ndarray, q: np.ndarray, box: Sequence[float]) -> tuple[float, float] | None:
    """Liang–Barsky: the parameters ``(t0, t1)`` of the part of the segment p→q inside
    ``box`` (``p + t·(q − p)``, 0 ≤ t0 ≤ t1 ≤ 1), or None when none of it is."""
    x0, x1, y0, y1 = box
    d = q - p
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-d[0], p[0] - x0), (d[0], x1 - p[0]), (-d[1], p[1] - y0), (d[1], y1 - p[1])):
        if pk == 0:
            if qk < 0:
                return None
            continue
        t = qk / pk
        if pk < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return t0, t1


def visible_path(points: np.ndarray, box: Sequence[float], *, diverged: bool
                 ) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """What of a path to draw inside ``box``: ``(polyline, end_mark, left_at)``.

    The polyline is the path with every segment clipped to the box, NaN rows
    between pieces where it leaves and comes back, so no drawn segment reaches
    outside the view. A diverged path is cut where it first leaves the box (its
    later back-and-forth across the view would draw as bars): ``end_mark`` is
    that exit point on the box's edge, or the path's last point if it never
    left; None for a path that did not diverge. ``left_at`` is the update that
    took a diverged path out of the view (None if none did).
    """
    pts = np.asarray(points, np.float64)
    out: list[np.ndarray] = []
    x0, x1, y0, y1 = box
    inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    if inside[0]:
        out.append(pts[0])
    for i in range(len(pts) - 1):
        clipped = _clip(pts[i], pts[i + 1], box)
        if clipped is None:
            continue
        t0, t1 = clipped
        a = pts[i] if t0 == 0 else pts[i] + t0 * (pts[i + 1] - pts[i])
        b = pts[i + 1] if t1 == 1 else pts[i] + t1 * (pts[i + 1] - pts[i])
        if not out or np.isnan(out[-1]).any() or not np.allclose(out[-1], a, rtol=0, atol=1e-12):
            if out and not np.isnan(out[-1]).any():
                out.append(np.array([np.nan, np.nan]))
            out.append(a)
        out.append(b)
        if diverged and not inside[i + 1]:  # it left the view: stop drawing here
            return np.array(out), b, i + 1
        if not inside[i + 1]:
            out.append(np.array([np.nan, np.nan]))
    line = np.array(out) if out else np.zeros((0, 2))
    return line, (pts[-1] if diverged else None), None


def _draw_contours(ax, landscape: Landscape, grid: int) -> None:
    x0, x1, y0, y1 = landscape.box
    gx, gy = np.meshgrid(np.linspace(x0, x1, grid), np.linspace(y0, y1, grid))
    values = np.asarray(landscape.value(np.stack([gx, gy], axis=-1)), np.float64)
    levels = contour_levels(values, log=landscape.log_levels)
    norm = matplotlib.colors.LogNorm() if landscape.log_levels else None
    ax.contour(gx, gy, values, levels=levels, cmap="Greys", norm=norm, linewidths=0.7, alpha=0.8)


def _legend_below(ax) -> None:
    """``ax``'s legend under its x label: a fixed distance below the axes in points (a
    fraction of the panel's height put it over the label), clear of the tick labels and
    the label at their default sizes."""
    below = transforms.offset_copy(ax.transAxes, fig=ax.figure, y=-34, units="points")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below,
              ncol=1, frameon=False)


def landscape_figure(rows: Sequence[Row], *, title: str, grid: int = 240):
    """The figure of ``plot_landscapes``, returned open (``matplotlib.figure.Figure``).

    Each row: one contour panel per optimizer with its paths from the start
    point (colour = learning rate; paths clipped to the view, a diverged one
    cut where it leaves it and marked ✕ there), the start and the minima; then a
    panel of f(p_t) − f* against the step t for all of the row's runs (log
    scale, line style = optimizer, a diverged run up to its diverging update).
    """
    cols = max(len(row.optimizers) for row in rows) + 1
    fig, axes = figure(len(rows), cols, figsize=(6.2 * cols, 6.0 * len(rows)),
                             squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax_row, row in zip(axes, rows):
        fn = row.landscape
        note = f"; {row.note}" if row.note else ""
        for ax, (opt_name, runs) in zip(ax_row, row.optimizers):
            _draw_contours(ax, fn, grid)
            for run in runs:
                colour = colors[run.color % len(colors)]
                line, mark, left = visible_path(run.points, fn.box,
                                                diverged=run.diverged_at is not None)
                label = run.label + (f" (✕: leaves the view at step {left})" if left else "")
                ax.plot(line[:, 0], line[:, 1], color=colour, linewidth=1.4, alpha=0.9,
                        marker=".", markersize=4, markevery=max(1, (len(line) - 1) // 60),
                        label=label)
                if mark is not None:
                    ax.plot([mark[0]], [mark[1]], "X", color=colour, markersize=11,
                            markeredgecolor="black", zorder=6, clip_on=False)  # on the edge
            sx, sy = fn.start
            ax.plot([sx], [sy], "o", color="black", markersize=7, markerfacecolor="white",
                    markeredgewidth=1.5, label="start", zorder=5)
            mx, my = zip(*fn.minima)
            ax.plot(mx, my, "*", color="crimson", markersize=13, markeredgecolor="black",
                    label="minimum" if len(fn.minima) == 1 else "minima", zorder=5)
            x0, x1, y0, y1 = fn.box
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            ax.set_title(f"{fn.name}: f = {fn.formula}"
                         + (" (log contours)" if fn.log_levels else "")
                         + "\n" + textwrap.fill(f"{opt_name}{note}", 68),  # fits the panel
                         fontsize=10)
            _legend_below(ax)
        ax = ax_row[len(row.optimizers)]
        for style, (opt_name, runs) in enumerate(row.optimizers):
            for run in runs:
                end = len(run.losses) if run.diverged_at is None else run.diverged_at + 1
                gap = np.asarray(run.losses[:end], np.float64) - fn.minimum_value
                gap = np.where(np.isfinite(gap) & (gap > 0), gap, np.nan)
                ax.plot(np.arange(end), gap, color=colors[run.color % len(colors)],
                        linestyle=LINESTYLES[style % len(LINESTYLES)], linewidth=1.3,
                        label=f"{opt_name}: {run.label}" if len(row.optimizers) > 1 else run.label)
                if run.diverged_at is not None:
                    ax.plot([end - 1], [gap[-1]], "X", color=colors[run.color % len(colors)],
                            markersize=10, markeredgecolor="black", zorder=5)
        decorate(ax, xlabel="step t", ylabel="f(p_t) − f*", ylog=True, legend=False,
                 title=f"{fn.name}: the loss along each path (✕: diverged)")
        _legend_below(ax)
        for ax in ax_row[len(row.optimizers) + 1:]:
            ax.set_visible(False)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def plot_landscapes(rows: Sequence[Row], path, *, title: str, grid: int = 240) -> None:
    """Write ``landscape_figure`` to ``path`` (PNG)."""
    save(landscape_figure(rows, title=title, grid=grid), path)
