"""What a gradient costs: seconds and operations against parameter count, finite differences vs backprop."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from gdlab.plots.common import decorate, figure, save

LABELS = {
    "finite_differences": "finite differences (2P forward passes)",
    "backprop": "manual backprop (1 forward + 1 backward)",
    "autodiff": "jax.grad",
}
MARKERS = {"finite_differences": "o", "backprop": "s", "autodiff": "^"}
REFERENCE_LABEL = "reference ∝ P{power} (slope {slope:g}, through the {method} points)"
_POWERS = {1: "", 2: "²", 3: "³"}


def reference_line(params: Sequence[float], values: Sequence[float], slope: float,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The line ``y = c·P^slope`` (fixed slope) that fits ``values`` best in log-log
    least squares, ``ln c = mean(ln y − slope·ln P)``, drawn over the range of
    ``params``: ``(P, y)`` at 50 log-spaced points."""
    p = np.asarray(params, np.float64)
    y = np.asarray(values, np.float64)
    log_c = float(np.mean(np.log(y) - slope * np.log(p)))
    line = np.geomspace(p.min(), p.max(), 50)
    return line, np.exp(log_c) * line ** slope


def _finite(values: Sequence[float] | None) -> bool:
    return values is not None and all(v is not None and math.isfinite(v) and v > 0 for v in values)


def _panel(ax, p: np.ndarray, values: Mapping[str, Sequence[float]],
           fits: Mapping[str, tuple[float, float] | None],
           reference_slopes: Mapping[str, float] | None) -> None:
    """Measured points, fitted power law (dashed) and reference slopes (grey bands)."""
    line = np.geomspace(p.min(), p.max(), 50)
    for method, ys in values.items():
        label = LABELS.get(method, method)
        color = None
        fit = fits.get(method)
        if fit is not None:
            slope, intercept = fit
            fitted = ax.plot(line, np.exp(intercept) * line ** slope, linestyle="--", alpha=0.7)
            color = fitted[0].get_color()
            label += f": slope {slope:.2f}"
            if reference_slopes and method in reference_slopes:
                label += f" (theory {reference_slopes[method]:g})"
        ax.plot(p, ys, marker=MARKERS.get(method, "."), linestyle="none", color=color, label=label)
    drawn = set()
    for method, slope in (reference_slopes or {}).items():
        if slope in drawn or method not in values or not _finite(values[method]):
            continue
        drawn.add(slope)
        xs, ys = reference_line(p, values[method], slope)
        power = _POWERS.get(slope, f"^{slope:g}")
        name = LABELS.get(method, method).split(" (")[0]
        ax.plot(xs, ys, linestyle="-", color="0.5", linewidth=7, alpha=0.25, zorder=0,
                solid_capstyle="butt",
                label=REFERENCE_LABEL.format(power=power, slope=slope, method=name))


def cost_figure(params: Sequence[int], seconds: Mapping[str, Sequence[float]],
                fits: Mapping[str, tuple[float, float] | None], *, title: str,
                flops: Mapping[str, Sequence[float]] | None = None,
                flop_fits: Mapping[str, tuple[float, float] | None] | None = None,
                reference_slopes: Mapping[str, float] | None = None):
    """The figure of ``plot_cost``, returned open (``matplotlib.figure.Figure``).

    Panels: measured seconds per gradient against P (log-log): points, the
    fitted power law ``t = e^c·P^k`` (dashed, slope in the legend) and the
    reference lines ``∝ P^k`` for each slope of ``reference_slopes`` (wide grey
    bands, ``reference_line`` through one method's points with the slope fixed); the same for ``flops`` (operations per
    gradient) when every count is known; and the ratio finite differences /
    backprop in seconds (and operations) beside the estimate 2P/3.
    ``fits`` and ``flop_fits`` map a method to ``(slope, intercept)`` in natural
    logs, or None.
    """
    p = np.asarray(params, np.float64)
    has_flops = flops is not None and all(_finite(v) for v in flops.values())
    panels = 3 if has_flops else 2
    fig, axes = figure(1, panels, figsize=(6.2 * panels, 5.2))
    ax = axes[0]
    _panel(ax, p, seconds, fits, reference_slopes)
    decorate(ax, xlabel="parameters P", ylabel="seconds per gradient (median)",
             title="measured time per gradient; slopes fitted to seconds", xlog=True, ylog=True)
    ax.legend(fontsize=7)
    if has_flops:
        ax = axes[1]
        _panel(ax, p, flops, flop_fits or {}, reference_slopes)
        decorate(ax, xlabel="parameters P", ylabel="floating-point operations per gradient",
                 title="operations per gradient (XLA's count, not timed)", xlog=True, ylog=True)
        ax.legend(fontsize=7)

    ax = axes[-1]
    line = np.geomspace(p.min(), p.max(), 50)
    ratio = np.asarray(seconds["finite_differences"]) / np.asarray(seconds["backprop"])
    ax.plot(p, ratio, marker="o", label="measured seconds: finite differences / backprop")
    if has_flops:
        ax.plot(p, np.asarray(flops["finite_differences"]) / np.asarray(flops["backprop"]),
                marker="s", label="operations: finite differences / backprop")
    ax.plot(line, 2 * line / 3, linestyle="--", color="gray",
            label="estimate 2P/3 (2P forward passes vs about 3)")
    decorate(ax, xlabel="parameters P", ylabel="ratio",
             title="how many times costlier finite differences are", xlog=True, ylog=True)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_cost(params: Sequence[int], seconds: Mapping[str, Sequence[float]],
              fits: Mapping[str, tuple[float, float] | None], path, *, title: str,
              flops: Mapping[str, Sequence[float]] | None = None,
              flop_fits: Mapping[str, tuple[float, float] | None] | None = None,
              reference_slopes: Mapping[str, float] | None = None) -> None:
    """Write ``cost_figure`` to ``path`` (PNG)."""
    save(cost_figure(params, seconds, fits, title=title, flops=flops, flop_fits=flop_fits,
                     reference_slopes=reference_slopes), path)
