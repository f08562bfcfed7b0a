"""Data sets shipped inside scikit-learn: no download, ever.

- ``digits``: 1797 handwritten digits as 8×8 grey images (values 0..16, normalised by one
  global pixel mean and std),
  flattened to 64 features, 10 classes.
- ``diabetes``: 442 patients, 10 clinical features (age, sex, bmi, bp, s1..s6)
  in their raw units, target = disease progression one year later (25..346).
  The target is standardised by default (train mean/std in ``info``), so a
  linear model trained by MSE gradient descent is stable at lr ≈ 0.1 and the
  loss reads as a fraction of the target's variance.
"""

from __future__ import annotations


from gdlab.data.base import Dataset, from_arrays


def load_digits(*, seed: int = 0, test_fraction: float = 0.2,
                standardize: bool | str = True) -> Dataset:
    """scikit-learn's 8×8 digits: ``(N, 64)`` float32 features, 10 classes, split by ``seed``.

    Pixels (0..16) are normalised like every image set: one mean and std over all
    training pixels (``standardize=True`` or ``"global"``); ``"per_pixel"``
    standardises each pixel on its own; False keeps the raw values.
    """
    standardize = {True: "global"}.get(standardize, standardize)
    from sklearn import datasets as _sk  # imported here: it is slow to load

    bunch = _sk.load_digits()
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))
    return from_arrays(
        "digits", bunch.data, bunch.target,
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
    from sklearn import datasets as _sk  # imported here: it is slow to load

    bunch = _sk.load_diabetes(scaled=False)
    return from_arrays(
        "diabetes", bunch.data, bunch.target,
        task="regression", seed=seed, test_fraction=test_fraction,
        standardize=standardize, standardize_target=standardize_target,
        feature_names=tuple(bunch.feature_names),
        info={"source": "sklearn.datasets.load_diabetes(scaled=False)",
              "target_units": ("disease progression, standardised on the training split"
                               if standardize_target else "disease progression (25..346)")},
    )
