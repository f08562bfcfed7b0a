"""Data sets shipped inside scikit-learn: no download, ever.

- ``digits``: 1797 handwritten digits as 8×8 grey images (values 0..16, normalised by one
  global pixel mean and std),
  flattened to 64 features, 10 classes.
- ``diabetes``: 442 patients, 10 clinical features (age, sex, bmi, bp, s1..s6)
  in their raw units, target = disease progression one year later (25..346).
  The target is standardised by default (train mean/std in ``info``), so a
  linear model trained by MSE gradient descent is stable at lr ≈ 0.1 and the
  loss reads as a fraction of the target's variance.

Both are read straight from the files scikit-learn installs (``sklearn/datasets/data``),
without importing scikit-learn: the import alone takes longer (about 0.6 s on a 2-core
CPU) than a short run's training. Where a scikit-learn release keeps them elsewhere, its
loaders are called instead; ``tests/test_data.py`` checks both give the same arrays.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from gdlab.data.base import Dataset, from_arrays

DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def sklearn_file(name: str) -> Path | None:
    """The path of scikit-learn's bundled data file ``name`` (``digits.csv.gz``), found
    without importing scikit-learn, or None when this release keeps it elsewhere."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def _table(path: Path, delimiter: str | None) -> np.ndarray:
    """A gzipped table of numbers as a float64 array, one row per line; ``delimiter`` None
    splits on runs of spaces."""
    rows = gzip.decompress(path.read_bytes()).decode().splitlines()
    return np.array([row.split(delimiter) for row in rows if row.strip()], dtype=np.float64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: ``(1797, 64)`` float64 pixels and ``(1797,)`` int64 labels."""
    path = sklearn_file("digits.csv.gz")
    if path is None:
        from sklearn import datasets as _sk  # imported only here: it is slow to load

        bunch = _sk.load_digits()
        return bunch.data, bunch.target
    table = _table(path, ",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's raw diabetes data: ``(442, 10)`` features in their units, ``(442,)``
    targets, both float64 (``load_diabetes(scaled=False)``)."""
    data, target = sklearn_file("diabetes_data_raw.csv.gz"), sklearn_file("diabetes_target.csv.gz")
    if data is None or target is None:
        from sklearn import datasets as _sk  # imported only here: it is slow to load

        bunch = _sk.load_diabetes(scaled=False)
        return bunch.data, bunch.target
    return _table(data, None), _table(target, None).reshape(-1)


def load_digits(*, seed: int = 0, test_fraction: float = 0.2,
                standardize: bool | str = True) -> Dataset:
    """scikit-learn's 8×8 digits: ``(N, 64)`` float32 features, 10 classes, split by ``seed``.

    Pixels (0..16) are normalised like every image set: one mean and std over all
    training pixels (``standardize=True`` or ``"global"``); ``"per_pixel"``
    standardises each pixel on its own; False keeps the raw values.
    """
    standardize = {True: "global"}.get(standardize, standardize)
    x, y = _digits()
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    return from_arrays(
        "digits", x, y,
        task="classification", num_classes=10, seed=seed, test_fraction=test_fraction,
        standardize=standardize, feature_names=names,
        info={"source": "sklearn.datasets.load_digits", "image_shape": (8, 8),
              "class_names": tuple(str(k) for k in range(10))},
    )


def load_diabetes(
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    standardize: bool = True,
    standardize_target: bool = True,
) -> Dataset:
    """scikit-learn's diabetes regression: ``(N, 10)`` raw-unit features, target ``(N, 1)``.

    With ``standardize_target`` the target is in train-standard-deviation units;
    ``y · info["y_std"] + info["y_mean"]`` gives disease progression back.
    """
    x, y = _diabetes()
    return from_arrays(
        "diabetes", x, y,
        task="regression", seed=seed, test_fraction=test_fraction,
        standardize=standardize, standardize_target=standardize_target,
        feature_names=DIABETES_FEATURES,
        info={"source": "sklearn.datasets.load_diabetes(scaled=False)",
              "target_units": ("disease progression, standardised on the training split"
                               if standardize_target else "disease progression (25..346)")},
    )
