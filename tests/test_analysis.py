"""gdlab.analysis: the learning-rate verdict rule on hand-made sweeps, and the picks the
lr_sweep figure draws."""

from __future__ import annotations

import math

import numpy as np

from gdlab import analysis

# The verdict rule on hand-made sweeps: initial loss 10, best final loss 0.01 (log gap ln 1000).

def test_verdicts_follow_the_rule():
    final = [9.0, 0.1, 0.0125, 0.01, 11.0, math.nan, 0.5]
    flagged = [False, False, False, False, False, True, True]
    out = analysis.lr_verdicts(10.0, final, flagged)
    assert out.verdicts == ("too slow", "too slow", "converged", "converged",
                            "diverged", "diverged", "diverged")
    assert out.best_final_loss == 0.01
    np.testing.assert_allclose(out.gap_closed[:4],
                               [math.log(10 / 9) / math.log(1000), 2 / 3,
                                math.log(800) / math.log(1000), 1.0])
    assert np.all(np.isnan(out.gap_closed[4:]))


def test_converged_threshold_is_95_percent_of_the_log_gap():
    # log-gap fraction of J = 10·1000^(−f) is exactly f.
    final = [10 * 1000 ** -f for f in (0.949, 0.951, 1.0)]
    assert analysis.lr_verdicts(10.0, final, [False] * 3).verdicts == (
        "too slow", "converged", "converged")


def test_no_progress_means_nothing_converged_and_all_diverged_has_no_best():
    assert analysis.lr_verdicts(1.0, [1.0, 1.0], [False, False]).verdicts == ("too slow",) * 2
    out = analysis.lr_verdicts(1.0, [math.nan, 2.0], [True, False])
    assert out.verdicts == ("diverged",) * 2 and out.best_final_loss is None


def test_an_exact_fit_is_floored_not_infinite():
    out = analysis.lr_verdicts(1.0, [0.0, 1e-13, 0.5], [False] * 3)
    assert out.verdicts == ("converged", "converged", "too slow")
    assert np.all(np.isfinite(out.gap_closed))


def test_first_diverged_and_picks():
    lrs = [0.001, 0.01, 0.1, 1.0, 10.0]
    final = [5.0, 1.0, 0.01, 0.5, math.nan]
    verdicts = ["too slow", "too slow", "converged", "too slow", "diverged"]
    assert analysis.first_diverged(lrs, verdicts) == 10.0
    assert analysis.first_diverged(lrs, ["too slow"] * 5) is None
    assert analysis.pick_examples(lrs, final, verdicts) == {"good": 2, "too small": 0,
                                                            "too large": 4}
    assert analysis.pick_examples(lrs[:1], final[:1], ["converged"]) == {"good": 0}


def test_first_diverged_is_the_smallest_and_too_large_is_the_first_above_good():
    """Not monotonic: 0.01 diverged (a guard flag), 0.1 is best, 1.0 and 10.0 diverged.
    first_diverged is the smallest diverged rate (0.01, not the largest); "too large" is the
    smallest diverged rate *above* the good one (1.0), not the smallest diverged overall."""
    lrs = [0.001, 0.01, 0.1, 1.0, 10.0]
    final = [5.0, math.nan, 0.01, math.nan, math.nan]
    verdicts = ["too slow", "diverged", "converged", "diverged", "diverged"]
    assert analysis.first_diverged(lrs, verdicts) == 0.01
    assert analysis.first_diverged(lrs[::-1], verdicts[::-1]) == 0.01  # order of the input
    assert analysis.pick_examples(lrs, final, verdicts) == {"good": 2, "too small": 0,
                                                            "too large": 3}
    # no diverged rate above the good one: the smallest diverged one
    assert analysis.pick_examples(lrs[:3], final[:3], verdicts[:3])["too large"] == 1
