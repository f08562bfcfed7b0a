"""Generated data sets: the house-price regression and two 2-D classification toys.

Every generator is deterministic for ``seed``: the points come from
``np.random.default_rng([seed, <tag>])`` and the train/test split from
``np.random.default_rng(seed)`` (see ``gdlab.data.base``), two independent streams.

houses
    The gradient-descent textbook example: predict a house's price from four
    features, with a *known* linear rule so a fitted model can be checked.

    ====================== =============================================================
    feature                distribution
    ====================== =============================================================
    floor_area_m2          50 + 200 · Beta(2, 3)  (50..250 m², mean 130)
    bedrooms               round(1 + (area − 50)/50 + N(0, 0.7²)) clipped to 1..5
                           (correlation with area ≈ 0.73)
    age_years              Uniform(0, 100)
    distance_to_centre_km  0.5 + 29.5 · Beta(1.5, 4)  (0.5..30 km, mean ≈ 8.5)
    ====================== =============================================================

    price = 1.5 + 0.02·area + 0.15·bedrooms − 0.01·age − 0.05·distance + N(0, noise²)

    **Target units: price in units of 100,000** (currency units), so values lie
    in about 0.6..7 (60,000 to 700,000) with mean ≈ 3.6; ``noise`` is in the
    same units (default 0.1, i.e. 10,000). The target is *not* standardised,
    so the true coefficients keep their meaning: 0.02 per m² is 2,000 per square
    metre, 0.15 a bedroom is 15,000, −0.01 per year of age is −1,000, −0.05 per
    km is −5,000.

    Features are standardised on the training split, and then the same rule reads
    ``price = b_s + Σ w_s · x_standardised`` with ``w_s = w_raw · x_std`` and
    ``b_s = b + w_raw · x_mean``: ``info["true_coef_standardized"]`` and
    ``info["true_intercept_standardized"]`` are what least squares on the
    standardised training features approaches (exactly, with ``noise=0``).
    ``info["true_coef_raw"]``, ``info["true_intercept"]`` are the raw-unit rule.

    On standardised features the Hessian of ``mean((ŷ − y)²)`` for a linear
    model with bias has eigenvalues ≈ 0.55..3.45, so plain gradient descent on
    that loss converges for lr < ≈ 0.58 (lr < ≈ 1.16 on ``½·mean((ŷ − y)²)``);
    lr 0.1–0.5 works, 0.3 converges in about a hundred full-batch steps.

moons
    scikit-learn's ``make_moons``: two interleaving half circles, Gaussian noise
    of std ``noise`` (default 0.2) on both coordinates, 2 classes.

spirals
    ``arms`` (default 3) spiral arms, one class each, ``n`` points shared
    evenly (default 1500). Arm ``k`` holds points at radius ``r ~ U(0, 1)`` and
    angle ``2πk/arms + 4r`` radians, plus Gaussian noise of std ``noise``
    (default 0.05) on both coordinates. Not linearly separable; an MLP solves it.
"""

from __future__ import annotations

import numpy as np

from gdlab.data.base import (
    DataError,
    Dataset,
    check_seed,
    fit_standardizer,
    from_arrays,
    split_indices,
)

HOUSE_FEATURES = ("floor_area_m2", "bedrooms", "age_years", "distance_to_centre_km")
HOUSE_COEF_RAW = np.array([0.02, 0.15, -0.01, -0.05])  # price (100k) per unit of each feature
HOUSE_INTERCEPT = 1.5  # price (100k) of a house with every raw feature at 0
HOUSES_DEFAULT_N = 1000
HOUSES_DEFAULT_NOISE = 0.1  # 10,000 in currency units

MOONS_DEFAULT_N = 1000
MOONS_DEFAULT_NOISE = 0.2

SPIRALS_DEFAULT_N = 1500
SPIRALS_DEFAULT_NOISE = 0.05
SPIRALS_DEFAULT_ARMS = 3

# Second words for the generators' seed sequences, so the points and the split draw
# from independent streams.
_TAG_HOUSES, _TAG_MOONS, _TAG_SPIRALS = 1, 2, 3


def _check_n(n, name: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise DataError(f"{name}: n must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _check_noise(noise, name: str) -> float:
    if (isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating))
            or not np.isfinite(noise) or noise < 0):
        raise DataError(f"{name}: noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def house_features(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 4)`` float64 raw features in ``HOUSE_FEATURES`` order."""
    area = 50.0 + 200.0 * rng.beta(2.0, 3.0, n)
    bedrooms = np.clip(np.rint(1.0 + (area - 50.0) / 50.0 + rng.normal(0.0, 0.7, n)), 1, 5)
    age = rng.uniform(0.0, 100.0, n)
    distance = 0.5 + 29.5 * rng.beta(1.5, 4.0, n)
    return np.stack([area, bedrooms, age, distance], axis=1)


def load_houses(
    *,
    seed: int = 0,
    n: int = HOUSES_DEFAULT_N,
    noise: float = HOUSES_DEFAULT_NOISE,
    test_fraction: float = 0.2,
    standardize: bool = True,
    standardize_target: bool = False,
) -> Dataset:
    """Generated house prices (see the module docstring): 4 features, target ``(N, 1)`` in 100k."""
    seed = check_seed(seed)
    n = _check_n(n, "houses", 2)
    noise = _check_noise(noise, "houses")
    rng = np.random.default_rng([seed, _TAG_HOUSES])
    x = house_features(n, rng)
    y = HOUSE_INTERCEPT + x @ HOUSE_COEF_RAW + noise * rng.normal(size=n)
    # The rule on standardised features uses the training split's stats, which
    # from_arrays recomputes from the same rows.
    train_idx, _ = split_indices(n, seed=seed, test_fraction=test_fraction)
    mean, std = fit_standardizer(x[train_idx])
    info = {
        "source": "generated: gdlab.data.synthetic.load_houses",
        "target_units": "price in units of 100,000",
        "noise": noise,
        "true_coef_raw": HOUSE_COEF_RAW.copy(),
        "true_intercept": HOUSE_INTERCEPT,
        "true_coef_standardized": HOUSE_COEF_RAW * std,
        "true_intercept_standardized": float(HOUSE_INTERCEPT + HOUSE_COEF_RAW @ mean),
    }
    return from_arrays(
        "houses", x, y, task="regression", seed=seed, test_fraction=test_fraction,
        standardize=standardize, standardize_target=standardize_target,
        feature_names=HOUSE_FEATURES, info=info,
    )


def load_moons(
    *,
    seed: int = 0,
    n: int = MOONS_DEFAULT_N,
    noise: float = MOONS_DEFAULT_NOISE,
    test_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    """scikit-learn's two moons: ``(N, 2)`` features, 2 classes."""
    from sklearn import datasets as _sk  # imported here: it is slow to load

    seed = check_seed(seed)
    n = _check_n(n, "moons", 2)
    noise = _check_noise(noise, "moons")
    rng = np.random.default_rng([seed, _TAG_MOONS])
    x, y = _sk.make_moons(n_samples=n, noise=noise, random_state=int(rng.integers(2**31 - 1)))
    return from_arrays(
        "moons", x, y, task="classification", num_classes=2, seed=seed,
        test_fraction=test_fraction, standardize=standardize, feature_names=("x1", "x2"),
        info={"source": "sklearn.datasets.make_moons", "noise": noise},
    )


def load_spirals(
    *,
    seed: int = 0,
    n: int = SPIRALS_DEFAULT_N,
    noise: float = SPIRALS_DEFAULT_NOISE,
    arms: int = SPIRALS_DEFAULT_ARMS,
    test_fraction: float = 0.2,
    standardize: bool = True,
) -> Dataset:
    """``arms`` interleaved spirals: ``(N, 2)`` features, one class per arm."""
    seed = check_seed(seed)
    arms = _check_n(arms, "spirals: arms", 2)
    n = _check_n(n, "spirals", arms)
    noise = _check_noise(noise, "spirals")
    rng = np.random.default_rng([seed, _TAG_SPIRALS])
    counts = np.full(arms, n // arms) + (np.arange(arms) < n % arms)  # remainder to the first arms
    y = np.repeat(np.arange(arms), counts)  # (n,)
    r = rng.uniform(0.0, 1.0, n)
    theta = 2.0 * np.pi * y / arms + 4.0 * r
    x = r[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    x = x + noise * rng.normal(size=x.shape)  # (n, 2)
    return from_arrays(
        "spirals", x, y, task="classification", num_classes=arms, seed=seed,
        test_fraction=test_fraction, standardize=standardize, feature_names=("x1", "x2"),
        info={"source": "generated: gdlab.data.synthetic.load_spirals", "noise": noise,
              "arms": arms},
    )
