"""Tests for gdlab.data: bundled, generated and user-file data sets, images (``as_images``),
token sequences (``sort``) and per-token labels."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import datasets as sk_datasets

from gdlab import data
from gdlab.data import DataError, Dataset, bundled
from gdlab.data.mnist import IMAGES_MAGIC, LABELS_MAGIC

# Features are float32; statistics of a standardised float32 column agree with
# the exact 0 / 1 to about this.
STANDARDISED_ATOL = 1e-5
# A test split's mean is not forced to 0; with a few hundred rows it is off by
# far more than float32 rounding.
NOT_FORCED_ZERO = 1e-3

BUILTIN = {
    # name: (total rows, input_dim, task, num_classes, num_outputs)
    "digits": (1797, 64, "classification", 10, 10),
    "houses": (1000, 4, "regression", 0, 1),
    "diabetes": (442, 10, "regression", 0, 1),
    "moons": (1000, 2, "classification", 2, 2),
    "spirals": (1500, 2, "classification", 3, 3),
}


def _dataset_arrays(ds: Dataset):
    return ds.x_train, ds.y_train, ds.x_test, ds.y_test


# ----------------------------------------------------------------------------- built-in sets


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_shapes_dtypes_and_classes(name):
    total, dim, task, num_classes, num_outputs = BUILTIN[name]
    ds = data.load(name, seed=0)
    assert ds.name == name and ds.task == task
    assert ds.num_classes == num_classes and ds.num_outputs == num_outputs
    assert ds.input_dim == dim and len(ds.feature_names) == dim
    assert ds.input_shape == (dim,)
    assert ds.image_shape == ((8, 8, 1) if name == "digits" else None)
    assert ds.n_train + ds.n_test == total
    assert ds.n_test == round(0.2 * total)
    assert ds.x_train.shape == (ds.n_train, dim) and ds.x_test.shape == (ds.n_test, dim)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    if task == "classification":
        assert ds.y_train.shape == (ds.n_train,) and ds.y_train.dtype == np.int32
        assert ds.y_test.shape == (ds.n_test,) and ds.y_test.dtype == np.int32
        # every class appears in training, and nothing outside 0..K-1
        np.testing.assert_array_equal(np.unique(ds.y_train), np.arange(num_classes))
        assert set(np.unique(ds.y_test)) <= set(range(num_classes))
    else:
        assert ds.y_train.shape == (ds.n_train, 1) and ds.y_train.dtype == np.float32
        assert ds.y_test.shape == (ds.n_test, 1) and ds.y_test.dtype == np.float32
    for array in _dataset_arrays(ds):
        assert np.all(np.isfinite(array))


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_split_is_deterministic_for_a_seed_and_differs_between_seeds(name):
    a, b, c = data.load(name, seed=3), data.load(name, seed=3), data.load(name, seed=4)
    for x, y in zip(_dataset_arrays(a), _dataset_arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_test, c.x_test)


def test_digits_default_is_one_global_pixel_map():
    ds = data.load("digits", seed=1)
    raw = data.load("digits", seed=1, standardize=False).x_train.astype(np.float64)
    assert ds.info["scaling"] == "global" and np.ndim(ds.info["x_mean"]) == 0
    np.testing.assert_allclose(ds.x_train, (raw - raw.mean()) / raw.std(), rtol=1e-5, atol=1e-5)


def test_per_feature_scale_floor_and_extreme_test_feature_warnings():
    """A column that is mostly 0 with one rare large value: its scale is floored so the
    training feature stays within 10, with a warning; a test value beyond 50 is warned about."""
    rng = np.random.default_rng(0)
    x_train = np.c_[rng.normal(size=400), np.zeros(400)]
    x_train[7, 1] = 100.0
    x_test = np.c_[rng.normal(size=50), np.zeros(50)]
    x_test[3, 1] = 20000.0
    y = rng.integers(0, 2, 450)
    with pytest.warns(data.DataWarning) as record:
        ds = data.from_split("t", x_train, y[:400], x_test, y[400:], task="classification",
                             num_classes=2, feature_names=("a", "b"))
    messages = [str(w.message) for w in record]
    assert any("1 columns are mostly one value" in m and m.endswith(": b") for m in messages)
    assert any("features of the test split lie beyond 50" in m and "b" in m for m in messages)
    assert np.abs(ds.x_train[:, 1]).max() == pytest.approx(10.0, rel=1e-6)
    assert np.abs(ds.x_train[:, 0]).max() < 10  # an ordinary column keeps its plain std
    np.testing.assert_allclose(ds.info["x_std"][0], x_train[:, 0].std(), rtol=1e-12)
    assert ds.info["max_abs_x_test"] > 50 and len(ds.info["warnings"]) == 2


def test_constant_columns_are_those_whose_values_do_not_differ():
    """A column at 1e15 whose values differ by 1..199 has std 57.7, exactly representable:
    it was taken for constant (std ≤ 1e-10·|mean|), so the table's scale floor shrank it
    with a false 'mostly one value' warning. Constant columns, including a mean that
    rounding leaves a step off the values, still get std 1."""
    from gdlab.data.base import fit_standardizer

    x = np.stack([1e15 + np.arange(200.0), np.full(200, 0.1), np.full(200, 1e15),
                  np.full(200, 7.0), 1e8 + 1e-3 * np.arange(200.0)], axis=1)
    mean, std = fit_standardizer(x)
    np.testing.assert_allclose(std, [np.arange(200.0).std(), 1.0, 1.0, 1.0,
                                     1e-3 * np.arange(200.0).std()], rtol=1e-6)
    np.testing.assert_allclose(mean[:4], [1e15 + 99.5, 0.1, 1e15, 7.0])


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_standardisation_is_fitted_on_the_training_split_only(name):
    # Tables standardise per column; images (digits) per pixel only when asked (the
    # default for images is one global map, tested below).
    ds = data.load(name, seed=1, standardize="per_pixel" if name == "digits" else True)
    raw = data.load(name, seed=1, standardize=False)
    x_raw_train = raw.x_train.astype(np.float64)
    x_raw_test = raw.x_test.astype(np.float64)

    # The recorded map is exactly the raw training split's mean and population std
    # (constant columns get std 1).
    mean, std = x_raw_train.mean(0), x_raw_train.std(0)
    np.testing.assert_allclose(ds.info["x_mean"], mean, rtol=1e-6, atol=1e-6)
    varying = std > 0
    np.testing.assert_allclose(ds.info["x_std"][varying], std[varying], rtol=1e-6)
    np.testing.assert_array_equal(ds.info["x_std"][~varying], 1.0)

    # Applied to both splits.
    np.testing.assert_allclose(ds.x_train, (x_raw_train - mean) / ds.info["x_std"],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (x_raw_test - mean) / ds.info["x_std"],
                               rtol=1e-5, atol=1e-5)

    train = ds.x_train.astype(np.float64)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=STANDARDISED_ATOL)
    np.testing.assert_allclose(train.std(0)[varying], 1.0, atol=STANDARDISED_ATOL)
    # The test split is not standardised on its own statistics.
    assert np.max(np.abs(ds.x_test.astype(np.float64).mean(0))) > NOT_FORCED_ZERO

    # Train and test rows are the same raw rows, only transformed.
    np.testing.assert_array_equal(ds.y_train, raw.y_train)


def test_digits_rows_are_sklearns_rows():
    ds = data.load("digits", seed=0, standardize=False)
    bunch = sk_datasets.load_digits()
    np.testing.assert_array_equal(ds.x_train, bunch.data[ds.info["train_index"]])
    np.testing.assert_array_equal(ds.y_test, bunch.target[ds.info["test_index"]])
    both = np.concatenate([ds.info["train_index"], ds.info["test_index"]])
    np.testing.assert_array_equal(np.sort(both), np.arange(1797))


def test_diabetes_target_is_standardised_and_invertible():
    ds = data.load("diabetes", seed=0)
    bunch = sk_datasets.load_diabetes(scaled=False)
    np.testing.assert_allclose(ds.y_train.mean(), 0.0, atol=STANDARDISED_ATOL)
    np.testing.assert_allclose(ds.y_train.std(), 1.0, atol=STANDARDISED_ATOL)
    natural = ds.y_test[:, 0] * ds.info["y_std"][0] + ds.info["y_mean"][0]
    np.testing.assert_allclose(natural, bunch.target[ds.info["test_index"]], rtol=1e-5)
    kept = data.load("diabetes", seed=0, standardize_target=False)
    np.testing.assert_array_equal(kept.y_train[:, 0], bunch.target[kept.info["train_index"]])


def test_bundled_sets_equal_sklearns_loaders_read_directly_or_through_them(monkeypatch):
    """digits and diabetes are read from scikit-learn's files without importing it; where a
    release keeps the files elsewhere, its loaders give the same arrays."""
    kinds = {"digits": {}, "diabetes": {"standardize_target": False}}
    direct = {name: data.load(name, standardize=False, **kw) for name, kw in kinds.items()}
    bunches = {"digits": sk_datasets.load_digits(),
               "diabetes": sk_datasets.load_diabetes(scaled=False)}
    assert direct["diabetes"].feature_names == tuple(bunches["diabetes"].feature_names)
    monkeypatch.setattr(bundled, "sklearn_file", lambda name: None)
    for name, kw in kinds.items():
        through = data.load(name, standardize=False, **kw)
        bunch = bunches[name]
        for ds in (direct[name], through):
            x = np.concatenate([ds.x_train, ds.x_test]).astype(np.float64)
            y = np.concatenate([ds.y_train, ds.y_test]).reshape(len(x), -1)[:, 0]
            order = np.concatenate([ds.info["train_index"], ds.info["test_index"]])
            np.testing.assert_array_equal(x, bunch.data[order].astype(ds.x_train.dtype))
            np.testing.assert_array_equal(y, bunch.target[order].astype(ds.y_train.dtype))
        assert direct[name].feature_names == through.feature_names
    # a fresh interpreter loads both without importing scikit-learn
    code = ("import sys; from gdlab import data; data.load('digits'); data.load('diabetes'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_generated_sets_take_n_and_noise():
    moons = data.load("moons", n=101, noise=0.0)
    assert moons.n_train + moons.n_test == 101
    raw = data.load("moons", n=400, noise=0.0, standardize=False)
    x = np.concatenate([raw.x_train, raw.x_test]).astype(np.float64)
    y = np.concatenate([raw.y_train, raw.y_test])
    # noiseless moons lie on two unit half circles centred (0, 0) and (1, 0.5)
    centres = np.where(y[:, None] == 0, [0.0, 0.0], [1.0, 0.5])
    np.testing.assert_allclose(np.linalg.norm(x - centres, axis=1), 1.0, atol=1e-6)

    spirals = data.load_spirals(n=100, arms=4, noise=0.0, standardize=False)
    labels = np.concatenate([spirals.y_train, spirals.y_test])
    np.testing.assert_array_equal(np.bincount(labels), [25, 25, 25, 25])
    points = np.concatenate([spirals.x_train, spirals.x_test]).astype(np.float64)
    assert np.max(np.linalg.norm(points, axis=1)) <= 1.0 + 1e-6


def test_houses_features_and_prices_are_plausible():
    ds = data.load("houses", n=5000, seed=2, standardize=False)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    assert ds.feature_names == ("floor_area_m2", "bedrooms", "age_years",
                                "distance_to_centre_km")
    area, bedrooms, age, distance = x.T
    assert 50 <= area.min() and area.max() <= 250
    assert set(np.unique(bedrooms)) <= {1, 2, 3, 4, 5}
    assert np.corrcoef(area, bedrooms)[0, 1] > 0.5
    assert 0 <= age.min() and age.max() <= 100
    assert 0.5 <= distance.min() and distance.max() <= 30
    # price in units of 100k: positive, O(1..10)
    assert 0 < y.min() and y.max() < 10 and 2 < y.mean() < 5
    assert ds.info["target_units"] == "price in units of 100,000"


@pytest.mark.parametrize("standardize", [True, False])
def test_houses_least_squares_recovers_the_true_coefficients(standardize):
    ds = data.load("houses", n=20000, noise=0.0, seed=5, standardize=standardize)
    design = np.c_[ds.x_train.astype(np.float64), np.ones(ds.n_train)]
    fit = np.linalg.lstsq(design, ds.y_train.astype(np.float64), rcond=None)[0][:, 0]
    if standardize:
        want = np.r_[ds.info["true_coef_standardized"], ds.info["true_intercept_standardized"]]
    else:
        want = np.r_[ds.info["true_coef_raw"], ds.info["true_intercept"]]
    # noiseless: only float32 storage of x and y separates fit from truth
    np.testing.assert_allclose(fit, want, rtol=1e-4, atol=1e-5)


def test_houses_least_squares_with_default_noise_is_close():
    ds = data.load("houses", n=20000, seed=6)
    design = np.c_[ds.x_train.astype(np.float64), np.ones(ds.n_train)]
    fit, residual = np.linalg.lstsq(design, ds.y_train.astype(np.float64), rcond=None)[:2]
    want = np.r_[ds.info["true_coef_standardized"], ds.info["true_intercept_standardized"]]
    np.testing.assert_allclose(fit[:, 0], want, atol=5e-3)
    # residual variance ≈ noise² = 0.1²
    np.testing.assert_allclose(residual[0] / ds.n_train, 0.01, rtol=0.05)


@pytest.mark.parametrize("lr", [0.1, 0.5])
def test_houses_linear_mse_gradient_descent_converges(lr):
    ds = data.load("houses", seed=0)
    x = np.c_[ds.x_train.astype(np.float64), np.ones(ds.n_train)]
    y = ds.y_train.astype(np.float64)
    w = np.zeros((x.shape[1], 1))
    for _ in range(400):
        w = w - lr * 2.0 * x.T @ (x @ w - y) / len(y)  # gradient of mean((xw − y)²)
    best = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(w, best, atol=1e-6)


def test_describe_is_one_line():
    assert data.describe(data.load("digits")) == (
        "digits: classification, 1438 train / 359 test, 64 features, 10 classes")
    assert data.describe(data.load("houses", n=50)) == (
        "houses: regression, 40 train / 10 test, 4 features, 1 output")
    assert data.describe(data.as_images(data.load("digits"))) == (
        "digits: classification, 1438 train / 359 test, 8x8x1 images, 10 classes")
    assert data.describe(data.load("sort", n=50, length=6, vocab=4)) == (
        "sort: classification, 40 train / 10 test, sequences of 6 tokens, 4 symbols")


def test_dataset_arrays_are_read_only():
    ds = data.load("moons", n=20)
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0] = 1.0
    with pytest.raises(AttributeError):
        ds.name = "other"


def test_dataset_validates_its_fields():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        Dataset("t", x, np.array([0, 1, 2, 0]), x, np.zeros(4), "classification", 2)
    with pytest.raises(ValueError, match="task"):
        Dataset("t", x, np.zeros((4, 1)), x, np.zeros((4, 1)), "ranking", 0)
    with pytest.raises(DataError, match="x_test contains NaN values"):
        Dataset("t", x, np.zeros((4, 1)), np.full((4, 2), np.nan), np.zeros((4, 1)),
                "regression", 0)


def test_from_arrays_rejects_nan_and_inf():
    x = np.ones((10, 2))
    x[3, 1] = np.nan
    with pytest.raises(DataError, match="'mine' x_train contains NaN values|'mine' x_test contains"
                                        " NaN values"):
        data.from_arrays("mine", x, np.zeros(10), task="regression")
    x[3, 1] = np.inf
    with pytest.raises(DataError, match="contains infinite values"):
        data.from_arrays("mine", x, np.zeros(10), task="regression")


@pytest.mark.parametrize("which", ["x", "y"])
def test_from_arrays_refuses_complex_numbers_rather_than_dropping_their_imaginary_part(which):
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10.0)
    arrays = {"x": x, "y": y}
    arrays[which] = arrays[which] + 1j
    with pytest.raises(DataError, match=r"'mine' \S+ holds complex numbers \(complex128\); real "
                                        r"numbers are needed"):
        data.from_arrays("mine", arrays["x"], arrays["y"], task="regression")


def test_unknown_name_lists_the_choices():
    with pytest.raises(DataError, match=re.escape(
            "unknown dataset 'cifar'; choose one of: digits, houses, diabetes, moons, "
            "spirals, mnist, images, csv, npz, sort")):
        data.load("cifar")


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("digits", {"noise": 0.3}, "dataset 'digits' does not use noise"),
    ("moons", {"csv_path": "a.csv"}, "csv_path applies to: csv"),
    ("houses", {"data_dir": "/x"}, "data_dir applies to: mnist"),
    ("moons", {"seed": -1}, "seed must be a non-negative integer"),
    ("digits", {"test_fraction": 1.0}, "test_fraction must be a number strictly between 0 and 1"),
    ("houses", {"n": 1}, "houses: n must be an integer >= 2"),
    ("spirals", {"noise": -0.1}, "spirals: noise must be a finite number >= 0"),
    ("sort", {"noise": 0.1}, "dataset 'sort' does not use noise"),
    ("digits", {"length": 4}, "length applies to: sort"),
    ("moons", {"vocab": 4}, "vocab applies to: sort"),
    ("sort", {"length": 1}, "sort: length must be an integer >= 2, got 1"),
    ("sort", {"vocab": 1}, "sort: vocab must be an integer >= 2, got 1"),
    ("sort", {"n": 1}, "sort: n must be an integer >= 2, got 1"),
])
def test_bad_arguments_are_stopped_with_one_sentence(name, kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        data.load(name, **kwargs)


def test_dataset_accepts_per_token_labels_and_images():
    """Classification labels may be (N,) or one per token (N, T); x may be int32 token ids
    (kept as integers) or images (N, H, W, C)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, size=(4, 3))
    labels = np.sort(ids, axis=1)
    ds = Dataset("t", ids, labels, ids[:2], labels[:2], "classification", 5)
    assert ds.x_train.dtype == np.int32 and ds.y_train.dtype == np.int32
    assert ds.y_train.shape == (4, 3) and ds.y_test.shape == (2, 3)
    assert ds.input_shape == (3,) and ds.input_dim == 3 and ds.num_outputs == 5
    assert ds.image_shape is None
    images = rng.normal(size=(4, 2, 3, 1))
    ds = Dataset("im", images, np.array([0, 1, 1, 0]), images[:2], np.array([1, 0]),
                 "classification", 2)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (4, 2, 3, 1)
    assert ds.input_shape == (2, 3, 1) and ds.image_shape == (2, 3, 1) and ds.input_dim == 6
    assert data.as_images(ds) is ds  # already images: nothing to do


def test_dataset_rejects_mismatched_label_shapes():
    ids = np.zeros((4, 3), np.int32)
    with pytest.raises(ValueError, match=re.escape("labels must be (N,) or per token (N, T), "
                                                   "got (4, 3) and (4, 2)")):
        Dataset("t", ids, np.zeros((4, 3)), ids, np.zeros((4, 2)), "classification", 2)
    with pytest.raises(ValueError, match=re.escape("labels must be (N,) or per token (N, T)")):
        Dataset("t", ids, np.zeros((4, 3)), ids, np.zeros((4,)), "classification", 2)
    with pytest.raises(ValueError, match=re.escape("labels must be (N,) or per token (N, T)")):
        Dataset("t", ids, np.zeros((4, 3, 1)), ids, np.zeros((4, 3, 1)), "classification", 2)
    with pytest.raises(ValueError, match="4/4 feature rows but 3/4 targets"):
        Dataset("t", ids, np.zeros((3, 3)), ids, np.zeros((4, 3)), "classification", 2)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        Dataset("t", ids, np.full((4, 3), 2), ids, np.zeros((4, 3)), "classification", 2)
    # features: at least (N, D), one example shape in both splits
    with pytest.raises(ValueError, match="features must be"):
        Dataset("t", np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), "classification", 2)
    with pytest.raises(ValueError, match="features must be"):
        Dataset("t", ids, np.zeros(4), np.zeros((4, 2), np.int32), np.zeros(4),
                "classification", 2)


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("standardize", [True, False])
def test_as_images_reshapes_digits(standardize):
    flat = data.load("digits", seed=2, standardize=standardize)
    ds = data.as_images(flat)
    assert ds.x_train.shape == (flat.n_train, 8, 8, 1) and ds.x_test.shape == (flat.n_test, 8, 8, 1)
    assert ds.x_train.dtype == np.float32 and not ds.x_train.flags.writeable
    assert ds.input_shape == ds.image_shape == (8, 8, 1) and ds.input_dim == 64
    # the same values, pixel (r, c) = feature 8r + c
    np.testing.assert_array_equal(ds.x_train.reshape(flat.n_train, 64), flat.x_train)
    np.testing.assert_array_equal(ds.x_test[:, 2, 5, 0], flat.x_test[:, 8 * 2 + 5])
    np.testing.assert_array_equal(ds.y_train, flat.y_train)
    np.testing.assert_array_equal(ds.y_test, flat.y_test)
    assert (ds.name, ds.task, ds.num_classes) == (flat.name, flat.task, flat.num_classes)
    if not standardize:  # sklearn's 8×8 images, row by row
        bunch = sk_datasets.load_digits()
        np.testing.assert_array_equal(ds.x_train[..., 0], bunch.images[flat.info["train_index"]])


@pytest.mark.parametrize("name", ["houses", "moons"])
def test_as_images_rejects_non_image_data(name):
    with pytest.raises(DataError, match=re.escape(f"{name} is not image data")):
        data.as_images(data.load(name, n=50))


def test_as_images_rejects_token_sequences():
    with pytest.raises(DataError, match="sort is not image data"):
        data.as_images(data.load("sort", n=20))


# ----------------------------------------------------------------------------- sort


def test_sort_shapes_dtypes_and_labels():
    ds = data.load("sort", seed=0, n=200, length=7, vocab=5)
    assert ds.name == "sort" and ds.task == "classification"
    assert ds.num_classes == ds.num_outputs == 5
    assert (ds.n_train, ds.n_test) == (160, 40)
    assert ds.x_train.shape == ds.y_train.shape == (160, 7)
    assert ds.x_test.shape == ds.y_test.shape == (40, 7)
    for array in _dataset_arrays(ds):
        assert array.dtype == np.int32
        assert array.min() >= 0 and array.max() <= 4
    assert ds.input_shape == (7,) and ds.image_shape is None
    # the labels are the inputs sorted, position by position; nothing standardised
    np.testing.assert_array_equal(ds.y_train, np.sort(ds.x_train, axis=1))
    np.testing.assert_array_equal(ds.y_test, np.sort(ds.x_test, axis=1))
    assert "x_mean" not in ds.info
    assert np.all(np.diff(ds.y_train, axis=1) >= 0)
    # every symbol is used, and the inputs are not already sorted
    np.testing.assert_array_equal(np.unique(ds.x_train), np.arange(5))
    assert not np.array_equal(ds.x_train, ds.y_train)


def test_sort_defaults_and_direct_loader():
    ds = data.load("sort")
    assert (ds.n_train, ds.n_test) == (9600, 2400)
    assert ds.input_shape == (8,) and ds.num_classes == 10
    direct = data.load_sort(seed=0)
    for x, y in zip(_dataset_arrays(ds), _dataset_arrays(direct)):
        np.testing.assert_array_equal(x, y)


def test_sort_is_deterministic_for_a_seed_and_differs_between_seeds():
    a, b = data.load("sort", seed=3, n=100), data.load("sort", seed=3, n=100)
    c = data.load("sort", seed=4, n=100)
    for x, y in zip(_dataset_arrays(a), _dataset_arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_test, c.x_test)


@pytest.mark.parametrize("kwargs, message", [
    ({"length": 1}, "sort: length must be an integer >= 2, got 1"),
    ({"length": 2.5}, "sort: length must be an integer >= 2, got 2.5"),
    ({"length": True}, "sort: length must be an integer >= 2, got True"),
    ({"vocab": 0}, "sort: vocab must be an integer >= 2, got 0"),
    ({"vocab": "10"}, "sort: vocab must be an integer >= 2, got '10'"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_sort_rejects_bad_arguments(kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        data.load("sort", **kwargs)
    with pytest.raises(DataError, match=re.escape(message)):
        data.load_sort(**kwargs)


# ----------------------------------------------------------------------------- mnist


def _write_mnist(folder, *, n_train=12, n_test=5, rows=4, cols=3, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    folder.mkdir(exist_ok=True)
    for name, array in arrays.items():
        data.write_idx(folder / (name + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    data.write_idx(path, array)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_header_is_the_documented_format(tmp_path):
    data.write_idx(tmp_path / "i", np.zeros((2, 3, 4), np.uint8))
    raw = (tmp_path / "i").read_bytes()
    assert int.from_bytes(raw[:4], "big") == IMAGES_MAGIC
    assert [int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(3)] == [2, 3, 4]
    assert len(raw) == 16 + 24
    data.write_idx(tmp_path / "l", np.zeros(7, np.uint8))
    assert int.from_bytes((tmp_path / "l").read_bytes()[:4], "big") == LABELS_MAGIC


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loads_small_idx_files(tmp_path, gz):
    arrays = _write_mnist(tmp_path / "mnist", gz=gz)
    ds = data.load("mnist", data_dir=str(tmp_path / "mnist"), standardize=False)
    assert ds.task == "classification" and ds.num_classes == 10
    assert (ds.n_train, ds.n_test, ds.input_dim) == (12, 5, 12)
    np.testing.assert_allclose(
        ds.x_train, arrays["train-images-idx3-ubyte"].reshape(12, 12) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(
        ds.x_test, arrays["t10k-images-idx3-ubyte"].reshape(5, 12) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.y_train.dtype == np.int32 and ds.info["image_shape"] == (4, 3)
    assert ds.image_shape == (4, 3, 1) and ds.input_shape == (12,)
    images = data.as_images(ds)
    assert images.x_train.shape == (12, 4, 3, 1) and images.x_test.shape == (5, 4, 3, 1)
    np.testing.assert_allclose(images.x_train[..., 0], arrays["train-images-idx3-ubyte"] / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(images.y_test, ds.y_test)

    std = data.load_mnist(tmp_path / "mnist", standardize="per_pixel")
    np.testing.assert_allclose(std.x_train.mean(0), 0.0, atol=STANDARDISED_ATOL)
    np.testing.assert_allclose(std.info["x_mean"], ds.x_train.astype(np.float64).mean(0),
                               rtol=1e-6)
    # the default: one global map, (p/255 − μ)/σ with μ, σ over all training pixels
    glob = data.load_mnist(tmp_path / "mnist")
    raw = ds.x_train.astype(np.float64)
    assert glob.info["scaling"] == "global"
    np.testing.assert_allclose(glob.info["x_mean"], raw.mean(), rtol=1e-6)
    np.testing.assert_allclose(glob.info["x_std"], raw.std(), rtol=1e-6)
    np.testing.assert_allclose(glob.x_test, (ds.x_test - raw.mean()) / raw.std(), rtol=1e-5,
                               atol=1e-5)
    # the first 7 training images hold labels 0..6: the test's 9 is a class never trained on
    with pytest.warns(data.DataWarning, match=re.escape(
            "mnist: 1 test examples belong to 1 classes that no training example has ('9')")):
        first = data.load_mnist(tmp_path / "mnist", n=7, standardize=False)
    assert first.n_train == 7 and first.n_test == 5
    np.testing.assert_array_equal(first.x_train, ds.x_train[:7])


def test_mnist_rejects_a_wrong_magic_number(tmp_path):
    _write_mnist(tmp_path)
    # a labels file where the images should be
    data.write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros(5, np.uint8))
    path = str(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match=re.escape(
            f"mnist test images file '{path}': wrong IDX magic number 0x00000801 "
            f"(expected 0x00000803 for images)")):
        data.load("mnist", data_dir=str(tmp_path))


def test_mnist_rejects_a_truncated_file(tmp_path):
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    full = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(full[:-10]))
    with pytest.raises(DataError, match=re.escape(f"mnist train images file '{path}' is "
                                                  "truncated: its header declares 12×4×3")):
        data.load_mnist(tmp_path)
    path.write_bytes(path.read_bytes()[:20])  # a cut gzip stream
    with pytest.raises(DataError, match=re.escape(f"'{path}' is not a valid gzip file")):
        data.load_mnist(tmp_path)


@pytest.mark.parametrize("label", [10, 12])  # 10: the first past the digits
def test_mnist_rejects_an_out_of_range_label(tmp_path, label):
    _write_mnist(tmp_path)
    labels = np.arange(12, dtype=np.uint8) % 10
    labels[4] = label
    data.write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    path = tmp_path / "train-labels-idx1-ubyte"
    with pytest.raises(DataError, match=re.escape(
            f"mnist train labels file '{path}': label {label} out of range 0..9")):
        data.load_mnist(tmp_path)


def test_mnist_rejects_mismatched_counts(tmp_path):
    _write_mnist(tmp_path)
    data.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"holds 5 images but mnist test labels file '.*' "
                                        r"holds 4 labels"):
        data.load_mnist(tmp_path)


def test_mnist_rejects_missing_folder_and_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=re.escape(f"mnist: data_dir '{missing}' does not exist")):
        data.load("mnist", data_dir=str(missing))
    with pytest.raises(DataError, match=re.escape(
            f"mnist: no readable IDX files in data_dir '{tmp_path}': expected "
            "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]")):
        data.load("mnist", data_dir=str(tmp_path))
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=re.escape(
            f"mnist: data_dir '{tmp_path}' lacks t10k-labels-idx1-ubyte[.gz]")):
        data.load_mnist(tmp_path)
    with pytest.raises(DataError, match="mnist: data_dir is required"):
        data.load("mnist")


# ----------------------------------------------------------------------------- csv


def _write(tmp_path, text, name="table.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_regression(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    price = 3.0 * x[:, 0] - x[:, 1] + 0.25
    lines = ["a,price,b"] + [
        f"{a!r},{p!r},{b!r}" for (a, b), p in zip(x.tolist(), price.tolist())]
    path = _write(tmp_path, "\n".join(lines) + "\n\n")
    ds = data.load("csv", csv_path=path, target="price", seed=1)
    assert ds.task == "regression" and ds.num_classes == 0
    assert ds.feature_names == ("a", "b") and (ds.n_train, ds.n_test) == (40, 10)
    assert ds.y_train.shape == (40, 1) and ds.y_train.dtype == np.float32
    natural = ds.y_train[:, 0] * ds.info["y_std"][0] + ds.info["y_mean"][0]
    np.testing.assert_allclose(natural, price[ds.info["train_index"]], rtol=1e-5, atol=1e-5)
    raw = data.load_csv(path, "price", seed=1, standardize=False, standardize_target=False)
    np.testing.assert_allclose(raw.x_test, x[raw.info["test_index"]], rtol=1e-6)


def test_csv_classification_remaps_labels(tmp_path):
    rows = [f"{i},{i % 3 * 0.5},{[10, 20, 40][i % 3]}" for i in range(30)]
    path = _write(tmp_path, "id,f,label\n" + "\n".join(rows))
    ds = data.load("csv", csv_path=path, target="label")
    assert ds.task == "classification" and ds.num_classes == 3 and ds.num_outputs == 3
    assert ds.info["label_values"] == (10, 20, 40)
    original = np.array([10, 20, 40])[np.r_[ds.y_train, ds.y_test]]
    index = np.r_[ds.info["train_index"], ds.info["test_index"]]
    np.testing.assert_array_equal(original, np.array([10, 20, 40])[index % 3])
    # explicit override: the same integer column as a regression target
    as_regression = data.load("csv", csv_path=path, target="label", task="regression")
    assert as_regression.task == "regression" and as_regression.y_train.shape == (24, 1)


def test_csv_many_integer_values_is_regression(tmp_path):
    path = _write(tmp_path, "x,y\n" + "\n".join(f"{i},{i * 2}" for i in range(30)))
    with pytest.warns(data.DataWarning, match="target column 'y' holds 30 distinct whole numbers "
                                              r"\(0 to 58\), read as a regression target") as caught:
        dataset = data.load_csv(path, "y")
    assert dataset.task == "regression" and len(caught) == 1
    assert dataset.info["warnings"] == (str(caught[0].message),)  # summary.json keeps it
    # floats, or more distinct integers than classes could plausibly be, say nothing
    for values, name in (([i + 0.5 for i in range(30)], "floats"), (range(0, 3000, 2), "many")):
        other = _write(tmp_path, "x,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate(values)),
                       f"{name}.csv")
        assert "warnings" not in data.load_csv(other, "y").info
    with pytest.warns(data.DataWarning, match="6 test examples belong to 6 classes that no "
                                              "training example has"):
        assert data.load_csv(path, "y", task="classification").num_classes == 30


@pytest.mark.parametrize(("text", "message"), [
    ("a,b,c\n1,2,3\n4,5\n", "csv file '{p}', row 3: expected 3 columns, found 2"),
    ("a,b,c\n1,2,3\n4,5,6,7\n", "csv file '{p}', row 3: expected 3 columns, found 4"),
    ("age,b,c\n1,2,3\nabc,5,6\n", "csv file '{p}', row 3, column 'age': 'abc' is not a number"),
    ("a,b,c\n1,2,3\n4,5,nan\n", "csv file '{p}', row 3, column 'c' has no value ('nan'); "
                                "every example needs a target"),
    ("a,b,c\n1,2,3\n4,5,\n", "csv file '{p}', row 3, column 'c' is empty; every example needs "
                             "a target"),
    ("a,b,c\n1,2,3\n4,inf,6\n", "csv file '{p}', row 3, column 'b' contains an infinite value"),
    ("a,b,c\n1,2,3\n", "csv file '{p}': target column 'price' not found; columns are: a, b, c"),
    ("", "csv file '{p}' is empty"),
    ("1,2,3\n4,5,6\n", "csv file '{p}' has no header row"),
    ("a,b,price\n", "csv file '{p}' has a header row but no data rows"),
    ("a,a,price\n1,2,3\n", "csv file '{p}', row 1: column name 'a' appears twice"),
    ("price\n1\n2\n", "csv file '{p}' has no feature columns besides the target 'price'"),
    ("a,price\n1,2\n2,2\n", "target column 'price' holds a single value (2)"),
])
def test_csv_errors_name_the_file_row_and_column(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=re.escape(message.format(p=path))):
        data.load("csv", csv_path=path, target="price" if "price" in message else "c")


def test_a_csv_in_another_encoding_is_refused_with_where_it_breaks_and_how_to_convert(tmp_path):
    """Latin-1 or Windows-1252 (an 'é' in the header or a cell) names the first byte that
    is not UTF-8 and its line; UTF-16 (a spreadsheet's 'Unicode text') is named as such.
    Converted to UTF-8, the same table loads, its header and cells as written."""
    text = "âge,ville,prix\n31,Orléans,2.5\n40,Nîmes,3.25\n52,Orléans,5.5\n"
    cells = {"latin1": text, "cp1252": text.replace("Nîmes", "Nîmes – sud")}
    for encoding, table in cells.items():
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(table.encode(encoding))
        raw, bad = path.read_bytes(), None
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = e.start
        line = raw.count(b"\n", 0, bad) + 1
        with pytest.raises(DataError, match=re.escape(
                f"csv file '{path}' is not UTF-8 text (byte 0x{raw[bad]:02x} on line {line}: "
                f"another encoding, such as Latin-1 or Windows-1252); save it as UTF-8 (a "
                f"spreadsheet's 'CSV UTF-8' format, or iconv -f latin1 -t utf-8 FILE)")):
            data.load("csv", csv_path=str(path), target="prix")
        assert (bad, line) == (0, 1)  # the header's 'â'
        path.write_bytes(table.encode("utf-8"))
        ds = data.load("csv", csv_path=str(path), target="prix", test_fraction=0.34)
        town = "Nîmes" if encoding == "latin1" else "Nîmes – sud"
        assert ds.info["categories"] == {"ville": (town, "Orléans")} and ds.input_dim == 3
    body = "x,prix\n1,2\n2,3\n3,4\n4,5\n"
    path = tmp_path / "cells.csv"
    path.write_bytes(body.encode() + "5,6\nOrléans,1\n".encode("latin1"))
    with pytest.raises(DataError, match=re.escape("(byte 0xe9 on line 7: another encoding")):
        data.load("csv", csv_path=str(path), target="prix")
    path = tmp_path / "unicode_text.csv"
    path.write_bytes("x\tprix\n1\t2\n".encode("utf-16"))
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}' is not UTF-8 text but UTF-16 (a spreadsheet's 'Unicode text'); "
            f"save it as UTF-8 (a spreadsheet's 'CSV UTF-8' format)")):
        data.load("csv", csv_path=str(path), target="prix")


def test_csv_missing_file_and_arguments(tmp_path):
    path = str(tmp_path / "absent.csv")
    with pytest.raises(DataError, match=re.escape(f"csv file '{path}' does not exist")):
        data.load("csv", csv_path=path, target="y")
    with pytest.raises(DataError, match="csv: csv_path is required"):
        data.load("csv", target="y")
    good = _write(tmp_path, "x,y\n1,2\n3,4\n")
    with pytest.raises(DataError, match="target column name is required .* columns are: x, y"):
        data.load("csv", csv_path=good)
    with pytest.raises(DataError, match="csv: task must be one of classification, regression"):
        data.load("csv", csv_path=good, target="y", task="ranking")
    fractional = _write(tmp_path, "x,y\n1,2\n3,4.5\n", "f.csv")
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{fractional}', row 3, column 'y': classification needs integer labels, "
            "found 4.5")):
        data.load("csv", csv_path=fractional, target="y", task="classification")


def test_class_labels_floating_point_cannot_keep_apart_are_refused(tmp_path):
    """2⁵³ + 1 and 2⁵³ read as float64 are one number: as classes they would merge. An
    npz file's int64 labels keep them apart and load."""
    big = 2**53
    path = _write(tmp_path, f"x,y\n1,{big + 1}\n2,{big}\n3,{big + 1}\n4,{big}\n")
    message = (f"csv: target column 'y' holds the class label {big}: from 2^53 on, "
               f"neighbouring whole numbers read as floating point become one, so classes would "
               f"merge; give the labels as smaller numbers or as text")
    with pytest.raises(DataError, match=re.escape(message)):
        data.load("csv", csv_path=path, target="y", task="classification")
    assert data.load("csv", csv_path=path, target="y", task="regression").task == "regression"
    negative = _write(tmp_path, f"x,y\n1,-{big + 2}\n2,0\n3,1\n4,0\n", "neg.csv")
    with pytest.raises(DataError, match=f"holds the class label -{big + 2}: from 2\\^53 on"):
        data.load("csv", csv_path=negative, target="y", task="classification")
    npz = tmp_path / "big.npz"
    np.savez(npz, x=np.arange(8.0)[:, None], y=big + np.arange(8, dtype=np.int64) % 2)
    ds = data.load("npz", npz_path=str(npz), task="classification")
    assert ds.num_classes == 2 and ds.info["label_values"] == (big, big + 1)
    np.testing.assert_array_equal(np.r_[ds.y_train, ds.y_test].sum(), 4)


# ---------------------------------------------- csv values too large to standardise

OVERFLOW_ROWS = 10  # data rows in the tables below; file rows 2..11


def _overflow_table(tmp_path, column, name="big.csv"):
    """A table with features ``a`` (given) and ``b`` (small), and target ``price``."""
    lines = ["a,b,price"] + [f"{a!r},{i * 0.5},{i % 3}" for i, a in enumerate(column)]
    return _write(tmp_path, "\n".join(lines) + "\n", name)


@pytest.mark.parametrize("column", [
    [1e300, -1e300] + [1.0] * (OVERFLOW_ROWS - 2),  # variance 1e600: inf in float64
    [1e200] + [0.0] * (OVERFLOW_ROWS - 1),          # one square overflows
    [1.7e308] * 3 + [1.0] * (OVERFLOW_ROWS - 3),    # the sum for the mean overflows
], ids=["variance", "square", "mean"])
def test_csv_column_whose_standardisation_overflows_is_an_error(tmp_path, column):
    path = _overflow_table(tmp_path, column)
    message = (f"csv file '{path}', column 'a': the values are too large to standardise "
               "(their mean or variance overflows float64); rescale the column")
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        data.load("csv", csv_path=path, target="price", seed=0)


def test_csv_test_value_beyond_float32_once_standardised_is_an_error(tmp_path):
    """Training rows are fine (std 1), but a test row standardises to 1e100."""
    seed = 0
    _, test_idx = data.base.split_indices(OVERFLOW_ROWS, seed=seed, test_fraction=0.2)
    column = [float(i % 2) for i in range(OVERFLOW_ROWS)]
    column[int(test_idx[0])] = 1e100
    path = _overflow_table(tmp_path, column)
    row = int(test_idx[0]) + 2  # the header is row 1
    message = (f"csv file '{path}', row {row}, column 'a': the value 1e+100 lies beyond the "
               "float32 range (about ±3.4e38) once standardised; rescale the column")
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        data.load("csv", csv_path=path, target="price", seed=seed)


def test_csv_value_beyond_float32_without_standardising_is_an_error(tmp_path):
    column = [1.0] * OVERFLOW_ROWS
    column[4] = -1e39
    path = _overflow_table(tmp_path, column)
    message = (f"csv file '{path}', row 6, column 'a': the value -1e+39 lies beyond the "
               "float32 range (about ±3.4e38); rescale the column")
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        data.load_csv(path, "price", standardize=False)
    # standardised, the same column is fine while -1e39 is a training row: its std is large
    train_idx, _ = data.base.split_indices(OVERFLOW_ROWS, seed=1, test_fraction=0.2)
    assert 4 in train_idx
    ds = data.load_csv(path, "price", task="classification", seed=1)
    assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))


def test_csv_regression_target_too_large_is_an_error(tmp_path):
    lines = ["a,y"] + [f"{i},{v!r}" for i, v in enumerate([1e300, -1e300] + [0.5] * 8)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(f"csv file '{path}', column 'y': the values "
                                                  "are too large to standardise")):
        data.load_csv(path, "y", task="regression")
    with pytest.raises(DataError, match=re.escape(f"csv file '{path}', row 2, column 'y': the "
                                                  "value 1e+300 lies beyond the float32 range")):
        data.load_csv(path, "y", task="regression", standardize_target=False)


def test_csv_large_but_representable_values_still_load(tmp_path):
    column = [1e150 * (i - 4.5) for i in range(OVERFLOW_ROWS)]  # variance ≈ 1e300: finite
    path = _overflow_table(tmp_path, column)
    ds = data.load_csv(path, "price", task="classification")
    assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))
    assert np.abs(ds.x_train[:, 0]).max() < 3.0


# ---------------------------------------------------------------- csv text columns


def _mixed_table(tmp_path, n=60, name="mixed.csv"):
    """Rows of a numeric feature, a text feature of three colours (one blank), a numeric
    id and a text target; returns the path and the rows as written (stripped)."""
    rng = np.random.default_rng(3)
    colours = ["red", "green", " blue ", ""]
    rows = [(f"{rng.normal() * 100:.4f}", colours[i % 4], str(1000 + i), ["no", "yes"][i % 3 == 0])
            for i in range(n)]
    text = "size,colour,id,answer\n" + "\n".join(",".join(r) for r in rows) + "\n"
    return _write(tmp_path, text, name), [tuple(c.strip() for c in r) for r in rows]


def test_csv_text_target_and_one_hot_text_features(tmp_path):
    path, rows = _mixed_table(tmp_path)
    ds = data.load("csv", csv_path=path, target="answer", seed=2)
    assert ds.task == "classification" and ds.num_classes == 2
    assert ds.info["label_values"] == ("no", "yes")
    assert ds.info["categories"] == {"colour": ("", "blue", "green", "red")}
    assert ds.feature_names == ("size", "colour=", "colour=blue", "colour=green", "colour=red",
                                "id")
    for x, y, index in ((ds.x_train, ds.y_train, ds.info["train_index"]),
                        (ds.x_test, ds.y_test, ds.info["test_index"])):
        expected = [rows[i][3] for i in index]
        assert [ds.info["label_values"][k] for k in y] == expected
        # the indicators, unscaled: exactly 1 for the row's own colour, 0 elsewhere
        one_hot = np.array([[rows[i][1] == c for c in ("", "blue", "green", "red")] for i in index])
        np.testing.assert_array_equal(x[:, 1:5], one_hot.astype(np.float32))
    np.testing.assert_array_equal(ds.info["x_mean"][1:5], 0.0)
    np.testing.assert_array_equal(ds.info["x_std"][1:5], 1.0)
    # the numeric columns are standardised on the training split as before
    size = np.array([float(rows[i][0]) for i in ds.info["train_index"]])
    np.testing.assert_allclose(ds.x_train[:, 0], (size - size.mean()) / size.std(), rtol=1e-5,
                               atol=1e-5)
    assert abs(ds.x_train[:, 5].mean()) < 1e-5


def test_csv_rare_category_is_neither_scaled_nor_warned_about(tmp_path):
    """A category in 2 of 160 training rows: standardised, it would be a feature of about
    9 (floored at 10, with a warning); as an indicator it stays 0/1, silently."""
    train_idx, _ = data.split_indices(200, seed=0, test_fraction=0.2)
    rare = set(train_idx[:2].tolist())
    lines = ["x,kind,y"] + [f"{i},{'rare' if i in rare else 'common'},{i % 2}" for i in range(200)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataWarning)
        ds = data.load("csv", csv_path=path, target="y", seed=0)
    col = ds.feature_names.index("kind=rare")
    np.testing.assert_array_equal(ds.x_train[:, col], [i in rare for i in ds.info["train_index"]])
    np.testing.assert_array_equal(ds.x_test[:, col], 0.0)


def test_csv_column_type_is_the_majority_of_its_cells(tmp_path):
    # mostly numbers, one word: a numeric column with a bad cell (NA would be a gap)
    path = _write(tmp_path, "a,y\n1,0\n2,1\ntwelve,0\nNA,1\n4,1\n")
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}', row 4, column 'a': 'twelve' is not a number")):
        data.load_csv(path, "y")
    # mostly words, one number: a text column whose categories include "10"
    path = _write(tmp_path, "size,y\nS,0\nM,1\nL,0\n10,1\nS,1\n", "sizes.csv")
    ds = data.load_csv(path, "y")
    assert ds.info["categories"] == {"size": ("10", "L", "M", "S")}
    # mostly gaps and one number: numeric, the gaps filled
    path = _write(tmp_path, "a,y\n,0\nNA,1\n?,0\n7,1\n", "gaps.csv")
    with pytest.warns(data.DataWarning, match="3 missing values in 1 column"):
        assert data.load_csv(path, "y").feature_names == ("a", "a=missing")


def test_csv_drop_and_too_many_categories(tmp_path):
    lines = ["name,x,y"] + [f"person {i},{i * 0.1},{i % 2}" for i in range(150)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}', column 'name' holds 150 distinct text values, more than the "
            f"{data.tables.MAX_CATEGORIES} categories a text feature may have; leave it out")):
        data.load("csv", csv_path=path, target="y")
    ds = data.load("csv", csv_path=path, target="y", drop=["name"])
    assert ds.feature_names == ("x",) and "categories" not in ds.info
    for drop, message in ((["nome"], "column 'nome' to drop not found; columns are: name, x, y"),
                          (["y"], "cannot drop the target column 'y'"),
                          (["name", "x"], "has no feature columns besides the target 'y' once "
                                          "the dropped ones are left out")):
        with pytest.raises(DataError, match=re.escape(message)):
            data.load("csv", csv_path=path, target="y", drop=drop)
    with pytest.raises(DataError, match="dataset 'digits' does not use drop"):
        data.load("digits", drop=["a"])


@pytest.mark.parametrize(("text", "task", "message"), [
    ("a,y\n1,yes\n2,no\n", "regression", "column 'y' holds text ('yes'); a regression target "
                                         "must be numbers"),
    ("a,y\n1,yes\n2,\n3,no\n", None, "row 3, column 'y' is empty; every example needs a target"),
    ("a,y\n1,yes\n2,NA\n3,no\n", None, "row 3, column 'y' has no value ('NA'); every example"),
    ("a,y\n1,yes\n2,yes\n", None, "target column 'y' holds a single value (yes)"),
])
def test_csv_text_target_errors(tmp_path, text, task, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataError, match=re.escape(message)):
        data.load_csv(path, "y", task=task)


def test_csv_missing_numbers_get_the_training_mean_and_a_marker(tmp_path):
    rng = np.random.default_rng(5)
    n, gap_tokens = 80, ["", "NA", "nan", "?", " null ", "N/A", "None"]
    age = rng.uniform(1, 80, n).round(1)
    gaps = rng.random(n) < 0.25
    cells = [gap_tokens[i % len(gap_tokens)] if g else str(a)
             for i, (a, g) in enumerate(zip(age, gaps))]
    lines = ["age,other,y"] + [f"{c},{i * 0.5},{i % 2}" for i, c in enumerate(cells)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.warns(data.DataWarning, match=re.escape(
            f"csv: {gaps.sum()} missing values in 1 column (age) filled with the column's "
            "training mean; a 0/1 column 'age=missing' marks them")):
        ds = data.load("csv", csv_path=path, target="y", seed=4)
    assert ds.feature_names == ("age", "age=missing", "other")
    assert ds.info["missing"] == {"age": int(gaps.sum())}
    assert any("missing values" in w for w in ds.info["warnings"])
    train, test = ds.info["train_index"], ds.info["test_index"]
    fill = age[train][~gaps[train]].mean()  # known training values only
    filled = np.where(gaps, fill, age)
    mean, std = filled[train].mean(), filled[train].std()
    for x, index in ((ds.x_train, train), (ds.x_test, test)):
        np.testing.assert_allclose(x[:, 0], (filled[index] - mean) / std, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(x[:, 1], gaps[index])  # the marker: 0/1, unscaled
    assert gaps[test].any()  # test rows get the training mean too


@pytest.mark.parametrize(("delimiter", "decimal"), [(";", ","), ("\t", "."), ("|", ".")])
def test_csv_other_separators_load_as_the_comma_table(tmp_path, delimiter, decimal):
    rows = [("1.5", "red, dark", "0"), ("-2.25", "blue", "1"), ("3", "red, dark", "1"),
            ("NA", "blue", "0"), ("0.125", "green", "1"), ("7.5", "blue", "0")]

    def table(sep, point):
        def quote(c):
            return f'"{c}"' if sep in c or "," in c else c

        return "size,colour,y\n".replace(",", sep) + "\n".join(
            sep.join(quote(c.replace(".", point)) for c in row) for row in rows) + "\n"

    with pytest.warns(data.DataWarning, match="1 missing values"):
        comma = data.load_csv(_write(tmp_path, table(",", "."), "comma.csv"), "y", seed=1)
        other = data.load_csv(_write(tmp_path, table(delimiter, decimal), "other.csv"), "y", seed=1)
    assert comma.info["delimiter"] == "," and other.info["delimiter"] == delimiter
    assert other.feature_names == comma.feature_names == (
        "size", "size=missing", "colour=blue", "colour=green", "colour=red, dark")
    np.testing.assert_array_equal(other.x_train, comma.x_train)
    np.testing.assert_array_equal(other.x_test, comma.x_test)
    np.testing.assert_array_equal(other.y_train, comma.y_train)


def test_csv_numbers_with_grouped_digits(tmp_path):
    amounts = [1000 + 37.25 * i for i in range(40)] + [-1234567.5, 12.0, 999.0]
    labels = [i % 2 for i in range(len(amounts))]

    def load(cells, sep, name):
        lines = [f"amount{sep}y"] + [f"{c}{sep}{y}" for c, y in zip(cells, labels)]
        return data.load_csv(_write(tmp_path, "\n".join(lines) + "\n", name), "y",
                             standardize=False)

    plain = load([repr(a) for a in amounts], ",", "plain.csv")
    us = load([f'"{a:,}"' for a in amounts], ",", "us.csv")  # "1,037.25"
    eu = load([f"{a:,}".replace(",", "_").replace(".", ",").replace("_", ".") for a in amounts],
              ";", "eu.csv")  # 1.037,25
    assert us.feature_names == eu.feature_names == ("amount",)
    np.testing.assert_array_equal(us.x_train, plain.x_train)
    np.testing.assert_array_equal(eu.x_train, plain.x_train)
    np.testing.assert_array_equal(eu.x_test, plain.x_test)


def test_csv_numbers_with_other_separators_get_advice_not_categories(tmp_path):
    lines = ["amount,y"] + [f"{1000 + 37 * i:,}.5".replace(",", "'") + f",{i % 2}"
                            for i in range(150)]  # 1'037.5
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=re.escape(
            "column 'amount' holds 150 distinct text values, more than the 100 categories a text "
            "feature may have; its values look like numbers written with separators ('1'000.5'): "
            "write them as plain numbers")):
        data.load_csv(path, "y")


# ----------------------------------------------------------------------------- npz


def test_npz_x_y_is_split_and_scaled_as_a_table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * [1.0, 10.0, 100.0]
    y = np.array([3, 7, 9])[rng.integers(0, 3, 50)]
    path = tmp_path / "t.npz"
    np.savez(path, x=x, y=y, notes=np.arange(3))  # other arrays are ignored
    ds = data.load("npz", npz_path=str(path), seed=2)
    assert ds.task == "classification" and ds.num_classes == 3
    assert ds.info["label_values"] == (3, 7, 9) and ds.image_shape is None
    train, test = data.split_indices(50, seed=2, test_fraction=0.2)
    np.testing.assert_array_equal(ds.info["train_index"], train)
    np.testing.assert_array_equal(np.array([3, 7, 9])[ds.y_test], y[test])
    mean, std = x[train].mean(0), x[train].std(0)
    np.testing.assert_allclose(ds.x_test, (x[test] - mean) / std, rtol=1e-5, atol=1e-6)
    # the same arrays as a table of floats with many values: regression, target standardised
    np.savez(path, x=x, y=x @ [1.0, 0.5, 0.25])
    reg = data.load("npz", npz_path=str(path), seed=2)
    assert reg.task == "regression" and reg.y_train.shape == (40, 1)
    natural = reg.y_test[:, 0] * reg.info["y_std"][0] + reg.info["y_mean"][0]
    np.testing.assert_allclose(natural, (x @ [1.0, 0.5, 0.25])[test], rtol=1e-5)
    raw = data.load("npz", npz_path=str(path), seed=2, standardize_target=False)
    np.testing.assert_allclose(raw.y_test[:, 0], (x @ [1.0, 0.5, 0.25])[test], rtol=1e-5)


def test_npz_own_split_images_and_multi_output_targets(tmp_path):
    digits = sk_datasets.load_digits()
    images, labels = digits.images.astype(np.uint8), digits.target
    path = tmp_path / "digits.npz"
    np.savez_compressed(path, x_train=images[:1000], y_train=labels[:1000],
                        x_test=images[1000:], y_test=labels[1000:])
    ds = data.load("npz", npz_path=str(path))
    assert (ds.n_train, ds.n_test) == (1000, len(labels) - 1000)  # the file's split, kept
    assert ds.image_shape == (8, 8, 1) and ds.info["scaling"] == "global"
    raw = images[:1000].reshape(1000, 64).astype(np.float64)
    np.testing.assert_allclose(ds.x_train, (raw - raw.mean()) / raw.std(), rtol=1e-5, atol=1e-5)
    assert data.as_images(ds).x_test.shape == (len(labels) - 1000, 8, 8, 1)
    # colour images and (N, K) targets
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.random((30, 4, 4, 3)), y=rng.normal(size=(30, 2)))
    ds = data.load("npz", npz_path=str(path))
    assert ds.image_shape == (4, 4, 3) and ds.task == "regression" and ds.num_outputs == 2
    # PyTorch's channels-first (N, C, H, W) is read as the same images channels-last
    nchw = np.moveaxis(images[:1000, :, :, None], -1, 1)  # (1000, 1, 8, 8)
    np.savez(path, x=nchw, y=labels[:1000])
    with pytest.warns(data.DataWarning, match=re.escape(
            "npz: x's examples (1, 8, 8) look channels-first (C, H, W), as PyTorch stores "
            "images; read as 8x8 images of 1 channel")):
        first = data.load("npz", npz_path=str(path))
    np.savez(path, x=images[:1000, :, :, None], y=labels[:1000])
    last = data.load("npz", npz_path=str(path))
    assert first.image_shape == last.image_shape == (8, 8, 1)
    np.testing.assert_array_equal(first.x_train, last.x_train)
    for shape in ((30, 4, 8, 2), (30, 3, 3, 103)):  # 4x8, 2 channels; 3x3 of 103 bands
        np.savez(path, x=rng.random(shape), y=rng.integers(0, 2, 30))
        assert data.load("npz", npz_path=str(path)).image_shape == shape[1:]  # no warning


@pytest.mark.parametrize("delimiter, newline, quote", [
    (",", "\n", ""), ("\t", "\r\n", ""), ("|", "\n", '"'), (",", "\r\n", '"')])
@pytest.mark.parametrize("target, task", [("label", None), ("price", None),
                                          ("label", "regression")])
def test_csv_of_plain_numbers_reads_as_the_general_reader_does(tmp_path, monkeypatch, delimiter,
                                                               newline, quote, target, task):
    """A table of plain numbers goes through NumPy's parser (``_plain_numbers``), in a
    fraction of the time and memory; the data set is the general reader's, bit for bit."""
    from gdlab.data import tables

    rng = np.random.default_rng(3)
    n = 60
    cells = np.column_stack([rng.integers(0, 4, n), rng.normal(size=n) * 1e3,
                             rng.integers(0, 256, (n, 3)), np.zeros(n)]).astype(object)
    cells[:, 1] = [f"{v:.6e}" if i % 3 else f"{v:.3f}" for i, v in enumerate(cells[:, 1])]
    cells[:, 0] = [str(int(v)) for v in cells[:, 0]]
    header = ["label", "price", "p0", "p1", "p2", "blank"]
    lines = [delimiter.join(header)] + [
        delimiter.join(f"{quote}{c}{quote}" for c in row) for row in cells]
    path = _write(tmp_path, newline.join(lines) + newline, "plain.csv")
    assert tables._plain_numbers(path) is not None  # the fast reader takes it
    kw = dict(task=task, drop=("p2",), seed=5)
    fast = data.load_csv(path, target, **kw)
    monkeypatch.setattr(tables, "_plain_numbers", lambda path: None)
    general = data.load_csv(path, target, **kw)
    for split in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(fast, split), getattr(general, split))
    assert (fast.task, fast.feature_names, fast.num_classes) == (
        general.task, general.feature_names, general.num_classes)
    assert repr(fast.info) == repr(general.info)


def test_csv_plain_number_reader_leaves_every_other_table_to_the_general_one(tmp_path):
    from gdlab.data import tables

    for text in ("a,b,y\n1,2,0\n,3,1\n",          # a blank cell: a missing value
                 "a,b,y\n1,nan,0\n2,3,1\n",        # nan: a missing value too
                 "a,b,y\n1,inf,0\n2,3,1\n",        # refused by the general reader
                 "a,b,y\n1,x,0\n2,3,1\n",          # text
                 "a;b;y\n1;2,5;0\n2;3;1\n",        # decimal commas
                 "a,b,y\n1,2,0\n\n2,3,1\n",        # a blank line: row numbers shift
                 "a,b,y\n1,2\n2,3,1\n",            # a ragged row
                 "1,2,3\n1,2,0\n2,3,1\n",          # no header
                 ",b,y\n0,2,0\n1,3,1\n",           # an unnamed column
                 "a,a,y\n1,2,0\n2,3,1\n"):         # a repeated name
        assert tables._plain_numbers(_write(tmp_path, text, "other.csv")) is None, text


def test_csv_unnamed_columns_pandas_index_and_trailing_separators(tmp_path):
    rows = [(0.5, 1.0, 0), (1.5, -2.0, 1), (2.5, 0.25, 0), (3.5, 4.0, 1), (4.5, 5.0, 0)]
    plain = data.load_csv(_write(tmp_path, "a,b,y\n" + "".join(
        f"{a},{b},{y}\n" for a, b, y in rows), "plain.csv"), "y")
    # pandas' DataFrame.to_csv() writes its row index as a first column with no name
    path = _write(tmp_path, ",a,b,y\n" + "".join(
        f"{i},{a},{b},{y}\n" for i, (a, b, y) in enumerate(rows)), "pandas.csv")
    with pytest.warns(data.DataWarning, match="column 1 has no name and is left out, taken for "
                                              r"a row index \(pandas writes one unless"):
        indexed = data.load_csv(path, "y")
    # a separator ending every line makes an empty, unnamed last column: left out silently
    trailing = data.load_csv(_write(tmp_path, "a,b,y,\n" + "".join(
        f"{a},{b},{y},\n" for a, b, y in rows), "trailing.csv"), "y")
    for ds in (indexed, trailing):
        assert ds.feature_names == plain.feature_names == ("a", "b")
        np.testing.assert_array_equal(ds.x_train, plain.x_train)
        np.testing.assert_array_equal(ds.y_test, plain.y_test)
    assert "warnings" not in trailing.info and len(indexed.info["warnings"]) == 1
    # a short row is refused against the file's own columns (left out, it would fit)
    path = _write(tmp_path, ",a,b,y\n0,1.5,2.5,0\n1,3.5,4.5,1\n2,7.5,1\n", "short.csv")
    with pytest.raises(DataError, match=re.escape(f"csv file '{path}', row 4: expected 4 "
                                                  "columns, found 3")):
        data.load_csv(path, "y")
    path = _write(tmp_path, "a,,y\n1,2,0\n3,4,1\n5,6,0\n", "middle.csv")
    with pytest.raises(DataError, match=re.escape(f"csv file '{path}', row 1: column 2 has an "
                                                  "empty name; name it in the header row")):
        data.load_csv(path, "y")


def test_csv_decimal_commas_with_point_grouping_and_mixed_conventions(tmp_path):
    # ';'-separated: 1,5 is 1.5 and points group thousands (1.234,5); a number written with
    # a decimal point among them is refused, never read 10-1000x off.
    ok = "price;y\n1.234,5;0\n2,25;1\n-0,5;0\n1.000.000;1\n12;0\n1,5E-03;1\n"
    ds = data.load_csv(_write(tmp_path, ok, "ok.csv"), "y", standardize=False, test_fraction=0.4)
    values = sorted(np.concatenate([ds.x_train[:, 0], ds.x_test[:, 0]]).tolist())
    np.testing.assert_allclose(values, [-0.5, 1.5e-3, 2.25, 12, 1234.5, 1e6], rtol=1e-6)
    for text, message in (
            ("a;y\n0.5;0\n1,5;1\n2.75;0\n3;1\n",
             "column 'a' mixes decimal commas (row 3: '1,5') with a decimal point (row 2: '0.5')"),
            ("a;y\n0,5;0\n-0.250;1\n2,5;0\n3;1\n",  # a thousands group never starts with 0
             "column 'a' mixes decimal commas (row 2: '0,5') with a decimal point (row 3: "
             "'-0.250')"),
            ("a;y\n999,5;0\n1,234.50;1\n2,5;0\n3;1\n",
             "row 3, column 'a': '1,234.50' is not a number (a ';'-separated file writes "
             "decimals with commas")):
        path = _write(tmp_path, text, "mixed.csv")
        with pytest.raises(DataError, match=re.escape(f"csv file '{path}'") + ".*"
                           + re.escape(message)):
            data.load_csv(path, "y")


@pytest.mark.parametrize("space", [" ", "\u00a0", "\u202f"])
def test_csv_decimal_commas_with_space_grouping(tmp_path, space):
    """French spreadsheets group thousands with a space, often a no-break one (U+00A0, or
    the narrow U+202F): 1 234,5. Such a column was one-hot, one category per number."""
    values = [1234.5, -2.25, 12345678.0, 980.0, 5125.73, 0.5, 1000.0, 42.0]
    cells = ["1 234,5", "-2,25", "12 345 678", "980", "5 125,73", "0,5", "1 000,00", "42"]
    text = "price;y\n" + "".join(f"{c.replace(' ', space)};{i % 2}\n"
                                 for i, c in enumerate(cells))
    ds = data.load_csv(_write(tmp_path, text, "fr.csv"), "y", standardize=False)
    assert ds.feature_names == ("price",) and "warnings" not in ds.info
    got = np.concatenate([ds.x_train[:, 0], ds.x_test[:, 0]])
    np.testing.assert_allclose(
        got, np.array(values)[np.r_[ds.info["train_index"], ds.info["test_index"]]], rtol=1e-6)
    # a regression target written so reads the same numbers
    text = "a;price\n" + "".join(f"{i};{c.replace(' ', space)}\n" for i, c in enumerate(cells))
    ds = data.load_csv(_write(tmp_path, text, "target.csv"), "price", standardize_target=False)
    np.testing.assert_allclose(ds.y_train[:, 0], np.array(values)[ds.info["train_index"]],
                               rtol=1e-6)
    # two kinds of separator in one number are not a number
    path = _write(tmp_path, "a;y\n1,5;0\n1.234 567,5;1\n2,5;0\n3;1\n", "two.csv")
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}', row 3, column 'a': '1.234 567,5' is not a number")):
        data.load_csv(path, "y")


def test_csv_a_wide_tables_columns_are_named_in_a_sentence_not_all_listed(tmp_path):
    header = [f"g{i}" for i in range(5000)] + ["Label"]
    path = _write(tmp_path, ",".join(header) + "\n" + "".join(
        ",".join(["1"] * 5000 + [str(i % 2)]) + "\n" for i in range(4)), "wide.csv")
    with pytest.raises(DataError) as refused:
        data.load_csv(path, "label")
    assert str(refused.value) == (
        f"csv file '{path}': target column 'label' not found; columns are: g0, g1, g2, g3, g4, "
        f"g5, g6, g7, …, g4997, g4998, g4999, Label (5001 columns); the nearest: Label")
    with pytest.raises(DataError, match=re.escape(
            "column 'g50000' to drop not found; columns are: g0, g1, g2, g3, g4, g5, g6, g7, …, "
            "g4997, g4998, g4999, Label (5001 columns); the nearest: g500, g4500, g4000")):
        data.load_csv(path, "Label", drop=("g50000",))


def test_csv_a_name_with_a_comma_is_quoted_in_messages(tmp_path):
    path = _write(tmp_path, 'id,"Weight, kg",y\n' + "".join(
        f"{i},{i * 2},{i % 2}\n" for i in range(10)), "names.csv")
    with pytest.raises(DataError, match=re.escape(
            "column 'Weight' to drop not found; columns are: id, 'Weight, kg', y; the nearest: "
            "'Weight, kg'; quote a name "
            "that holds a comma, in a shell inside single quotes: --drop_columns='\"Weight, kg\"'")):
        data.load_csv(path, "y", drop=("Weight",))
    assert data.load_csv(path, "y", drop=("Weight, kg",)).feature_names == ("id",)


def test_csv_point_grouped_whole_numbers_follow_the_files_decimal_commas(tmp_path):
    # 1.250 is 1250 in a ';'-separated file whose numbers elsewhere use decimal commas (said in
    # a warning), and 1.25 where the file writes its decimals with points
    rows = [("1.250", "45,5"), ("980", "60,0"), ("12.400", "70,5"), ("3.100", "80,0"),
            ("750", "90,5"), ("2.000", "100,0")]
    text = "price;area;y\n" + "".join(f"{p};{a};{i % 2}\n" for i, (p, a) in enumerate(rows))
    with pytest.warns(data.DataWarning, match=re.escape(
            "csv: column 'price' reads '1.250' as 1250: its points only group thousands, as in "
            "the file's numbers with decimal commas (column 'area', row 2: '45,5')")):
        ds = data.load_csv(_write(tmp_path, text, "commas.csv"), "y", standardize=False)
    prices = sorted(np.concatenate([ds.x_train[:, 0], ds.x_test[:, 0]]).tolist())
    assert prices == [750, 980, 1250, 2000, 3100, 12400]
    ds = data.load_csv(_write(tmp_path, text.replace(",", "."), "points.csv"), "y",
                       standardize=False)
    prices = sorted(np.concatenate([ds.x_train[:, 0], ds.x_test[:, 0]]).tolist())
    np.testing.assert_allclose(prices, [1.25, 2, 3.1, 12.4, 750, 980], rtol=1e-6)
    assert "warnings" not in ds.info
    # every value dotted: thousands or three decimals? read as decimals, with a warning
    text = "p;a;y\n1.250;1,5;0\n2.500;2,5;1\n12.125;3,5;0\n3.100;4,5;1\n"
    with pytest.warns(data.DataWarning, match=re.escape(
            "csv: column 'p' reads '1.250' as 1.25, though the file's other numbers write "
            "decimal commas (column 'a', row 2: '1,5'), where it would be 1250")):
        ds = data.load_csv(_write(tmp_path, text, "doubt.csv"), "y", standardize=False)
    values = sorted(np.concatenate([ds.x_train[:, 0], ds.x_test[:, 0]]).tolist())
    np.testing.assert_allclose(values, [1.25, 2.5, 3.1, 12.125], rtol=1e-6)
    # text and dotted codes stay text, without a word about thousands
    for codes in (["1.250", "abc", "def", "ghi"], ["192.168.100.200", "10.100.200.100"] * 2):
        text = "a;code;y\n" + "".join(f"{i},5;{c};{i % 2}\n" for i, c in enumerate(codes))
        ds = data.load_csv(_write(tmp_path, text, "codes.csv"), "y", standardize=False)
        assert ds.feature_names == ("a", *(f"code={c}" for c in sorted(set(codes))))
        assert "warnings" not in ds.info


def test_npz_errors_name_the_file_and_the_array(tmp_path):
    p = tmp_path / "a.npz"
    cases = [
        (dict(x=np.ones((4, 2))), "holds x; expected x and y, or x_train, y_train, x_test, y_test"),
        (dict(x=np.ones((4, 2)), y=np.ones(3)), "x has 4 rows but y has 3"),
        (dict(x=np.array([["a", "b"]] * 4), y=np.arange(4) % 2),
         "array 'x' has dtype <U1; numbers are needed"),
        (dict(x=np.ones((4, 2)), y=np.array([1, None, 2, 1], dtype=object)),
         "array 'y' holds Python objects"),
        (dict(x=np.ones((4, 2, 2, 2, 2)), y=np.arange(4) % 2), "expected features (D,) or images"),
        (dict(x=np.array([[1.0], [np.nan], [2.0], [3.0]]), y=np.arange(4) % 2),
         "array 'x' contains NaN values"),
        (dict(x=np.ones((0, 2)), y=np.ones(0)), "x has no rows"),
        (dict(x=np.ones((4, 0)), y=np.arange(4) % 2), "x's examples (0,) hold no values"),
        (dict(x=np.ones((4, 0, 3)), y=np.arange(4) % 2), "x's examples (0, 3) hold no values"),
        (dict(x=np.ones((4, 2)), y=np.ones((4, 0))), "y's rows (0,) hold no values"),
        (dict(x=np.ones((4, 2)) * (1 + 1j), y=np.arange(4) % 2),
         "array 'x' holds complex numbers (complex128)"),
        (dict(x=np.ones((4, 2)), y=np.array([0.5, 1, 0, 1])), None),  # regression: fine
    ]
    for arrays, message in cases:
        np.savez(p, **arrays)
        if message is None:
            assert data.load("npz", npz_path=str(p)).task == "regression"
            continue
        pattern = re.escape(f"npz file '{p}'") + ".*" + re.escape(message)
        with pytest.raises(DataError, match=pattern):
            data.load("npz", npz_path=str(p))
    with pytest.raises(DataError, match="classification needs integer labels, found 0.5"):
        data.load("npz", npz_path=str(p), task="classification")
    for arrays, what in ((dict(x=np.array([[1e300], [-1e300], [1e300], [2.0]]), y=np.arange(4) % 2),
                          "values"),
                         (dict(x=np.ones((4, 2)), y=np.array([1e300, -1e300, 0.5, 2.0])),
                          "targets")):
        np.savez(p, **arrays)  # finite, but their variance overflows: no silent zeros
        with pytest.raises(DataError, match=re.escape(
                f"data set 'npz' ('{p}'): the {what} are too large to standardise")):
            data.load("npz", npz_path=str(p))
    import zipfile

    with zipfile.ZipFile(p, "w") as archive:  # members that are not .npy: numpy gives bytes
        archive.writestr("x.npy", b"not an array")
        archive.writestr("y", b"0101")
    with pytest.raises(DataError, match="member 'x' is not a NumPy array"):
        data.load("npz", npz_path=str(p))
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(DataError, match="holds a single array"):
        data.load("npz", npz_path=str(tmp_path / "one.npy"))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="is not an .npz archive"):
        data.load("npz", npz_path=str(tmp_path / "t.csv"))
    absent = tmp_path / "no.npz"
    with pytest.raises(DataError, match=re.escape(f"npz file '{absent}' does not exist")):
        data.load("npz", npz_path=str(tmp_path / "no.npz"))
    with pytest.raises(DataError, match="npz: npz_path is required"):
        data.load("npz")
    with pytest.raises(DataError, match="dataset 'csv' does not use npz_path"):
        data.load("csv", npz_path=str(p))


def test_a_training_split_of_one_class_is_refused_and_unseen_test_classes_warn(tmp_path):
    p = tmp_path / "split.npz"
    x = np.arange(16.0).reshape(8, 2)
    np.savez(p, x_train=x[:6], y_train=np.full(6, 7), x_test=x[6:], y_test=np.array([7, 9]))
    with pytest.raises(DataError, match=re.escape(
            f"data set 'npz' ('{p}'): every training example has the same label (7); "
            "classification needs at least 2 classes in the training split")):
        data.load("npz", npz_path=str(p))
    np.savez(p, x_train=x[:6], y_train=np.arange(6) % 2 + 3, x_test=x[6:], y_test=np.array([3, 8]))
    with pytest.warns(data.DataWarning, match=re.escape(
            "npz: 1 test examples belong to 1 classes that no training example has (8)")):
        ds = data.load("npz", npz_path=str(p))
    assert ds.num_classes == 3 and ds.info["label_values"] == (3, 4, 8)
    assert list(ds.y_test) == [0, 2] and "no training example has" in ds.info["warnings"][-1]


def test_the_separator_is_the_one_that_cuts_every_line_alike(tmp_path):
    # the header's names hold commas, as many as its tabs: the rows decide
    rows = "\n".join(f"{i}\t{2 * i}\t{'ab'[i % 2]}" for i in range(10))
    path = _write(tmp_path, "height (cm, approx)\tweight (kg, approx)\tlabel\n" + rows,
                  "t.tsv")
    ds = data.load_csv(path, "label")
    assert ds.info["delimiter"] == "\t" and ds.input_dim == 2 and ds.num_classes == 2
    assert ds.feature_names == ("height (cm, approx)", "weight (kg, approx)")
    # semicolons with decimal commas; a quoted comma in a comma-separated file
    ds = data.load_csv(_write(tmp_path, "a;b;y\n" + "\n".join(
        f"{i},5;{i};{i % 2}" for i in range(6)), "s.csv"), "y")
    assert ds.info["delimiter"] == ";" and ds.input_dim == 2
    ds = data.load_csv(_write(tmp_path, 'a,b,y\n' + "\n".join(
        f'"{i},000",{i},{i % 2}' for i in range(6)), "q.csv"), "y")
    assert ds.info["delimiter"] == "," and ds.input_dim == 2


def test_a_one_row_table_names_its_file(tmp_path):
    path = _write(tmp_path, "a,y\n1,0\n")
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}' has 1 data row; a train/test split needs at least 2")):
        data.load_csv(path, "y")


# ----------------------------------------------------------------------- image folders


def _write_images(root, arrays, labels, mode="L"):
    from PIL import Image

    for i, (a, y) in enumerate(zip(arrays, labels)):
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a, mode).save(root / str(y) / f"{i:04d}.png")


def test_image_folders_read_the_pixels_written(tmp_path):
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (40, 6, 5), dtype=np.uint8)  # 5 wide, 6 high
    labels = np.array(["cat", "dog", "eel"])[np.arange(40) % 3]
    _write_images(tmp_path, arrays, labels)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")  # ignored
    ds = data.load("images", data_dir=str(tmp_path), seed=1)
    assert ds.info["class_names"] == ("cat", "dog", "eel") and ds.image_shape == (6, 5, 1)
    assert (ds.n_train, ds.n_test) == (32, 8)
    index = {str(tmp_path / y / f"{i:04d}.png"): i for i, y in enumerate(labels)}
    rows = {split: [index[p] for p in ds.info["files"][split]] for split in ("train", "test")}
    raw = arrays.reshape(40, -1) / 255.0
    mean, std = raw[rows["train"]].mean(), raw[rows["train"]].std()
    np.testing.assert_allclose(ds.x_test, (raw[rows["test"]] - mean) / std, rtol=1e-5, atol=1e-5)
    names = np.array(ds.info["class_names"])
    np.testing.assert_array_equal(names[ds.y_train], labels[rows["train"]])
    assert data.as_images(ds).x_train.shape == (32, 6, 5, 1)


def test_image_folders_colour_and_own_split(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    for split, rows in (("train", range(4)), ("test", range(4, 6))):
        _write_images(tmp_path / split, grey[list(rows)], [r % 2 for r in rows])
    colour = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(colour, "RGB").save(tmp_path / "train" / "1" / "rgb.png")
    ds = data.load("images", data_dir=str(tmp_path), standardize=False)
    assert ds.info["split"] == "the folders' own (train/, test/)"
    assert (ds.n_train, ds.n_test) == (5, 2)
    assert ds.image_shape == (4, 4, 3)  # one colour image: all read as RGB
    files = ds.info["files"]["train"]
    rgb = files.index(str(tmp_path / "train" / "1" / "rgb.png"))
    np.testing.assert_allclose(ds.x_train[rgb], colour.reshape(-1) / 255.0, rtol=1e-6)
    first = files.index(str(tmp_path / "train" / "0" / "0000.png"))
    np.testing.assert_allclose(ds.x_train[first].reshape(4, 4, 3)[..., 2], grey[0] / 255.0,
                               rtol=1e-6)


def test_a_val_folder_is_the_held_out_split_and_a_nested_layout_is_named(tmp_path):
    """train/ beside val/ (Keras's and torchvision's layout) is the folders' own split, as
    train/ beside test/; a train/ and val/ beside a test/ keep test/. Class folders that
    hold folders, not images, get a message that gives the layouts."""
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (10, 4, 4), dtype=np.uint8)
    for split, rows in (("train", range(6)), ("val", range(6, 10))):
        _write_images(tmp_path / "a" / split, grey[list(rows)], [r % 2 for r in rows])
    ds = data.load("images", data_dir=str(tmp_path / "a"), standardize=False)
    assert ds.info["split"] == "the folders' own (train/, val/)"
    assert (ds.n_train, ds.n_test) == (6, 4)
    assert all("/val/" in p for p in ds.info["files"]["test"])
    _write_images(tmp_path / "a" / "test", grey[:2], [0, 1])
    ds = data.load("images", data_dir=str(tmp_path / "a"), standardize=False)
    assert ds.info["split"] == "the folders' own (train/, test/)" and ds.n_test == 2
    _write_images(tmp_path / "b" / "train", grey[:4], [0, 1, 0, 1])
    _write_images(tmp_path / "b" / "holdout", grey[4:8], [0, 1, 0, 1])
    with pytest.raises(DataError, match=re.escape(
            f"class folder '{tmp_path / 'b' / 'holdout'}' holds no image files (.png")) as e:
        data.load("images", data_dir=str(tmp_path / "b"))
    assert str(e.value).endswith("; it holds folders: the layout is DIR/<class>/*, or "
                                 "DIR/train/<class>/* beside DIR/test/<class>/* (or val/, "
                                 "valid/, validation/)")


def test_wide_grey_images_keep_their_range_among_colour_and_float_ones(tmp_path):
    """16-bit grey images are x/65535 (R = G = B once a colour image makes every image RGB);
    float images share one scale, the folder's largest value, so their classes stay apart."""
    from PIL import Image

    rng = np.random.default_rng(2)
    deep = rng.integers(0, 65536, (2, 3, 3), dtype=np.uint16)
    for i, a in enumerate(deep):
        (tmp_path / "c" / str(i)).mkdir(parents=True)
        Image.fromarray(a).save(tmp_path / "c" / str(i) / "deep.png")
        colour = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
        Image.fromarray(colour, "RGB").save(tmp_path / "c" / str(i) / "rgb.png")
    ds = data.load("images", data_dir=str(tmp_path / "c"), standardize=False, seed=0)
    assert ds.image_shape == (3, 3, 3)
    pixels = dict(zip(ds.info["files"]["train"] + ds.info["files"]["test"],
                      np.r_[ds.x_train, ds.x_test]))
    for i, a in enumerate(deep):
        got = pixels[str(tmp_path / "c" / str(i) / "deep.png")].reshape(3, 3, 3)
        for channel in range(3):
            np.testing.assert_allclose(got[..., channel], a / 65535.0, rtol=1e-6)

    dim, bright = rng.uniform(0, 0.1, (3, 4, 4)), rng.uniform(0, 1.0, (3, 4, 4))
    for cls, arrays in (("dim", dim), ("bright", bright)):
        (tmp_path / "f" / cls).mkdir(parents=True)
        for j, a in enumerate(arrays):
            Image.fromarray(a.astype(np.float32), "F").save(tmp_path / "f" / cls / f"{j}.tif")
    ds = data.load("images", data_dir=str(tmp_path / "f"), standardize=False)
    scale = max(1.0, float(np.r_[dim, bright].astype(np.float32).max()))
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        for path, row, label in zip(ds.info["files"][split], x, y):
            cls, j = path.split("/")[-2], int(path[-5])
            source = (dim if cls == "dim" else bright)[j].astype(np.float32)
            np.testing.assert_allclose(row, source.reshape(-1) / scale, rtol=1e-6)
            assert ds.info["class_names"][label] == cls


def test_an_image_folders_preview_has_the_shapes_loading_gives(tmp_path):
    """preview_images reads the file names and the first image's header only: its shapes
    are those of the loaded data set, split and classes included, with and without a
    size; the folder's errors are load_images's."""
    rng = np.random.default_rng(4)
    _write_images(tmp_path / "grey", rng.integers(0, 256, (10, 6, 5), dtype=np.uint8),
                  np.array(["a", "b", "c"])[np.arange(10) % 3])
    _write_images(tmp_path / "rgb", rng.integers(0, 256, (8, 4, 7, 3), dtype=np.uint8),
                  np.arange(8) % 2, mode="RGB")
    for name, size in (("grey", None), ("grey", (3, 2)), ("rgb", None), ("rgb", (5, 5))):
        kw = {"data_dir": str(tmp_path / name), "seed": 3, "size": size}
        shape, ds = data.preview_images(**kw), data.load_images(**kw)
        assert isinstance(shape, data.DataShape)
        assert (shape.n_train, shape.n_test, shape.num_classes, shape.input_shape,
                shape.image_shape, shape.input_dim, shape.num_outputs, shape.task) == (
            ds.n_train, ds.n_test, ds.num_classes, ds.input_shape, ds.image_shape,
            ds.input_dim, ds.num_outputs, ds.task), (name, size)
        assert shape.nbytes == ds.nbytes and shape.x_dtype == ds.x_dtype
        assert data.as_images(shape).input_shape == data.as_images(ds).input_shape
    with pytest.raises(DataError, match="does not exist"):
        data.preview_images(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="size must be"):
        data.preview_images(str(tmp_path / "grey"), size=(0, 3))
    with pytest.raises(DataError, match=r"would take .* GiB as float64"):
        data.preview_images(str(tmp_path / "grey"), size=(10**6, 10**6))


def test_the_preview_finds_a_colour_image_after_a_grey_first_one_where_it_matters(
        tmp_path, monkeypatch):
    """A grey first image: the other headers are read only when three channels would not
    fit, and then a colour one among them is the refusal load_images would give."""
    from gdlab.data import images

    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    _write_images(tmp_path / "train", grey, ["a", "b"] * 3)
    _write_images(tmp_path / "test", grey[:2], ["a", "b"])
    one_channel = 8 * 8 * 8 * 8  # 8 images of 8×8 as float64
    opened = []
    real_header = images._header
    monkeypatch.setattr(images, "SIZE_SAMPLE", 1)  # of a larger folder: the first header
    monkeypatch.setattr(images, "_header", lambda p: opened.append(p) or real_header(p))
    assert data.preview_images(str(tmp_path)).image_shape == (8, 8, 1)
    assert len(opened) == 1  # three channels fit too: only the first header is read
    monkeypatch.setattr(images, "host_memory", lambda: 2 * 2 * one_channel)  # 1 fits, 3 not
    opened.clear()
    assert data.preview_images(str(tmp_path)).image_shape == (8, 8, 1)
    assert len(opened) == 8  # every header, none in colour
    assert data.load_images(str(tmp_path)).image_shape == (8, 8, 1)
    _write_images(tmp_path / "test", rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8), ["b"],
                  mode="RGB")  # a ninth image, test/b/0000.png, read last
    with pytest.raises(DataError, match=r"images: 9 images of 8x8 pixels would take 1.29e-05 "):
        data.preview_images(str(tmp_path))
    with pytest.raises(DataError, match=r"images: 9 images of 8x8 pixels would take 1.29e-05 "):
        data.load_images(str(tmp_path))


def test_the_preview_reads_a_sample_of_headers_for_sizes_and_colour(tmp_path, monkeypatch):
    """preview_images reads SIZE_SAMPLE headers spread over the folder: an image of another
    size among them is refused before any is decoded, with the size load_images would
    suggest; one in colour gives three channels, as loading does; the folder's other
    headers are not read."""
    from PIL import Image

    from gdlab.data import images

    rng = np.random.default_rng(6)
    _write_images(tmp_path, rng.integers(0, 256, (12, 5, 4), dtype=np.uint8), ["a", "b"] * 6)
    monkeypatch.setattr(images, "SIZE_SAMPLE", 4)  # every third of the 12 images
    kw = {"data_dir": str(tmp_path), "seed": 1}
    paths = [p for split in images._layout(tmp_path, 1, 0.2)[2] for p, _ in split]
    sampled, unsampled = paths[3], paths[4]
    Image.fromarray(rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), "RGB").save(sampled)
    opened = []
    real_header = images._header
    monkeypatch.setattr(images, "_header", lambda p: opened.append(p) or real_header(p))
    shape = data.preview_images(**kw)
    assert opened == paths[::3]
    assert shape.image_shape == data.load_images(**kw).image_shape == (5, 4, 3)
    Image.fromarray(np.zeros((7, 4), np.uint8)).save(unsampled)  # outside the sample: loading
    assert data.preview_images(**kw).image_shape == (5, 4, 3)    # alone refuses it
    with pytest.raises(DataError, match=re.escape(
            f"'{unsampled}' is 7 high and 4 wide, but 11 of the 12 images are 5 high and 4 "
            f"wide; every image must have the same size")):
        data.load_images(**kw)
    Image.fromarray(np.zeros((7, 4), np.uint8)).save(paths[6])  # in it: refused unread
    with pytest.raises(DataError, match=re.escape(
            f"images: '{paths[6]}' is 7 high and 4 wide, but 3 of 4 images read across the "
            f"folder are 5 high and 4 wide; every image must have the same size (resize them, "
            f"or give a size to resize to: --image_size=HEIGHT,WIDTH, here "
            f"--image_size=5,4)")):
        data.preview_images(**kw)
    resized = data.preview_images(**kw, size=(3, 3))  # a size given: every size is fine
    assert resized.image_shape == data.load_images(**kw, size=(3, 3)).image_shape == (3, 3, 3)
    for i in (0, 9):  # now most of the sample has the other size: it is the one suggested
        Image.fromarray(np.zeros((7, 4), np.uint8)).save(paths[i])
    with pytest.raises(DataError, match=re.escape(
            f"'{sampled}' is 5 high and 4 wide, but 3 of 4 images read across the folder are "
            f"7 high and 4 wide")):
        data.preview_images(**kw)


@pytest.mark.parametrize("n", [4, 63, 64, 65, 100, 128, 129])
def test_the_preview_reads_size_sample_headers_of_a_larger_folder_spread_over_it(
        tmp_path, monkeypatch, n):
    """Of a folder of n images, SIZE_SAMPLE headers (all of a smaller folder's), each a
    different image, the first among them, none further than n / SIZE_SAMPLE (rounded up)
    from the next sampled or the folder's end; an image of another size between two that a
    sample of every other one would read is refused."""
    import math

    from PIL import Image

    from gdlab.data import images

    _write_images(tmp_path, np.zeros((n, 3, 2), np.uint8), ["a", "b"] * (n // 2) + ["a"] * (n % 2))
    paths = [p for split in images._layout(tmp_path, 0, 0.2)[2] for p, _ in split]
    opened = []
    real_header = images._header
    monkeypatch.setattr(images, "_header", lambda p: opened.append(p) or real_header(p))
    assert data.preview_images(str(tmp_path)).image_shape == (3, 2, 1)
    assert len(opened) == len(set(opened)) == min(n, images.SIZE_SAMPLE)
    at = sorted(paths.index(p) for p in opened)
    assert at[0] == 0 and max(np.diff([*at, n])) <= math.ceil(n / images.SIZE_SAMPLE)
    if n == 65:  # 64 of 65 are read: all but one
        Image.fromarray(np.zeros((4, 2), np.uint8)).save(paths[1])
        with pytest.raises(DataError, match=re.escape(
                f"'{paths[1]}' is 4 high and 2 wide, but 63 of 64 images read across the "
                f"folder are 3 high and 2 wide")):
            data.preview_images(str(tmp_path))


def test_a_first_image_past_pils_limits_is_one_sentence_or_no_warning_in_the_preview(
        tmp_path, monkeypatch):
    """PIL refuses an image of more than twice its pixel limit from the header alone: the
    preview says so in load_images's sentence; between one and two times the limit PIL
    warns, and the preview leaves the warning to load_images (warnings are errors here)."""
    from PIL import Image

    _write_images(tmp_path, np.zeros((4, 6, 5), np.uint8), ["a", "b", "a", "b"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 30 pixels: over the limit, under 2×
    assert data.preview_images(str(tmp_path)).image_shape == (6, 5, 1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # over 2×: refused
    with pytest.raises(DataError, match=r"images: '.*\.png' is too large to open \(Image size "
                                        r"\(30 pixels\) exceeds limit of 20 pixels\); shrink "
                                        r"it or leave it out"):
        data.preview_images(str(tmp_path))


def test_an_image_size_beyond_memory_is_refused_before_allocating(tmp_path):
    _write_images(tmp_path, np.zeros((4, 3, 3), np.uint8), ["a", "b", "a", "b"])
    with pytest.raises(DataError, match=r"images: 4 images of 1000000x1000000 pixels would take "
                                        r"2.98e\+04 GiB as float64, more than half of this "
                                        r"machine's .* GiB; give a smaller size"):
        data.load("images", data_dir=str(tmp_path), size=(10**6, 10**6))


def test_images_are_resized_as_they_are_read_and_memory_errors_are_one_sentence(tmp_path,
                                                                                monkeypatch):
    from PIL import Image

    from gdlab.data import images

    _write_images(tmp_path, np.zeros((3, 40, 30), np.uint8), ["a", "b", "a"])
    paths = sorted(str(p) for p in tmp_path.rglob("*.png"))
    read, colour, _, _ = images._read(paths, (4, 3))  # only one image at a time at its own size
    assert [im.size for im in read] == [(3, 4)] * 3 and not colour
    monkeypatch.setattr(Image.Image, "load", lambda self: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(DataError, match=r"images: this machine ran out of memory reading "
                                        r"'.*\.png', image 1 of 3; give a smaller size "
                                        r"\(--image_size=HEIGHT,WIDTH\) or fewer images"):
        data.load("images", data_dir=str(tmp_path))


def test_image_folder_errors(tmp_path):
    from PIL import Image

    with pytest.raises(DataError, match="images: data_dir is required"):
        data.load("images")
    with pytest.raises(DataError, match=re.escape(f"data_dir '{tmp_path / 'no'}' does not exist")):
        data.load("images", data_dir=str(tmp_path / "no"))
    _write_images(tmp_path / "a", np.zeros((2, 3, 3), np.uint8), ["x", "x"])
    with pytest.raises(DataError, match="needs a subfolder per class, at least 2, .* found 1"):
        data.load("images", data_dir=str(tmp_path / "a"))
    (tmp_path / "a" / "y").mkdir()
    with pytest.raises(DataError, match=re.escape(f"class folder '{tmp_path / 'a' / 'y'}' holds "
                                                  "no image files")):
        data.load("images", data_dir=str(tmp_path / "a"))
    Image.fromarray(np.zeros((4, 3), np.uint8)).save(tmp_path / "a" / "y" / "big.png")
    big = tmp_path / "a" / "y" / "big.png"
    with pytest.raises(DataError, match=re.escape(
            f"'{big}' is 4 high and 3 wide, but 2 of the 3 images are 3 high and 3 wide; every "
            "image must have the same size (resize them, or give a size to resize to: "
            "--image_size=HEIGHT,WIDTH, here --image_size=3,3)")):
        data.load("images", data_dir=str(tmp_path / "a"))
    (tmp_path / "a" / "y" / "big.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="big.png' cannot be read as an image"):
        data.load("images", data_dir=str(tmp_path / "a"))
    for split, cls in (("train", "p"), ("train", "q"), ("test", "p"), ("test", "r")):
        _write_images(tmp_path / "s" / split, np.zeros((1, 2, 2), np.uint8), [cls])
    with pytest.raises(DataError, match="holds classes p, q but .* holds p, r"):
        data.load("images", data_dir=str(tmp_path / "s"))


def test_images_beyond_the_decompression_limit_are_refused_or_warned_in_one_line(tmp_path,
                                                                                 monkeypatch):
    from PIL import Image

    _write_images(tmp_path, np.zeros((4, 6, 6), np.uint8), ["a", "b", "a", "b"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)  # 36 pixels: PIL warns (it errs at 2x)
    with pytest.warns(data.DataWarning, match=r"images: '.*\.png': Image size \(36 pixels\) "
                                               r"exceeds limit of 30 pixels"):
        ds = data.load("images", data_dir=str(tmp_path))
    assert ds.image_shape == (6, 6, 1)
    kept = ds.info["warnings"]  # kept with the data set, one per image, as they were reported
    assert len(kept) == 4 and all(re.fullmatch(r"images: '.*\.png': Image size \(36 pixels\) "
                                               r"exceeds limit of 30 pixels.*", w) for w in kept)
    assert sorted(w.split("'")[1] for w in kept) == sorted(
        ds.info["files"]["train"] + ds.info["files"]["test"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(DataError, match=r"images: '.*\.png' is too large to open \(Image size "
                                        r"\(36 pixels\) exceeds limit of 20 pixels\); shrink it"):
        data.load("images", data_dir=str(tmp_path))


EXIF_SHOWN = {  # how each EXIF orientation is shown, from the pixels as stored (EXIF 2.32)
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.T, 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].T,
    8: lambda a: np.rot90(a, 1),
}


def test_pictures_stored_on_their_side_are_read_upright_as_they_are_shown(tmp_path):
    """A phone's picture keeps its pixels as the sensor read them and says in its EXIF
    orientation how to show them: each of the eight is read as shown, so pictures of one
    shown size (3 high, 4 wide) load together, and the preview sizes them the same way."""
    from PIL import Image

    rng = np.random.default_rng(7)
    stored = {}
    for k in EXIF_SHOWN:
        shape = (4, 3) if k >= 5 else (3, 4)  # on its side: shown 3 high and 4 wide
        stored[k] = rng.integers(0, 256, shape, dtype=np.uint8)
        (tmp_path / "ab"[k % 2]).mkdir(exist_ok=True)
        exif = Image.Exif()
        exif[0x0112] = k
        Image.fromarray(stored[k]).save(tmp_path / "ab"[k % 2] / f"{k}.png", exif=exif.tobytes())
    shape = data.preview_images(str(tmp_path))
    ds = data.load_images(str(tmp_path), standardize=False)
    assert shape.image_shape == ds.image_shape == (3, 4, 1)
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    for row, path in zip(np.r_[ds.x_train, ds.x_test], files, strict=True):
        k = int(os.path.basename(path)[0])
        np.testing.assert_array_equal(row.reshape(3, 4),
                                      (EXIF_SHOWN[k](stored[k]) / 255.0).astype(row.dtype))
    resized = data.load_images(str(tmp_path), standardize=False, size=(6, 8))
    for row, path in zip(np.r_[resized.x_train, resized.x_test], files, strict=True):
        k = int(os.path.basename(path)[0])  # upright first, then resized: the shown picture's
        shown = Image.fromarray(EXIF_SHOWN[k](stored[k]).copy())
        np.testing.assert_allclose(row.reshape(6, 8), np.asarray(
            shown.resize((8, 6), Image.Resampling.BILINEAR)) / 255.0, rtol=1e-6)


def test_image_folders_of_mixed_sizes_resize_to_the_size_given(tmp_path):
    from PIL import Image

    shades = {"a": [10, 60], "b": [200, 250]}
    for cls, values in shades.items():
        (tmp_path / cls).mkdir()
        for j, v in enumerate(values):  # constant images of two sizes: resized, still constant
            image = Image.fromarray(np.full((5 + 3 * j, 7 - j), v, np.uint8))
            image.save(tmp_path / cls / f"{j}.png")
    with pytest.raises(DataError, match="every image must have the same size .*--image_size"):
        data.load("images", data_dir=str(tmp_path))
    ds = data.load("images", data_dir=str(tmp_path), size=(4, 3), standardize=False)
    assert ds.image_shape == (4, 3, 1)
    pixels = np.r_[ds.x_train, ds.x_test]
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    for row, path in zip(pixels, files):
        cls, j = path.split("/")[-2], int(path[-5])
        np.testing.assert_allclose(row, shades[cls][j] / 255.0, rtol=1e-6)
    for bad in ((4,), (0, 3), (4.5, 3)):
        with pytest.raises(DataError, match="size must be \\(height, width\\), two positive"):
            data.load("images", data_dir=str(tmp_path), size=bad)
    with pytest.raises(DataError, match="dataset 'mnist' does not use size"):
        data.load("mnist", data_dir=str(tmp_path), size=(4, 3))


def test_regression_targets_beyond_float32_are_refused_even_when_standardisable(tmp_path):
    """±1e39 standardise fine in float64, but the model trains in float32 and the RMSE is
    reported in the targets' units: it would be inf. One sentence instead."""
    rng = np.random.default_rng(0)
    lines = ["a,y"] + [f"{i},{float(v)!r}" for i, v in enumerate(rng.normal(size=20) * 1e39)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"targets as large as [0-9.]+e\+39 overflow float32, the "
                                        r"training dtype .*; rescale them"):
        data.load_csv(path, "y", task="regression")
    ds = data.load_csv(path, "a", task="regression")
    assert np.isfinite(ds.y_train).all()  # the column of row numbers as the target is fine


# ----------------------------------------------- files as users' tools write them (review)


def test_a_class_target_of_numbers_and_words_is_text_with_numbers_first(tmp_path):
    """School grades K, 1, ..., 12: the word 'K' used to be 'not a number', even with
    task='classification'. Classes: numbers in increasing order (not 1, 10, 11, ...), then
    words; the labels follow the file's values."""
    grades = ["K"] + [str(g) for g in range(1, 13)]
    rows = [f"{i * 0.1:.1f},{grades[i % 13]}" for i in range(52)]
    path = _write(tmp_path, "reading,grade\n" + "\n".join(rows))
    with pytest.warns(data.DataWarning, match=r"target column 'grade' holds numbers and text "
                                              r"\('K'\): its 13 distinct values are classes"):
        ds = data.load_csv(path, "grade")
    assert ds.task == "classification" and ds.num_classes == 13
    assert ds.info["label_values"] == (*(str(g) for g in range(1, 13)), "K")
    names = np.array(ds.info["label_values"])
    index = np.r_[ds.info["train_index"], ds.info["test_index"]]
    np.testing.assert_array_equal(names[np.r_[ds.y_train, ds.y_test]],
                                  np.array(grades)[index % 13])
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}', row 2, column 'grade': 'K' is not a number")):
        data.load_csv(path, "grade", task="regression")
    # many distinct numbers and one word: a mistyped cell, unless classification is asked for
    rows = [f"{i},{i * 7}" for i in range(40)] + ["40,unknown"]
    path = _write(tmp_path, "x,price\n" + "\n".join(rows), "prices.csv")
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}', row 42, column 'price': 'unknown' is not a number, in a "
            f"target of numbers; give --task=classification (task='classification') to take "
            f"its 41 distinct values for classes, or correct it")):
        data.load_csv(path, "price")
    with pytest.warns(data.DataWarning) as caught:
        assert data.load_csv(path, "price", task="classification").num_classes == 41
    assert "holds numbers and text ('unknown')" in str(caught[0].message)


def test_what_is_not_a_target_of_numbers_and_words_loads_as_before(tmp_path):
    """Review of the rule above: quoted thousands are numbers (a regression target, no
    warning); a target of words with one number is a text target, whatever its number of
    classes; numbers with decimal commas come first among the classes, in increasing order."""
    prices = [980.5, 1250.5, 12400.5] + [500 + 97.5 * i for i in range(37)]
    path = _write(tmp_path, "area,price\n" + "\n".join(
        f'{50 + i},"{p:,.1f}"' for i, p in enumerate(prices)), "prices.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.load_csv(path, "price", standardize_target=False)
    assert ds.task == "regression"
    np.testing.assert_allclose(np.sort(np.r_[ds.y_train, ds.y_test][:, 0]), np.sort(prices))
    names = [f"cls{c}" for c in "abcdefghijklmnopqrstuvw"] + ["7"]  # 24 classes, one a number
    path = _write(tmp_path, "x,label\n" + "\n".join(f"{i},{names[i % 24]}" for i in range(96)),
                  "words.csv")
    ds = data.load_csv(path, "label")
    assert ds.num_classes == 24 and ds.info["label_values"][:2] == ("7", "clsa")
    path = _write(tmp_path, "x;grade\n" + "\n".join(
        f"{i};{['K', '0,5', '1', '2', '10'][i % 5]}" for i in range(20)), "commas.csv")
    with pytest.warns(data.DataWarning, match="holds numbers and text"):
        ds = data.load_csv(path, "grade")
    assert ds.info["label_values"] == ("0,5", "1", "2", "10", "K")


def test_classes_that_differ_only_in_case_are_kept_apart_with_a_warning(tmp_path):
    labels = ["cat", "Cat ", "dog", "Dog"]
    path = _write(tmp_path, "a,label\n" + "\n".join(f"{i},{labels[i % 4]}" for i in range(20)))
    with pytest.warns(data.DataWarning, match=r"classes that differ only in case \('Cat', "
                                              r"'cat'\): they are separate classes"):
        ds = data.load_csv(path, "label")
    assert ds.info["label_values"] == ("Cat", "Dog", "cat", "dog")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one spelling each: no warning
        data.load_csv(_write(tmp_path, "a,label\n" + "\n".join(
            f"{i},{labels[i % 4].lower().strip()}" for i in range(20)), "one.csv"), "label")


@pytest.mark.parametrize("cell, kind, semicolons", [
    ('"{v},5"', "a separator ('0,5')", True), ("{v}%", "a % ('0%')", False)])
def test_numbers_a_separator_or_percent_keeps_from_being_numbers_are_one_hot_with_a_warning(
        tmp_path, cell, kind, semicolons):
    """Decimal commas in a comma-separated file (Google Sheets in a German locale) and
    percentages were one-hot encoded without a word."""
    rows = [f"{i * 0.5},{cell.format(v=i % 5)},{i % 2}" for i in range(30)]
    path = _write(tmp_path, "a,score,label\n" + "\n".join(rows))
    with pytest.warns(data.DataWarning) as caught:
        ds = data.load_csv(path, "label")
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"csv: column 'score' holds numbers written with {kind}, read "
                              f"as 5 text categories, one-hot; write them as plain numbers")
    assert ("separate the columns with semicolons" in message) == semicolons
    assert len(ds.feature_names) == 6 and ds.feature_names[0] == "a"


@pytest.mark.parametrize(("cells", "kind"), [
    (['"$1,234.50"', "$12", "$7.5", "-$3"], "currency amounts ('$1,234.50')"),
    (["€12", "12 €", '"3,5 €"', "£4"], "currency amounts ('12 €')"),
    (["2024-03-01", "2024-03-02", "2024-04-11", ""], "dates ('2024-03-01')"),
    (["03/01/2024", "12/31/2023", "1/2/24"], "dates ('03/01/2024')"),
    (["01.03.2024", "31.12.2023", "2024-03-01T12:30:00Z"], "dates ('01.03.2024')"),
    (["1 234", "12 345", "999 000", "5 000 000"], "numbers grouped by spaces ('1 234')"),
])
def test_currency_dates_and_space_grouped_numbers_are_one_hot_with_a_warning(tmp_path, cells,
                                                                             kind):
    """Such a column of at most 100 values was one-hot encoded without a word, its order
    lost; it still is, with a warning that names the column and what it looks like."""
    rows = [f"{i},{cells[i % len(cells)]},{i % 2}" for i in range(40)]
    path = _write(tmp_path, "a,price,label\n" + "\n".join(rows))
    with pytest.warns(data.DataWarning) as caught:
        ds = data.load_csv(path, "label")
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"csv: column 'price' looks like {kind}: it is one-hot encoded "
                              f"as {len(cells)} text categories, their order lost; ")
    assert ds.feature_names[1:] == tuple(f"price={c}" for c in ds.info["categories"]["price"])
    assert len(ds.feature_names) == 1 + len(cells)


@pytest.mark.parametrize("cells", [["red", "green", "blue"], ["S", "M", "L", "10"],
                                   ["1.2.10", "1.3.0", "2.0.1"], ["A-12", "B-3", "2024-Q1"],
                                   ["$", "€", "12 €"]])
def test_genuine_categories_get_no_warning(tmp_path, cells):
    rows = [f"{i},{cells[i % len(cells)]},{i % 2}" for i in range(40)]
    path = _write(tmp_path, "a,kind,label\n" + "\n".join(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.load_csv(path, "label")
    assert ds.info["categories"]["kind"] == tuple(sorted(cells))


def test_too_many_dates_for_categories_are_refused_with_what_they_look_like(tmp_path):
    rows = [f"{i},2024-{1 + i // 28:02d}-{1 + i % 28:02d},{i % 2}" for i in range(120)]
    path = _write(tmp_path, "a,day,label\n" + "\n".join(rows))
    with pytest.raises(DataError, match=re.escape(
            f"csv file '{path}', column 'day' holds 120 distinct text values, more than the "
            f"100 categories a text feature may have; its values look like dates "
            f"('2024-01-01'): write them as numbers")):
        data.load_csv(path, "label")


def test_pandas_unnamed_index_column_is_left_out_with_a_warning(tmp_path):
    """'Unnamed: 0' is pandas' index read back and written again: it was trained on."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    for name, text in (("plain.csv", "{a!r}"), ("general.csv", '"{a!r}"')):  # both readers
        rows = [f"{i},{text.format(a=a)},{b!r},{int(a > 0)}"
                for i, (a, b) in enumerate(x.tolist())]
        path = _write(tmp_path, "Unnamed: 0,a,b,label\n" + "\n".join(rows), name)
        with pytest.warns(data.DataWarning, match=r"column 1, 'Unnamed: 0', is left out"):
            ds = data.load_csv(path, "label", standardize=False)
        assert ds.feature_names == ("a", "b")
        np.testing.assert_allclose(ds.x_train, x[ds.info["train_index"]], rtol=1e-6)
        with pytest.warns(data.DataWarning, match="is left out"):  # dropping it too: fine
            assert data.load_csv(path, "label", drop=["Unnamed: 0"]).feature_names == ("a", "b")


def test_pandas_index_written_again_after_its_own_index_is_left_out(tmp_path):
    """A table read back with pandas and written with to_csv() again holds two indexes: the
    unnamed one and 'Unnamed: 0' after it ('Unnamed: 0.1' after one more round); rows
    sorted by class made the row number a feature that gives the label away."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    label = np.arange(20) >= 10
    for header, indexes, plain in ((",Unnamed: 0", 2, False),
                                   ("Unnamed: 0,Unnamed: 0.1", 2, True),
                                   (",Unnamed: 0,Unnamed: 0.1", 3, False)):
        rows = [",".join([str(i)] * indexes + [repr(a), repr(b), str(int(y))])
                for i, ((a, b), y) in enumerate(zip(x.tolist(), label))]
        path = _write(tmp_path, f"{header},a,b,label\n" + "\n".join(rows), "twice.csv")
        assert (data.tables._plain_numbers(path) is not None) == plain
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = data.load_csv(path, "label", standardize=False)
        assert ds.feature_names == ("a", "b")
        np.testing.assert_allclose(ds.x_train, x[ds.info["train_index"]], rtol=1e-6)
        np.testing.assert_array_equal(ds.y_train, label[ds.info["train_index"]])
        names = [name for name in header.split(",") if name]
        expected = ([f"csv file '{path}': column 1 has no name"] if header[0] == "," else []) + [
            f"csv file '{path}': column {header.split(',').index(name) + 1}, '{name}', is left "
            f"out, taken for the row index pandas wrote" for name in names]
        assert len(caught) == len(expected) == len(ds.info["warnings"])
        for w, start in zip(caught, expected):
            assert issubclass(w.category, data.DataWarning) and str(w.message).startswith(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", data.DataWarning)  # dropping them too: fine
            assert data.load_csv(path, "label", drop=names).feature_names == ("a", "b")
    # a later column of that name is the user's: kept
    path = _write(tmp_path, "a,Unnamed: 0,b,label\n" + "\n".join(
        f"{a!r},{i},{b!r},{int(y)}" for i, ((a, b), y) in enumerate(zip(x.tolist(), label))))
    assert data.load_csv(path, "label").feature_names == ("a", "Unnamed: 0", "b")
    # the index's name to drop where the file has none is no column of it: refused
    path = _write(tmp_path, "a,b,label\n" + "\n".join(
        f"{a!r},{b!r},{int(y)}" for (a, b), y in zip(x.tolist(), label)), "no_index.csv")
    for name in ("Unnamed: 0", "Unnamed: 0.1"):
        with pytest.raises(DataError, match=re.escape(f"column '{name}' to drop not found")):
            data.load_csv(path, "label", drop=[name])


def test_one_column_to_drop_may_be_a_string(tmp_path):
    """drop='ab' dropped the columns 'a' and 'b', one letter each."""
    path = _write(tmp_path, "ab,a,b,label\n" + "\n".join(f"{i},{i},{-i},{i % 2}"
                                                          for i in range(10)))
    assert data.load_csv(path, "label", drop="ab").feature_names == ("a", "b")
    assert data.load("csv", csv_path=path, target="label", drop="a").feature_names == ("ab", "b")


def test_excels_sep_line_names_the_separator_and_rows_keep_their_line_numbers(tmp_path):
    rows = [f"{i},5;{-i};{i % 2}" for i in range(10)]
    path = _write(tmp_path, "sep=;\r\na;b;label\r\n" + "\r\n".join(rows) + "\r\n")
    ds = data.load_csv(path, "label", standardize=False)
    assert ds.info["delimiter"] == ";" and ds.feature_names == ("a", "b")
    np.testing.assert_allclose(np.sort(np.r_[ds.x_train, ds.x_test][:, 0]),
                               np.arange(10) + 0.5)
    bad = _write(tmp_path, "sep=;\na;b;label\n1;2;0\n1;x;1\n3;4;0\n", "bad.csv")
    with pytest.raises(DataError, match=re.escape(f"csv file '{bad}', row 4, column 'b'")):
        data.load_csv(bad, "label")


def test_npz_one_hot_rows_are_class_labels_with_a_warning(tmp_path):
    """Keras' to_categorical labels trained as a 2-output regression, silently; with
    task='classification' the error spoke of a train and a test split the file did not
    have."""
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(40, 3)), np.arange(40) % 3
    path = tmp_path / "onehot.npz"
    np.savez(path, x=x, y=np.eye(3, dtype=np.float32)[labels])
    with pytest.warns(data.DataWarning, match=r"y's rows are one-hot \(a single 1 among 3 "
                                              r"columns\): read as class labels, each row's "
                                              r"the column of its 1"):
        ds = data.load("npz", npz_path=str(path))
    assert ds.task == "classification" and ds.num_classes == 3
    np.testing.assert_array_equal(ds.y_train, labels[ds.info["train_index"]])
    unused = tmp_path / "unused.npz"  # column 1 never holds the 1: the classes are 0 and 2
    np.savez(unused, x=x, y=np.eye(3)[2 * (labels % 2)])
    with pytest.warns(data.DataWarning, match="read as class labels"):
        ds = data.load("npz", npz_path=str(unused))
    assert ds.num_classes == 2 and ds.info["label_values"] == (0, 2)
    as_targets = data.load("npz", npz_path=str(path), task="regression")
    assert as_targets.task == "regression" and as_targets.y_train.shape == (32, 3)
    soft = tmp_path / "soft.npz"
    np.savez(soft, x=x, y=rng.random((40, 2)))
    with pytest.raises(DataError, match=re.escape(
            f"npz file '{soft}': y's rows are (2,), not one-hot; classification needs one "
            f"integer label per example (of one-hot rows, y.argmax(1))")):
        data.load("npz", npz_path=str(soft), task="classification")


def test_images_in_subfolders_of_a_class_folder_are_read_with_a_warning(tmp_path):
    """cat/*.png beside cat/2019/*.png: the 2019 pictures were left out without a word."""
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (12, 4, 4), dtype=np.uint8)
    _write_images(tmp_path, arrays[:3], ["cat"] * 3)
    _write_images(tmp_path, arrays[3:6], ["dog"] * 3)
    _write_images(tmp_path / "cat", arrays[6:], ["2019"] * 6)
    (tmp_path / "cat" / ".thumbs").mkdir()
    _write_images(tmp_path / "cat" / ".thumbs", arrays[:2], ["x"] * 2)  # hidden: left out
    with pytest.warns(data.DataWarning, match=re.escape(
            f"images: 6 images in subfolders of class folders (first "
            f"'{tmp_path / 'cat' / '2019' / '0000.png'}') are read as their class folder's")):
        ds = data.load("images", data_dir=str(tmp_path))
    assert ds.n_train + ds.n_test == 12
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    labels = np.r_[ds.y_train, ds.y_test]
    assert {f for f, y in zip(files, labels) if y == 0} == {
        *(str(tmp_path / "cat" / f"{i:04d}.png") for i in range(3)),
        *(str(tmp_path / "cat" / "2019" / f"{i:04d}.png") for i in range(6))}
    assert data.preview_images(str(tmp_path)).n_train == ds.n_train


def test_transparent_images_are_named_in_a_warning(tmp_path):
    """A shape drawn only in the alpha channel loads as a blank picture: say so."""
    rng = np.random.default_rng(0)
    clear = np.zeros((6, 5, 5, 4), np.uint8)
    clear[:, 2, :, 3] = 255  # an opaque black bar on a transparent black background
    _write_images(tmp_path, clear, ["a", "b"] * 3, mode="RGBA")
    with pytest.warns(data.DataWarning, match=r"images: 6 of 6 images have transparent pixels"):
        data.load("images", data_dir=str(tmp_path))
    opaque = tmp_path / "opaque"
    solid = rng.integers(0, 256, (6, 5, 5, 4), dtype=np.uint8)
    solid[..., 3] = 255
    _write_images(opaque, solid, ["a", "b"] * 3, mode="RGBA")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load("images", data_dir=str(opaque))


@pytest.mark.parametrize(("n", "test_fraction", "n_test"), [
    (9, 0.3, 3),  # round(2.7) = 3: rounded, not truncated to 2
    (3, 0.5, 2),  # round(1.5) = 2
    (4, 0.1, 1),  # round(0.4) = 0: at least one test row
    (2, 0.9, 1),  # round(1.8) = 2: at most N − 1, one row left to train on
])
def test_the_test_split_is_round_n_times_fraction_at_least_one_at_most_n_minus_one(
        n, test_fraction, n_test):
    train, test = data.split_indices(n, seed=0, test_fraction=test_fraction)
    assert (len(train), len(test)) == (n - n_test, n_test)
    np.testing.assert_array_equal(np.sort(np.r_[train, test]), np.arange(n))
    ds = data.from_arrays("t", np.arange(2.0 * n).reshape(n, 2), np.arange(n) % 2 * 1.0,
                          task="regression", test_fraction=test_fraction)
    assert (ds.n_train, ds.n_test) == (n - n_test, n_test)
    with warnings.catch_warnings():  # a few sequences: test tokens unseen in training
        warnings.simplefilter("ignore", data.DataWarning)
        sort = data.load_sort(n=n, test_fraction=test_fraction)  # its own cut, the same sizes
    assert (sort.n_train, sort.n_test) == (n - n_test, n_test)


def test_an_indicator_column_of_one_rare_category_is_not_reported_as_floored(tmp_path):
    """A category in 1 of 160 training rows: were it scaled, its scale would be floored
    (max|x − mean| = 0.994 > 10·std = 0.79); kept as a 0/1 indicator, it is neither scaled
    nor named in a 'mostly one value' warning."""
    train_idx, _ = data.split_indices(200, seed=0, test_fraction=0.2)
    rare = int(train_idx[0])
    lines = ["x,kind,y"] + [f"{i},{'rare' if i == rare else 'common'},{i % 2}"
                            for i in range(200)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataWarning)
        ds = data.load("csv", csv_path=path, target="y", seed=0)
    col = ds.feature_names.index("kind=rare")
    np.testing.assert_array_equal(ds.x_train[:, col], ds.info["train_index"] == rare)
    assert "warnings" not in ds.info
    # the same through from_split: the unscaled column is not counted among the floored ones
    x = np.c_[np.arange(200.0), np.zeros(200)]
    x[5, 1] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataWarning)
        ds = data.from_split("t", x[:160], np.arange(160) % 2, x[160:], np.arange(40) % 2,
                             task="classification", num_classes=2,
                             unscaled=np.array([False, True]))
    assert ds.info["x_std"][1] == 1.0 and ds.info["x_mean"][1] == 0.0


@pytest.mark.parametrize("kind", ["csv", "npz"])
def test_twenty_distinct_integers_are_classes_and_twenty_one_a_regression_target(
        tmp_path, kind):
    """Classes are inferred for at most MAX_INFERRED_CLASSES (20) distinct integers: 20 is
    classification, 21 regression (with a note)."""
    from gdlab.data.base import MAX_INFERRED_CLASSES

    assert MAX_INFERRED_CLASSES == 20
    for k, task in ((20, "classification"), (21, "regression")):
        y = np.arange(5 * k) % k * 3  # k distinct whole numbers, 0, 3, ..., 3(k − 1)
        x = np.arange(5.0 * k)
        if kind == "csv":
            path = _write(tmp_path, "x,y\n" + "".join(f"{a:g},{b}\n" for a, b in zip(x, y)),
                          f"t{k}.csv")
            load = dict(csv_path=path)
        else:
            path = tmp_path / f"t{k}.npz"
            np.savez(path, x=x[:, None], y=y)
            load = dict(npz_path=str(path))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = data.load(kind, **load, **({"target": "y"} if kind == "csv" else {}))
        assert ds.task == task
        if task == "classification":
            assert ds.num_classes == 20
            assert ds.info["label_values"] == tuple(range(0, 60, 3))
            assert not caught
        else:
            assert any("holds 21 distinct whole numbers" in str(w.message) for w in caught)


def test_a_target_of_words_in_half_its_rows_is_text(tmp_path):
    """'A target of numbers, at least half, and words': half words is still a class target
    (with a note), not a column of numbers with a bad cell."""
    path = _write(tmp_path, "x,grade\n" + "".join(
        f"{i},{['K', '1'][i % 2]}\n" for i in range(20)))
    with pytest.warns(data.DataWarning, match=r"holds numbers and text \('K'\): its 2 distinct"):
        ds = data.load_csv(path, "grade")
    assert ds.task == "classification" and ds.info["label_values"] == ("1", "K")
    names = np.array(ds.info["label_values"])
    np.testing.assert_array_equal(names[ds.y_train],
                                  np.array(["K", "1"])[ds.info["train_index"] % 2])


def test_a_target_of_numbers_and_words_with_twenty_values_is_classes_without_a_task(tmp_path):
    """Up to MAX_INFERRED_CLASSES (20) distinct values are classes with task=None; 21 need
    task='classification'."""
    for count, ok in ((20, True), (21, False)):
        values = [str(v) for v in range(1, count)] + ["K"]  # count − 1 numbers and one word
        path = _write(tmp_path, "x,grade\n" + "".join(
            f"{i},{values[i % count]}\n" for i in range(3 * count)), f"g{count}.csv")
        if ok:
            with pytest.warns(data.DataWarning, match="its 20 distinct values are classes"):
                ds = data.load_csv(path, "grade")
            assert ds.num_classes == 20 and ds.info["label_values"] == tuple(values)
        else:
            with pytest.raises(DataError, match="give --task=classification"):
                data.load_csv(path, "grade")


def test_numbers_with_separators_among_a_target_of_words_sort_by_their_value(tmp_path):
    """Class order puts numbers first in increasing order, read as a feature's numbers are:
    '1.500,5' in a ';'-separated file is 1500.5, '"1,500"' in a comma-separated one 1500."""
    for sep, big, name in ((";", "1.500,5", "semi.csv"), (",", '"1,500"', "comma.csv")):
        values = ["K", "2", big, "2000"]
        path = _write(tmp_path, f"x{sep}grade\n" + "".join(
            f"{i}{sep}{values[i % 4]}\n" for i in range(20)), name)
        with pytest.warns(data.DataWarning, match="holds numbers and text"):
            ds = data.load_csv(path, "grade")
        assert ds.info["label_values"] == ("2", big.strip('"'), "2000", "K")


def test_a_text_column_half_of_whose_categories_look_like_numbers_gets_no_note(tmp_path):
    """The note is for a column most of whose categories are numbers kept from being
    numbers; half is not most."""
    cells = ['"1,5"', '"2,5"', "a", "b"]
    path = _write(tmp_path, "x,score,y\n" + "".join(
        f"{i},{cells[i % 4]},{i % 2}\n" for i in range(20)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataWarning)
        ds = data.load_csv(path, "y")
    assert ds.info["categories"]["score"] == ("1,5", "2,5", "a", "b")


def test_npz_labels_of_shape_n_by_1_are_class_labels(tmp_path):
    """Keras' data sets hold labels as (N, 1) (CIFAR-10's y_train): the same classes as (N,),
    not a one-output regression."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 3 + 1
    path = tmp_path / "column.npz"
    np.savez(path, x=x, y=y[:, None])
    ds = data.load("npz", npz_path=str(path), seed=1)
    assert ds.task == "classification" and ds.num_classes == 3
    assert ds.info["label_values"] == (1, 2, 3)
    np.testing.assert_array_equal(ds.y_test, y[ds.info["test_index"]] - 1)


def test_npz_rows_with_several_ones_are_not_read_as_one_label(tmp_path):
    """Multi-hot rows (several labels per example) are not Keras' one-hot labels: reading
    each row's first 1 would drop labels silently. They stay a K-output target."""
    y = np.eye(3)[np.arange(20) % 3]
    y[1::5, 2] = 1.0  # rows 1, 6 and 16 hold two 1s
    path = tmp_path / "multi.npz"
    np.savez(path, x=np.arange(40.0).reshape(20, 2), y=y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataWarning)
        ds = data.load("npz", npz_path=str(path))
    assert ds.task == "regression" and ds.num_outputs == 3
    with pytest.raises(DataError, match=re.escape("y's rows are (3,), not one-hot")):
        data.load("npz", npz_path=str(path), task="classification")


def test_npz_own_split_labels_keep_their_values_when_the_test_split_has_others(tmp_path):
    """Classes are the distinct labels of both splits: a test label between two training
    ones (4 between 3 and 8) must not shift the training labels' classes."""
    p = tmp_path / "split.npz"
    x = np.arange(20.0).reshape(10, 2)
    y_train, y_test = np.array([3, 8, 3, 8, 3, 8]), np.array([3, 4, 8, 4])
    np.savez(p, x_train=x[:6], y_train=y_train, x_test=x[6:], y_test=y_test)
    with pytest.warns(data.DataWarning, match=re.escape(
            "npz: 2 test examples belong to 1 classes that no training example has (4)")):
        ds = data.load("npz", npz_path=str(p))
    values = np.array(ds.info["label_values"])
    assert tuple(values) == (3, 4, 8)
    np.testing.assert_array_equal(values[ds.y_train], y_train)
    np.testing.assert_array_equal(values[ds.y_test], y_test)


def test_npz_channels_first_images_of_four_channels_are_read_channels_last(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (10, 8, 8, 4)).astype(np.uint8)
    path = tmp_path / "rgba.npz"
    np.savez(path, x=np.moveaxis(rgba, -1, 1), y=np.arange(10) % 2)  # (10, 4, 8, 8)
    with pytest.warns(data.DataWarning, match=re.escape(
            "npz: x's examples (4, 8, 8) look channels-first (C, H, W), as PyTorch stores "
            "images; read as 8x8 images of 4 channels")):
        first = data.load("npz", npz_path=str(path))
    np.savez(path, x=rgba, y=np.arange(10) % 2)
    last = data.load("npz", npz_path=str(path))
    assert first.image_shape == last.image_shape == (8, 8, 4)
    np.testing.assert_array_equal(first.x_train, last.x_train)


def test_npz_bool_arrays_are_numbers(tmp_path):
    """The module docstring: 'Numbers only (bool, integer or float)'."""
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 4)) > 0.5, np.arange(30) % 3 == 0
    path = tmp_path / "bool.npz"
    np.savez(path, x=x, y=y)
    ds = data.load("npz", npz_path=str(path), standardize=False)
    assert ds.task == "classification" and ds.info["label_values"] == (0, 1)
    test = ds.info["test_index"]
    np.testing.assert_array_equal(ds.x_test, x[test].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y[test].astype(np.int32))


def test_npz_own_split_images_of_other_shapes_are_refused(tmp_path):
    """8x8 training images beside 4x16 test ones hold as many pixels: read flat, the test
    pixels would silently be other pixels."""
    rng = np.random.default_rng(0)
    p = tmp_path / "shapes.npz"
    np.savez(p, x_train=rng.random((6, 8, 8)), y_train=np.arange(6) % 2,
             x_test=rng.random((4, 4, 16)), y_test=np.arange(4) % 2)
    with pytest.raises(DataError, match=re.escape(
            f"npz file '{p}': x_train's examples are (8, 8) but x_test's are (4, 16)")):
        data.load("npz", npz_path=str(p))


def test_npz_text_labels_are_classes_as_a_csvs_text_target_is(tmp_path):
    """Labels saved as text (np.array of str, or bytes) were refused ('has dtype <U4;
    numbers are needed') where the CSV loader takes the same labels for classes. Now both
    loaders give the same classes in the same order, and the same labels."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    names = np.array(["dog", "cat", "bird"])[np.arange(40) % 3]
    path = tmp_path / "text.npz"
    np.savez(path, x=x, y=names)
    ds = data.load("npz", npz_path=str(path), seed=3)
    table = _write(tmp_path, "a,b,label\n" + "\n".join(
        f"{a!r},{b!r},{c}" for (a, b), c in zip(x.tolist(), names)))
    csv_ds = data.load_csv(table, "label", seed=3)
    assert ds.task == csv_ds.task == "classification" and ds.num_classes == 3
    assert ds.info["label_values"] == csv_ds.info["label_values"] == ("bird", "cat", "dog")
    np.testing.assert_array_equal(ds.y_train, csv_ds.y_train)
    np.testing.assert_array_equal(np.array(ds.info["label_values"])[ds.y_test],
                                  names[ds.info["test_index"]])
    # numbers among words (school grades) and numbers written as text: the CSV's rules
    grades = np.array(["K", "1", "2", "10"])[np.arange(40) % 4]
    np.savez(path, x=x, y=grades)
    with pytest.warns(data.DataWarning, match=re.escape(
            "npz: y holds numbers and text ('K'): its 4 distinct values are classes")):
        ds = data.load("npz", npz_path=str(path))
    assert ds.info["label_values"] == ("1", "2", "10", "K")
    np.testing.assert_array_equal(np.array(ds.info["label_values"])[ds.y_train],
                                  grades[ds.info["train_index"]])
    np.savez(path, x=x, y=np.array(["1", "2", "10"])[np.arange(40) % 3])
    ds = data.load("npz", npz_path=str(path))
    assert ds.info["label_values"] == (1, 2, 10)
    # many distinct numbers and one word: refused as the CSV's is, at the label's index
    prices = np.array([str(i * 7) for i in range(39)] + [" unknown"])
    np.savez(path, x=x, y=prices)
    with pytest.raises(DataError, match=re.escape(
            f"npz file '{path}': y[39]: 'unknown' is not a number, in a target of numbers; "
            f"give --task=classification (task='classification') to take its 40 distinct "
            f"values for classes, or correct it")):
        data.load("npz", npz_path=str(path))
    with pytest.warns(data.DataWarning) as caught:
        assert data.load("npz", npz_path=str(path), task="classification").num_classes == 40
    assert "npz: y holds numbers and text ('unknown')" in str(caught[0].message)


def test_npz_text_labels_of_both_splits_share_one_mapping(tmp_path):
    """Bytes labels (dtype S) read as UTF-8; the classes are the labels of both splits, as
    for numbers, so a test label no training one has gets a class and the warning."""
    x = np.arange(20.0).reshape(10, 2)
    y_train = np.array([b"cat", b"dog", b"cat", b"dog", b"cat", b"dog"])
    y_test = np.array(["dog", "emu", "cat", "emu"]).astype("S")
    p = tmp_path / "split.npz"
    np.savez(p, x_train=x[:6], y_train=y_train, x_test=x[6:], y_test=y_test)
    with pytest.warns(data.DataWarning, match=re.escape(
            "npz: 2 test examples belong to 1 classes that no training example has ('emu')")):
        ds = data.load("npz", npz_path=str(p))
    assert ds.info["label_values"] == ("cat", "dog", "emu") and ds.num_classes == 3
    np.testing.assert_array_equal(ds.y_train, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(ds.y_test, [1, 2, 0, 2])


@pytest.mark.parametrize(("arrays", "task", "message"), [
    (dict(y=np.array(["a", "nan"] * 5)), None,
     "y[1] has no value ('nan'); every example needs a label (if 'nan' is a class, rename it)"),
    (dict(y=np.array(["a", " "] * 5)), None, "y[1] is empty; every example needs a label"),
    (dict(y=np.array(["a", "b"] * 5)), "regression",
     "y holds text ('a'); a regression target must be numbers"),
    (dict(y=np.array([["a", "b"]] * 10)), None,
     "y's rows are (2,) of text; text labels need one per example, of shape (N,)"),
    (dict(y=np.array(["a"] * 10)), None,
     "y holds a single value ('a'); classification needs at least 2 classes"),
    (dict(y=np.array([b"a", b"\xff"] * 5)), None,
     "array 'y' holds bytes that are not UTF-8 text; save the labels decoded as strings, "
     "with the encoding they were written in (np.char.decode(y, 'latin-1'), say)"),
    (dict(x_train=np.ones((6, 2)), y_train=np.array(["a", "b"] * 3), x_test=np.ones((2, 2)),
          y_test=np.array([0, 1])), None,
     "y_train holds text but y_test holds numbers; save the labels of both splits alike"),
])
def test_npz_text_labels_that_cannot_be_classes_are_one_sentence(tmp_path, arrays, task, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **({"x": np.ones((10, 2))} if "x_train" not in arrays else {}), **arrays)
    with pytest.raises(DataError, match=re.escape(f"npz file '{p}': {message}")):
        data.load("npz", npz_path=str(p), task=task)


def test_npz_val_arrays_are_the_test_split_and_unused_held_out_arrays_are_named(tmp_path):
    """x_train, y_train, x_val, y_val (Keras' naming) was refused as lacking x_test; an
    x_val beside x_test, or an x_test beside x and y, was ignored without a word."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), np.arange(20) % 2
    p = tmp_path / "val.npz"
    np.savez(p, x_train=x[:14], y_train=y[:14], x_val=x[14:], y_val=y[14:])
    with pytest.warns(data.DataWarning) as caught:
        ds = data.load("npz", npz_path=str(p))
    assert [str(w.message) for w in caught] == [
        "npz: x_val and y_val are the test split (the file holds no x_test, y_test): the "
        "model is evaluated on them"]
    assert (ds.n_train, ds.n_test) == (14, 6)
    np.testing.assert_array_equal(ds.y_test, y[14:])
    np.savez(p, x_train=x[:14], y_train=y[:14], x_test=x[14:17], y_test=y[14:17],
             x_val=x[17:], y_val=y[17:])
    with pytest.warns(data.DataWarning) as caught:
        ds = data.load("npz", npz_path=str(p))
    assert [str(w.message) for w in caught] == [
        "npz: x_val, y_val are not used: x_test, y_test are the test split"]
    assert ds.n_test == 3
    np.savez(p, x=x, y=y, x_test=x[:4], y_test=y[:4])
    with pytest.warns(data.DataWarning, match=re.escape(
            "npz: x_test, y_test are not used: x and y are split by seed (--seed) and "
            "test_fraction; to keep the file's own split, name the training arrays x_train, "
            "y_train")):
        ds = data.load("npz", npz_path=str(p))
    assert ds.n_train + ds.n_test == 20
    np.savez(p, x_train=x[:14], y_train=y[:14], x_val=x[14:], y_val=y[15:])
    with pytest.raises(DataError, match=re.escape(  # named as the file names it
            f"npz file '{p}': x_val has 6 rows but y_val has 5")):
        data.load("npz", npz_path=str(p))


def test_npz_rows_that_look_like_probabilities_are_a_regression_with_a_warning(tmp_path):
    """Label-smoothed or soft labels (rows in [0, 1] summing to 1) trained as a K-output
    regression without a word; one-hot rows stay class labels, with their own warning."""
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(40, 3)), np.arange(40) % 3
    smooth = np.full((40, 3), 0.05)
    smooth[np.arange(40), labels] = 0.9
    p = tmp_path / "soft.npz"
    np.savez(p, x=x, y=smooth.astype(np.float32))
    with pytest.warns(data.DataWarning) as caught:
        ds = data.load("npz", npz_path=str(p), standardize_target=False)
    assert [str(w.message) for w in caught] == [
        "npz: y's rows look like probabilities over 3 classes (values in [0, 1] that sum to 1, "
        "not one-hot): they are fit as a 3-output regression; for classification, save each "
        "row's class, y.argmax(1), as the labels"]
    assert ds.task == "regression" and ds.num_outputs == 3
    np.testing.assert_allclose(ds.y_train, smooth[ds.info["train_index"]], rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for: no warning
        assert data.load("npz", npz_path=str(p), task="regression").num_outputs == 3
    np.savez(p, x=x, y=np.eye(3)[labels])  # one-hot: labels, as before, and only that warning
    with pytest.warns(data.DataWarning) as caught:
        assert data.load("npz", npz_path=str(p)).task == "classification"
    assert len(caught) == 1 and "one-hot" in str(caught[0].message)
    off = smooth.copy()
    off[0] = [0.5, 0.3, 0.3]  # one row sums to 1.1: not probabilities
    np.savez(p, x=x, y=off)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data.load("npz", npz_path=str(p)).task == "regression"


def test_npz_text_labels_are_stripped_as_a_csvs_cells_are(tmp_path):
    """' 3' and '3' (or 'cat' and 'cat' with a no-break space) were two classes of an npz
    file where the CSV loader, which strips its cells, reads one."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    labels = np.array([" 3", "3", "x", "cat\xa0", "cat", " x "])[np.arange(30) % 6]
    p = tmp_path / "padded.npz"
    np.savez(p, x=x, y=labels)
    ds = data.load("npz", npz_path=str(p), seed=1)
    table = _write(tmp_path, "a,b,label\n" + "\n".join(
        f"{a!r},{b!r},{c}" for (a, b), c in zip(x.tolist(), labels)))
    csv_ds = data.load_csv(table, "label", seed=1)
    assert ds.info["label_values"] == csv_ds.info["label_values"] == ("3", "cat", "x")
    np.testing.assert_array_equal(ds.y_train, csv_ds.y_train)
    np.testing.assert_array_equal(ds.y_test, csv_ds.y_test)
    np.savez(p, x_train=x[:6], y_train=np.array(["a", "b"] * 3),
             x_test=x[6:8], y_test=np.array([" b ", "a"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no class that only the test split has
        ds = data.load("npz", npz_path=str(p))
    assert ds.info["label_values"] == ("a", "b")
    np.testing.assert_array_equal(ds.y_test, [1, 0])


@pytest.mark.parametrize("labels", [["1", "2", "inf"], ["1.5", "-inf", "2"], ["1", "1e400"]])
def test_npz_infinite_numbers_written_as_text_are_one_sentence(tmp_path, labels):
    """'inf' among labels of numbers was called a class label past 2^53 that would merge
    with its neighbours; a numeric y holding inf is refused as infinite, and so is it."""
    p = tmp_path / "inf.npz"
    y = np.array(labels)[np.arange(12) % len(labels)]
    np.savez(p, x_train=np.ones((6, 2)), y_train=y[:6], x_test=np.ones((6, 2)), y_test=y[6:])
    i = next(i for i, c in enumerate(y) if not np.isfinite(float(c)))
    where = f"y_train[{i}]" if i < 6 else f"y_test[{i - 6}]"
    with pytest.raises(DataError, match=re.escape(
            f"npz file '{p}': {where} is an infinite value ({str(y[i])!r}); labels and targets "
            f"must be finite numbers, or words for classes")):
        data.load("npz", npz_path=str(p))


def test_npz_labels_of_one_split_saved_as_a_column_are_read(tmp_path):
    """y_train of shape (N, 1) beside a y_test of (M,) (or y_val) was an IndexError, a
    traceback through experiments.train; each split's column is its labels."""
    x = np.arange(20.0).reshape(10, 2)
    p = tmp_path / "column.npz"
    for y_train, y_test in (([[0], [1], [0], [1], [0], [1]], [1, 0, 1, 0]),
                            (["a", "b", "a", "b", "a", "b"], [["b"], ["a"], ["b"], ["a"]])):
        np.savez(p, x_train=x[:6], y_train=np.array(y_train), x_test=x[6:],
                 y_test=np.array(y_test))
        ds = data.load("npz", npz_path=str(p))
        assert ds.task == "classification" and ds.num_classes == 2
        np.testing.assert_array_equal(ds.y_test, [1, 0, 1, 0])


@pytest.mark.parametrize(("cells", "kind"), [
    (["USD 1,234", "USD 12", "EUR 5", "1'234.50 CHF"], "currency amounts ('1'234.50 CHF')"),
    (["01-Mar-2024", "02-Mar-2024", "15-Apr-24"], "dates ('01-Mar-2024')"),
    (["Mar 1, 2024", "Apr 15, 2024", "December 3, 2023"], "dates ('Apr 15, 2024')"),
    (["3/1/2024 10:30 AM", "3/2/2024 1:05 PM"], "dates ('3/1/2024 10:30 AM')"),
])
def test_currency_codes_named_months_and_am_pm_times_are_warned_about(tmp_path, cells, kind):
    """Common spreadsheet formats the currency and date patterns missed: no warning."""
    rows = [f'{i},"{cells[i % len(cells)]}",{i % 2}' for i in range(40)]
    path = _write(tmp_path, "a,value,label\n" + "\n".join(rows))
    with pytest.warns(data.DataWarning) as caught:
        data.load_csv(path, "label")
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"csv: column 'value' looks like {kind}: it is one-hot encoded ")


def test_too_many_dotted_dates_are_refused_as_dates_not_as_separated_numbers(tmp_path):
    """01.03.2024 matched 'numbers written with separators' first: the advice was to write
    them as plain numbers or to separate the columns with semicolons."""
    rows = [f"{i},{1 + i % 28:02d}.{1 + i // 28:02d}.2024,{i % 2}" for i in range(120)]
    path = _write(tmp_path, "a,day,label\n" + "\n".join(rows))
    with pytest.raises(DataError, match=re.escape(
            "100 categories a text feature may have; its values look like dates "
            "('01.01.2024'): write them as numbers")):
        data.load_csv(path, "label")

def test_idx_files_with_trailing_bytes_or_no_idx_magic_are_refused(tmp_path):
    _write_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00\x01\x02")
    with pytest.raises(DataError, match=re.escape(
            f"mnist train labels file '{path}' has trailing bytes: its header declares 12 "
            f"uint8 elements (12 bytes) but 15 bytes follow")):
        data.load_mnist(tmp_path)
    other = tmp_path / "other.bin"
    other.write_bytes(b"PK\x08\x01" + (3).to_bytes(4, "big") + b"abc")  # byte 2 a type code
    with pytest.raises(DataError, match=re.escape(
            f"IDX file '{other}': wrong IDX magic number 0x504b0801 (not an IDX file)")):
        data.read_idx(other)


def test_mnist_test_images_of_another_shape_are_refused(tmp_path):
    """4x3 training and 3x4 test images both flatten to 12 pixels: refused, not mixed."""
    _write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    data.write_idx(path, np.zeros((5, 3, 4), np.uint8))
    with pytest.raises(DataError, match=re.escape(
            f"mnist: train images are 4×3 but test images file '{path}' holds 3×4 images")):
        data.load_mnist(tmp_path)


def test_mnist_gzip_is_known_by_its_bytes_not_its_name_and_load_takes_n(tmp_path):
    arrays = _write_mnist(tmp_path / "plain")
    (tmp_path / "named").mkdir()
    for name, array in arrays.items():  # gzipped, under the plain names
        data.write_idx(tmp_path / "named" / (name + ".gz"), array)
        (tmp_path / "named" / (name + ".gz")).rename(tmp_path / "named" / name)
    assert (tmp_path / "named" / "train-images-idx3-ubyte").read_bytes()[:2] == b"\x1f\x8b"
    plain = data.load_mnist(tmp_path / "plain", standardize=False)
    named = data.load_mnist(tmp_path / "named", standardize=False)
    np.testing.assert_array_equal(named.x_train, plain.x_train)
    np.testing.assert_array_equal(named.y_test, plain.y_test)
    with pytest.warns(data.DataWarning, match="no training example has"):
        first = data.load("mnist", data_dir=str(tmp_path / "plain"), n=7, standardize=False)
    assert first.n_train == 7
    np.testing.assert_array_equal(first.y_train, arrays["train-labels-idx1-ubyte"][:7])


def test_images_are_resized_bilinearly(tmp_path):
    """Pillow's bilinear filter, as the module docstring says: a 2x2 image made 4x4 gets
    values between its own (nearest-neighbour would repeat its four)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (4, 2, 2), dtype=np.uint8)
    _write_images(tmp_path, arrays, ["a", "b"] * 2)
    ds = data.load("images", data_dir=str(tmp_path), size=(4, 4), standardize=False)
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    for row, path in zip(np.r_[ds.x_train, ds.x_test], files):
        source = arrays[int(path[-8:-4])]
        expected = np.asarray(Image.fromarray(source).resize((4, 4), Image.Resampling.BILINEAR))
        np.testing.assert_allclose(row, expected.reshape(-1) / 255.0, rtol=1e-6)
        assert len(np.unique(row)) > len(np.unique(source))


def test_float_images_share_the_folders_largest_value_as_their_scale(tmp_path):
    """Float grey images with values up to 4000: every one is x / 4000, the folder's
    largest value, though the image that holds it is read first (train/ before test/)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = rng.uniform(0, 1000, (6, 3, 3)).astype(np.float32)
    arrays[0, 1, 1] = 4000.0
    for j, a in enumerate(arrays):
        folder = tmp_path / ("train" if j < 4 else "test") / "ab"[j % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a, "F").save(folder / f"{j}.tif")
    ds = data.load("images", data_dir=str(tmp_path), standardize=False)
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    assert files[0].endswith("0.tif")
    for row, path in zip(np.r_[ds.x_train, ds.x_test], files):
        np.testing.assert_allclose(row, arrays[int(path[-5])].reshape(-1) / 4000.0, rtol=1e-6)


@pytest.mark.parametrize("held_out", ["valid", "validation"])
def test_valid_and_validation_folders_are_the_held_out_split(tmp_path, held_out):
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (10, 4, 4), dtype=np.uint8)
    for split, rows in (("train", range(6)), (held_out, range(6, 10))):
        _write_images(tmp_path / split, grey[list(rows)], [r % 2 for r in rows])
    ds = data.load("images", data_dir=str(tmp_path), standardize=False)
    assert ds.info["split"] == f"the folders' own (train/, {held_out}/)"
    assert (ds.n_train, ds.n_test) == (6, 4)


def test_image_classes_are_in_sorted_order_upper_case_first(tmp_path):
    """Sorted as Python (and torchvision's ImageFolder) sorts names: 'C' before 'a'."""
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (6, 3, 3), dtype=np.uint8)
    _write_images(tmp_path, arrays, ["b", "C", "a"] * 2)
    ds = data.load("images", data_dir=str(tmp_path))
    assert ds.info["class_names"] == ("C", "a", "b")
    files = ds.info["files"]["train"]
    names = np.array(ds.info["class_names"])
    np.testing.assert_array_equal(names[ds.y_train], [p.split("/")[-2] for p in files])


def test_one_bit_images_are_grey(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    bits = rng.random((6, 4, 5)) > 0.5
    for i, b in enumerate(bits):
        (tmp_path / "ab"[i % 2]).mkdir(exist_ok=True)
        image = Image.fromarray(b)  # a bool array: mode "1"
        assert image.mode == "1"
        image.save(tmp_path / "ab"[i % 2] / f"{i:04d}.png")
    ds = data.load("images", data_dir=str(tmp_path), standardize=False)
    assert ds.image_shape == (4, 5, 1)
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    for row, path in zip(np.r_[ds.x_train, ds.x_test], files):
        np.testing.assert_array_equal(row, bits[int(path[-8:-4])].reshape(-1).astype(np.float32))


def test_dot_files_in_class_folders_are_ignored(tmp_path):
    """macOS writes '._name.png' (AppleDouble) beside each picture copied to some disks:
    names starting with a dot are not images."""
    rng = np.random.default_rng(0)
    _write_images(tmp_path, rng.integers(0, 256, (6, 3, 3), dtype=np.uint8), ["a", "b"] * 3)
    (tmp_path / "a" / "._0000.png").write_bytes(b"\x00\x05\x16\x07 not a png")
    ds = data.load("images", data_dir=str(tmp_path))
    assert ds.n_train + ds.n_test == 6


def test_macos_zip_metadata_folders_are_ignored(tmp_path):
    """A zip made on macOS unpacks a '__MACOSX' folder of '._name' files beside the class
    folders (and inside them): it was taken for a class folder and refused."""
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (6, 3, 3), dtype=np.uint8)
    _write_images(tmp_path, arrays, ["a", "b"] * 3)
    for folder in (tmp_path / "__MACOSX" / "a", tmp_path / "b" / "__MACOSX"):
        folder.mkdir(parents=True)
        (folder / "._0000.png").write_bytes(b"\x00\x05\x16\x07 not a png")
        (folder / "0001.png").write_bytes(b"\x00\x05\x16\x07 not a png either")
    ds = data.load("images", data_dir=str(tmp_path), standardize=False)
    assert ds.info["class_names"] == ("a", "b") and "warnings" not in ds.info
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    assert sorted(os.path.basename(f) for f in files) == [f"{i:04d}.png" for i in range(6)]
    for row, path in zip(np.r_[ds.x_train, ds.x_test], files):
        np.testing.assert_allclose(row, arrays[int(path[-8:-4])].reshape(-1) / 255, rtol=1e-6)
    shape = data.preview_images(str(tmp_path))
    assert (shape.n_train, shape.n_test, shape.num_classes) == (ds.n_train, ds.n_test, 2)


def test_only_the_first_frame_of_animations_and_page_stacks_is_read_and_said(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    firsts = rng.integers(0, 256, (4, 5, 6), dtype=np.uint8)
    for i, first in enumerate(firsts):
        folder = tmp_path / "ab"[i % 2]
        folder.mkdir(exist_ok=True)
        later = [Image.fromarray(255 - first, "L"), Image.fromarray(first // 2, "L")]
        Image.fromarray(first, "L").save(folder / f"{i}.tif", save_all=True,
                                         append_images=later[: 1 + i % 2])
    with pytest.warns(data.DataWarning, match=re.escape(
            f"images: 4 of 4 images hold several frames or pages (first "
            f"'{tmp_path / 'a' / '0.tif'}', of 2); only the first of each is read")):
        ds = data.load("images", data_dir=str(tmp_path), standardize=False)
    files = ds.info["files"]["train"] + ds.info["files"]["test"]
    for row, path in zip(np.r_[ds.x_train, ds.x_test], files):
        np.testing.assert_allclose(row, firsts[int(path[-5])].reshape(-1) / 255, rtol=1e-6)
    # a single-frame folder says nothing
    _write_images(tmp_path / "single", firsts, ["a", "b"] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "warnings" not in data.load("images", data_dir=str(tmp_path / "single")).info


def test_a_grey_image_with_a_transparent_colour_is_named_in_a_warning(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for j in range(4):
        a = np.full((4, 4), 200, np.uint8)
        a[1, 1] = 0
        Image.fromarray(a, "L").save(tmp_path / "ab"[j % 2] / f"{j}.png", transparency=0)
    with pytest.warns(data.DataWarning, match=r"images: 4 of 4 images have transparent pixels"):
        data.load("images", data_dir=str(tmp_path))


def test_generated_points_depend_on_the_seed_and_spirals_follow_their_rule():
    """Moons: the points themselves (not only the split) change with the seed. Spirals
    without noise: arm k's point at radius r lies at angle 2πk/arms + 4r."""
    def rows(ds):
        return np.sort(np.r_[ds.x_train, ds.x_test], axis=0)

    a, b = (data.load("moons", seed=s, standardize=False) for s in (0, 1))
    assert not np.allclose(rows(a), rows(b))
    ds = data.load_spirals(noise=0.0, standardize=False)
    x = np.r_[ds.x_train, ds.x_test].astype(np.float64)
    y = np.r_[ds.y_train, ds.y_test]
    r = np.hypot(x[:, 0], x[:, 1])
    assert r.max() <= 1.0 + 1e-6
    off = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - 2 * np.pi * y / 3 - 4 * r)))
    assert np.abs(off).max() < 1e-4


@pytest.mark.parametrize("bad, needle", [
    (2.5, r"class label 2\.5: class labels must be whole numbers"),
    (-0.5, r"class label -0\.5: class labels must be whole numbers"),
    (2**32, r"class label 4294967296, outside 0\.\.2"),
    (-1, r"class label -1, outside 0\.\.2"),
])
def test_from_arrays_refuses_class_labels_int32_would_change(bad, needle):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3))
    y = np.resize(np.array([0, 1, 2]), 20).astype(np.asarray(bad).dtype)
    good = data.from_arrays("mine", x, y, task="classification", num_classes=3)
    np.testing.assert_array_equal(np.concatenate([good.y_train, good.y_test]),
                                  np.concatenate([y[good.info["train_index"]],
                                                  y[good.info["test_index"]]]))
    for row in (good.info["train_index"][0], good.info["test_index"][0]):  # either split
        y_bad = y.copy()
        y_bad[row] = bad
        with pytest.raises(DataError, match=r"data set 'mine' y_(train|test) holds the " + needle):
            data.from_arrays("mine", x, y_bad, task="classification", num_classes=3)
