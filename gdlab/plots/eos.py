"""The edge of stability: sharpness against step with its 2/η line, and the loss, per learning rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

from gdlab.plots.common import decorate, figure, save


def plot_edge_of_stability(runs: Sequence[Mapping], path, *, title: str,
                           minibatch: Mapping | None = None) -> None:
    """Write the two-panel figure to ``path``: λmax against step (left), each learning rate
    in its own colour with its 2/η as a dashed line of that colour, and J against step (right).

    Args:
      runs: full-batch runs, each with ``lr``, ``two_over_lr`` and a ``curve`` of equal-length
        lists ``step``, ``sharpness`` and ``loss`` (None where not finite).
      minibatch: an optional mini-batch run of the same shape plus ``batch_size``, drawn in
        black (dotted), its 2/η too.
    """
    fig, (left, right) = figure(1, 2, figsize=(13, 4.8))
    colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(runs), 1)))
    styled = [(run, colour, "-", f"gd η = {run['lr']:g}") for run, colour in zip(runs, colours)]
    if minibatch is not None:
        styled.append((minibatch, "k", ":", f"mini-batch (B = {minibatch['batch_size']}) "
                                            f"η = {minibatch['lr']:g}"))
    for run, colour, style, label in styled:
        curve = run["curve"]
        steps = np.asarray(curve["step"], np.float64)
        sharpness = np.asarray([np.nan if v is None else v for v in curve["sharpness"]], np.float64)
        loss = np.asarray([np.nan if v is None else v for v in curve["loss"]], np.float64)
        if run.get("diverged"):  # marked ✕ at its last finite loss
            label += f" (diverged by step {run['diverged_by_step']})"
            finite = np.flatnonzero(np.isfinite(loss))
            if finite.size:
                right.plot(steps[finite[-1]], loss[finite[-1]], "x", color=colour, markersize=9,
                           markeredgewidth=2)
        left.plot(steps, sharpness, color=colour, ls=style, lw=1.3, label=label)
        if run is not minibatch or all(r["lr"] != run["lr"] for r in runs):  # its own 2/η
            left.axhline(run["two_over_lr"], color=colour, ls="--", lw=0.9, alpha=0.8)
        right.plot(steps, loss, color=colour, ls=style, lw=1.1, label=label)
    left.plot([], [], color="0.4", ls="--", lw=0.9, label="2/η (same colour)")
    # the claim in the title only as far as the runs bear it out (eos.json's rule)
    edge = sum(bool(r.get("started_below") and r.get("at_edge")) for r in runs)
    decorate(left, xlabel="step", ylabel="sharpness λmax (top Hessian eigenvalue)",
             title=f"sharpness: {edge} of {len(runs)} full-batch runs rise to 2/η and hover")
    decorate(right, xlabel="step", ylabel="train loss J(θ)", title="train loss against step",
             ylog=True)
    fig.suptitle(title)
    save(fig, path)
