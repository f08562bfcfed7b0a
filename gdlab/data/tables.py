"""A user's CSV table as a ``Dataset``.

The file must be UTF-8 text, comma separated, with a header row of distinct
column names followed by data rows of numbers only (blank lines are skipped).
``target`` names the column to predict; every other column is a feature.

Task: with ``task=None`` the table is a *classification* problem when the
target column holds only integers (``3``, ``3.0``) with at most
``MAX_INFERRED_CLASSES`` distinct values, and a *regression* problem otherwise;
``task="classification"`` or ``"regression"`` overrides the guess.
Classification labels are remapped to ``0..K−1`` in increasing order of the
original values; ``info["label_values"][k]`` is the original value of class ``k``.
Regression targets are ``(N, 1)`` float32, standardised on the training split
by default (``info["y_mean"]``, ``info["y_std"]`` undo it).

Errors are ``DataError``s with one sentence naming the file and, where it
applies, the row (the line number in the file, the header being row 1) and
column. That includes values too large to standardise: a column whose mean or
variance overflows float64 (``1e300`` next to ``-1e300``), or a value that lies
beyond the float32 range once standardised (or, without standardising, as it is).
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from gdlab.data.base import (
    TASKS,
    DataError,
    Dataset,
    fit_standardizer,
    from_arrays,
    split_indices,
)

MAX_INFERRED_CLASSES = 20


def _read_rows(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(row number, cells)`` for each non-blank data row."""
    where = f"csv file '{path}'"
    if not os.path.exists(path):
        raise DataError(f"{where} does not exist")
    if os.path.isdir(path):
        raise DataError(f"{where} is a folder, not a file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError:
        raise DataError(f"{where} is not UTF-8 text") from None
    except csv.Error as e:
        raise DataError(f"{where} is not valid CSV ({e})") from None
    except OSError as e:
        raise DataError(f"{where} cannot be read: {e.strerror or e}") from None
    if not rows:
        raise DataError(f"{where} is empty")
    (_, header), data = rows[0], rows[1:]
    header = [name.strip() for name in header]
    if all(_is_number(name) for name in header):
        raise DataError(f"{where} has no header row: row 1 holds numbers "
                        f"({', '.join(header[:5])}{', ...' if len(header) > 5 else ''}) "
                        f"where column names are required")
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{where}, row 1: column {i + 1} has an empty name")
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{where}, row 1: column name '{name}' appears twice")
        seen.add(name)
    if not data:
        raise DataError(f"{where} has a header row but no data rows")
    return header, data


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_numbers(path: str, header: list[str], data: list) -> np.ndarray:
    """``(N, C)`` float64 values; a DataError for the first ragged, empty or non-numeric cell."""
    where = f"csv file '{path}'"
    values = np.empty((len(data), len(header)), np.float64)
    for i, (row_number, row) in enumerate(data):
        if len(row) != len(header):
            raise DataError(f"{where}, row {row_number}: expected {len(header)} columns, "
                            f"found {len(row)}")
        for j, cell in enumerate(row):
            text = cell.strip()
            if not text:
                raise DataError(f"{where}, row {row_number}, column '{header[j]}' is empty; "
                                f"missing values are not allowed")
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"{where}, row {row_number}, column '{header[j]}': "
                                f"'{cell}' is not a number") from None
            if math.isnan(value):
                raise DataError(f"{where}, row {row_number}, column '{header[j]}' contains a "
                                f"NaN value ('{cell}'); missing values are not allowed")
            if math.isinf(value):
                raise DataError(f"{where}, row {row_number}, column '{header[j]}' contains an "
                                f"infinite value ('{cell}')")
            values[i, j] = value
    return values


def load_csv(
    csv_path: str | os.PathLike | None,
    target: str | None,
    *,
    task: str | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    standardize: bool = True,
    standardize_target: bool = True,
) -> Dataset:
    """The table at ``csv_path`` split by ``seed``; ``target`` names the column to predict."""
    if csv_path is None:
        raise DataError("csv: csv_path is required: the path of a CSV file with a header row")
    path = os.fspath(csv_path)
    where = f"csv file '{path}'"
    if task is not None and task not in TASKS:
        raise DataError(f"csv: task must be one of {', '.join(TASKS)} (or None to infer it), "
                        f"got {task!r}")
    header, data = _read_rows(path)
    if not target:
        raise DataError(f"csv: the target column name is required for {where}; "
                        f"columns are: {', '.join(header)}")
    if target not in header:
        raise DataError(f"{where}: target column '{target}' not found; "
                        f"columns are: {', '.join(header)}")
    if len(header) < 2:
        raise DataError(f"{where} has no feature columns besides the target '{target}'")
    values = _parse_numbers(path, header, data)
    t = header.index(target)
    y = values[:, t]
    x = np.delete(values, t, axis=1)
    feature_names = tuple(name for name in header if name != target)

    distinct = np.unique(y)
    integral = bool(np.all(distinct == np.round(distinct)))
    if task is None:
        task = ("classification" if integral and len(distinct) <= MAX_INFERRED_CLASSES
                else "regression")
    info = {"source": path, "target": target}
    if task == "classification":
        if not integral:
            row_number = data[int(np.flatnonzero(y != np.round(y))[0])][0]
            raise DataError(f"{where}, row {row_number}, column '{target}': classification "
                            f"needs integer labels, found {y[y != np.round(y)][0]:g}")
        if len(distinct) < 2:
            raise DataError(f"{where}: target column '{target}' holds a single value "
                            f"({distinct[0]:g}); classification needs at least 2 classes")
        labels = np.searchsorted(distinct, y)  # original value -> 0..K-1
        info["label_values"] = tuple(int(v) for v in distinct)
        _check_scale(where, data, x, feature_names, seed=seed, test_fraction=test_fraction,
                     standardize=standardize)
        return from_arrays(
            "csv", x, labels, task="classification", num_classes=len(distinct), seed=seed,
            test_fraction=test_fraction, standardize=standardize,
            feature_names=feature_names, info=info,
        )
    _check_scale(where, data, np.column_stack([x, y]), (*feature_names, target), seed=seed,
                 test_fraction=test_fraction,
                 standardize=(standardize,) * x.shape[1] + (standardize_target,))
    return from_arrays(
        "csv", x, y, task="regression", seed=seed, test_fraction=test_fraction,
        standardize=standardize, standardize_target=standardize_target,
        feature_names=feature_names, info=info,
    )


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_scale(where: str, data: list, values: np.ndarray, names: tuple[str, ...], *,
                 seed: int, test_fraction: float, standardize) -> None:
    """A DataError naming the file and column (and the row, where one value is to blame)
    for a column that ``from_arrays`` could not turn into finite float32 numbers: its
    training mean or variance overflows float64, or a value lies beyond the float32
    range once standardised with those statistics (or as it is, unstandardised).

    ``values`` (N, C) float64 in file row order; ``standardize`` a bool, or one per
    column. The statistics are ``from_arrays``'s own: ``fit_standardizer`` on the
    training rows of the same seeded split.
    """
    if isinstance(standardize, bool):
        standardize = (standardize,) * values.shape[1]
    train_idx, _ = split_indices(len(values), seed=seed, test_fraction=test_fraction)
    for j, name in enumerate(names):
        column = values[:, j]
        if standardize[j]:
            with np.errstate(over="ignore", invalid="ignore"):
                mean, std = fit_standardizer(column[train_idx, None])
            if not (np.isfinite(mean[0]) and np.isfinite(std[0])):
                raise DataError(f"{where}, column '{name}': the values are too large to "
                                f"standardise (their mean or variance overflows float64); "
                                f"rescale the column")
            with np.errstate(over="ignore", invalid="ignore"):
                column = (column - mean[0]) / std[0]
        beyond = np.flatnonzero(np.abs(column) > _FLOAT32_MAX)
        if beyond.size:
            raise DataError(f"{where}, row {data[int(beyond[0])][0]}, column '{name}': the value "
                            f"{values[beyond[0], j]:g} lies beyond the float32 range (about "
                            f"±3.4e38){' once standardised' if standardize[j] else ''}; "
                            f"rescale the column")
