"""Descent modes side by side: loss against updates, examples processed and wall time.

Batch, mini-batch and stochastic descent see the same examples per epoch, so
curves sampled once per epoch and drawn against examples are the per-epoch
curves rescaled. What tells them apart is *within* an epoch: SGD has made N
updates by the end of the first, batch descent one. So the update and example
panels draw the batch loss of every update (averaged in log-spaced bins, so a
curve of 30,000 noisy SGD steps stays readable) beside the train loss on all N
examples at each epoch's end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from gdlab.plots.common import decorate, figure, log_values, mark_floor, save

_COLOUR = {"batch": "tab:blue", "minibatch": "tab:green", "sgd": "tab:red"}


def examples_after(updates, *, steps_per_epoch: int, batch_size: int, num_examples: int):
    """Examples processed after ``updates`` updates (an int or an array): whole epochs
    of N, then B per update of the epoch under way (its last batch is the partial one)."""
    updates = np.asarray(updates)
    return (updates // steps_per_epoch) * num_examples + (updates % steps_per_epoch) * batch_size


def binned_curve(step_losses: Sequence[float], *, steps_per_epoch: int, batch_size: int,
                 num_examples: int, bins: int = 48) -> dict[str, list]:
    """The batch loss of each update, averaged in log-spaced bins of the update count.

    Update ``k`` (1-based) takes its batch loss at the weights left by ``k − 1``
    updates, so it is placed at ``updates = k − 1``. The bins are the updates
    0, 1, then ``bins`` log-spaced ranges up to the last; with one update an epoch
    (batch descent) or no more than ``bins + 2`` updates, each update is a bin of its
    own, whose value is that update's loss: batch descent's curve is exact. Returns
    JSON-ready
    lists: ``updates`` and ``examples`` (the means over each bin), ``batch_loss``
    (the mean of the bin's finite losses, None if it has none) and ``count``.
    """
    losses = np.asarray(step_losses, np.float64).reshape(-1)
    n = losses.size
    if n == 0:
        return {"updates": [], "examples": [], "batch_loss": [], "count": []}
    if steps_per_epoch == 1 or n <= bins + 2:  # one bin per update
        edges = np.arange(n + 1)
    else:
        edges = np.unique(np.concatenate([[0, 1],
                                          np.geomspace(1, n, bins + 1).round().astype(int)]))
    done = np.arange(n)  # updates done before each batch loss
    out = {"updates": [], "examples": [], "batch_loss": [], "count": []}
    for lo, hi in itertools.pairwise(edges):  # the bin of updates lo .. hi − 1; edges end at n
        values = losses[lo:hi]
        finite = values[np.isfinite(values)]
        ex = examples_after(done[lo:hi], steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                            num_examples=num_examples)
        out["updates"].append(float(done[lo:hi].mean()))
        out["examples"].append(float(ex.mean()))
        out["batch_loss"].append(float(finite.mean()) if finite.size else None)
        out["count"].append(int(values.size))
    return out


def _value(row: Mapping, key: str) -> float:
    value = row.get(key)
    return math.nan if value is None else float(value)


def _nan(values) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], np.float64)


def modes_figure(runs: Mapping[str, Mapping], *, title: str):
    """The figure of ``plot_modes``, returned open (``matplotlib.figure.Figure``).

    ``runs`` maps a mode name to ``{"label", "history", "curve"}``: ``history``
    rows hold ``epoch``, ``step`` (updates done), ``examples``,
    ``wall_seconds``, ``train_loss`` and optionally ``test_loss``; ``curve`` is
    ``binned_curve``'s output. Panels: loss against updates and against
    examples (symmetric-log x, so 0 shows: the binned batch loss as a line, the
    train loss at each epoch's end as dots), and against training wall time
    (train solid, test dashed, per epoch). Loss on a log scale, an exact 0 drawn at a
    marked floor (``common.log_values``); the first two panels' legend lies below them,
    where it covers no curve.
    """
    fig, axes = figure(1, 3, figsize=(17, 5.6))
    fig.set_layout_engine("constrained")  # room for the legend below the panels
    # every loss on the update and example panels, then on the wall-time panel: exact
    # zeros (a saturated softmax's batch loss) are drawn at a floor on the log axes
    per_update, per_second = [], []
    for run in runs.values():
        per_update += [_nan(run["curve"]["batch_loss"]),
                       np.array([_value(row, "train_loss") for row in run["history"]])]
        per_second += [np.array([_value(row, key) for row in run["history"]])
                       for key in ("train_loss", "test_loss")]
    floors = []
    for values in (per_update, per_second):
        shown, floor = log_values(*values) if values else (None, None)
        values[:] = shown or values
        floors.append(floor)
    for k, (mode, run) in enumerate(runs.items()):
        colour = _COLOUR.get(mode)
        rows = run["history"]
        curve = run["curve"]
        batch_loss, train_loss = per_update[2 * k], per_update[2 * k + 1]
        for ax, x_curve, x_key in ((axes[0], "updates", "step"), (axes[1], "examples", "examples")):
            ax.plot(curve[x_curve], batch_loss, color=colour, lw=1.6,
                    label=f"{run['label']}: batch loss of its updates")
            ax.plot([row[x_key] for row in rows], train_loss,
                    "o", color=colour, markersize=4, markerfacecolor="white",
                    label=f"{run['label']}: train loss on all N, each epoch's end")
        walls = [row["wall_seconds"] for row in rows]
        axes[2].plot(walls, per_second[2 * k], color=colour, marker=".",
                     label=f"{run['label']}: train")
        if any(row.get("test_loss") is not None for row in rows):
            axes[2].plot(walls, per_second[2 * k + 1], color=colour,
                         ls="--", label=f"{run['label']}: test")
    for ax, xlabel, panel in (
        (axes[0], "updates made (symmetric log)", "per update"),
        (axes[1], "examples processed (symmetric log)", "per example processed (same budget)"),
    ):
        ax.set_xscale("symlog", linthresh=1.0)
        decorate(ax, xlabel=xlabel, ylabel="loss J(θ)", title=panel, ylog=True, legend=False)
        mark_floor(ax, floors[0])
    decorate(axes[2], xlabel="training wall time (s; compile, first run excluded)", ylabel="loss J(θ)",
             title="per second of training (per epoch)", ylog=True, legend=False)
    mark_floor(axes[2], floors[1])
    # below the panels, where it covers no data, a column per mode
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # the floor's line, when there is one, in a column of its own
        fig.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False,
                   ncol=len(runs) + (floors[0] is not None))
    axes[2].legend(fontsize=7)
    fig.suptitle(title + "\nlines: batch loss of each update, averaged in log-spaced bins; "
                 "dots: train loss on the whole training set at each epoch's end", fontsize=11)
    return fig


def plot_modes(runs: Mapping[str, Mapping], path, *, title: str) -> None:
    """Write ``modes_figure`` to ``path`` (PNG)."""
    save(modes_figure(runs, title=title), path)
