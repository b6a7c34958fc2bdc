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

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib import format as npy_format

from ..diagnostics import UserError
from .data import (Expect, _class_labels, _require_finite, csv_rows, input_layout, labels_from_array, match_input,
                   npz_input_arrays, numeric_rows, require_finite_rows, require_labels)

SAVE_HELP = "save with numpy.savez(path, x=features, y=labels)"


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
        target = header[-1] if target is None else target
        if target not in header:
            raise UserError(f"{path}: no column named '{target}'; the columns are: {', '.join(header)}",
                            help='name the label column: csv("file.csv", target="label")')
    drop_at = header.index(target) if target is not None and target in header else None  # the label column
    features = [c for i, c in enumerate(header) if i != drop_at]
    names = None  # sorted class names, when the labels are text
    start, rows, lines = 0, [], []

    def batch_of(rows, lines, start):
        nonlocal names
        if labels and start == 0:
            names = _text_classes(path, delimiter, drop_at, rows, expect)
        return _csv_batch(path, expect, rows, lines, features, drop_at, target if labels else None, names, start)

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


def _csv_batch(path, expect, rows, lines, features, drop_at, target, names, start) -> RowBatch:
    """One batch of CSV rows -> inputs, and labels from column `drop_at` when `target` names it."""
    cells = [r[:drop_at] + r[drop_at + 1:] for r in rows] if drop_at is not None else rows
    x = numeric_rows(cells, path, features, lines)
    require_finite_rows(x, path, features, lines, scope="in this batch of rows")
    x = match_input(x.astype(np.int64) if expect.inputs[0][2] == "int" else x, 0, expect, str(path))
    y = _csv_labels(path, [r[drop_at] for r in rows], lines, target, names, expect) if target is not None else None
    return RowBatch(start, [x], y)


def _csv_labels(path, cells: list[str], lines: list[int], target: str, names, expect: Expect) -> np.ndarray:
    require_labels(cells, lines, path, target)
    if names is not None:
        return _named_classes(np.array(cells), names, expect, path)
    try:
        y = np.array(cells).astype(np.float64)
    except ValueError:
        if expect.kind == "regression":
            return labels_from_array(np.array(cells), expect, str(path))  # says why text cannot be a target
        raise UserError(f"{path}: the label column '{target}' mixes numbers and text",
                        help="give every row a class name, or every row a number") from None
    require_finite_rows(y.reshape(len(y), 1), path, [target], lines, scope="in this batch of rows")
    return labels_from_array(y, expect, str(path))


def _text_classes(path: Path, delimiter: str, label_at: int, first_rows: list[list[str]], expect: Expect):
    """Sorted class names when the first batch's labels are text (a first pass over the label column), else None."""
    if expect.kind == "regression":
        return None
    try:
        np.array([r[label_at] for r in first_rows if r[label_at].strip()]).astype(np.float64)
        return None
    except ValueError:
        pass
    names = {row[label_at] for _, row in _csv_rows(path, delimiter) if row[label_at].strip()}
    return np.array(sorted(names))


def _named_classes(cells: np.ndarray, names: np.ndarray, expect: Expect, origin) -> np.ndarray:
    """Text labels -> ids in the sorted order of the whole column's names (as training numbers them)."""
    ids = np.searchsorted(names, cells.astype(str))
    return _class_labels(ids.astype(np.int64), len(names), expect, str(origin))


# ------------------------------------------------------------------ NPZ


@dataclass
class _Member:
    """One array of an .npz archive, known from its header alone."""

    key: str  # the array's name (the zip member without .npy)
    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype
    fortran: bool

    def __len__(self) -> int:
        return int(self.shape[0])


def npz_batches(path: Path, expect: Expect, batch: int, *, labels: bool) -> Iterator[RowBatch]:
    archive, members = _open_npz(path)
    with archive:
        if labels and "y" not in members:
            raise UserError(f"{path} has no array 'y' (labels); it has: {', '.join(members) or 'nothing'}")
        names = [n for n, _, _ in expect.inputs]
        chosen = npz_input_arrays(members, names, path)
        for member in [*chosen, *([members["y"]] if labels else [])]:
            _refuse_objects(member, path)
        samples = [input_layout(m.shape, m.dtype, i, expect, str(path)) for i, m in enumerate(chosen)]
        y = members["y"] if labels else None
        _check_rows(path, chosen, y)
        classes = _npz_text_classes(archive, y, batch, expect, path) if y is not None else None
        readers = [_member_rows(archive, m, batch, path) for m in [*chosen, *([y] if y is not None else [])]]
        for start in range(0, len(chosen[0]), batch):
            arrays = [next(r) for r in readers]
            inputs = []
            for i, (member, x, sample) in enumerate(zip(chosen, arrays, samples)):
                _require_finite(x, str(path), array=member.key, first_row=start, scope="in this batch of rows")
                x = x.reshape(len(x), *sample)
                inputs.append(x.astype(np.int64 if expect.inputs[i][2] == "int" else np.float32))
            labels_out = _npz_labels(arrays[-1], y, classes, start, expect, path) if y is not None else None
            yield RowBatch(start, inputs, labels_out)


def _check_rows(path: Path, inputs: list[_Member], y: _Member | None) -> None:
    """Every array has rows, and as many as the others: checked from the headers, before reading."""
    for m in [*inputs, *([y] if y is not None else [])]:
        if len(m.shape) == 0:
            raise UserError(f"{path}: array '{m.key}' is a single value, not rows", help=SAVE_HELP)
    if y is not None:
        if len(y) == 0:
            raise UserError(f"{path} has no rows: array 'y' is empty", help="give at least one sample")
        if any(len(m) != len(y) for m in inputs):
            raise UserError(f"{path}: {len(y)} labels but the inputs have {[len(m) for m in inputs]} rows")
    elif len({len(m) for m in inputs}) > 1:
        counts = ", ".join(f"'{m.key}' {len(m)}" for m in inputs)
        raise UserError(f"{path}: the input arrays have different numbers of rows ({counts})",
                        help="give every input array one row per sample")


def _npz_labels(y: np.ndarray, member: _Member, classes, start: int, expect: Expect, path: Path) -> np.ndarray:
    if classes is not None:
        return _named_classes(y, classes, expect, path)
    if y.dtype.kind == "f":
        _require_finite(y, str(path), array="y", first_row=start, scope="in this batch of rows")
    return labels_from_array(y, expect, str(path))


def _npz_text_classes(archive, y: _Member, batch: int, expect: Expect, path: Path):
    """Sorted class names of a text `y` (a first pass over that array alone), else None."""
    if y.dtype.kind not in "US" or expect.kind == "regression":
        return None
    names: set = set()
    for chunk in _member_rows(archive, y, batch, path):
        names.update(np.unique(chunk.astype(str)).tolist())
    return np.array(sorted(names))


def _open_npz(path: Path) -> tuple[zipfile.ZipFile, dict[str, _Member]]:
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    if magic.startswith(b"\x93NUMPY"):
        raise UserError(f"{path} holds a single array (.npy), not an .npz archive of named arrays", help=SAVE_HELP)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise UserError(f"{path} is not an .npz file (not a zip archive of arrays)", help=SAVE_HELP) from None
    try:
        members = {}
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with archive.open(info) as f:
                shape, fortran, dtype = _read_header(f)
            members[key] = _Member(key, info, tuple(shape), dtype, fortran)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as err:
        archive.close()
        raise UserError(f"{path} is not a readable .npz file ({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                        help=f"{SAVE_HELP}; object arrays (pickles) are refused") from None
    return archive, members


def _refuse_objects(member: _Member, path: Path) -> None:
    if member.dtype.hasobject:  # their rows are pickles, which could run code
        raise UserError(f"{path} is not a readable .npz file (array '{member.key}': Object arrays cannot be loaded "
                        "when allow_pickle=False)", help=f"{SAVE_HELP}; object arrays (pickles) are refused")


def _read_header(f) -> tuple[tuple, bool, np.dtype]:
    version = npy_format.read_magic(f)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(f)
    return npy_format.read_array_header_2_0(f)  # 2.0, and 3.0 (utf-8 field names) with ASCII ones


def _member_rows(archive: zipfile.ZipFile, member: _Member, batch: int, path: Path) -> Iterator[np.ndarray]:
    """The member's rows, `batch` at a time, read from the zip member as it decompresses."""
    _refuse_objects(member, path)
    with archive.open(member.info) as f:
        _read_header(f)
        if member.fortran:  # stored column by column: no row is contiguous, so this one array is read whole
            whole = np.frombuffer(_read_exactly(f, member.dtype.itemsize * int(np.prod(member.shape)), member, path),
                                  member.dtype).reshape(member.shape[::-1]).T
            for start in range(0, len(member), batch):
                yield whole[start:start + batch]
            return
        row_bytes = member.dtype.itemsize * int(np.prod(member.shape[1:]))
        for start in range(0, len(member), batch):
            n = min(batch, len(member) - start)
            data = _read_exactly(f, n * row_bytes, member, path)
            yield np.frombuffer(data, member.dtype, count=n * int(np.prod(member.shape[1:]))).reshape(n, *member.shape[1:])


def _read_exactly(f, size: int, member: _Member, path: Path) -> bytearray:
    buffer = bytearray(size)  # writable, so the arrays made on it are too
    view, got = memoryview(buffer), 0
    while got < size:
        n = f.readinto(view[got:])
        if not n:
            raise UserError(f"{path} is not a readable .npz file (array '{member.key}' is truncated: its header "
                            f"says {list(member.shape)} {member.dtype})", help=SAVE_HELP)
        got += n
    return buffer
