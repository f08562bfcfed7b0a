"""Descent modes side by side: loss against epoch, examples processed and wall time."""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt

from gdlab.plots.common import decorate, save

_COLOUR = {"batch": "tab:blue", "minibatch": "tab:green", "sgd": "tab:red"}
_AXES = (  # history key on x, axis label, panel title
    ("epoch", "epoch", "per epoch"),
    ("examples", "examples processed", "per example processed (same budget)"),
    ("wall_seconds", "training wall time (s, compile excluded)", "per second of training"),
)


def _value(row: Mapping, key: str) -> float:
    value = row.get(key)
    return math.nan if value is None else float(value)


def plot_modes(runs: Mapping[str, Mapping], path, *, title: str) -> None:
    """Write the three-panel comparison to ``path``.

    ``runs`` maps a mode name to ``{"label": str, "history": [row, ...]}``, each
    row holding ``epoch``, ``examples``, ``wall_seconds``, ``train_loss`` and
    optionally ``test_loss``. Train loss is drawn solid, test loss dashed, y on a log scale.
    """
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, (key, xlabel, panel) in zip(axes, _AXES):
        for mode, run in runs.items():
            rows = run["history"]
            colour = _COLOUR.get(mode)
            xs = [row[key] for row in rows]
            ax.plot(xs, [_value(row, "train_loss") for row in rows], color=colour, marker=".",
                    label=f"{run['label']}: train")
            if any(row.get("test_loss") is not None for row in rows):
                ax.plot(xs, [_value(row, "test_loss") for row in rows], color=colour, ls="--",
                        label=f"{run['label']}: test")
        decorate(ax, xlabel=xlabel, ylabel="loss J(θ)", title=panel, ylog=True, legend=False)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    save(fig, path)
