"""Reading results: the verdict on each learning rate of a sweep, and which runs to show.

A learning-rate sweep trains the same model from the same initial weights with
many step sizes α. Each α gets one verdict, decided by this rule alone::

    diverged   gdlab's guard flagged the run (a non-finite loss or weights, or a
               step loss above 1e6 × the initial loss, see ``gdlab.train``), or
               the final loss is not finite, or it ends *above* the initial loss J₀;
    converged  otherwise, when it closed at least 95% of the gap between J₀ and
               the best final loss J* of the sweep, measured in log space:
                   log J₀ − log J_final  ≥  0.95 · (log J₀ − log J*);
    too slow   everything else: it went down, but not far enough in the epochs given.

Log space because losses fall geometrically: on a gap from J₀ = 14 to J* = 0.01,
95% of the *linear* gap would accept a loss 71× the best, 95% of the *log* gap
accepts only about 1.4× the best. Losses are floored at ``LOSS_FLOOR · J₀``
before taking logs, so a sweep whose best run fits exactly (J* = 0) still has a
finite gap. When no run went below J₀ the gap is zero and nothing converged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

DIVERGED, TOO_SLOW, CONVERGED = "diverged", "too slow", "converged"
VERDICTS = (CONVERGED, TOO_SLOW, DIVERGED)

CONVERGED_FRACTION = 0.95
"""Share of the log gap between the initial and the best final loss a run must close."""

LOSS_FLOOR = 1e-12
"""Losses below ``LOSS_FLOOR · J₀`` count as that much before taking logs."""


def verdict_rule(fraction: float = CONVERGED_FRACTION, blowup: float | None = None) -> str:
    """The rule ``lr_verdicts`` applies, as one sentence for printing and for ``sweep.json``;
    ``blowup`` is the guard's factor, ``gdlab.train.DEFAULT_BLOWUP`` when None (read only
    then: this module itself needs NumPy alone)."""
    if blowup is None:
        from gdlab.train import DEFAULT_BLOWUP as blowup
    return (f"diverged if gdlab flagged the run (non-finite loss or weights, or a step loss "
            f"> {blowup:g}x the initial training loss) or the final loss is non-finite or above the "
            f"initial loss J0; converged if not diverged and log J0 - log J_final >= "
            f"{fraction:g} * (log J0 - log J_best), J_best the lowest non-diverged final loss "
            f"of the sweep (losses floored at {LOSS_FLOOR:g} * J0); too slow otherwise")


@dataclasses.dataclass(frozen=True)
class Verdicts:
    """What ``lr_verdicts`` returns, one entry per learning rate."""

    verdicts: tuple[str, ...]     # "converged", "too slow" or "diverged"
    gap_closed: np.ndarray        # (K,) share of the log gap J0 → J_best closed; NaN when diverged
    best_final_loss: float | None  # J_best: lowest final loss of a non-diverged run; None if all diverged


def lr_verdicts(initial_loss: float, final_losses: Sequence[float], flagged: Sequence[bool], *,
                fraction: float = CONVERGED_FRACTION) -> Verdicts:
    """Apply the module's rule to a sweep.

    Args:
      initial_loss: J₀, the loss at the shared initial weights.
      final_losses: (K,) the loss after the last epoch (NaN when the run diverged).
      flagged: (K,) whether gdlab's guard marked the run diverged.
      fraction: the share of the log gap a run must close to count as converged.
    """
    final = np.asarray(final_losses, np.float64).reshape(-1)
    flagged = np.asarray(flagged, bool).reshape(-1)
    if final.shape != flagged.shape:
        raise ValueError(f"{final.size} final losses but {flagged.size} divergence flags")
    j0 = float(initial_loss)
    diverged = flagged | ~np.isfinite(final) | (final > j0)
    floor = max(LOSS_FLOOR * abs(j0), np.finfo(np.float64).tiny)
    best = float(np.min(final[~diverged])) if np.any(~diverged) else None
    gap_closed = np.full(final.shape, np.nan)
    if best is not None:
        log = lambda v: np.log(np.maximum(v, floor))  # noqa: E731
        gap = log(j0) - log(best)
        closed = log(j0) - log(final[~diverged])
        gap_closed[~diverged] = closed / gap if gap > 0 else 0.0
    verdicts = tuple(DIVERGED if d else CONVERGED if g >= fraction else TOO_SLOW
                     for d, g in zip(diverged, gap_closed))
    return Verdicts(verdicts=verdicts, gap_closed=gap_closed, best_final_loss=best)


def first_diverged(learning_rates: Sequence[float], verdicts: Sequence[str]) -> float | None:
    """The smallest learning rate whose verdict is "diverged"; None when none diverged."""
    rates = [float(lr) for lr, v in zip(learning_rates, verdicts) if v == DIVERGED]
    return min(rates) if rates else None


def pick_examples(learning_rates: Sequence[float], final_losses: Sequence[float],
                  verdicts: Sequence[str]) -> dict[str, int]:
    """Indices of three runs that tell the story: ``"too small"``, ``"good"``, ``"too large"``.

    good: the lowest final loss among non-diverged runs; too small: the smallest
    learning rate below it that was too slow; too large: the smallest learning
    rate above it that diverged (it shows the oscillating blow-up best), or
    the smallest diverged one when none lies above. A role nobody fills is left out.
    """
    lrs = np.asarray(learning_rates, np.float64)
    final = np.asarray(final_losses, np.float64)
    alive = [k for k, v in enumerate(verdicts) if v != DIVERGED]
    picks: dict[str, int] = {}
    good_lr = None
    if alive:
        good = min(alive, key=lambda k: final[k])
        picks["good"], good_lr = good, lrs[good]
    slow = [k for k, v in enumerate(verdicts)
            if v == TOO_SLOW and (good_lr is None or lrs[k] < good_lr)]
    if slow:
        picks["too small"] = min(slow, key=lambda k: lrs[k])
    bad = [k for k, v in enumerate(verdicts) if v == DIVERGED]
    above = [k for k in bad if good_lr is None or lrs[k] > good_lr]
    if bad:
        picks["too large"] = min(above or bad, key=lambda k: lrs[k])
    return picks
