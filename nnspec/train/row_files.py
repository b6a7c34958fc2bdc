"""CSV and NPZ files read a batch of rows at a time, for `nnspec predict` and `nnspec evaluate`:
memory grows with the batch, never with the file.

A CSV file is parsed as it is read. An .npz file is a zip archive of .npy arrays: each member's
header (shape, dtype, order) is read first, so names, shapes, dtypes and row counts are checked
before any row is, with the messages training uses (data.py); then the rows of every member are
read in lockstep, `batch` rows of each at a time, straight from the (possibly compressed) zip
member. A member stored column by column (Fortran order, e.g. a transposed array saved as is) has
no contiguous rows, so that member alone is read whole. Object arrays (pickles) are refused.

Labels (`evaluate`) are made per batch by `data.labels_from_array`; text class names are mapped to
ids through the sorted names of the whole column, found by a first pass over that column alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..diagnostics import UserError
from .data import (Expect, class_labels, match_array, require_finite, check_npz_rows, csv_rows, csv_token_ids,
                   feature_columns, input_layout, label_column, label_name, label_numbers, labels_from_array,
                   npz_input_keys, numeric_rows, require_finite_rows, require_labels, text_classes)
from . import dense_labels as dense
from .npz_files import Archive, names_text


@dataclass
class RowBatch:
    """Rows [start, start + len) of a file: one array per spec input (float32 or int64, per-sample
    shape of the spec), and the labels when asked for (as the loss expects them)."""

    start: int
    inputs: list[np.ndarray]
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs[0])


def row_batches(path: Path, expect: Expect, batch: int, *, labels: bool = False, target: str | None = None,
                delimiter: str = ",") -> Iterator[RowBatch]:
    """The rows of a .csv or .npz file, `batch` at a time. `labels`: also the labels (CSV: the column
    `target`, else the last one; NPZ: the array `y`). Without labels a CSV column named `target`
    (the training label column) is dropped."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return csv_batches(path, expect, batch, labels=labels, target=target, delimiter=delimiter)
    if suffix == ".npz":
        return npz_batches(path, expect, batch, labels=labels)
    raise UserError(f"{path}: expected a .csv or .npz file", help="give rows as CSV (a header line) or as an .npz archive")


# ------------------------------------------------------------------ CSV


def csv_batches(path: Path, expect: Expect, batch: int, *, labels: bool, target: str | None,
                delimiter: str = ",") -> Iterator[RowBatch]:
    if len(expect.inputs) != 1:
        raise UserError(f"{path}: a CSV file feeds one input but the model has {len(expect.inputs)}",
                        help="give an .npz file with one array per input name")
    header = _csv_header(path, delimiter)
    if labels:
        drop_at = label_column(header, target, path, 1, delimiter)
        label = label_name(target, drop_at)
    else:  # predict: the training label column (named by the checkpoint) is dropped when present
        drop_at = header.index(target) if target is not None and target in header else None
        label = None
    features = feature_columns(len(header), drop_at)
    names = None  # sorted class names, when the labels are text
    start, rows, lines = 0, [], []

    def batch_of(rows, lines, start):
        nonlocal names
        if labels and start == 0:
            names = _text_classes(path, delimiter, drop_at, rows, expect)
        return _csv_batch(path, expect, rows, lines, features, drop_at, label, names, start)

    for line, row in _csv_rows(path, delimiter):
        rows.append(row)
        lines.append(line)
        if len(rows) == batch:
            yield batch_of(rows, lines, start)
            start, rows, lines = start + len(rows), [], []
    if rows:
        yield batch_of(rows, lines, start)
    elif start == 0:
        raise UserError(f"{path} has no data rows", help="a CSV file needs a header line and at least one row")


def _csv_header(path: Path, delimiter: str) -> list[str]:
    for _, row in csv_rows(path, delimiter):
        return row
    raise UserError(f"{path} has no data rows", help="a CSV file needs a header line and at least one row")


def _csv_rows(path: Path, delimiter: str):
    """(line number, row) of the data rows, each checked to have the header's width."""
    rows = csv_rows(path, delimiter)
    next(rows, None)  # the header
    return rows


def _csv_batch(path, expect, rows, lines, features, drop_at, label, names, start) -> RowBatch:
    """One batch of CSV rows -> inputs, and labels from column `drop_at` when `label` (the column's
    words in messages) is given."""
    cells = [r[:drop_at] + r[drop_at + 1:] for r in rows] if drop_at is not None else rows
    x = numeric_rows(cells, path, features, lines)
    require_finite_rows(x, path, features, lines, scope="in this batch of rows")
    if expect.inputs[0][2] == "int":
        x = csv_token_ids(x, path, features, lines, expect)
    x = match_array(x, 0, expect, str(path), array="the features", first_row=start, scope="in this batch of rows")
    y = _csv_labels(path, [r[drop_at] for r in rows], lines, label, names, expect) if label is not None else None
    return RowBatch(start, [x], y)


def _csv_labels(path, cells: list[str], lines: list[int], label: str, names, expect: Expect) -> np.ndarray:
    require_labels(cells, lines, path, label)
    if names is not None:
        return _named_classes(cells, names, expect, path)
    y = label_numbers(cells)
    if y is None:
        if expect.kind == "regression":
            text_classes(cells, expect, str(path))  # says why text cannot be a target
        raise UserError(f"{path}: {label} mixes numbers and text",
                        help="give every row a class name, or every row a number")
    require_finite_rows(y.reshape(len(y), 1), path, [label], lines, scope="in this batch of rows")
    return labels_from_array(y, expect, str(path), place=lambda i: f"{path}:{lines[i]}")


def _text_classes(path: Path, delimiter: str, label_at: int, first_rows: list[list[str]], expect: Expect):
    """Sorted class names when the first batch's labels are text (a first pass over the label column), else None."""
    if expect.kind == "regression":
        return None
    if label_numbers([r[label_at] for r in first_rows if r[label_at].strip()]) is not None:
        return None
    names = sorted({row[label_at] for _, row in _csv_rows(path, delimiter) if row[label_at].strip()})
    return {name: i for i, name in enumerate(names)}  # id of each name


def _named_classes(cells, names, expect: Expect, origin) -> np.ndarray:
    """Text labels -> ids in the sorted order of the whole column's names (as training numbers them)."""
    if isinstance(names, np.ndarray):  # an .npz array's names: the cells are an array of the same kind
        ids = np.searchsorted(names, cells)
    else:  # a CSV column's names -> ids
        ids = np.fromiter((names[c] for c in cells), np.int64, len(cells))
    return class_labels(ids.astype(np.int64), len(names), expect, str(origin))


# ------------------------------------------------------------------ NPZ


def npz_batches(path: Path, expect: Expect, batch: int, *, labels: bool) -> Iterator[RowBatch]:
    with Archive(path) as archive:
        if labels and "y" not in archive.names:
            raise UserError(f"{path} has no array 'y' (labels); it has: {names_text(archive.names)}")
        names = [n for n, _, _ in expect.inputs]
        chosen = [archive.member(k) for k in npz_input_keys(archive.names, names, path)]
        y = archive.member("y") if labels else None
        _check_rows(path, chosen, y)
        for i, m in enumerate(chosen):
            input_layout(m.shape, m.dtype, i, expect, str(path))
        classes = _npz_text_classes(archive, y, batch, expect) if y is not None else None
        readers = [archive.rows(m, batch) for m in [*chosen, *([y] if y is not None else [])]]
        for start in range(0, len(chosen[0]), batch):
            arrays = [next(r) for r in readers]
            inputs = [match_array(x, i, expect, str(path), array=member.key, first_row=start,
                                   scope="in this batch of rows")
                      for i, (member, x) in enumerate(zip(chosen, arrays))]
            labels_out = _npz_labels(arrays[-1], classes, start, expect, path) if y is not None else None
            if labels_out is not None:  # per-step labels: padding tokens are not scored, as in training
                labels_out = dense.match_inputs(inputs, labels_out, expect, str(path))
            yield RowBatch(start, inputs, labels_out)


_check_rows = check_npz_rows


def _npz_labels(y: np.ndarray, classes, start: int, expect: Expect, path: Path) -> np.ndarray:
    if classes is not None:
        return _named_classes(y, classes, expect, path)
    if y.dtype.kind == "f":
        require_finite(y, str(path), array="y", first_row=start, scope="in this batch of rows")
    return labels_from_array(y, expect, str(path), place=lambda i: f"{path}: array 'y' at index {start + i}")


def _npz_text_classes(archive: Archive, y, batch: int, expect: Expect):
    """Sorted class names of a text `y` (a first pass over that array alone), else None."""
    if y.dtype.kind not in "US" or expect.kind == "regression":
        return None
    names: set = set()
    for chunk in archive.rows(y, batch):
        names.update(np.unique(chunk).tolist())
    return np.array(sorted(names))
