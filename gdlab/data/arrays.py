"""A user's NumPy arrays (an ``.npz`` file) as a ``Dataset``.

The file (``numpy.savez`` or ``savez_compressed``) holds either ``x`` and ``y``,
which are split by ``seed`` and ``test_fraction`` like every table, or
``x_train``, ``y_train``, ``x_test`` and ``y_test``, a split of its own that is
kept as it is. ``x_val`` and ``y_val`` (or ``_valid``, ``_validation``, as image
folders name theirs) stand for ``x_test`` and ``y_test`` when the file has none, with a
note; a held-out pair the loader does not use (``x_val`` beside ``x_test``, or any
beside ``x`` and ``y``) is named in a note. Other arrays in the file are ignored.

Features: ``x`` of shape ``(N, D)`` is a table, standardised per feature on the
training split (``"per_feature"``, with its scale floor); ``(N, H, W)`` or
``(N, H, W, C)`` are images, flattened to ``(N, H·W·C)`` and normalised with one
mean and std over all training pixels (``"global"``, as MNIST); ``info["image_shape"]``
keeps their shape, so ``as_images`` (and ``--model=cnn``) gets them back. Numbers
only (bool, integer or float); object arrays are refused, nothing is unpickled.

Targets: ``y`` of shape ``(N,)``. With ``task=None`` it holds class labels when
its values are integers with at most ``MAX_INFERRED_CLASSES`` distinct ones
(remapped to ``0..K−1`` in increasing order; ``info["label_values"][k]`` is
class ``k``'s original value), and a regression target otherwise; ``task``
overrides the guess. Labels saved as text (a ``str`` or ``bytes`` array, UTF-8) are read
as a CSV's target column is (``tables``): numbers when every one is a number; else
classes, the distinct labels of both splits in the CSV's order (numbers first, in
increasing order, then words in sorted order; ``info["label_values"][k]`` is class
``k``'s label), a test label that no training one has warned about; a blank label, or
``NaN`` written as text, is an error, and text is no regression target. Object arrays
stay refused (they would need unpickling): ``y.astype(str)`` saves them as text.
``(N, K)`` targets are a K-output regression, unless each row is
one-hot (a single 1, zeros elsewhere, as Keras' ``to_categorical`` writes): those are
the labels of K classes (each row's column of the 1, with a note), but with
``task="regression"``. Rows that look like class probabilities (in [0, 1], summing to 1
within 1e-6, not all one-hot: soft or label-smoothed labels) are a K-output regression
too, with a note that says how to make them labels (``y.argmax(1)``), unless ``task``
is given.
Regression targets are standardised on the training split unless
``standardize_target=False`` (``info["y_mean"]``, ``info["y_std"]`` undo it).

Errors are ``DataError``s of one sentence naming the file and the array.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from gdlab.data.base import (
    TASKS,
    DataError,
    Dataset,
    check_file,
    check_finite,
    from_arrays,
    from_split,
    note,
    numeric_task,
)
from gdlab.data.tables import (MISSING, cell_number, note_case_only, note_numbers_and_words,
                               text_classes)

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")

HELD_OUT = ("test", "val", "valid", "validation")
"""The names of a file's own held-out split beside ``x_train``, ``y_train`` (``x_val``,
``y_val``, ...), the first found taken, as image folders take theirs."""


def _split_keys(names: list[str]) -> tuple[str, ...]:
    """The arrays to read: ``x_train``, ``y_train`` and the first held-out pair of
    ``HELD_OUT`` the file holds, else ``x`` and ``y``."""
    held = next((h for h in HELD_OUT if {f"x_{h}", f"y_{h}"} <= set(names)), None)
    if held is not None and {"x_train", "y_train"} <= set(names):
        return "x_train", "y_train", f"x_{held}", f"y_{held}"
    return "x", "y"


def _read(path: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays ``_split_keys`` names, checked, and the names of every array the file
    holds."""
    where = f"npz file '{path}'"
    check_file(path, where)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataError(f"{where} cannot be read: {e.strerror or e}") from None
    if magic == b"\x93NUMPY":
        raise DataError(f"{where} holds a single array (.npy), not named arrays; save x and y "
                        f"with numpy.savez(path, x=..., y=...)")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{where} is not an .npz archive (the zip file numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            wanted = _split_keys(names)
            missing = [k for k in wanted if k not in names]
            if missing:
                raise DataError(f"{where} holds {', '.join(names) or 'no arrays'}; expected x and "
                                f"y, or {', '.join(SPLIT_KEYS)} (x_val, y_val may stand for "
                                f"x_test, y_test)")
            arrays = {}
            for k in wanted:
                try:
                    arrays[k] = archive[k]
                except ValueError:  # an object array: it would need unpickling
                    raise DataError(f"{where}: array '{k}' holds Python objects; save numbers "
                                    f"(a numeric dtype)" + (
                                        f", or text labels as strings ({k}.astype(str))"
                                        if k.startswith("y") else "")) from None
            arrays = {k: _decoded(where, k, a) for k, a in arrays.items()}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise DataError(f"{where} is not a readable .npz archive ({e})") from None
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray):  # numpy hands back a member that is not .npy as bytes
            raise DataError(f"{where}: member '{k}' is not a NumPy array (.npy); save the file "
                            f"with numpy.savez(path, x=..., y=...)")
        if k.startswith("y") and a.dtype.kind == "U":  # text labels: classes, as a CSV's
            if a.ndim == 0:
                raise DataError(f"{where}: array '{k}' is a scalar; one row per example is "
                                f"needed")
            continue
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise DataError(f"{where}: array '{k}' has dtype {a.dtype}; numbers are needed")
        if np.iscomplexobj(a):
            raise DataError(f"{where}: array '{k}' holds complex numbers ({a.dtype}); real "
                            f"numbers are needed")
        if a.ndim == 0:
            raise DataError(f"{where}: array '{k}' is a scalar; one row per example is needed")
        check_finite(a, f"{where}: array '{k}'")
    return arrays, names


def _decoded(where: str, key: str, a) -> np.ndarray:
    """Labels saved as bytes (``dtype S``, Python 2's strings) as text, read as UTF-8."""
    if not (isinstance(a, np.ndarray) and a.dtype.kind == "S" and key.startswith("y")):
        return a
    try:
        return np.char.decode(a, "utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{where}: array '{key}' holds bytes that are not UTF-8 text; save the "
                        f"labels decoded as strings, with the encoding they were written in "
                        f"(np.char.decode({key}, 'latin-1'), say)") from None


def load_npz(
    npz_path: str | os.PathLike | None,
    *,
    task: str | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    standardize: bool | str = True,
    standardize_target: bool = True,
) -> Dataset:
    """The arrays in ``npz_path`` as a data set (see the module docstring)."""
    if npz_path is None:
        raise DataError("npz: npz_path is required: an .npz file holding x and y (or x_train, "
                        "y_train, x_test, y_test)")
    path = os.fspath(npz_path)
    where = f"npz file '{path}'"
    if task is not None and task not in TASKS:
        raise DataError(f"npz: task must be one of {', '.join(TASKS)} (or None to infer it), "
                        f"got {task!r}")
    arrays, names = _read(path)
    own_split = "x" not in arrays  # the file's x_train/y_train/x_test/y_test, kept
    keys = list(arrays)
    held = keys[2][2:] if own_split else None  # "test", or the "val" that stands for it
    xs = [arrays[k] for k in keys[0::2]]
    ys = [arrays[k] for k in keys[1::2]]
    for x, y, split in zip(xs, ys, ("_train", f"_{held}") if own_split else ("",)):
        if len(x) != len(y):
            raise DataError(f"{where}: x{split} has {len(x)} rows but y{split} has {len(y)}")
        if len(x) == 0:
            raise DataError(f"{where}: x{split} has no rows" + (
                "; both splits need at least one example" if own_split else ""))
        if 0 in x.shape[1:]:
            raise DataError(f"{where}: x{split}'s examples {x.shape[1:]} hold no values")
        if 0 in y.shape[1:]:
            raise DataError(f"{where}: y{split}'s rows {y.shape[1:]} hold no values")
    if xs[-1].shape[1:] != xs[0].shape[1:]:
        raise DataError(f"{where}: x_train's examples are {xs[0].shape[1:]} but x_{held}'s "
                        f"are {xs[1].shape[1:]}")
    info = {"source": path}
    if held is not None and held != "test":
        note(info, f"npz: x_{held} and y_{held} are the test split (the file holds no x_test, "
                   f"y_test): the model is evaluated on them")
    unused = [h for h in HELD_OUT if h != held and {f"x_{h}", f"y_{h}"} <= set(names)]
    if unused:
        pairs = " and ".join(f"x_{h}, y_{h}" for h in unused)
        note(info, f"npz: {pairs} are not used: " + (
            f"x_{held}, y_{held} are the test split" if own_split else
            "x and y are split by seed (--seed) and test_fraction; to keep the file's own "
            "split, name the training arrays x_train, y_train"))

    if xs[0].ndim not in (2, 3, 4):
        raise DataError(f"{where}: x's examples are {xs[0].shape[1:]}; expected features (D,) "
                        f"or images (H, W) or (H, W, C)")
    if xs[0].ndim == 4 and xs[0].shape[1] in (1, 3, 4) and min(xs[0].shape[2:]) > 4:
        c, h, w = xs[0].shape[1:]  # PyTorch's (N, C, H, W): 1, 3 or 4 channels, H and W > 4
        xs = [np.moveaxis(x, 1, -1) for x in xs]
        note(info, f"npz: x's examples {(c, h, w)} look channels-first (C, H, W), as PyTorch "
                   f"stores images; read as {h}x{w} images of {c} channel{'s' if c > 1 else ''}")
    if xs[0].ndim > 2:
        info["image_shape"] = tuple(int(d) for d in xs[0].shape[1:])
        scaling = {True: "global", False: "none"}.get(standardize, standardize)
    else:
        scaling = {True: "per_feature", False: "none"}.get(standardize, standardize)
    xs = [x.reshape(len(x), -1).astype(np.float64) for x in xs]

    ys = [y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y for y in ys]  # each split's (N, 1)
    label_values = None
    if any(y.dtype.kind == "U" for y in ys):  # text: classes (or numbers, written as text)
        ys, label_values = _text_labels(where, ys, keys[1::2], task, info)
    if (ys[0].ndim == 2 and ys[0].shape[1] > 1 and ys[-1].shape[1:] == ys[0].shape[1:]
            and task != "regression" and all(_one_hot_rows(y) for y in ys)):
        k = ys[0].shape[1]  # Keras' to_categorical: the labels, one-hot
        ys, task = [np.argmax(y, axis=1) for y in ys], "classification"
        note(info, f"npz: y's rows are one-hot (a single 1 among {k} columns): read as class "
                   f"labels, each row's the column of its 1; task='regression' "
                   f"(--task=regression) fits them as {k} targets instead")
    if ys[0].ndim != 1 or ys[-1].shape[1:] != ys[0].shape[1:]:
        rows = (f"{ys[0].shape[1:]}" if ys[-1].shape[1:] == ys[0].shape[1:] else
                f"{ys[0].shape[1:]} (train) and {ys[-1].shape[1:]} (test)")
        if ys[0].ndim == 2 and ys[-1].shape[1:] == ys[0].shape[1:] and task != "classification":
            if task is None and all(_probability_rows(y) for y in ys):
                k = ys[0].shape[1]  # soft or label-smoothed labels (one-hot ones are read above)
                note(info, f"npz: y's rows look like probabilities over {k} classes (values in "
                           f"[0, 1] that sum to 1, not one-hot): they are fit as a {k}-output "
                           f"regression; for classification, save each row's class, "
                           f"y.argmax(1), as the labels")
            task = "regression"
        elif ys[0].ndim == 2 and ys[-1].shape[1:] == ys[0].shape[1:]:
            raise DataError(f"{where}: y's rows are {rows}, not one-hot; classification needs "
                            f"one integer label per example (of one-hot rows, y.argmax(1))")
        else:
            raise DataError(f"{where}: y's rows are {rows}; expected one label or target per "
                            f"example, or (N, K) targets")
    num_classes = 0
    if label_values is not None:
        task, num_classes = "classification", len(label_values)
        info["label_values"] = label_values
    elif ys[0].ndim == 1:
        every = np.concatenate(ys)
        if not np.issubdtype(every.dtype, np.integer):  # integers stay exact, past 2⁵³ too
            every = every.astype(np.float64)
        task, distinct, bad = numeric_task(every, task, info, "npz: y")
        if bad is not None:
            raise DataError(f"{where}: classification needs integer labels, found {every[bad]:g} "
                            f"in y")
        if task == "classification":
            if len(distinct) < 2:
                raise DataError(f"{where}: y holds a single value ({distinct[0]:g}); "
                                f"classification needs at least 2 classes")
            info["label_values"] = tuple(int(v) for v in distinct)
            num_classes = len(distinct)
            ys = [np.searchsorted(distinct, y) for y in ys]
    common = dict(task=task, num_classes=num_classes, standardize=scaling,
                  standardize_target=task == "regression" and standardize_target, info=info)
    if own_split:
        return from_split("npz", xs[0], ys[0], xs[1], ys[1], **common)
    return from_arrays("npz", xs[0], ys[0], seed=seed, test_fraction=test_fraction, **common)


def _text_labels(where: str, ys: list[np.ndarray], names: list[str], task: str | None,
                 info: dict) -> tuple[list[np.ndarray], tuple[str, ...] | None]:
    """``(ys, label_values)`` of labels saved as text, read as a CSV's target is (``tables``):
    numbers when every label is one (``label_values`` None, ``ys`` float64); else classes,
    the distinct labels of both splits in the CSV's class order (``text_classes``: numbers
    first, in increasing order, then words in sorted order), ``ys`` their indices. Labels are
    stripped of surrounding spaces, as a CSV's cells are; a blank one, or one of ``MISSING``
    (NaN written as text), is an error, and so is an infinite number when all are numbers."""
    if not all(y.dtype.kind == "U" for y in ys):
        kinds = ["text" if y.dtype.kind == "U" else "numbers" for y in ys]
        raise DataError(f"{where}: {names[0]} holds {kinds[0]} but {names[1]} holds {kinds[1]}; "
                        f"save the labels of both splits alike")
    for y, name in zip(ys, names):
        if y.ndim != 1:
            raise DataError(f"{where}: {name}'s rows are {y.shape[1:]} of text; text labels "
                            f"need one per example, of shape (N,)")
    saved, inverse = np.unique(np.concatenate(ys), return_inverse=True)
    # stripped, as a CSV's cells are: ' cat' and 'cat' are one class
    distinct, merged = np.unique(np.array([c.strip() for c in saved.tolist()], dtype=str),
                                 return_inverse=True)
    inverse = merged.reshape(-1)[inverse.reshape(-1)]
    distinct = distinct.tolist()
    cuts = np.cumsum([len(y) for y in ys])[:-1]

    def first(bad: list[str]) -> tuple[str, str]:  # ("y_test[3]", its label as saved)
        flat = int(np.flatnonzero(np.isin(inverse, [distinct.index(c) for c in bad]))[0])
        split = int(np.searchsorted(cuts, flat, side="right"))
        i = flat - (int(cuts[split - 1]) if split else 0)
        return f"{names[split]}[{i}]", str(ys[split][i])

    absent = [c for c in distinct if c.lower() in MISSING]
    if absent:
        at, c = first(absent)
        raise DataError(f"{where}: {at} " + (
            f"has no value ({c!r}); every example needs a label (if {c!r} is a class, rename "
            f"it)" if c.strip() else "is empty; every example needs a label"))
    value = {c: cell_number(c, False) for c in distinct}  # None: a word
    is_word = np.array([value[c] is None for c in distinct])
    if not is_word.any():  # numbers written as text: read as numbers, as a CSV's are
        infinite = [c for c in distinct if not np.isfinite(value[c])]
        if infinite:
            at, c = first(infinite)
            raise DataError(f"{where}: {at} is an infinite value ({c!r}); labels "
                            f"and targets must be finite numbers, or words for classes")
        return np.split(np.array([value[c] for c in distinct])[inverse], cuts), None
    words = [c for c in distinct if value[c] is None]
    if task == "regression":
        raise DataError(f"{where}: {names[0] if len(names) == 1 else 'y'} holds text "
                        f"({words[0]!r}); a regression target must be numbers")
    if 2 * int(is_word[inverse].sum()) <= len(inverse):  # mostly numbers, and words: grades
        at, word = first(words)
        note_numbers_and_words(f"{where}: {at}", word.strip(), len(distinct), task, info, "npz: y")
    label_values = text_classes(value)
    if len(label_values) < 2:
        raise DataError(f"{where}: y holds a single value ({label_values[0]!r}); "
                        f"classification needs at least 2 classes")
    note_case_only(info, "npz: y", label_values)
    index = {c: k for k, c in enumerate(label_values)}
    rank = np.array([index[c] for c in distinct])
    return np.split(rank[inverse], cuts), label_values


def _probability_rows(y: np.ndarray) -> bool:
    """Whether every row of ``y`` (N, K) lies in [0, 1] and sums to 1 (within 1e-6): class
    probabilities, soft or label-smoothed labels."""
    y = np.asarray(y, np.float64)
    return bool(y.min() >= 0 and y.max() <= 1
                and np.all(np.abs(y.sum(axis=1) - 1) <= 1e-6))


def _one_hot_rows(y: np.ndarray) -> bool:
    """Whether every row of ``y`` (N, K) holds a single 1 and zeros otherwise."""
    return bool(np.isin(y, (0, 1)).all() and (np.sum(y == 1, axis=1) == 1).all())
