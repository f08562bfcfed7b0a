"""A user's NumPy arrays (an ``.npz`` file) as a ``Dataset``.

The file (``numpy.savez`` or ``savez_compressed``) holds either ``x`` and ``y``,
which are split by ``seed`` and ``test_fraction`` like every table, or
``x_train``, ``y_train``, ``x_test`` and ``y_test``, a split of its own that is
kept as it is. Other arrays in the file are ignored.

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
overrides the guess. ``(N, K)`` targets are a K-output regression, unless each row is
one-hot (a single 1, zeros elsewhere, as Keras' ``to_categorical`` writes): those are
the labels of K classes (each row's column of the 1, with a note), but with
``task="regression"``.
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

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(path: str) -> dict[str, np.ndarray]:
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
            wanted = SPLIT_KEYS if set(SPLIT_KEYS) <= set(names) else ("x", "y")
            missing = [k for k in wanted if k not in names]
            if missing:
                raise DataError(f"{where} holds {', '.join(names) or 'no arrays'}; expected x and "
                                f"y, or {', '.join(SPLIT_KEYS)}")
            arrays = {}
            for k in wanted:
                try:
                    arrays[k] = archive[k]
                except ValueError:  # an object array: it would need unpickling
                    raise DataError(f"{where}: array '{k}' holds Python objects; save numbers "
                                    f"(a numeric dtype)") from None
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise DataError(f"{where} is not a readable .npz archive ({e})") from None
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray):  # numpy hands back a member that is not .npy as bytes
            raise DataError(f"{where}: member '{k}' is not a NumPy array (.npy); save the file "
                            f"with numpy.savez(path, x=..., y=...)")
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise DataError(f"{where}: array '{k}' has dtype {a.dtype}; numbers are needed")
        if np.iscomplexobj(a):
            raise DataError(f"{where}: array '{k}' holds complex numbers ({a.dtype}); real "
                            f"numbers are needed")
        if a.ndim == 0:
            raise DataError(f"{where}: array '{k}' is a scalar; one row per example is needed")
        check_finite(a, f"{where}: array '{k}'")
    return arrays


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
    arrays = _read(path)
    own_split = "x" not in arrays  # the file's x_train/y_train/x_test/y_test, kept
    xs = [arrays["x_train"], arrays["x_test"]] if own_split else [arrays["x"]]
    ys = [arrays["y_train"], arrays["y_test"]] if own_split else [arrays["y"]]
    for x, y, split in zip(xs, ys, ("_train", "_test") if own_split else ("",)):
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
        raise DataError(f"{where}: x_train's examples are {xs[0].shape[1:]} but x_test's "
                        f"are {xs[1].shape[1:]}")
    info = {"source": path}

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

    if ys[0].ndim == 2 and ys[0].shape[1] == 1:
        ys = [y[:, 0] for y in ys]
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
            task = "regression"
        elif ys[0].ndim == 2 and ys[-1].shape[1:] == ys[0].shape[1:]:
            raise DataError(f"{where}: y's rows are {rows}, not one-hot; classification needs "
                            f"one integer label per example (of one-hot rows, y.argmax(1))")
        else:
            raise DataError(f"{where}: y's rows are {rows}; expected one label or target per "
                            f"example, or (N, K) targets")
    num_classes = 0
    if ys[0].ndim == 1:
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


def _one_hot_rows(y: np.ndarray) -> bool:
    """Whether every row of ``y`` (N, K) holds a single 1 and zeros otherwise."""
    return bool(np.isin(y, (0, 1)).all() and (np.sum(y == 1, axis=1) == 1).all())
