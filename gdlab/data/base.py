"""The ``Dataset`` record, the ``DataError`` exception, and the shared split/standardise steps.

Every loader in ``gdlab.data`` ends in :func:`from_arrays` (or :func:`from_split`
when the source fixes the split, as MNIST does), so all data sets obey the same rules:

- **split**: a permutation from ``np.random.default_rng(seed)``; the last
  ``round(N · test_fraction)`` permuted rows (at least one, at most ``N − 1``)
  are the test split, the rest the training split, both in permuted (shuffled)
  order. Same seed, same split.
- **standardise** (``standardize=True``, i.e. ``"per_feature"``, for tables): each
  feature gets zero mean and unit variance using the mean and (population,
  ``ddof=0``) standard deviation of the *training* split only; the same affine
  map is applied to the test split. A constant feature gets std 1 (it is only
  centred). A column whose standard deviation is tiny next to its spread (mostly
  one value, rare large ones) would turn those rare values into features of
  dozens of standard deviations: its scale is floored at max|x − mean| / 10 over
  the training split, so no training feature exceeds 10 in absolute value, and a
  ``DataWarning`` names the floored columns. ``info["x_mean"]``, ``info["x_std"]``
  (float64) record the map: ``x_standardised = (x_raw − x_mean) / x_std``. A loader
  may keep some columns as they are (``unscaled``: a CSV's 0/1 one-hot indicators of
  a text column): mean 0 and scale 1 in that map.
- **images** (``"global"``, the default of digits and mnist): one mean and one
  standard deviation over all training pixels, the same for every pixel, so a
  rare stroke in an almost-always-blank border pixel stays an ordinary value.
  ``"per_pixel"`` standardises every pixel on its own, without a floor.
- A feature beyond 50 in absolute value after scaling, in either split, gets a
  one-line ``DataWarning`` naming its columns; ``info["max_abs_x_train"]`` and
  ``info["max_abs_x_test"]`` record the largest |x| of each split.
- **regression targets** are standardised the same way only when the loader
  asks for it (``standardize_target``); then ``info["y_mean"]``, ``info["y_std"]``
  invert it: ``y_natural = y · y_std + y_mean``.
- **dtypes**: features float32 ``(N, D)``; labels int32 ``(N,)``; regression
  targets float32 ``(N, K)``. Arrays in a ``Dataset`` are read-only.
- **shapes**: a model that needs structure gets it from the same data: images
  as ``(N, H, W, C)`` float32 (:func:`as_images`), token sequences as int32 ids
  ``(N, T)`` with per-token labels ``(N, T)`` (``gdlab.data.sequences``).
- NaN or infinite values anywhere raise :class:`DataError`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

TASKS = ("classification", "regression")

_CONSTANT_STD = 1e-10
"""A feature whose std is at most this (or a few float64 steps of its mean) counts as constant."""

SCALINGS = ("per_feature", "per_pixel", "global", "none")
"""How ``from_split`` scales features (see the module docstring)."""

MAX_TRAIN_Z = 10.0
"""per_feature: the scale floor keeps every training feature within ±MAX_TRAIN_Z."""

WARN_Z = 50.0
"""A scaled feature beyond ±WARN_Z in either split is warned about."""


class DataWarning(UserWarning):
    """Data that load but deserve a look (extreme features, floored scales): one sentence."""


class DataError(ValueError):
    """Bad data or a bad data argument; the message is one sentence naming the file or argument."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split ready for training.

    ``eq=False``: two data sets compare (and hash) by identity, since comparing
    arrays field by field has no single truth value.
    """

    name: str
    x_train: np.ndarray  # (N_train, D) float32 standardised, (N, H, W, C) images, or (N, T) int32 ids
    y_train: np.ndarray  # (N_train,) int32 labels, (N_train, T) per-token labels, or (N_train, K) float32
    x_test: np.ndarray  # (N_test, ...) like x_train, same map
    y_test: np.ndarray  # (N_test, ...) like y_train
    task: str  # "classification" or "regression"
    num_classes: int  # 0 for regression
    feature_names: tuple[str, ...] = ()
    info: dict = dataclasses.field(default_factory=dict)  # stats, true coefficients, mappings

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"Dataset {self.name!r}: task {self.task!r} is not one of {TASKS}")
        y_dtype = np.int32 if self.task == "classification" else np.float32
        x_dtype = (np.int32 if np.issubdtype(np.asarray(self.x_train).dtype, np.integer)
                   else np.float32)  # token ids stay integers
        for field, dtype in (("x_train", x_dtype), ("x_test", x_dtype),
                             ("y_train", y_dtype), ("y_test", y_dtype)):
            value = np.asarray(getattr(self, field), dtype).view()
            value.setflags(write=False)  # a read-only view; the caller's array is untouched
            object.__setattr__(self, field, value)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        x_tr, y_tr, x_te, y_te = self.x_train, self.y_train, self.x_test, self.y_test
        if x_tr.ndim < 2 or x_tr.shape[1:] != x_te.shape[1:]:
            raise ValueError(f"Dataset {self.name!r}: features must be (N, D) (or (N, ...) of "
                             f"one example shape) alike in both splits, got {x_tr.shape} and "
                             f"{x_te.shape}")
        if len(y_tr) != len(x_tr) or len(y_te) != len(x_te):
            raise ValueError(f"Dataset {self.name!r}: {len(x_tr)}/{len(x_te)} feature rows but "
                             f"{len(y_tr)}/{len(y_te)} targets in train/test")
        if self.feature_names and len(self.feature_names) != self.input_dim:
            raise ValueError(f"Dataset {self.name!r}: {len(self.feature_names)} feature names "
                             f"for {self.input_dim} features")
        if self.task == "classification":
            if y_tr.ndim not in (1, 2) or y_tr.shape[1:] != y_te.shape[1:]:
                raise ValueError(f"Dataset {self.name!r}: labels must be (N,) or per token "
                                 f"(N, T), got {y_tr.shape} and {y_te.shape}")
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
        """Number of features D (values per example: H·W·C for images, T for sequences)."""
        return int(np.prod(self.x_train.shape[1:]))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape: ``(D,)``, ``(H, W, C)`` or ``(T,)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        """Width of a model's output: ``num_classes`` (classification) or the target dim."""
        if self.task == "classification":
            return self.num_classes
        return int(self.y_train.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(H, W, C)`` when the examples are images (as loaded or flattened), else None."""
        if self.x_train.ndim == 4:
            return tuple(int(d) for d in self.x_train.shape[1:])
        shape = self.info.get("image_shape")
        if shape is None:
            return None
        shape = tuple(int(d) for d in shape)
        return shape if len(shape) == 3 else (*shape, 1)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def x_dtype(self) -> np.dtype:
        """The inputs' dtype: float32, or int32 token ids."""
        return self.x_train.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the four arrays."""
        return sum(a.nbytes for a in (self.x_train, self.y_train, self.x_test, self.y_test))


@dataclasses.dataclass(frozen=True)
class DataShape:
    """A classification data set's shapes before it is read (``images.preview_images``):
    the properties of the ``Dataset`` loading would give that a program sizes a run by
    (model, batch, memory), without the arrays."""

    name: str
    task: str
    num_classes: int
    n_train: int
    n_test: int
    input_shape: tuple[int, ...]  # one example's shape: (H·W·C,) as loaded, (H, W, C) as images
    image_shape: tuple[int, int, int] | None = None  # (H, W, C) of image data

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    @property
    def x_dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays loading would give: float32 inputs, int32 labels."""
        return (self.n_train + self.n_test) * (4 * self.input_dim + 4)


MAX_INFERRED_CLASSES = 20
"""A numeric target of integers with at most this many distinct values is taken for labels."""

WARN_CLASSES_UP_TO = 1000
"""A target of more integers than ``MAX_INFERRED_CLASSES``, up to this many distinct ones,
is read as a regression target with a warning: they may be classes (26 letters, 100
object kinds)."""


def note(info: dict, text: str) -> None:
    """Report ``text`` as a ``DataWarning`` and keep it in ``info["warnings"]``."""
    import warnings

    info["warnings"] = (*info.get("warnings", ()), text)
    warnings.warn(DataWarning(text), stacklevel=3)


def numeric_task(y: np.ndarray, task: str | None, info: dict | None = None,
                 what: str = "y") -> tuple[str, np.ndarray, int | None]:
    """``(task, distinct, bad)`` for a numeric target ``y`` (N,): with ``task=None``,
    classification when ``y`` holds only integers with at most ``MAX_INFERRED_CLASSES``
    distinct values, regression otherwise; ``distinct`` its sorted distinct values (class
    ``k`` is ``distinct[k]``); ``bad`` the index of the first non-integer label when
    classification is asked of a target that has one (the loader says where it is).
    Integers inferred to be a regression target, up to ``WARN_CLASSES_UP_TO`` distinct
    ones, are a ``note`` in ``info`` (``what`` names the target). A DataError for float
    class labels of 2⁵³ or more, which floating point cannot keep apart."""
    distinct = np.unique(y)
    integral = bool(np.all(distinct == np.round(distinct)))
    if task is None:
        task = ("classification" if integral and len(distinct) <= MAX_INFERRED_CLASSES
                else "regression")
        if integral and task == "regression" and len(distinct) <= WARN_CLASSES_UP_TO:
            note(info if info is not None else {},
                 f"{what} holds {len(distinct)} distinct whole numbers ({distinct[0]:g} to "
                 f"{distinct[-1]:g}), read as a regression target (classes are inferred for at "
                 f"most {MAX_INFERRED_CLASSES}); if they are classes, pass "
                 f"--task=classification (task='classification')")
    bad = None
    if task == "classification" and not integral:
        bad = int(np.flatnonzero(y != np.round(y))[0])
    elif (task == "classification" and np.issubdtype(distinct.dtype, np.floating)
          and np.abs(distinct).max() >= 2**53):
        label = distinct[np.argmax(np.abs(distinct))]
        raise DataError(f"{what} holds the class label {label:.0f}: from 2^53 "
                        f"on, neighbouring whole numbers read as floating point become one, so "
                        f"classes would merge; give the labels as smaller numbers or as text")
    return task, distinct, bad


def check_finite(array: np.ndarray, what: str) -> None:
    """Raise ``DataError("<what> contains NaN values")`` (or infinite values) when needed,
    and for complex numbers, whose imaginary part float casts would drop without a word."""
    array = np.asarray(array)
    if np.iscomplexobj(array):
        raise DataError(f"{what} holds complex numbers ({array.dtype}); real numbers are needed")
    if not np.issubdtype(array.dtype, np.floating):
        return
    if np.isnan(array).any():
        raise DataError(f"{what} contains NaN values")
    if np.isinf(array).any():
        raise DataError(f"{what} contains infinite values")


def check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    """A DataError unless ``labels`` are whole numbers in 0..num_classes−1 (the range is
    checked for ``num_classes`` ≥ 2): they become int32, which would truncate 2.5 to 2
    and wrap 2³² to 0 without a word."""
    if not labels.size or not (np.issubdtype(labels.dtype, np.number)
                               or labels.dtype == bool):
        return
    if np.issubdtype(labels.dtype, np.inexact):
        fractional = labels != np.round(labels)
        if fractional.any():
            raise DataError(f"{what} holds the class label {labels[fractional].flat[0].item()!r}: "
                            f"class labels must be whole numbers")
    if num_classes >= 2:
        outside = (labels < 0) | (labels >= num_classes)
        if outside.any():
            raise DataError(f"{what} holds the class label {labels[outside].flat[0].item()!r}, "
                            f"outside 0..{num_classes - 1} (num_classes={num_classes})")


def check_file(path: str, where: str) -> None:
    """A DataError ``"<where> does not exist"`` (or is a folder) unless ``path`` is a file."""
    if not os.path.exists(path):
        raise DataError(f"{where} does not exist")
    if os.path.isdir(path):
        raise DataError(f"{where} is a folder, not a file")


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
    shift = x[:1] if len(x) else 0.0  # about a row of its own: no digits lost to an offset
    std = (x - shift).std(axis=0)
    mean = x.mean(axis=0)
    return mean, np.where(_constant(mean, std), 1.0, std)


def _constant(mean, std):
    """Whether columns of this ``mean`` and ``std`` are constant: a std below
    ``_CONSTANT_STD``, or within a few float64 steps of the mean (rounding in the mean, not
    data). A column at 1e15 whose values differ by 1..199 is not constant."""
    return std <= np.maximum(_CONSTANT_STD, 16 * np.spacing(np.abs(mean)))


def _columns(names, mask, feature_names) -> str:
    idx = np.flatnonzero(mask)
    shown = [feature_names[i] if feature_names else str(i) for i in idx[:5]]
    return ", ".join(shown) + (f" and {len(idx) - 5} more" if len(idx) > 5 else "")


def fit_scaler(x_train: np.ndarray, mode: str,
               unscaled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, scale, floored)`` for ``mode`` in ``SCALINGS`` (float64; ``floored`` marks the
    per_feature columns whose scale was raised to max|x − mean| / MAX_TRAIN_Z). The columns
    ``unscaled`` marks (a boolean mask) get mean 0 and scale 1: they are kept as they are."""
    x = np.asarray(x_train, np.float64)
    d = x.shape[1] if x.ndim > 1 else 1
    floored = np.zeros(d, bool)
    if mode == "none":
        mean, scale = np.zeros(d), np.ones(d)
    elif mode == "global":
        m, std = float(x.mean()), float(x.std())
        scale = 1.0 if _constant(m, std) else std
        mean, scale = np.full(d, m), np.full(d, scale)
    else:
        mean, scale = fit_standardizer(x)
        if mode == "per_feature":
            with np.errstate(over="ignore", invalid="ignore"):
                floor = np.max(np.abs(x - mean), axis=0) / MAX_TRAIN_Z
            floored = floor > scale * (1 + 1e-12)
            scale = np.where(floored, floor, scale)
    if unscaled is not None:
        keep = np.asarray(unscaled, bool)
        if keep.shape != (d,):
            raise ValueError(f"unscaled marks {keep.shape} columns of data with {d}")
        mean, scale = np.where(keep, 0.0, mean), np.where(keep, 1.0, scale)
        floored = floored & ~keep
    return mean, scale, floored


def _label(value, info: dict) -> str:
    """Class ``value`` (0..K−1) as the user's data names it (``info["label_values"]``)."""
    names = info.get("label_values") or info.get("class_names")
    value = int(value)
    return repr(names[value]) if names is not None and 0 <= value < len(names) else str(value)


def from_split(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    task: str,
    num_classes: int = 0,
    standardize: bool | str = True,
    standardize_target: bool = False,
    feature_names: tuple[str, ...] = (),
    info: dict | None = None,
    unscaled: np.ndarray | None = None,
) -> Dataset:
    """Scale an already split data set (stats from train only) and wrap it in a ``Dataset``.

    ``standardize`` is one of ``SCALINGS`` (True means ``"per_feature"``, False
    ``"none"``; see the module docstring). ``unscaled``, a boolean mask over the
    features of ``(N, D)`` data, marks columns kept as they are whatever the scaling
    (0/1 indicators of a category: mean 0, scale 1 in ``info``). ``y`` may be 1-D for
    regression; it becomes ``(N, 1)``. Extreme features and floored scales are reported
    as ``DataWarning``s, and listed in ``info["warnings"]``.
    """
    mode = {True: "per_feature", False: "none"}.get(standardize, standardize)
    if mode not in SCALINGS:
        raise DataError(f"data set {name!r}: unknown scaling {standardize!r}; choose one of: "
                        f"{', '.join(SCALINGS)}")
    info = dict(info or {})
    source = info.get("source")  # a path, or one per file (MNIST's): name their folder
    if isinstance(source, dict) and source:
        source = os.path.dirname(next(iter(source.values())))
    where = f"data set {name!r}" + (f" ('{source}')" if isinstance(source, str) else "")
    for array, what in ((x_train, "x_train"), (y_train, "y_train"),
                        (x_test, "x_test"), (y_test, "y_test")):
        check_finite(array, f"{where} {what}")
    if len(x_train) == 0 or len(x_test) == 0:
        raise DataError(f"{where}: the training and test splits need an example each, got "
                        f"{len(x_train)} and {len(x_test)}")
    if np.asarray(x_train)[0].size == 0:
        raise DataError(f"{where}: its examples {tuple(np.shape(x_train)[1:])} hold no values")
    if task == "classification":
        for labels, what in ((y_train, "y_train"), (y_test, "y_test")):
            check_labels(np.asarray(labels), num_classes, f"{where} {what}")
        seen = np.unique(np.asarray(y_train))
        if len(seen) < 2:
            raise DataError(f"{where}: every training example has the same label "
                            f"({_label(seen[0], info)}); classification needs at least 2 "
                            f"classes in the training split")
    if np.issubdtype(np.asarray(x_train).dtype, np.integer):  # token ids: kept as they are
        if mode != "none":
            raise DataError(f"data set {name!r}: integer token ids cannot be standardised; "
                            "pass standardize=False")
        x_train, x_test = np.asarray(x_train, np.int32), np.asarray(x_test, np.int32)
    else:
        x_train = np.array(x_train, np.float64)  # a copy: the in-place steps below never touch
        x_test = np.array(x_test, np.float64)  # the caller's arrays
    notes = []
    if mode != "none":
        flat_train = x_train.reshape(len(x_train), -1)
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std, floored = fit_scaler(flat_train, mode, unscaled)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise DataError(f"{where}: the values are too large to standardise (their mean or "
                            f"variance overflows float64); rescale them")
        mean, std = mean.reshape(x_train.shape[1:]), std.reshape(x_train.shape[1:])
        for x in (x_train, x_test):
            x -= mean
            x /= std
        one_map = mode == "global" and (unscaled is None or not np.any(unscaled))
        info["x_mean"], info["x_std"] = (mean, std) if not one_map else (
            float(mean.flat[0]), float(std.flat[0]))
        info["scaling"] = mode
        if floored.any():
            notes.append(f"{name}: {int(floored.sum())} columns are mostly one value with rare "
                         f"large ones; their scale is floored at max|x - mean|/{MAX_TRAIN_Z:g} so "
                         f"no training feature exceeds {MAX_TRAIN_Z:g}: "
                         f"{_columns(name, floored, feature_names)}")
    if x_train.dtype != np.int32:
        for split, x in (("train", x_train), ("test", x_test)):
            flat = np.abs(x.reshape(len(x), -1))
            info[f"max_abs_x_{split}"] = float(flat.max()) if flat.size else 0.0
            if mode == "none" or not flat.size:  # raw values: their scale is the user's choice
                continue
            extreme = flat.max(axis=0) > WARN_Z
            if extreme.any():
                notes.append(f"{name}: {int(extreme.sum())} features of the {split} split lie "
                             f"beyond {WARN_Z:g} after scaling (largest |x| "
                             f"{info[f'max_abs_x_{split}']:.3g}): "
                             f"{_columns(name, extreme, feature_names)}; training may diverge")
    if task == "classification":
        unseen = np.setdiff1d(np.unique(np.asarray(y_test)), np.unique(np.asarray(y_train)))
        if unseen.size:
            count = int(np.isin(np.asarray(y_test), unseen).sum())
            notes.append(f"{name}: {count} test examples belong to {unseen.size} classes that no "
                         f"training example has ({', '.join(_label(v, info) for v in unseen[:5])}"
                         f"{', …' if unseen.size > 5 else ''}); the model cannot learn them")
    for text in notes:  # after the loader's own
        note(info, text)
    if task == "regression":
        y_train = np.asarray(y_train, np.float64)
        y_test = np.asarray(y_test, np.float64)
        largest = max(np.abs(y_train).max(initial=0.0), np.abs(y_test).max(initial=0.0))
        if y_train.ndim == 1:
            y_train, y_test = y_train[:, None], y_test[:, None]
        if standardize_target:
            with np.errstate(over="ignore", invalid="ignore"):
                y_mean, y_std = fit_standardizer(y_train)
            if not (np.isfinite(y_mean).all() and np.isfinite(y_std).all()):
                raise DataError(f"{where}: the targets are too large to standardise (their mean "
                                f"or variance overflows float64); rescale them")
            y_train = (y_train - y_mean) / y_std
            y_test = (y_test - y_mean) / y_std
            info["y_mean"], info["y_std"] = y_mean, y_std
        if largest > np.finfo(np.float32).max:  # standardisable, but not to train and report
            raise DataError(f"{where}: targets as large as {largest:.3g} overflow float32, the "
                            f"training dtype (largest {np.finfo(np.float32).max:.3g}), in which "
                            f"the RMSE is reported in their units; rescale them")
        with np.errstate(over="ignore"):
            y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
    else:
        y_train, y_test = np.asarray(y_train, np.int32), np.asarray(y_test, np.int32)
    if x_train.dtype != np.int32:
        with np.errstate(over="ignore"):
            x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    for array, what in ((x_train, "features"), (y_train, "targets")):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise DataError(f"{where}: some {what} lie beyond float32's range "
                            f"(±{float(np.finfo(np.float32).max):.3g}) after scaling; rescale them")
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
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
    standardize: bool | str = True,
    standardize_target: bool = False,
    feature_names: tuple[str, ...] = (),
    info: dict | None = None,
    unscaled: np.ndarray | None = None,
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
        unscaled=unscaled,
    )


def as_images(ds: Dataset | DataShape) -> Dataset | DataShape:
    """The same data set with each example as an ``(H, W, C)`` image, for convolutions.

    Flattened pixels (digits, MNIST: ``info["image_shape"]``) are reshaped, nothing
    else changes (a per-pixel standardisation stays per pixel); a ``DataShape`` gets the
    image's shape as its input shape. Raises :class:`DataError` for data that are not
    images.
    """
    shape = ds.image_shape
    if shape is None:
        raise DataError(f"{ds.name} is not image data (each example is {ds.input_shape}); "
                        "convolutions need images such as digits or mnist")
    if isinstance(ds, DataShape):
        return dataclasses.replace(ds, input_shape=tuple(shape))
    if ds.x_train.ndim == 4:
        return ds
    return dataclasses.replace(ds, x_train=ds.x_train.reshape(-1, *shape),
                               x_test=ds.x_test.reshape(-1, *shape))


def describe(ds: Dataset) -> str:
    """One line: name, task, split sizes, input dim, classes or outputs."""
    if ds.task == "classification":
        tail = f"{ds.num_classes} classes"
    else:
        tail = f"{ds.num_outputs} output{'s' if ds.num_outputs != 1 else ''}"
    if ds.x_train.ndim == 2 and not np.issubdtype(ds.x_train.dtype, np.integer):
        inputs = f"{ds.input_dim} features"
    elif np.issubdtype(ds.x_train.dtype, np.integer):
        inputs = f"sequences of {ds.input_shape[0]} tokens"
        tail = f"{ds.num_classes} symbols"
    else:
        inputs = f"{'x'.join(map(str, ds.input_shape))} images"
    return f"{ds.name}: {ds.task}, {ds.n_train} train / {ds.n_test} test, {inputs}, {tail}"
