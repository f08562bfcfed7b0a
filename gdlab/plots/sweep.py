"""A learning-rate sweep: final loss against α, and the curves of a too-small, a good and a too-large α."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from gdlab.analysis import CONVERGED, DIVERGED, TOO_SLOW
from gdlab.plots.common import decorate, figure, log_values, mark_floor, plot_log_if_possible, save

_STYLE = {  # verdict -> (colour, marker)
    CONVERGED: ("tab:green", "o"),
    TOO_SLOW: ("tab:orange", "o"),
    DIVERGED: ("tab:red", "x"),
}
_ROLE_COLOUR = {"too small": "tab:orange", "good": "tab:green", "too large": "tab:red"}


def plot_lr_sweep(
    learning_rates: Sequence[float],
    final_losses: Sequence[float],
    verdicts: Sequence[str],
    curves: np.ndarray,
    picks: Mapping[str, int],
    path,
    *,
    title: str,
    initial_loss: float,
    theoretical_max_lr: float | None = None,
    bound_name: str = "2/λmax",
) -> None:
    """Write the two-panel sweep figure to ``path``.

    Args:
      learning_rates, final_losses, verdicts: one entry per learning rate.
      curves: (K, epochs + 1) train loss from epoch 0 (the initial loss); NaN once diverged.
      picks: role ("too small", "good", "too large") -> index of the run to draw on the right.
      initial_loss: J₀, drawn as a horizontal line on the left.
      theoretical_max_lr: the stability bound, drawn as a vertical line when given, and
        ``bound_name`` its name in the legend (2/λmax for plain gd, 2(1+β)/λmax for heavy
        ball: ``gdlab.theory.BOUND_NAMES``).
    """
    lrs = np.asarray(learning_rates, np.float64)
    final = np.asarray(final_losses, np.float64)
    verdicts = list(verdicts)
    fig, (left, right) = figure(1, 2, figsize=(12, 4.5))

    finite = final[np.isfinite(final) & (final > 0)]
    ceiling = 3.0 * max(float(np.max(finite, initial=initial_loss)), initial_loss)
    alive = np.array([v != DIVERGED for v in verdicts])
    # a run that fits exactly ends at J = 0: drawn at a floor below the rest, and marked
    floored, floor = log_values(np.where(alive, final, np.nan))
    if floored is not None:
        final = np.where(alive, floored[0], final)
        mark_floor(left, floor)
    if alive.any():
        left.plot(lrs[alive], final[alive], color="0.6", lw=1, zorder=1)
    for verdict in (CONVERGED, TOO_SLOW, DIVERGED):
        mask = np.array([v == verdict for v in verdicts])
        if not mask.any():
            continue
        colour, marker = _STYLE[verdict]
        if verdict == DIVERGED:  # the final loss is meaningless (often NaN): mark them on top
            ys, label = np.full(mask.sum(), ceiling), f"{verdict} (drawn at top)"
        else:
            ys, label = final[mask], verdict
        left.scatter(lrs[mask], ys, color=colour, marker=marker, s=18, label=label, zorder=2)
    left.axhline(initial_loss, color="0.4", ls=":", lw=1, label=f"initial loss J₀ = {initial_loss:.3g}")
    if theoretical_max_lr is not None:
        left.axvline(theoretical_max_lr, color="k", ls="--", lw=1,
                     label=f"{bound_name} = {theoretical_max_lr:.4g}")
    decorate(left, xlabel="learning rate α", ylabel="final train loss J(θ)",
          title="final loss against learning rate", xlog=True, ylog=True)

    epochs = np.arange(curves.shape[1])
    roles = [role for role in ("too small", "good", "too large") if role in picks]
    plot_log_if_possible(right, [(epochs, curves[picks[role]], {
        "color": _ROLE_COLOUR[role],
        "label": f"{role}: α = {lrs[picks[role]]:.4g} ({verdicts[picks[role]]})"})
        for role in roles])
    right.axhline(initial_loss, color="0.4", ls=":", lw=1, label="initial loss J₀")
    decorate(right, xlabel="epoch", ylabel="train loss J(θ)",
          title="train loss of a too-small, a good and a too-large α", ylog=True)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, however few
    fig.suptitle(title)
    save(fig, path)
