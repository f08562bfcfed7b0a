"""Generated sequence tasks for sequence models: nothing is downloaded, a seed makes them.

- ``sort``: each example is ``length`` integers drawn uniformly from 0..``vocab``−1,
  its target the same integers in ascending order, one label per position. A
  model must compare every token with every other to get position t right (the
  t-th smallest value), which is what attention does.

Inputs are int32 ids ``(N, T)``, labels int32 ``(N, T)``; accuracy is per token.
"""

from __future__ import annotations

import numpy as np

from gdlab.data.base import DataError, Dataset, check_seed, check_test_fraction, from_split

SORT_DEFAULTS = {"n": 12000, "length": 8, "vocab": 10}


def load_sort(*, seed: int = 0, test_fraction: float = 0.2, n: int | None = None,
              length: int | None = None, vocab: int | None = None) -> Dataset:
    """``n`` random sequences of ``length`` symbols below ``vocab``, and their sorted versions.

    The same ``seed`` gives the same sequences and split; the test sequences are
    drawn with the rest, so a few may repeat training ones when ``vocab**length``
    is small (10⁸ by default: practically never).
    """
    seed = check_seed(seed)
    test_fraction = check_test_fraction(test_fraction)
    n = SORT_DEFAULTS["n"] if n is None else n
    length = SORT_DEFAULTS["length"] if length is None else length
    vocab = SORT_DEFAULTS["vocab"] if vocab is None else vocab
    for name, value, low in (("n", n, 2), ("length", length, 2), ("vocab", vocab, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"sort: {name} must be an integer >= {low}, got {value!r}")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, size=(n, length), dtype=np.int32)
    y = np.sort(x, axis=1)
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    return from_split(
        "sort", x[n_test:], y[n_test:], x[:n_test], y[:n_test],
        task="classification", num_classes=int(vocab), standardize=False,
        info={"source": "generated: sort uniform random integers", "seed": seed,
              "length": int(length), "vocab": int(vocab)},
    )
