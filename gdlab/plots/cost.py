"""What a gradient costs: seconds against parameter count, finite differences vs backprop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from gdlab.plots.common import decorate, save

LABELS = {
    "finite_differences": "finite differences (2P forward passes)",
    "backprop": "manual backprop (1 forward + 1 backward)",
    "autodiff": "jax.grad",
}
MARKERS = {"finite_differences": "o", "backprop": "s", "autodiff": "^"}


def plot_cost(params: Sequence[int], seconds: Mapping[str, Sequence[float]],
              fits: Mapping[str, tuple[float, float]], path, *, title: str,
              larger_slopes: Mapping[str, float] | None = None) -> None:
    """Left: log-log seconds per gradient against P, measured points and the fitted
    power law ``t = e^c·P^k`` (slope ``k`` in the legend) per method. Right: the
    ratio finite differences / backprop against P, beside the flop-count estimate
    2P/3 (2P forward passes against about three passes' worth for backprop).

    ``fits`` maps a method to ``(slope, intercept)`` in natural logs, fitted over
    every size; ``larger_slopes`` (optional) the slope over the larger sizes alone,
    shown beside it in the legend.
    """
    p = np.asarray(params, np.float64)
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.8))
    line = np.geomspace(p.min(), p.max(), 50)
    for method, times in seconds.items():
        label = LABELS.get(method, method)
        if method in fits:
            slope, intercept = fits[method]
            fitted = ax.plot(line, np.exp(intercept) * line ** slope, linestyle="--", alpha=0.7)
            color = fitted[0].get_color()
            label += f": slope {slope:.2f}"
            if larger_slopes and method in larger_slopes:
                label += f" ({larger_slopes[method]:.2f} on the larger half)"
        else:
            color = None
        ax.plot(p, times, marker=MARKERS.get(method, "."), linestyle="none", color=color,
                label=label)
    decorate(ax, xlabel="parameters P", ylabel="seconds per gradient (median)",
          title="time per gradient (dashed: fitted power law)", xlog=True, ylog=True)

    ratio = np.asarray(seconds["finite_differences"]) / np.asarray(seconds["backprop"])
    ax_ratio.plot(p, ratio, marker="o", label="measured: finite differences / backprop")
    ax_ratio.plot(line, 2 * line / 3, linestyle="--", color="gray",
                  label="flop estimate 2P/3")
    decorate(ax_ratio, xlabel="parameters P", ylabel="time ratio",
          title="how many times slower finite differences are", xlog=True, ylog=True)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
