"""The ``Dataset`` record, the ``DataError`` exception, and the shared split/standardise steps.

Every loader in ``gdlab.data`` ends in :func:`from_arrays` (or :func:`from_split`
when the source fixes the split, as MNIST does), so all data sets obey the same rules:

- **split**: a permutation from ``np.random.default_rng(seed)``; the last
  ``round(N · test_fraction)`` permuted rows (at least one, at most ``N − 1``)
  are the test split, the rest the training split, both in permuted (shuffled)
  order. Same seed, same split.
- **standardise** (``standardize=True``): each feature gets zero mean and unit
  variance using the mean and (population, ``ddof=0``) standard deviation of the
  *training* split only; the same affine map is applied to the test split, so
  the test mean is close to, but not exactly, zero. A constant feature gets
  std 1 (it is only centred). ``info["x_mean"]``, ``info["x_std"]`` (float64)
  record the map: ``x_standardised = (x_raw − x_mean) / x_std``.
- **regression targets** are standardised the same way only when the loader
  asks for it (``standardize_target``); then ``info["y_mean"]``, ``info["y_std"]``
  invert it: ``y_natural = y · y_std + y_mean``.
- **dtypes**: features float32 ``(N, D)``; labels int32 ``(N,)``; regression
  targets float32 ``(N, K)``. Arrays in a ``Dataset`` are read-only.
- NaN or infinite values anywhere raise :class:`DataError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

TASKS = ("classification", "regression")

_CONSTANT_STD = 1e-10
"""A feature whose std is at most this (relative to ``max(1, |mean|)``) counts as constant."""


class DataError(ValueError):
    """Bad data or a bad data argument; the message is one sentence naming the file or argument."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split ready for training.

    ``eq=False``: two data sets compare (and hash) by identity, since comparing
    arrays field by field has no single truth value.
    """

    name: str
    x_train: np.ndarray  # (N_train, D) float32, standardised unless asked otherwise
    y_train: np.ndarray  # (N_train,) int32 labels, or (N_train, K) float32 targets
    x_test: np.ndarray  # (N_test, D) float32, same map as x_train
    y_test: np.ndarray  # (N_test,) int32 or (N_test, K) float32
    task: str  # "classification" or "regression"
    num_classes: int  # 0 for regression
    feature_names: tuple[str, ...] = ()
    info: dict = dataclasses.field(default_factory=dict)  # stats, true coefficients, mappings

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"Dataset {self.name!r}: task {self.task!r} is not one of {TASKS}")
        y_dtype = np.int32 if self.task == "classification" else np.float32
        for field, dtype in (("x_train", np.float32), ("x_test", np.float32),
                             ("y_train", y_dtype), ("y_test", y_dtype)):
            value = np.asarray(getattr(self, field), dtype).view()
            value.setflags(write=False)  # a read-only view; the caller's array is untouched
            object.__setattr__(self, field, value)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        x_tr, y_tr, x_te, y_te = self.x_train, self.y_train, self.x_test, self.y_test
        if x_tr.ndim != 2 or x_te.ndim != 2 or x_tr.shape[1] != x_te.shape[1]:
            raise ValueError(f"Dataset {self.name!r}: features must be (N, D) with the same D "
                             f"in both splits, got {x_tr.shape} and {x_te.shape}")
        if len(y_tr) != len(x_tr) or len(y_te) != len(x_te):
            raise ValueError(f"Dataset {self.name!r}: {len(x_tr)}/{len(x_te)} feature rows but "
                             f"{len(y_tr)}/{len(y_te)} targets in train/test")
        if self.feature_names and len(self.feature_names) != x_tr.shape[1]:
            raise ValueError(f"Dataset {self.name!r}: {len(self.feature_names)} feature names "
                             f"for {x_tr.shape[1]} features")
        if self.task == "classification":
            if y_tr.ndim != 1 or y_te.ndim != 1:
                raise ValueError(f"Dataset {self.name!r}: labels must be (N,), "
                                 f"got {y_tr.shape} and {y_te.shape}")
            if self.num_classes < 2:
                raise ValueError(f"Dataset {self.name!r}: classification needs num_classes >= 2, "
                                 f"got {self.num_classes}")
            for y in (y_tr, y_te):
                if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                    raise ValueError(f"Dataset {self.name!r}: labels must lie in "
                                     f"0..{self.num_classes - 1}")
        else:
            if y_tr.ndim != 2 or y_te.ndim != 2 or y_tr.shape[1] != y_te.shape[1]:
                raise ValueError(f"Dataset {self.name!r}: regression targets must be (N, K), "
                                 f"got {y_tr.shape} and {y_te.shape}")
            if self.num_classes != 0:
                raise ValueError(f"Dataset {self.name!r}: regression needs num_classes = 0")
        for field in ("x_train", "y_train", "x_test", "y_test"):
            check_finite(getattr(self, field), f"data set {self.name!r} {field}")

    @property
    def input_dim(self) -> int:
        """Number of features D."""
        return int(self.x_train.shape[1])

    @property
    def num_outputs(self) -> int:
        """Width of a model's output: ``num_classes`` (classification) or the target dim."""
        if self.task == "classification":
            return self.num_classes
        return int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])


def check_finite(array: np.ndarray, what: str) -> None:
    """Raise ``DataError("<what> contains NaN values")`` (or infinite values) when needed."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return
    if np.isnan(array).any():
        raise DataError(f"{what} contains NaN values")
    if np.isinf(array).any():
        raise DataError(f"{what} contains infinite values")


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_test_fraction(test_fraction: Any) -> float:
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float))
            or not 0.0 < test_fraction < 1.0):
        raise DataError(f"test_fraction must be a number strictly between 0 and 1, "
                        f"got {test_fraction!r}")
    return float(test_fraction)


def split_indices(n: int, *, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``(train_idx, test_idx)`` for ``n`` rows, cut from one seeded permutation."""
    seed = check_seed(seed)
    test_fraction = check_test_fraction(test_fraction)
    if n < 2:
        raise DataError(f"a train/test split needs at least 2 rows, got {n}")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n - n_test], perm[n - n_test:]


def fit_standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``(mean, std)`` in float64; constant columns get std 1."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    constant = std <= _CONSTANT_STD * np.maximum(1.0, np.abs(mean))
    return mean, np.where(constant, 1.0, std)


def from_split(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    task: str,
    num_classes: int = 0,
    standardize: bool = True,
    standardize_target: bool = False,
    feature_names: tuple[str, ...] = (),
    info: dict | None = None,
) -> Dataset:
    """Standardise an already split data set (stats from train only) and wrap it in a ``Dataset``.

    ``y`` may be 1-D for regression; it becomes ``(N, 1)``.
    """
    info = dict(info or {})
    for array, what in ((x_train, "x_train"), (y_train, "y_train"),
                        (x_test, "x_test"), (y_test, "y_test")):
        check_finite(array, f"data set {name!r} {what}")
    x_train = np.array(x_train, np.float64)  # a copy: the in-place steps below never touch
    x_test = np.array(x_test, np.float64)  # the caller's arrays
    if standardize:
        mean, std = fit_standardizer(x_train)
        for x in (x_train, x_test):
            x -= mean
            x /= std
        info["x_mean"], info["x_std"] = mean, std
    if task == "regression":
        y_train = np.asarray(y_train, np.float64)
        y_test = np.asarray(y_test, np.float64)
        if y_train.ndim == 1:
            y_train, y_test = y_train[:, None], y_test[:, None]
        if standardize_target:
            y_mean, y_std = fit_standardizer(y_train)
            y_train = (y_train - y_mean) / y_std
            y_test = (y_test - y_mean) / y_std
            info["y_mean"], info["y_std"] = y_mean, y_std
        y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
    else:
        y_train, y_test = np.asarray(y_train, np.int32), np.asarray(y_test, np.int32)
    return Dataset(
        name=name,
        x_train=x_train.astype(np.float32),
        y_train=y_train,
        x_test=x_test.astype(np.float32),
        y_test=y_test,
        task=task,
        num_classes=num_classes if task == "classification" else 0,
        feature_names=tuple(feature_names),
        info=info,
    )


def from_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    num_classes: int = 0,
    seed: int = 0,
    test_fraction: float = 0.2,
    standardize: bool = True,
    standardize_target: bool = False,
    feature_names: tuple[str, ...] = (),
    info: dict | None = None,
) -> Dataset:
    """Split ``(x, y)`` by ``seed`` (see the module docstring), standardise, wrap in a ``Dataset``.

    ``info`` gains ``seed``, ``test_fraction``, ``train_index`` and ``test_index``
    (row numbers into ``x``).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or len(y) != len(x):
        raise ValueError(f"data set {name!r}: x must be (N, D) and y have N rows, "
                         f"got {x.shape} and {y.shape}")
    train_idx, test_idx = split_indices(len(x), seed=seed, test_fraction=test_fraction)
    info = dict(info or {})
    info.update(seed=int(seed), test_fraction=float(test_fraction),
                train_index=train_idx, test_index=test_idx)
    return from_split(
        name, x[train_idx], y[train_idx], x[test_idx], y[test_idx],
        task=task, num_classes=num_classes, standardize=standardize,
        standardize_target=standardize_target, feature_names=feature_names, info=info,
    )


def describe(ds: Dataset) -> str:
    """One line: name, task, split sizes, input dim, classes or outputs."""
    if ds.task == "classification":
        tail = f"{ds.num_classes} classes"
    else:
        tail = f"{ds.num_outputs} output{'s' if ds.num_outputs != 1 else ''}"
    return (f"{ds.name}: {ds.task}, {ds.n_train} train / {ds.n_test} test, "
            f"{ds.input_dim} features, {tail}")
