"""A user's CSV table as a ``Dataset``.

The file must be UTF-8 text with a header row of distinct column names followed by
data rows (blank lines are skipped). The separator is the one of ``DELIMITERS``
(comma, semicolon, tab, bar) that cuts the first lines into the same number of
cells, the most (else the header line's most frequent); ``info["delimiter"]``
records it. With semicolons, in a column where a comma
appears, the comma is the decimal point and a dot groups digits (``1.234,5`` is
1234.5), or a space, a no-break space or a narrow one (``1 234,5``, as French
spreadsheets write it), the convention that pairs the two; otherwise commas may group
digits in threes (``"1,234.5"``, quoted, is 1234.5). ``target`` names
the column to predict; every other column is a feature, but for those named in
``drop``.

Columns of numbers and columns of text. A column is *numeric* when at least half
of its present cells are numbers; there a cell that is blank or one of ``MISSING``
(``NA``, ``NaN``, ``?``, ...) is a missing value, and any other cell that is not a
finite number is an error naming its row. A missing value is filled with the
mean of the column's known values in the training split, and a 0/1 column
``column=missing`` (unscaled) marks the filled rows; a ``DataWarning`` counts
them, and ``info["missing"]`` holds the count per column. Otherwise the column
is *text*: each distinct stripped cell (the empty cell too) is a category. A
text feature is one-hot encoded into one 0/1 column per category, named
``column=category`` (categories in sorted order, taken from the whole file, so
a category seen only in the test split is an all-zero column in training);
these indicator columns are not standardised. A text feature with more than
``MAX_CATEGORIES`` categories (names, ids, free text) is an error: drop it or
encode it as numbers. ``info["categories"][column]`` lists a text feature's
categories.

The target must have a value in every row. Task: with ``task=None`` the table
is a *classification* problem when the target column holds text, or only
integers (``3``, ``3.0``) with at most ``base.MAX_INFERRED_CLASSES`` distinct
values, and a *regression* problem otherwise; ``task="classification"`` or
``"regression"`` overrides the guess (a text target cannot be regressed). A target
of numbers, at least half, and words (a school grade: ``K``, ``1``, ..., ``12``) is
text, with a note, when it has at most ``MAX_INFERRED_CLASSES`` distinct values or the
task is classification; else a DataError names the first word.
Classification labels are remapped to ``0..K−1`` in increasing order of the
original values (numbers; text in sorted order, numbers among it first, in
increasing order); ``info["label_values"][k]`` is the original value of class
``k``. Classes that differ only in case (``cat``, ``Cat``) stay apart, with a note.

Notes (``info["warnings"]``, also a ``DataWarning``) also name a first column
``Unnamed: 0`` (pandas' index, read back and written again), which is left out like an
unnamed first column (and so is one after an unnamed first column, the index ``to_csv``
wrote for the table read back, and ``Unnamed: 0.1``, ..., read back more than once), and
a text feature most of whose values are numbers that a separator or a ``%`` kept from
being numbers (``1,5`` in a comma-separated file, ``5%``), amounts with a currency sign
or code (``$1,234.50``, ``12 €``, ``USD 12``), dates (``2024-03-01``, ``03/01/2024``,
``01-Mar-2024``) or whole numbers
grouped by spaces (``1 234``): one-hot all the same, their order lost. A first line ``sep=;``
(Excel's) names the separator and is skipped.
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
import difflib
import os
import re
import warnings
from collections.abc import Sequence

import numpy as np

from gdlab.data.base import (
    MAX_INFERRED_CLASSES,
    TASKS,
    DataError,
    Dataset,
    check_file,
    fit_standardizer,
    from_arrays,
    note,
    numeric_task,
    split_indices,
)

MAX_CATEGORIES = 100
"""A text feature column may hold at most this many distinct values (one-hot columns)."""

DELIMITERS = (",", ";", "\t", "|")
"""The separators a table may use (``_delimiter`` picks the file's)."""

MISSING = ("", "na", "n/a", "nan", "null", "none", "?")
"""Cells that mean "no value" in a column of numbers (compared stripped, in lower case)."""


SNIFF_LINES = 20
"""How many of the first non-blank lines choose the separator."""


_SEP_LINE = re.compile(r"sep=(.)\s*")
"""Excel's first line naming the separator: ``sep=;``"""


def _sep_line(f) -> str | None:
    """The separator that a first line ``sep=X`` (Excel's) names, the file then read on from
    the line after it; else None, the file read again from its start."""
    first = f.readline()
    match = _SEP_LINE.fullmatch(first.rstrip("\r\n"))
    if match is None:
        f.seek(0)
        return None
    return match.group(1)


def _delimiter(f) -> str:
    """The separator: of ``DELIMITERS``, the one that cuts the first ``SNIFF_LINES``
    non-blank lines (quotes respected) into one number of cells, more than one, and the
    most cells; when none does, the one the first line holds most often (a comma when
    none, or on a tie). The file is read again from its start."""
    lines = []
    for line in f:
        if line.strip():
            lines.append(line)
            if len(lines) == SNIFF_LINES:
                break
    f.seek(0)
    best, best_width = None, 1
    for d in DELIMITERS:
        widths = {len(row) for row in csv.reader(lines, delimiter=d)}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = d, width
    if best is not None:
        return best
    counts = [lines[0].count(d) if lines else 0 for d in DELIMITERS]
    return DELIMITERS[counts.index(max(counts))]


def _plain_numbers(path: str) -> tuple[list[str], np.ndarray, str] | None:
    """``(header, (N, D) float64 values, separator)`` of a table whose every data cell is a
    plain finite number, read by NumPy's parser in C (an MNIST table of 60,000 rows in
    seconds, in the memory of its values: the general reader holds each cell as a Python
    string, some 30 times that); None for any other table, which ``_read_rows`` then reads
    (and reports on: blank or missing cells, text, decimal commas of a ';'-separated file,
    a header of numbers or of empty or repeated names, blank lines)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            if _sep_line(f) is not None:
                return None  # the general reader skips Excel's line
            delimiter = _delimiter(f)
            header = [name.strip() for name in next(csv.reader(f, delimiter=delimiter), [])]
            f.seek(0)
            lines = sum(1 for _ in f)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if (delimiter == ";" or len(header) < 2 or not all(header) or len(set(header)) < len(header)
            or all(_is_number(name) for name in header)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty table: the general reader says so
            values = np.loadtxt(path, delimiter=delimiter, skiprows=1, dtype=np.float64, ndmin=2,
                                encoding="utf-8-sig", comments=None, quotechar='"')
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    if values.shape != (lines - 1, len(header)) or not np.isfinite(values).all():
        return None  # a blank line, or nan/inf cells: the general reader's rules
    return header, values, delimiter


def _encoding_hint(path: str) -> str:
    """Where a file that is not UTF-8 first breaks it, and how to convert it: the end of
    ``_read_rows``' sentence."""
    with open(path, "rb") as f:
        raw = f.read()
    save = "save it as UTF-8 (a spreadsheet's 'CSV UTF-8' format"
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a byte-order mark of UTF-16
        return f" but UTF-16 (a spreadsheet's 'Unicode text'); {save})"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return (f" (byte 0x{raw[e.start]:02x} on line {line}: another encoding, such as Latin-1 "
                f"or Windows-1252); {save}, or iconv -f latin1 -t utf-8 FILE)")
    return f"; {save})"  # changed since it was read


def _read_rows(path: str) -> tuple[list[str], list[tuple[int, list[str]]], str, list[str]]:
    """Header, ``(row number, cells)`` for each non-blank data row, the separator, and notes
    on the columns left out: an unnamed one with no values (a separator ending every line)
    silently, an unnamed first one (the row index pandas writes) with a note."""
    where = f"csv file '{path}'"
    check_file(path, where)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            delimiter = _sep_line(f)
            skipped = delimiter is not None  # Excel's sep= line: row numbers count it
            delimiter = delimiter or _delimiter(f)
            reader = csv.reader(f, delimiter=delimiter)
            rows = [(reader.line_num + skipped, row) for row in reader
                    if any(c.strip() for c in row)]
    except UnicodeDecodeError:
        raise DataError(f"{where} is not UTF-8 text{_encoding_hint(path)}") from None
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
    header, data, notes = _without_unnamed(where, header, data)
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{where}, row 1: column name '{name}' appears twice")
        seen.add(name)
    if not data:
        raise DataError(f"{where} has a header row but no data rows")
    return header, data, delimiter, notes


def _without_unnamed(where, header, data):
    """``(header, data, notes)`` without the columns of an empty name that hold nothing or
    are the first (pandas' ``to_csv`` writes its row index there unless ``index=False``),
    and pandas' index read back and written again (``_index_columns``); any other unnamed
    column is a DataError."""
    leave = _index_columns(header)
    notes = [_index_note(where, i + 1, header[i]) for i in leave]
    for i, name in enumerate(header):
        if name or i in leave:
            continue
        if not any(row[i].strip() for _, row in data if i < len(row)):
            leave.append(i)  # every line ends with a separator, or an empty column
        elif i == 0:
            leave.append(i)
            notes.insert(0, f"{where}: column 1 has no name and is left out, taken for a row "
                            f"index (pandas writes one unless to_csv(index=False)); name it in "
                            f"the header row to use it")
        else:
            raise DataError(f"{where}, row 1: column {i + 1} has an empty name; name it in "
                            f"the header row")
    if not leave:
        return header, data, notes
    _check_widths(where, len(header), data)  # now, of the file's own columns: one left out,
    keep = [i for i in range(len(header)) if i not in leave]  # a short row could fit
    data = [(n, [row[i] for i in keep]) for n, row in data]
    return [header[i] for i in keep], data, notes


_PANDAS_INDEX = re.compile(r"Unnamed: 0(\.\d+)?")
"""The name pandas gives an unnamed first column (its index, written by ``to_csv``) when it
reads it back, ``Unnamed: 0`` (``Unnamed: 0.1``, ... when the file already held one: a
repeated name gets ``.1``): written again, it is a named column holding the row index."""


def _index_columns(header: list[str]) -> list[int]:
    """The leading columns that are pandas' row index read back and written again: named
    ``Unnamed: 0`` (``Unnamed: 0.1``, ... when read back more than once), after the unnamed
    first column that ``to_csv`` writes for its own index, if any (left out elsewhere)."""
    start = 1 if header and header[0] == "" else 0
    end = start
    while end < len(header) and _PANDAS_INDEX.fullmatch(header[end]):
        end += 1
    return list(range(start, end))


def _index_note(where: str, column: int, name: str) -> str:
    """The note for column ``column`` (1 is the first) named ``name``, ``Unnamed: 0``, left
    out."""
    return (f"{where}: column {column}, '{name}', is left out, taken for the row index pandas "
            f"wrote (to_csv without index=False, read back); rename it to use it")


NAMES_SHOWN = 20
"""A message lists a table's columns up to this many; a wider table's, the first and last
few and their count."""


def _names(header, near: str | None = None) -> str:
    """The column names for a message, a name holding a comma in quotes: a, 'Name, full', y;
    past ``NAMES_SHOWN`` columns, the first 8 and last 4 with the count (a table of 5,000
    columns is not one sentence), and then the names closest to ``near`` (a name not
    found), in any table: "; the nearest: price"."""
    def shown(names):
        return ", ".join(f"'{h}'" if "," in h else h for h in names)

    text = shown(header) if len(header) <= NAMES_SHOWN else (
        f"{shown(header[:8])}, …, {shown(header[-4:])} ({len(header)} columns)")
    close = difflib.get_close_matches(near, list(header), n=3, cutoff=0.6) if near else []
    return text + (f"; the nearest: {shown(close)}" if close else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _columns(path: str, header: list[str], data: list) -> list[np.ndarray]:
    """Each column's ``(N,)`` cells as strings (one array per column: a long text cell
    widens only its own); a DataError for the first ragged row."""
    _check_widths(f"csv file '{path}'", len(header), data)
    return [np.array(cells, dtype=str) for cells in zip(*(row for _, row in data))]


def _check_widths(where: str, width: int, data: list) -> None:
    """A DataError for the first data row that has not ``width`` cells."""
    for row_number, row in data:
        if len(row) != width:
            raise DataError(f"{where}, row {row_number}: expected {width} columns, found "
                            f"{len(row)}")


def _is_missing(text: str) -> bool:
    """A missing value: a blank cell or one of ``MISSING`` (any case)."""
    return text.lower() in MISSING


def _is_text(cells: list[str]) -> bool:
    """A text column: fewer than half of its present (stripped) cells are numbers."""
    present = [c for c in cells if not _is_missing(c)]
    return bool(present) and 2 * sum(_is_number(c) for c in present) < len(present)


def _numbers(path: str, name: str, column: np.ndarray, data: list,
             decimal_comma: bool = False, info: dict | None = None) -> np.ndarray | None:
    """``(N,)`` float64 values of a column of numbers, NaN where a value is missing, or None
    for a column of text (see the module docstring); a DataError for a numeric column's
    first cell that is neither a number nor missing, or is infinite. ``decimal_comma``:
    ``1,5`` is 1.5. ``info["decimal_comma"]`` (a cell of the file that is written so, found
    by ``_decimal_comma_cell``): a column without commas whose whole numbers of four digits
    or more are grouped by points (1.250, 12.400) beside plain ones below 1000 (980) reads
    them as the file's other numbers would, 1250; one whose every value is such a dotted
    number (1.250, 2.500) reads them as decimals; either way a ``note`` in ``info`` says
    so."""
    where = f"csv file '{path}'"
    written = column  # the cells as the file has them, for messages
    point = None  # a number written with a decimal point among decimal commas
    if decimal_comma and np.char.count(column, ",").any():  # 1.234,5 is 1234.5
        column, point = _from_decimal_commas(column)
    elif decimal_comma and info is not None and info.get("decimal_comma"):
        cells = [c.strip() for c in column.tolist()]
        present = [c for c in cells if not _is_missing(c)]
        dotted = [c for c in present if "." in c]
        # whole numbers, those of four digits or more (only they) grouped by points: 1.250 980
        if (dotted and len(dotted) < len(present)
                and all(_THOUSANDS.fullmatch(c) or _WHOLE.fullmatch(c) for c in present)
                and all(abs(int(c)) < 1000 for c in present if "." not in c)):
            column = np.array([c.replace(".", "") if _THOUSANDS.fullmatch(c) else c
                               for c in cells], dtype=str)
            note(info, f"csv: column '{name}' reads '{dotted[0]}' as {dotted[0].replace('.', '')}"
                       f": its points only group thousands, as in the file's numbers with "
                       f"decimal commas ({info['decimal_comma']}); write 1250 or 1.250,0 to "
                       f"say so, or 1,25 for a decimal")
        elif dotted and len(dotted) == len(present) and all(
                _THOUSANDS.fullmatch(c) and c.count(".") == 1 for c in present):
            note(info, f"csv: column '{name}' reads '{dotted[0]}' as {float(dotted[0]):g}, though "
                       f"the file's other numbers write decimal commas ({info['decimal_comma']}),"
                       f" where it would be {dotted[0].replace('.', '')}; write 1,25 or 1250 "
                       f"to remove the doubt")
    try:
        values = column.astype(np.float64)  # Python's float() rules, for the whole column
    except ValueError:
        cells = [c.strip() for c in column.tolist()]
        if not decimal_comma:  # "1,234.5", quoted in a comma-separated file, is 1234.5
            cells = [c.replace(",", "") if _GROUPED.fullmatch(c) else c for c in cells]
        if _is_text(cells):
            return None
        values = np.full(len(cells), np.nan)
        for i, text in enumerate(cells):
            if _is_missing(text):
                continue
            if not _is_number(text):
                hint = (" (a ';'-separated file writes decimals with commas, 1,5, and may "
                        "group thousands with points, 1.234,5)" if decimal_comma else "")
                raise DataError(f"{where}, row {data[i][0]}, column '{name}': "
                                f"'{written[i].strip()}' is not a number{hint}") from None
            values[i] = float(text)
    if point is not None:
        comma = int(np.flatnonzero(np.char.count(written, ","))[0])
        raise DataError(f"{where}, column '{name}' mixes decimal commas (row {data[comma][0]}: "
                        f"'{written[comma].strip()}') with a decimal point (row "
                        f"{data[point][0]}: '{written[point].strip()}'); write every number "
                        f"of the column one way")
    infinite = np.isinf(values)
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        raise DataError(f"{where}, row {data[i][0]}, column '{name}' contains an infinite "
                        f"value ('{column[i].strip()}')")
    return values


_DECIMAL_COMMA = re.compile(r"[+-]?([1-9]\d{0,2}(?P<group>[. \u00a0\u202f])\d{3}"
                            r"((?P=group)\d{3})*|\d*)(,\d*)?([eE][+-]?\d+)?")
"""A number in the decimal-comma convention: 1,5  -0,25  1.234,5  1.234.567  12  1,5E-03,
and 1 234,5 with a space, a no-break space or a narrow one between the groups of thousands
(French spreadsheets' numbers); one separator in a number (a group of thousands never
starts with 0: 0.125 is a decimal point, not 125)"""

_GROUP_SEPARATORS = re.compile(r"[. \u00a0\u202f]")
"""What may group thousands in a decimal-comma number (``_DECIMAL_COMMA``)."""


def _point_decimal(cell: str) -> str:
    """A decimal-comma number (``_DECIMAL_COMMA``) in Python's notation: 1.234,5 → 1234.5."""
    return _GROUP_SEPARATORS.sub("", cell).replace(",", ".")


def _is_decimal_comma_number(cell: str) -> bool:
    """Whether a stripped cell is a number in the decimal-comma convention (``_DECIMAL_COMMA``,
    at least one digit)."""
    return bool(_DECIMAL_COMMA.fullmatch(cell)) and any(ch.isdigit() for ch in cell)


def _from_decimal_commas(column: np.ndarray) -> tuple[np.ndarray, int | None]:
    """A column of decimal-comma numbers in Python's notation (1.234,5 → 1234.5; other
    cells as they are), and the first cell that is a number only with a decimal point
    (0.5, 1,234.50: the column then mixes conventions), or None."""
    out, point = [], None
    for i, cell in enumerate(c.strip() for c in column.tolist()):
        if _is_decimal_comma_number(cell):
            out.append(_point_decimal(cell))
            continue
        if point is None and "." in cell and (_is_number(cell) or _GROUPED.fullmatch(cell)):
            point = i
        out.append(cell)
    return np.array(out, dtype=str), point


_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(\.\d{3})+")
"""A whole number with points between groups of three digits: 1.250  -12.400.000"""

_WHOLE = re.compile(r"[+-]?\d+")
"""A whole number written plainly: 980  -12"""


def _decimal_comma_cell(header, columns, data) -> str | None:
    """Where the file first writes a number with a decimal comma (``column 'a', row 3:
    '45,5'``), or None."""
    for name, column in zip(header, columns):
        for i in np.flatnonzero(np.char.count(column, ",")):
            cell = column[i].strip()
            if _is_decimal_comma_number(cell):
                return f"column '{name}', row {data[i][0]}: '{cell}'"
    return None


_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")
"""A number with commas between groups of three digits: 1,234  -12,345,678.5"""

_SEPARATED_NUMBER = re.compile(r"[+-]?\d[\d,.' \u00a0\u202f]*")
"""A number written with grouping or decimal-comma separators: 1,234.5  1.234,5  1 234."""


def _one_hot(path: str, name: str, cells: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(N, K)`` 0/1 indicators of a text column's K categories (sorted), and the categories."""
    categories = tuple(sorted(set(cells)))
    if len(categories) > MAX_CATEGORIES:
        looks = [c for c in cells if _SEPARATED_NUMBER.fullmatch(c)  # 01.03.2024 a date
                 and not _DATE.fullmatch(c)]
        if 2 * len(looks) > len(cells):
            example = looks[0]
            advice = (f"its values look like numbers written with separators ('{example}'): "
                      f"write them as plain numbers (1234.5), or separate the columns with "
                      f"semicolons to read a comma as the decimal point")
        elif (kind := _looks_like(categories)) is not None:
            what, example, advice = kind
            advice = f"its values look like {what} ('{example}'): {advice}"
        else:
            advice = "leave it out (drop, --drop_columns) or encode it as numbers"
        raise DataError(f"csv file '{path}', column '{name}' holds {len(categories)} distinct "
                        f"text values, more than the {MAX_CATEGORIES} categories a text feature "
                        f"may have; {advice}")
    codes = np.searchsorted(np.array(categories), np.array(cells))
    return np.eye(len(categories))[codes], categories


def load_csv(
    csv_path: str | os.PathLike | None,
    target: str | None,
    *,
    task: str | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    standardize: bool = True,
    standardize_target: bool = True,
    drop: str | Sequence[str] = (),
) -> Dataset:
    """The table at ``csv_path`` split by ``seed``; ``target`` names the column to predict,
    ``drop`` the columns to leave out."""
    if csv_path is None:
        raise DataError("csv: csv_path is required: the path of a CSV file with a header row")
    path = os.fspath(csv_path)
    where = f"csv file '{path}'"
    if task is not None and task not in TASKS:
        raise DataError(f"csv: task must be one of {', '.join(TASKS)} (or None to infer it), "
                        f"got {task!r}")
    plain = _plain_numbers(path)
    if plain is not None:  # every cell a number: its values, and each row's line number
        header, matrix, delimiter = plain
        data, notes = [(i + 2, None) for i in range(len(matrix))], []
        index = _index_columns(header)  # the plain reader's header has no unnamed column
        notes = [_index_note(where, i + 1, header[i]) for i in index]
        header, matrix = header[len(index):], matrix[:, len(index):]
    else:
        header, data, delimiter, notes = _read_rows(path)
        matrix = None
    if not target:
        raise DataError(f"csv: the target column name is required for {where}; "
                        f"columns are: {_names(header)}")
    if target not in header:
        raise DataError(f"{where}: target column '{target}' not found; "
                        f"columns are: {_names(header, near=target)}")
    drop = (drop,) if isinstance(drop, str) else tuple(drop)  # one name, not its letters
    left_out = {name for name in drop for column in range(1, len(notes) + 2)
                if _index_note(where, column, name) in notes}  # pandas' index, left out already:
    drop = tuple(name for name in drop if name not in left_out)  # dropping it too is no error
    for name in drop:
        if name == target:
            raise DataError(f"{where}: cannot drop the target column '{target}'")
        if name not in header:
            raise DataError(f"{where}: column '{name}' to drop not found; "
                            f"columns are: {_names(header, near=name)}" + "".join(
                                f"; quote a name that holds a comma, in a shell inside single "
                                f"quotes: --drop_columns='\"{h}\"'"
                                for h in [h for h in header if "," in h][:1]))
    if len(set(header) - set(drop)) < 2:
        raise DataError(f"{where} has no feature columns besides the target '{target}'"
                        + (" once the dropped ones are left out" if drop else ""))
    columns = _columns(path, header, data) if matrix is None else None
    decimal_comma = delimiter == ";"  # the convention that pairs the two: 1,5 is 1.5
    info = {"source": path, "target": target, "delimiter": delimiter}
    for text in notes:
        note(info, text)
    if decimal_comma:
        info["decimal_comma"] = _decimal_comma_cell(header, columns, data)

    # features: numbers as they are, text one-hot (its indicator columns left unscaled)
    parts, feature_names, indicator, categories, missing = [], [], [], {}, {}
    if len(data) < 2:
        raise DataError(f"{where} has {len(data)} data row{'' if len(data) == 1 else 's'}; a "
                        f"train/test split needs at least 2")
    train_idx, _ = split_indices(len(data), seed=seed, test_fraction=test_fraction)
    for j, name in enumerate(header):
        if name == target or name in drop:
            continue
        values = (matrix[:, j] if matrix is not None
                  else _numbers(path, name, columns[j], data, decimal_comma, info))
        if values is None:
            block, categories[name] = _one_hot(path, name, [c.strip() for c in columns[j]])
            _note_numbers_as_text(info, name, categories[name], delimiter)
            feature_names += [f"{name}={c}" for c in categories[name]]
            indicator += [True] * block.shape[1]
        elif np.isnan(values).any():  # the training mean, and a 0/1 column marking the gaps
            gaps = np.isnan(values)
            known = values[train_idx][~gaps[train_idx]]
            missing[name] = int(gaps.sum())
            block = np.column_stack([np.where(gaps, known.mean() if known.size else 0.0, values),
                                     gaps])
            feature_names += [name, f"{name}=missing"]
            indicator += [False, True]
        else:
            block = values[:, None]
            feature_names.append(name)
            indicator.append(False)
        parts.append(block)
    x = np.concatenate(parts, axis=1)
    feature_names = tuple(feature_names)
    unscaled = np.array(indicator, bool)
    scaled = tuple(standardize not in (False, "none") and not u for u in indicator)
    if categories:
        info["categories"] = categories
    if missing:
        info["missing"] = missing
        names = list(missing)
        text = (f"csv: {sum(missing.values())} missing values in {len(names)} column"
                f"{'s' if len(names) > 1 else ''} ({', '.join(names[:5])}"
                f"{f' and {len(names) - 5} more' if len(names) > 5 else ''}) filled with the "
                f"column's training mean; a 0/1 column "
                f"'{names[0] if len(names) == 1 else '<column>'}=missing' marks them")
        note(info, text)

    if matrix is not None:
        y = matrix[:, header.index(target)]
    else:
        target_column = columns[header.index(target)]
        cells = [c.strip() for c in target_column]
        for i, c in enumerate(cells):
            if _is_missing(c):
                raise DataError(f"{where}, row {data[i][0]}, column '{target}' "
                                f"{f'has no value ({c!r})' if c else 'is empty'}; every example "
                                f"needs a target" + (f" (if {c!r} is a class, rename it)"
                                                     if c else ""))
        value = {c: cell_number(c, decimal_comma) for c in set(cells)}  # None: a word
        words = [i for i, c in enumerate(cells) if value[c] is None]
        if task != "regression" and words and 2 * len(words) <= len(cells):
            y = None
            first = words[0]
            note_numbers_and_words(f"{where}, row {data[first][0]}, column '{target}'",
                                   cells[first], len(value), task, info,
                                   f"csv: target column '{target}'")
        else:
            y = _numbers(path, target, target_column, data, decimal_comma, info)
    if y is None:
        if task == "regression":
            text = next(c for c in cells if not _is_number(c))
            raise DataError(f"{where}, column '{target}' holds text ('{text}'); a regression "
                            f"target must be numbers")
        task = "classification"
        label_values = text_classes(value)
        index = {v: k for k, v in enumerate(label_values)}
        y = np.array([index[c] for c in cells])
        distinct = np.arange(len(label_values))
        note_case_only(info, f"csv: target column '{target}'", label_values)
    else:
        task, distinct, bad = numeric_task(y, task, info, f"csv: target column '{target}'")
        if bad is not None:
            raise DataError(f"{where}, row {data[bad][0]}, column '{target}': classification "
                            f"needs integer labels, found {y[bad]:g}")
        label_values = tuple(int(v) for v in distinct)
    if task == "classification":
        if len(distinct) < 2:
            raise DataError(f"{where}: target column '{target}' holds a single value "
                            f"({label_values[0]}); classification needs at least 2 classes")
        labels = np.searchsorted(distinct, y)  # original value -> 0..K-1
        info["label_values"] = label_values
        _check_scale(where, data, x, feature_names, train_idx=train_idx, standardize=scaled)
        return from_arrays(
            "csv", x, labels, task="classification", num_classes=len(distinct), seed=seed,
            test_fraction=test_fraction, standardize=standardize, unscaled=unscaled,
            feature_names=feature_names, info=info,
        )
    _check_scale(where, data, np.column_stack([x, y]), (*feature_names, target),
                 train_idx=train_idx, standardize=(*scaled, standardize_target))
    return from_arrays(
        "csv", x, y, task="regression", seed=seed, test_fraction=test_fraction,
        standardize=standardize, standardize_target=standardize_target, unscaled=unscaled,
        feature_names=feature_names, info=info,
    )


def cell_number(cell: str, decimal_comma: bool) -> float | None:
    """A stripped cell's number, read as a feature's would be (``1,234.5`` quoted; ``1.234,5``
    where the file writes decimal commas), or None for a word."""
    if (decimal_comma and _is_decimal_comma_number(cell)  # 1,5  1.234,5  1 234  1.000.000
            and ("," in cell or not _is_number(cell))):
        cell = _point_decimal(cell)
    elif not decimal_comma and _GROUPED.fullmatch(cell):
        cell = cell.replace(",", "")
    return float(cell) if _is_number(cell) else None


def text_classes(value: dict[str, float | None]) -> tuple[str, ...]:
    """A text target's classes, the keys of ``value`` (each distinct cell's ``cell_number``)
    in class order: numbers first, in increasing order (1, 2, 10, then K), then the words in
    sorted order. An npz file's text labels (``arrays``) take the same order."""
    return tuple(sorted(value, key=lambda c: _class_order(c, value)))


def _class_order(cell: str, value: dict[str, float | None]) -> tuple:
    """Text classes' order: numbers first, in increasing order (1, 2, 10, then K), then the
    words in sorted order; ``value`` each cell's ``cell_number``."""
    number = value[cell]
    return (1, 0.0, cell) if number is None else (0, number, cell)


def note_numbers_and_words(at: str, word: str, count: int, task: str | None, info: dict,
                           what: str) -> None:
    """A target mostly of numbers, with words (a school grade: K, 1, ..., 12), is ``count``
    classes, with a note. Past ``MAX_INFERRED_CLASSES`` distinct values, ``task`` unset, the
    word is more likely a mistyped number: a DataError ``at`` it (the CSV's row and column,
    the npz label's index). ``what`` names the target in the note."""
    if task is None and count > MAX_INFERRED_CLASSES:
        raise DataError(f"{at}: '{word}' is not a number, in a target of numbers; give "
                        f"--task=classification (task='classification') to take its {count} "
                        f"distinct values for classes, or correct it")
    note(info, f"{what} holds numbers and text ('{word}'): its {count} distinct values are "
               f"classes")


def note_case_only(info: dict, what: str, label_values: tuple[str, ...]) -> None:
    """A note when two classes differ only in case (``cat`` and ``Cat``): separate classes,
    likely meant as one; ``what`` names the target (``csv: target column 'y'``)."""
    folded: dict[str, list[str]] = {}
    for v in label_values:
        folded.setdefault(v.casefold(), []).append(v)
    clash = next((vs for vs in folded.values() if len(vs) > 1), None)
    if clash is not None:
        note(info, f"{what} has classes that differ only in case "
                   f"({', '.join(repr(v) for v in clash)}): they are separate classes; write "
                   f"them one way to make them one")


_PERCENT = re.compile(r"[+-]?\d+([.,]\d+)?\s?%")
"""A percentage: 5%  -12.5%  7,5 %"""


_AMOUNT = r"\d+(?:[,.' \u00a0\u202f]\d+)*"
"""Digits, perhaps grouped or with a decimal part: 12  1,234.50  1.234,5  1 234"""

_SIGN = r"(?:[$€£¥₹₩₽]|USD|EUR|GBP|JPY|CHF|CAD|AUD|CNY|INR)"
"""A currency's sign, or its ISO 4217 code (the most traded ones)"""

_CURRENCY = re.compile(rf"[+-]?{_SIGN}\s?[+-]?{_AMOUNT}|[+-]?{_AMOUNT}\s?{_SIGN}")
"""An amount with a currency sign or code before or after it: $1,234.50  -€12  12 €  £3.5
USD 1,234  1'234.50 CHF"""

_DAY, _MONTH = r"(?:0?[1-9]|[12]\d|3[01])", r"(?:0?[1-9]|1[0-2])"
_NAMED_MONTH = (r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?"
                r"|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
"""A month's name or its abbreviation, in any case: Mar  March  Sept.  DEC"""
_DATE = re.compile(
    rf"(?:\d{{4}}[-/]{_MONTH}[-/]{_DAY}|{_DAY}/{_DAY}/(?:\d{{4}}|\d{{2}})"
    rf"|{_DAY}[-.]{_DAY}[-.]\d{{4}}"
    rf"|{_DAY}[- ]{_NAMED_MONTH}[- ](?:\d{{4}}|\d{{2}})|{_NAMED_MONTH} {_DAY},? \d{{4}})"
    r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?[AaPp]\.?[Mm]\.?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?")
"""A date, perhaps with a time of day: 2024-03-01  2024/3/1  03/01/2024  1/3/24  01.03.2024
01-03-2024  01-Mar-2024  1 March 2024  Mar 1, 2024  2024-03-01T12:30:00Z  3/1/2024 10:30 AM
(a version number 1.2.10 is none: dots need a 4-digit year)"""

_SPACE_GROUPED = re.compile(r"[+-]?[1-9]\d{0,2}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d+)?")
"""A number whose thousands a space groups (a no-break or a narrow one too): 1 234  12 345.5"""


def _looks_like(categories: Sequence[str]) -> tuple[str, str, str] | None:
    """``(what, example, advice)`` when most of a text column's categories are amounts of
    money, dates, or numbers grouped by spaces (``_CURRENCY``, ``_DATE``, ``_SPACE_GROUPED``),
    values with an order that one-hot categories lose; else None."""
    for pattern, what, advice in (
            (_CURRENCY, "currency amounts", "strip the currency sign and write them as plain "
                                            "numbers (1234.5) to read them as numbers"),
            (_DATE, "dates", "write them as numbers (days since a first date, or the year, "
                             "month and day in columns of their own) to use their order"),
            (_SPACE_GROUPED, "numbers grouped by spaces", "write them as plain numbers (1234) "
                                                          "to read them as numbers")):
        looks = [c for c in categories if pattern.fullmatch(c)]
        if 2 * len(looks) > len(categories):
            return what, looks[0], advice
    return None


def _note_numbers_as_text(info: dict, name: str, categories: tuple[str, ...],
                          delimiter: str) -> None:
    """A note when most of a text feature's categories are numbers that a separator or a
    '%' kept from being read as numbers (``1,5`` in a comma-separated file, ``5%``), or
    amounts of money, dates or numbers grouped by spaces (``_looks_like``): the column is
    one-hot, its order lost."""
    looks = [c for c in categories if _PERCENT.fullmatch(c)
             or ("," in c and _is_decimal_comma_number(c))]
    if 2 * len(looks) <= len(categories):
        kind = _looks_like(categories)
        if kind is not None:
            what, example, advice = kind
            note(info, f"csv: column '{name}' looks like {what} ('{example}'): it is one-hot "
                       f"encoded as {len(categories)} text categories, their order lost; "
                       f"{advice}")
        return
    comma = "," in looks[0] and delimiter != ";"
    note(info, f"csv: column '{name}' holds numbers written with "
               f"{'a separator' if not looks[0].endswith('%') else 'a %'} ('{looks[0]}'), "
               f"read as {len(categories)} text categories, one-hot; write them as plain "
               f"numbers (1234.5, 0.05) to use them as numbers"
               + ("; or separate the columns with semicolons to read a comma as the decimal "
                  "point" if comma else ""))


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_scale(where: str, data: list, values: np.ndarray, names: tuple[str, ...], *,
                 train_idx: np.ndarray, standardize: tuple[bool, ...]) -> None:
    """A DataError naming the file and column (and the row, where one value is to blame)
    for a column that ``from_arrays`` could not turn into finite float32 numbers: its
    training mean or variance overflows float64, or a value lies beyond the float32
    range once standardised with those statistics (or as it is, unstandardised).

    ``values`` (N, C) float64 in file row order; ``standardize`` one bool per column.
    The statistics are ``from_arrays``'s own: ``fit_standardizer`` on ``train_idx``, the
    training rows of the same seeded split.
    """
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
