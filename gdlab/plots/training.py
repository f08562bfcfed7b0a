"""The training curves of one run: loss, accuracy, gradient norm, sharpness, and how a diverged run blew up."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from gdlab.plots.common import decorate, figure, plot_log_if_possible, save

DIVERGED_COLOUR = "tab:red"


def _number(value) -> float:
    """A history value as a float: NaN for None, non-numbers and non-finite values."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def series(history: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(epochs, values)`` of ``key`` over the rows that carry it, in epoch order;
    a value that is null or not finite is NaN (a gap in the line)."""
    rows = sorted((row for row in history if "epoch" in row and key in row),
                  key=lambda row: row["epoch"])
    return (np.array([row["epoch"] for row in rows], np.float64),
            np.array([_number(row[key]) for row in rows], np.float64))


def _has(history: Sequence[Mapping], key: str) -> bool:
    return bool(np.isfinite(series(history, key)[1]).any())


def _epoch_axis(ax, epochs: tuple[float, float] | None = None) -> None:
    """Integer ticks; ``epochs``: the run's first and last epoch, the same span on every panel."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs is not None:
        lo, hi = epochs
        pad = max(hi - lo, 1) * 0.04
        ax.set_xlim(lo - pad, max(hi, lo + 1) + pad)


def history_figure(history: Sequence[Mapping], *, title: str,
                   step_losses: Sequence[float] | None = None,
                   diverged_at_step: int | None = None, bound_name: str | None = None):
    """The figure of ``plot_history``, returned open (``matplotlib.figure.Figure``).

    Panels, each only when the rows carry what it needs (old metrics files,
    resumed runs without the epoch-0 row, regression without accuracy all work):

    - **loss**: train (and test) loss against epoch, from epoch 0 (the initial
      loss) when that row is there; integer epoch ticks;
    - **accuracy**: train (and test) accuracy;
    - **gradient norm**: ``grad_norm`` against epoch;
    - **sharpness**: ``sharpness`` (λmax of the training loss's Hessian) against
      epoch beside the optimizer's stability bound on it, ``stability_bound`` (2/α for
      gd), named ``bound_name``;
    - **diverged**: for a run that diverged (``diverged_at_step`` given) with its
      ``step_losses`` (the batch loss of every update of the run's last call,
      the refused update last), the batch loss against update number up to the
      refused update, which is marked.
    """
    panels = ["loss"]
    if _has(history, "train_accuracy") or _has(history, "test_accuracy"):
        panels.append("accuracy")
    if _has(history, "grad_norm"):
        panels.append("gradient norm")
    if _has(history, "sharpness"):
        panels.append("sharpness")
    steps = None if step_losses is None else np.asarray(step_losses, np.float64).reshape(-1)
    if diverged_at_step is not None and steps is not None and steps.size:
        panels.append("diverged")
    cols = 2 if len(panels) == 4 else min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = figure(rows, cols, figsize=(5.2 * cols + 0.6, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    axes = dict(zip(panels, axes.flat))
    all_epochs = [row["epoch"] for row in history if "epoch" in row]
    span = (min(all_epochs), max(all_epochs)) if all_epochs else None

    ax = axes["loss"]
    plot_log_if_possible(ax, [(*series(history, key), {"marker": ".", "label": label})
                               for key, label in (("train_loss", "train loss"),
                                                  ("test_loss", "test loss"))
                               if key == "train_loss" or _has(history, key)])
    decorate(ax, xlabel="epoch (0: the initial weights)", ylabel="loss J(θ)", title="loss")
    _epoch_axis(ax, span)

    if "accuracy" in axes:
        ax = axes["accuracy"]
        for key, label in (("train_accuracy", "train accuracy"), ("test_accuracy", "test accuracy")):
            if _has(history, key):
                ax.plot(*series(history, key), marker=".", label=label)
        decorate(ax, xlabel="epoch", ylabel="accuracy", title="accuracy")
        _epoch_axis(ax, span)

    if "gradient norm" in axes:
        ax = axes["gradient norm"]
        plot_log_if_possible(ax, [(*series(history, "grad_norm"), {
            "marker": ".", "color": "tab:purple", "label": "‖∂J/∂θ‖ (batch gradient)"})])
        decorate(ax, xlabel="epoch", ylabel="gradient norm", title="gradient norm")
        _epoch_axis(ax, span)

    if "sharpness" in axes:
        ax = axes["sharpness"]
        ax.plot(*series(history, "sharpness"), marker="o", label="sharpness λmax")
        if _has(history, "stability_bound"):
            ax.plot(*series(history, "stability_bound"), color="k", ls="--",
                    drawstyle="steps-post", label=f"stability bound {bound_name or ''}".strip())
        decorate(ax, xlabel="epoch", ylabel="λmax of the training loss's Hessian",
                 title="sharpness")
        _epoch_axis(ax, span)

    if "diverged" in axes:
        ax = axes["diverged"]
        steps = steps[-diverged_at_step:]  # no update before the first
        updates = np.arange(diverged_at_step - steps.size + 1, diverged_at_step + 1)
        finite = np.where(np.isfinite(steps), steps, np.nan)
        plot_log_if_possible(ax, [(updates, finite, {
            "color": "tab:blue", "lw": 1, "marker": "." if steps.size <= 200 else None,
            "label": "batch loss of each update"})])
        ax.axvline(diverged_at_step, color=DIVERGED_COLOUR, ls="--", lw=1,
                   label=f"diverged: update {diverged_at_step} refused")
        if np.isfinite(steps[-1]):
            ax.plot([diverged_at_step], [steps[-1]], "x", color=DIVERGED_COLOUR, markersize=10,
                    markeredgewidth=2)
        decorate(ax, xlabel="update number", ylabel="batch loss",
                 title=f"up to the divergence (update {diverged_at_step})")
        _epoch_axis(ax)

    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[Mapping], path, *, title: str,
                 step_losses: Sequence[float] | None = None,
                 diverged_at_step: int | None = None, bound_name: str | None = None) -> None:
    """Write ``history_figure`` (loss, accuracy, gradient norm, sharpness, divergence)
    to ``path`` (PNG)."""
    save(history_figure(history, title=title, step_losses=step_losses,
                        diverged_at_step=diverged_at_step, bound_name=bound_name), path)
