"""Training data, all offline: bundled scikit-learn sets, logic tables, synthetic data, CSV and NPZ.

Every source becomes the same thing: one float or int64 array per spec input plus labels in the
form the loss expects (multi-class: int64 class indices [N], or float distributions [N, C];
binary: float 0/1 shaped like the output; regression: float shaped like the output). Then a
seeded, stratified train/validation split, and standardisation of tabular features fitted on the
training split only. Batches are cut by indexing in-memory tensors (`Split.batch`): no DataLoader,
no per-sample Python.
"""
from __future__ import annotations

import array as _array
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..diagnostics import UserError
from ..catalog.settings import LOGIC_TABLES, SKLEARN_SETS, delimiter_problem
from ..fsutil import open_data_file
from ..memory import (MAX_LINE_CHARS, MAX_RECORD_CHARS, SYNTHETIC_MAX_LEN, require_available_memory,
                      synthetic_bytes)
from ..runconfig import RunConfig, resolve
from . import dense_labels as dense
from .npz_files import SAVE_HELP as NPZ_SAVE_HELP, Archive, names_text, shown_name

SOURCE_NAMES = (*(f"sklearn.{n}" for n in SKLEARN_SETS), *(f"logic.{n}" for n in LOGIC_TABLES), "synthetic", "csv", "npz")
CSV_CHUNK_CELLS = 1 << 18  # CSV cells turned into numbers at a time (bounds Python's per-cell memory)


@dataclass
class Arrays:
    """A whole data set as NumPy arrays: one per input (spec order), and the labels."""

    inputs: list[np.ndarray]
    y: np.ndarray
    origin: str  # words for messages: "sklearn.iris", "data.csv"
    tabular: bool = False  # rank-1 float features that standardisation applies to
    target: str | None = None  # the CSV label column, remembered for `predict`
    # JSON-safe facts a run keeps for evaluate and predict (checkpoint "data_meta", data.json):
    # "class_names" (the label of each class id), and a source's own fitted state under its name
    meta: dict[str, Any] = field(default_factory=dict)
    # A source fitted on the training rows (text: its vocabulary): (train indices, the data meta of a
    # run that fitted it earlier, or None) -> the Arrays to split. `prepare` calls it after splitting.
    fit: Callable[[np.ndarray, Mapping[str, Any] | None], "Arrays"] | None = None
    padded: bool = False  # one int input of right-padded token ids (0 = padding): PaddedSplit


@dataclass
class Split:
    """Tensors of one split, on the device the loop uses."""

    inputs: list[Any]
    y: Any

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, index) -> tuple[list[Any], Any]:
        return [x[index] for x in self.inputs], self.y[index]

    def batches(self, indices):
        """`batch` of each index in `indices` (the streamed split of images.py decodes them ahead)."""
        for index in indices:
            yield [x[index] for x in self.inputs], self.y[index]

    def to(self, device) -> "Split":
        return Split([x.to(device) for x in self.inputs], self.y.to(device))


@dataclass
class PaddedSplit(Split):
    """Right-padded token ids: each batch is cut to its longest row (dynamic padding), so a batch
    of short texts costs what short texts cost. The model masks the padding that remains."""

    lengths: Any = None  # tokens per row (on the CPU: cutting needs the number, not a tensor)

    def __post_init__(self) -> None:
        if self.lengths is None:
            self.lengths = (self.inputs[0] != 0).sum(1).cpu()

    def batch(self, index) -> tuple[list[Any], Any]:
        rows = self.lengths[index.cpu() if hasattr(index, "cpu") else index]  # a tensor of rows, or a slice
        longest = max(int(rows.max()), 1) if len(rows) else 1
        return [x[index, :longest] for x in self.inputs], self.y[index]

    def batches(self, indices):
        for index in indices:
            yield self.batch(index)

    def to(self, device) -> "PaddedSplit":
        return PaddedSplit([x.to(device) for x in self.inputs], self.y.to(device), self.lengths)


@dataclass
class Data:
    train: Split
    val: Split | None
    origin: str
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # input -> {"mean", "std"} tensors
    target: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # Arrays.meta


# ------------------------------------------------------------------ the `--data` option


def parse_source(text: str) -> tuple[str, dict[str, Any]]:
    """`--data` text for the Python API (`load_data(checked, path, "sklearn.wine")`): read by the
    spec's own grammar and bound against the data-source catalog (pipeline.data_option), so it is
    written, quoted and bounded exactly as in a spec. Commands never come here: the front door
    resolves `--data` into RunConfig.data."""
    from ..pipeline import data_option  # the one import of the front end from train/: see above

    return data_option(text)


def _bad_source(text: str) -> UserError:
    return UserError(f"unknown data source '{text}'",
                     help="use one of: " + ", ".join(SOURCE_NAMES[:-3])
                     + ', synthetic(n=1024), csv("file.csv", target="label"), npz("file.npz"), or a .csv/.npz path')


# ------------------------------------------------------------------ what the spec expects


@dataclass(frozen=True)
class Expect:
    """The shapes and labels the checked spec wants, for matching and for messages."""

    inputs: tuple[tuple[str, tuple[int | None, ...], str], ...]  # (name, shape, dtype)
    kind: str  # multiclass | binary | regression
    classes: int | None
    out_shape: tuple[int | None, ...]
    vocab: Mapping[str, int]  # int inputs -> the vocabulary of the Embedding reading them
    padding: Mapping[str, int] = field(default_factory=dict)  # int inputs -> that Embedding's padding_idx
    target_input: bool = False  # `target input`: the labels are the input (train/autoencoder.py)

    @staticmethod
    def of(checked) -> "Expect":
        g = checked.graph
        inputs = tuple((n, tuple(g.node(n).out.shape), g.node(n).out.dtype) for n in g.inputs)
        vocab, padding = {}, {}
        for node in g.nodes:
            if node.kind == "Embedding":
                for src in node.inputs:
                    vocab[src] = int(node.args["vocab"])
                    if node.args.get("padding_idx") is not None:
                        padding[src] = int(node.args["padding_idx"])
        task = checked.task
        kind = task.kind if task else "regression"
        return Expect(inputs, kind, task.classes if task else None, tuple(g.output_node.out.shape), vocab, padding,
                      target_input=checked.train.get("target") == "input")

    def shape_text(self, i: int) -> str:
        name, shape, dtype = self.inputs[i]
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        return f"{'int' if dtype == 'int' else ''}[{dims}]"


# ------------------------------------------------------------------ sources


def load_arrays(source: tuple[str, Mapping[str, Any]], expect: Expect, base_dir: Path, *,
                where: str | None = None) -> Arrays:
    """The arrays of a data source. `where`: where the source is written (the spec's file:line:col,
    or --data), for errors about the source itself; errors about a file's content name the file."""
    name, args = source
    try:
        arrays = _load_arrays(name, args, expect, base_dir)
        arrays.y = dense.match_inputs(arrays.inputs, arrays.y, expect, arrays.origin)  # per-step: padding not scored
        return arrays
    except UserError as err:
        if err.where is None and getattr(err, "about_source", False):
            err.where = where
        raise


def _load_arrays(name: str, args: Mapping[str, Any], expect: Expect, base_dir: Path) -> Arrays:
    if expect.target_input:
        from .autoencoder import reads_inputs, refuse_source

        if not reads_inputs(name):
            raise refuse_source(name)
    if name.startswith("sklearn."):
        return _sklearn(name.split(".", 1)[1], expect)
    if name.startswith("logic."):
        return _logic(name.split(".", 1)[1], expect)
    if name == "synthetic":
        n, seed = args.get("n", 1024), args.get("seed", 0)
        for key, value, low in (("n", n, 1), ("seed", seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise _source_error(f"`{key}` of data source synthetic must be a whole number >= {low}; "
                                    f"received {value!r}"[:200], help="e.g. synthetic(n=1024, seed=0)")
        try:
            require_available_memory(synthetic_memory(expect, n), f"synthetic(n={n})",
                           help="use a smaller n: synthetic data is made whole, in memory")
        except UserError as err:
            raise _source_error(err.message, help=err.help) from None
        return synthetic(expect, n, seed)
    if name in ("csv", "npz"):
        for key in ("path", "target", "delimiter"):
            value = args.get(key)
            if value is not None and not isinstance(value, str):
                raise _source_error(f"`{key}` of data source {name} must be a string; received "
                                    f"{type(value).__name__}", help=f'e.g. {name}("data.{name}")')
        if not args.get("path"):
            raise _source_error(f"the data source {name}(...) needs a path", help=f'e.g. {name}("data.{name}")')
        problem = delimiter_problem(args["delimiter"]) if args.get("delimiter") is not None else None
        if problem is not None:
            raise _source_error(f"`delimiter` of data source csv must be {problem}; received "
                                f"{args['delimiter']!r}"[:200], help='e.g. delimiter=";" or delimiter="\\t"')
    if expect.target_input and name in ("csv", "npz"):  # inputs only: no label column or array y
        from .autoencoder import input_rows

        return input_rows(resolve_path(args["path"], base_dir), args, expect)
    if name == "csv":
        return _csv(resolve_path(args["path"], base_dir), args.get("target"),
                    "," if args.get("delimiter") is None else args["delimiter"], expect)
    if name == "npz":
        return _npz(resolve_path(args["path"], base_dir), expect)
    if name == "text":  # raw text: token ids once a vocabulary is fitted on the training rows
        from .text import load_text

        rows = load_text(resolve_path(args["path"], base_dir), args, expect)
        return Arrays([], rows.y, rows.origin, target=rows.target, meta=rows.meta, fit=rows.fitted)
    if name == "images":
        from .images import load_images

        return load_images(args, expect, base_dir)
    if name in ("shards", "parquet"):  # bigger than memory: read from disk in batches (train/shards.py)
        from . import shards

        return (shards.load_shards if name == "shards" else shards.load_parquet)(args, expect, base_dir)
    raise _bad_source(name)


def _source_error(message: str, help: str | None = None) -> UserError:
    """An error about the data source's own arguments: load_arrays locates it where the source is written."""
    err = UserError(message, help=help)
    err.about_source = True
    return err


def resolve_path(path: str, base_dir: Path) -> Path:
    """A data file's path as written in a spec: relative to the spec's folder `base_dir`."""
    p = Path(path)
    return p if p.is_absolute() else base_dir / p


def _single_vector_input(expect: Expect, origin: str, features: int) -> tuple[int, ...]:
    """The one input's shape when `features` columns fill it; else a clear error."""
    if len(expect.inputs) != 1:
        names = ", ".join(n for n, _, _ in expect.inputs)
        raise UserError(f"{origin} gives one feature table but the model has {len(expect.inputs)} inputs ({names})",
                        help="give an npz file with one array per input name and y")
    name, shape, dtype = expect.inputs[0]
    if None in shape or int(np.prod(shape)) != features:
        raise UserError(f"{origin} has {features} features per row but input '{name}' expects {expect.shape_text(0)}",
                        help=f"declare `input {name}: [{features}]`, or use a data source with that shape")
    return shape


def _sklearn(which: str, expect: Expect) -> Arrays:
    from sklearn import datasets

    loaded = getattr(datasets, f"load_{which}")()
    x, y = loaded.data.astype(np.float32), loaded.target
    origin = f"sklearn.{which}"
    shape = _single_vector_input(expect, origin, x.shape[1])
    tabular = which != "digits"
    if which == "digits":
        x = x / 16.0  # pixels 0..16 -> [0, 1]
    x = x.reshape((len(x), *shape))
    tabular = tabular and len(shape) == 1
    if expect.target_input:  # an autoencoder's labels are its inputs (prepare makes them)
        return Arrays([x], x, origin, tabular)
    if which == "diabetes":
        return Arrays([x], _regression_labels(y.astype(np.float32), expect, origin), origin, tabular)
    names = [str(n) for n in loaded.target_names]
    return Arrays([x], class_labels(y, int(y.max()) + 1, expect, origin), origin, tabular,
                  meta={"class_names": names})


def _logic(op: str, expect: Expect) -> Arrays:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    a, b = x[:, 0].astype(bool), x[:, 1].astype(bool)
    y = {"and": a & b, "or": a | b, "xor": a ^ b, "nand": ~(a & b), "nor": ~(a | b)}[op].astype(np.int64)
    origin = f"logic.{op}"
    _single_vector_input(expect, origin, 2)
    if expect.kind == "regression":
        return Arrays([x], _regression_labels(y.astype(np.float32), expect, origin), origin)
    return Arrays([x], class_labels(y, 2, expect, origin), origin)


def class_labels(y: np.ndarray, classes: int, expect: Expect, origin: str) -> np.ndarray:
    """Integer class ids -> the labels the spec's loss expects, or a clear mismatch error."""
    if expect.kind == "regression":
        raise UserError(f"{origin} is a classification data set ({classes} classes) but the model is a regressor "
                        f"(output {list(expect.out_shape)}, a regression loss)",
                        help="use a classification loss such as categorical_crossentropy, or a regression data set")
    if expect.kind == "multiclass":
        if dense.positions(expect) is not None:
            raise dense.one_per_sample_error(expect, origin)
        if classes != expect.classes:
            raise UserError(f"{origin} has {classes} classes but the model's output has {expect.classes}",
                            help=f"end the network with Dense({classes}) -> softmax")
        return y.astype(np.int64)
    if classes != 2:
        raise UserError(f"{origin} has {classes} classes but the model is a binary classifier (sigmoid output)",
                        help=f"end the network with Dense({classes}) -> softmax and use categorical_crossentropy")
    return y.astype(np.float32).reshape(len(y), *expect.out_shape)


def _regression_labels(y: np.ndarray, expect: Expect, origin: str) -> np.ndarray:
    y = y.astype(np.float32)
    want = int(np.prod([d or 1 for d in expect.out_shape]))
    got = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    if got != want:
        raise UserError(f"{origin} has {got} target value(s) per row but the output is {list(expect.out_shape)}",
                        help=f"end the network with Dense({got})")
    return y.reshape(len(y), *expect.out_shape)


def labels_from_array(y: np.ndarray, expect: Expect, origin: str, place=None) -> np.ndarray:
    """Labels read from a file: class ids, one-hot rows, 0/1, or targets; checked against the spec.
    `place(i)`: where row i is, for messages (default: the row's index). A wrong label is named by
    its place and by what is wrong with it, never by its value (the file may be anything)."""
    if place is None:
        place = lambda i: f"{origin}: row {i}"  # noqa: E731
    if expect.kind == "regression":
        if not np.issubdtype(y.dtype, np.number) or y.dtype.kind == "c":
            what = "text" if y.dtype.kind in "US" else f"{y.dtype} values"
            raise UserError(f"{origin}: the target column holds {what} but the model is a regressor",
                            help="give numeric targets, or use a classification loss")
        targets = _regression_labels(y, expect, origin)
        _first_bad(~np.isfinite(targets.reshape(len(targets), -1)).all(1), place, "targets must be finite in float32",
                   "a target beyond its range (about ±3.4e38)", "scale the targets down")
        return targets
    if dense.positions(expect) is not None:  # a class per pixel / per step
        return dense.labels(y, expect, origin, place)
    if len(y) and y.ndim > 1 and expect.kind == "multiclass":
        columns = int(np.prod(y.shape[1:]))
        if y.ndim == 2 and columns == 1:
            y = y.reshape(len(y))  # a column of class ids
        elif y.ndim == 2 and columns == expect.classes and np.issubdtype(y.dtype, np.number):
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 -> inf: not a distribution
                y = y.astype(np.float32)
                sums = y.sum(1)
            if np.all((y == 0) | (y == 1)) and np.all(sums == 1):
                return y.argmax(1).astype(np.int64)  # one-hot rows -> indices
            if np.all(y >= 0) and np.allclose(sums, 1, atol=1e-4):
                return y  # distributions, e.g. for kl_divergence
            bad = ~(((y == 0) | (y == 1)).all(1) & (sums == 1)) & ~((y >= 0).all(1) & np.isclose(sums, 1, atol=1e-4))
            _first_bad(bad, place, f"labels of shape [{expect.classes}] per row must be one-hot rows or "
                       "distributions (non-negative, summing to 1)", "a row that is neither",
                       "give one-hot rows (a single 1) or class probabilities")
        else:
            raise UserError(f"{origin}: labels of shape {list(y.shape[1:])} per row; the model has {expect.classes} "
                            f"classes, so give one class id per row or one-hot rows of {expect.classes} values",
                            help=f"labels of shape [N] (ids 0..{expect.classes - 1}) or [N, {expect.classes}] (one-hot)")
    if expect.kind == "binary" and y.ndim > 1:
        if len(y) and tuple(y.shape[1:]) != tuple(expect.out_shape) and y[0].size != int(np.prod(expect.out_shape)):
            raise UserError(f"{origin}: labels of shape {list(y.shape[1:])} per row do not match the output "
                            f"{list(expect.out_shape)}")
        if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
            raise UserError(f"{origin}: binary labels must be 0 or 1; the labels hold {_kind_words(y.dtype)}")
        _first_bad(~((y == 0) | (y == 1)).reshape(len(y), -1).all(1), place, "binary labels must be 0 or 1",
                   "a label other than 0 or 1", "a sigmoid output is trained on 0/1 labels")
        return y.astype(np.float32).reshape(len(y), *expect.out_shape)
    if not np.issubdtype(y.dtype, np.number) or y.dtype == bool:  # text classes -> ids in sorted order
        names, ids = np.unique(y if y.dtype.kind in "SU" else y.astype(str), return_inverse=True)
        return class_labels(ids.reshape(len(y)), len(names), expect, origin)
    classes = expect.classes if expect.kind == "multiclass" else 2
    values = y.astype(np.float64)  # compared before any cast: 1e30 or 2**64 - 1 must not wrap around
    expected = f"class labels must be integers 0..{classes - 1} (the model has {classes} classes)"
    _first_bad(values != np.round(values), place, expected, "a fractional label",
               "give each row the integer id of its class")
    _first_bad(values < 0, place, expected, "a negative label", "give each row the integer id of its class")
    _first_bad(values >= classes, place, expected, f"a class label above {classes - 1}",
               "end the network with one unit per class (Dense(K) -> softmax for K classes), "
               "counting the classes in the labels")
    return class_labels(values.astype(np.int64).reshape(len(y)), classes, expect, origin)


def _first_bad(bad: np.ndarray, place, expected: str, received: str, help: str) -> None:
    """Refuse the first row where `bad` holds: its place, what was expected, what it holds (in words,
    never its value) and how many rows do."""
    if bad.any():
        first = int(np.argmax(bad))
        count = int(bad.sum())
        raise UserError(f"{place(first)}: {expected}; received {received}"
                        + (f" ({count} such rows)" if count > 1 else ""), help=help)


def _kind_words(dtype: np.dtype) -> str:
    return "text" if dtype.kind in "SU" else f"{dtype} values"


def _csv(path: Path, target: str | None, delimiter: str, expect: Expect) -> Arrays:
    """A CSV file read row by row, its features turned into float32 a chunk of rows at a time (so
    memory stays near the size of the numbers, not of Python's strings for every cell)."""
    rows = csv_rows(path, delimiter, what="data file", help="paths in a spec are relative to the spec file")
    header = next(rows, None)
    if header is None:
        raise UserError(f"{path} has no data rows", help="a CSV file needs a header line and at least one row")
    header_line, header = header
    t = label_column(header, target, path, header_line, delimiter)
    label = label_name(target, t)
    features = feature_columns(len(header), t)
    xs, cells, lines = [], [], _array.array("q")
    chunk: list[list[str]] = []
    chunk_lines: list[int] = []
    interned: dict[str, str] = {}  # class labels repeat: one string each

    def flush() -> None:
        x = numeric_rows([r[:t] + r[t + 1:] for r in chunk], path, features, chunk_lines)
        require_finite_rows(x, path, features, chunk_lines)
        xs.append(x)
        chunk.clear()
        chunk_lines.clear()

    per_chunk = max(1, CSV_CHUNK_CELLS // max(len(header), 1))
    for line, row in rows:
        value = row[t]
        if not value.strip():
            raise UserError(f"{path}:{line}: {label} is empty", help="every row needs a label")
        cells.append(interned.setdefault(value, value))
        lines.append(line)
        chunk.append(row)
        chunk_lines.append(line)
        if len(chunk) >= per_chunk:
            flush()
    if chunk:
        flush()
    if not cells:
        raise UserError(f"{path} has no data rows", help="a CSV file needs a header line and at least one row")
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    del xs, interned
    shape = _single_vector_input(expect, str(path), x.shape[1])
    if expect.inputs[0][2] == "int":
        x = csv_token_ids(x, path, features, lines, expect)
    numbers = label_numbers(cells)
    meta = {}
    if numbers is None:  # text: class names, numbered in sorted order
        y, meta["class_names"] = text_classes(cells, expect, str(path))
    else:
        require_finite_rows(numbers.reshape(len(numbers), 1), path, [label], lines)
        y = labels_from_array(numbers, expect, str(path), place=lambda i: f"{path}:{lines[i]}")
    return Arrays([x.reshape(len(x), *shape)], y, str(path), tabular=len(shape) == 1, target=header[t], meta=meta)


def csv_token_ids(x: np.ndarray, path: Path, columns: list[str], lines, expect: Expect) -> np.ndarray:
    """CSV cells (float32, finite) for an `int` input -> int64 token ids: whole numbers within the
    vocabulary of the Embedding reading them, checked before the cast."""
    vocab = expect.vocab.get(expect.inputs[0][0])
    bad = (x != np.round(x)) | (x < 0)
    if vocab is not None:
        bad |= x >= vocab
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        top = f"0..{vocab - 1}" if vocab is not None else "0 or more"
        raise UserError(f"{path}:{lines[row]}: {columns[col]} holds a value that is not a token id (a whole number "
                        f"{top}) ({int(bad.sum())} such value{'s' if int(bad.sum()) != 1 else ''})",
                        help="token ids index the Embedding's vocabulary: raise `vocab`, or map rare tokens to an id below it")
    return x.astype(np.int64)


def label_numbers(cells: list[str]) -> np.ndarray | None:
    """A label column's cells as float64 numbers, or None when one of them is not a number."""
    try:
        return np.array(cells, dtype=np.float64)
    except (ValueError, OverflowError):
        return None


def text_classes(cells: list[str], expect: Expect, origin: str) -> tuple[np.ndarray, list[str]]:
    """Text labels -> (ids of the names in sorted order, in the form the loss expects (never one
    fixed-width string array as wide as the longest cell); the names)."""
    if expect.kind == "regression":
        raise UserError(f"{origin}: the target column holds text but the model is a regressor",
                        help="give numeric targets, or use a classification loss")
    names = sorted(set(cells))
    index = {name: i for i, name in enumerate(names)}
    return class_labels(np.fromiter((index[c] for c in cells), np.int64, len(cells)), len(names), expect, origin), names


def label_column(header: list[str], target: str | None, path: Path, line: int = 1, delimiter: str = ",") -> int:
    """The index of the label column: `target`'s, or the last. A missing column is named as the spec
    wrote it; the file's own header is never quoted (the file may be anything a spec names)."""
    if target is None:
        return len(header) - 1
    if target in header:
        return header.index(target)
    hint = ('name the label column as the header (line 1) of the file names it: csv("file.csv", target="label")')
    if len(header) == 1:
        hint = (f"the header has a single column when split at {delimiter!r}: is the delimiter right? "
                'e.g. csv("file.csv", target="label", delimiter=";")')
    raise UserError(f"{path}: no column named '{target}' in the header (line {line}, {len(header)} "
                    f"column{'s' if len(header) != 1 else ''})", help=hint)


def label_name(target: str | None, index: int) -> str:
    """The label column in messages: by the name the spec gave, else by its position."""
    return f"the label column '{target}'" if target is not None else f"the label column (column {index + 1}, the last)"


def feature_columns(width: int, label_at: int | None) -> list[str]:
    """The feature columns in messages: by position in the file (1 = first), never by the header's text."""
    return [f"column {i + 1}" for i in range(width) if i != label_at]


def require_finite(x: np.ndarray, origin: str, columns: list[str] | None = None, first_line: int | None = None,
                   array: str | None = None, first_row: int = 0, scope: str = "in all",
                   lines: list[int] | None = None) -> None:
    """NaN or infinite values would turn the loss into NaN after an epoch of wasted time: refuse them
    here, naming the file, the row and the column (CSV) or the array and the index (NPZ).
    `first_row`: x is a batch of rows from there on (indices are the whole array's); `scope` words the count.
    `columns`: how the CSV columns are named in messages; `lines[i]`: the file line of row i."""
    if x.dtype.kind != "f" or np.isfinite(x).all():
        return
    where = np.argwhere(~np.isfinite(x))[0]
    value = x[tuple(where)]
    what = "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if columns is not None:
        line = lines[int(where[0])] if lines is not None else int(where[0]) + (first_line or 0)
        place = f"{origin}:{line}: {columns[int(where[1]) if x.ndim > 1 else 0]} holds {what}"
    else:
        index = (int(where[0]) + first_row, *(int(i) for i in where[1:]))
        place = f"{origin}: array '{array}' holds {what} at index {index}"
    count = int((~np.isfinite(x)).sum())
    beyond = " (or a number beyond float32's range, about ±3.4e38)" if what != "nan" else ""
    raise UserError(f"{place}{beyond}, not a finite number ({count} such value{'s' if count != 1 else ''} {scope})",
                    help="remove or fill in the missing values (NaN) and infinities before training")


class _Lines:
    """The lines of a text file for csv.reader, each at most MAX_LINE_CHARS long, and one record
    (quoted fields may span lines) at most MAX_RECORD_CHARS: `/dev/zero`-like content with no line
    end cannot grow without bound. `number`: the lines read so far."""

    def __init__(self, f, path: Path):
        self.f, self.path = f, path
        self.number = 0
        self.record = 0  # characters of the record being read

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.f.readline(MAX_LINE_CHARS + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith(("\n", "\r")):
            raise UserError(f"{self.path}:{self.number}: line {self.number} is longer than "
                            f"{MAX_LINE_CHARS // (1 << 20)} MiB of text; nnspec reads CSV lines up to that length",
                            help="is this a CSV file? split the data into rows, one per line")
        self.record += len(line)
        if self.record > MAX_RECORD_CHARS:
            raise UserError(f"{self.path}:{self.number}: a quoted field runs on past line {self.number}, over "
                            f"{MAX_RECORD_CHARS // (1 << 20)} MiB of text in one row",
                            help="is a closing double quote missing?")
        return line


def csv_rows(path: Path, delimiter: str, *, what: str = "file", help: str | None = None):
    """(line in the file, row) of every non-empty row, the header first; a row whose width is not
    the header's is an error naming its line. `what`, `help`: how a missing file is reported.
    Only regular files are read (not /dev/zero, a pipe, a folder); lines are bounded (_Lines).
    Messages give positions, never the file's text."""
    problem = delimiter_problem(delimiter)
    if problem is not None:
        raise UserError(f"the CSV delimiter must be {problem}; received {delimiter!r}"[:200],
                        help='e.g. csv("file.csv", delimiter=";") or delimiter="\\t" for tabs')
    with open_data_file(path, what, help=help or "check the path") as f:
        lines = _Lines(f, path)
        reader = csv.reader(lines, delimiter=delimiter)
        width = None
        try:
            for row in reader:
                lines.record = 0
                if not row:
                    continue
                if width is not None and len(row) != width:
                    raise UserError(f"{path}:{reader.line_num}: {len(row)} values but the header has {width} columns")
                width = len(row) if width is None else width
                yield reader.line_num, row
        except UnicodeDecodeError:
            raise UserError(f"{path}:{lines.number + 1}: line {lines.number + 1} is not UTF-8 text: "
                            f"{path} is not a readable CSV file", help="save the data as UTF-8 text") from None
        except csv.Error as err:
            raise UserError(f"{path}:{reader.line_num}: {path} is not a readable CSV file ({_csv_problem(err)})") from None


def _csv_problem(err: csv.Error) -> str:
    """csv's message, in words that quote nothing of the file."""
    text = str(err)
    if "NUL" in text:
        return "a NUL byte: is it a binary file?"
    if "field larger than field limit" in text:
        return f"a field longer than {csv.field_size_limit():,} characters"
    if "new-line character" in text:
        return "a line break inside an unquoted field"
    if "expected after" in text:
        return "a closing double quote not followed by the delimiter"
    if "unexpected end of data" in text:
        return "the file ends inside a quoted field"
    return "malformed quoting"


def require_finite_rows(x: np.ndarray, path: Path, columns: list[str], lines, scope: str = "in all") -> None:
    """CSV rows (x[i] read from file line lines[i]) must hold finite numbers: the first that does
    not is named by its line and column."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(1) if x.dtype.kind == "f" else None
    if bad is not None and bad.any():
        first = int(np.argmax(bad))
        require_finite(x[first:], str(path), columns, lines=list(lines[first:first + len(x)]), scope=scope)


def require_labels(cells: list[str], lines: list[int], path: Path, target: str) -> list[str]:
    """Every row of the label column holds something. `target`: the column's words in messages."""
    empty = next((line for line, v in zip(lines, cells) if not v.strip()), None)
    if empty is not None:
        raise UserError(f"{path}:{empty}: {target} is empty", help="every row needs a label")
    return cells


def numeric_rows(rows: list[list[str]], path: Path, names: list[str], lines=None) -> np.ndarray:
    """CSV cells -> float32 rows; a cell that is not a number is named by its file line (`lines`,
    default: the rows follow the header) and its column (`names`: the columns' words in messages).
    The cell itself is not quoted: the file may be anything a spec names."""
    try:
        return np.array(rows, dtype=np.float32).reshape(len(rows), len(names))
    except (ValueError, OverflowError):
        for i, row in zip(lines if lines is not None else range(2, len(rows) + 2), rows):
            for name, v in zip(names, row):
                try:
                    float(v)
                except (ValueError, OverflowError):
                    what = "is empty" if not v.strip() else "holds text"
                    raise UserError(f"{path}:{i}: {name} {what}, not a number",
                                    help="feature columns must be numeric") from None
        raise


def npz_input_arrays(arrays, names: list[str], path) -> list:
    """The arrays of an .npz that feed the inputs: one per input name, or `x` for a single input.
    `arrays`: a mapping from the archive's array names (to arrays, members or zip entries)."""
    if all(n in arrays for n in names):
        return [arrays[n] for n in names]
    if "x" in arrays and len(names) == 1:
        return [arrays["x"]]
    raise UserError(f"{path} needs an array 'x' (one input) or one array per input ({', '.join(names)}); "
                    f"it has: {names_text(arrays)}")


def npz_input_keys(arrays, names: list[str], path) -> list[str]:
    """The names of the arrays npz_input_arrays picks."""
    return names if all(n in arrays for n in names) else ["x"] if "x" in arrays and len(names) == 1 \
        else npz_input_arrays(arrays, names, path)


def check_npz_rows(path: Path, inputs, y) -> None:
    """Every array has rows, and as many as the others: checked from the headers, before reading."""
    for m in [*inputs, *([y] if y is not None else [])]:
        if len(m.shape) == 0:
            raise UserError(f"{path}: array '{shown_name(m.key)}' is a single value, not rows", help=NPZ_SAVE_HELP)
    if y is not None:
        if len(y) == 0:
            raise UserError(f"{path} has no rows: array 'y' is empty", help="give at least one sample")
        if any(len(m) != len(y) for m in inputs):
            raise UserError(f"{path}: {len(y)} labels but the inputs have {[len(m) for m in inputs]} rows")
    elif len({len(m) for m in inputs}) > 1:
        counts = ", ".join(f"'{shown_name(m.key)}' {len(m)}" for m in inputs)
        raise UserError(f"{path}: the input arrays have different numbers of rows ({counts})",
                        help="give every input array one row per sample")


def _npz(path: Path, expect: Expect) -> Arrays:
    """Only the arrays the spec uses are read, after their headers are checked (names, shapes,
    dtypes, row counts, sizes against the archive and against the memory available)."""
    with Archive(path) as archive:
        if "y" not in archive.names:
            raise UserError(f"{path} has no array 'y' (labels); it has: {names_text(archive.names)}")
        names = [n for n, _, _ in expect.inputs]
        keys = npz_input_keys(archive.names, names, path)
        members = [archive.member(k) for k in keys]
        y_member = archive.member("y")
        check_npz_rows(path, members, y_member)
        samples = [input_layout(m.shape, m.dtype, i, expect, str(path)) for i, m in enumerate(members)]
        converted = sum(len(m) * math.prod(s) * (8 if expect.inputs[i][2] == "int" else 4)
                        for i, (m, s) in enumerate(zip(members, samples)))
        need = sum(m.nbytes for m in members) + y_member.nbytes + converted + 8 * y_member.count
        require_available_memory(need, f"{path} ({', '.join(m.describe() for m in [*members, y_member])})",
                       help="use a smaller data set, or evaluate and predict it in batches")
        inputs = []
        for i, (m, key) in enumerate(zip(members, keys)):
            raw = archive.read(m)
            inputs.append(match_array(raw, i, expect, str(path), array=key))
            del raw
        y = archive.read(y_member)
    if y.dtype.kind == "f":
        require_finite(y, str(path), array="y")
    y = labels_from_array(y, expect, str(path), place=lambda i: f"{path}: array 'y' at index {i}")
    tabular = len(inputs) == 1 and inputs[0].ndim == 2 and inputs[0].dtype == np.float32
    return Arrays(inputs, y, str(path), tabular=tabular)


def match_input(x: np.ndarray, i: int, expect: Expect, origin: str) -> np.ndarray:
    return match_array(x, i, expect, origin)


def input_layout(shape: tuple, dtype: np.dtype, i: int, expect: Expect, origin: str) -> tuple:
    """Check one input array's shape (with batch) and dtype against the spec -> the per-sample shape
    its rows take. Needs no data, only the array's header (an .npz member is streamed)."""
    name, want, kind = expect.inputs[i]
    got = tuple(shape[1:])
    ok = len(got) == len(want) and all(s is None or s == g for s, g in zip(want, got))
    if not ok and None not in want and len(shape) >= 2 and int(np.prod(got)) == int(np.prod(want)):
        got, ok = tuple(want), True  # flat rows of a fixed shape
    if not ok:
        raise UserError(f"{origin}: input '{name}' expects {expect.shape_text(i)} per sample; "
                        f"received {list(shape[1:])} (array of shape {list(shape)})")
    if kind == "int" and not np.issubdtype(dtype, np.integer):
        raise UserError(f"{origin}: input '{name}' expects integer token ids ({expect.shape_text(i)}); "
                        f"received {dtype} values")
    if not np.issubdtype(dtype, np.number):
        raise UserError(f"{origin}: input '{name}' expects numbers; received {dtype} values")
    return got


def match_array(x: np.ndarray, i: int, expect: Expect, origin: str, array: str | None = None,
                first_row: int = 0, scope: str = "in all") -> np.ndarray:
    """Check one input array against the spec (shape without batch, dtype) -> float32 or int64 rows:
    token ids within the vocabulary of the Embedding that reads them, floats finite in float32.
    `array`, `first_row`: how messages name the array and the index of x's first row."""
    sample = input_layout(x.shape, x.dtype, i, expect, origin)
    x = x.reshape(len(x), *sample)
    name, _, kind = expect.inputs[i]
    if kind == "int":
        require_token_ids(x, expect.vocab.get(name), origin, array or name, first_row)
        return x.astype(np.int64, copy=False)
    with np.errstate(over="ignore"):  # beyond float32's range -> inf, refused just below
        x = x.astype(np.float32, copy=False)
    if array is not None:
        require_finite(x, origin, array=array, first_row=first_row, scope=scope)
    return x


def require_token_ids(x: np.ndarray, vocab: int | None, origin: str, array: str, first_row: int = 0) -> None:
    """Integer token ids must index the vocabulary: 0..vocab-1 (compared before any cast, so that
    2**64 - 1 cannot wrap around to -1)."""
    if x.size == 0:
        return
    bad = x < 0
    if vocab is not None:
        bad = bad | (x >= vocab)
    if bad.any():
        where = np.argwhere(bad)[0]
        index = (int(where[0]) + first_row, *(int(i) for i in where[1:]))
        top = f"0..{vocab - 1}" if vocab is not None else "0 or more"
        raise UserError(f"{origin}: array '{array}' holds a token id outside {top} at index {index} "
                        f"({int(bad.sum())} such value{'s' if int(bad.sum()) != 1 else ''})",
                        help="token ids index the Embedding's vocabulary: raise `vocab`, or map rare tokens to an id below it")


# ------------------------------------------------------------------ synthetic data


def synthetic_memory(expect: Expect, n: int) -> int:
    """Bytes `synthetic` holds at its peak: the data, and the float64 draw of its largest input."""
    outputs = expect.classes if expect.kind == "multiclass" else math.prod(d or 1 for d in expect.out_shape)
    if dense.positions(expect) is not None:  # a score per class and position
        outputs = expect.classes * math.prod(d or SYNTHETIC_MAX_LEN for d in dense.positions(expect))
    data = synthetic_bytes([(shape, dtype) for _, shape, dtype in expect.inputs], outputs or 1, n)
    draw = max((8 * n * math.prod(d or SYNTHETIC_MAX_LEN for d in shape) for _, shape, _ in expect.inputs), default=0)
    return data + draw


def synthetic(expect: Expect, n: int, seed: int) -> Arrays:
    """Random inputs matched to the spec, and labels that depend on them (a learnable signal)."""
    rng = np.random.default_rng(seed)
    outputs = int(np.prod([d or 1 for d in expect.out_shape])) if expect.kind != "multiclass" else expect.classes
    inputs, score = [], np.zeros((n, outputs), np.float32)
    for name, shape, dtype in expect.inputs:
        if dtype == "int":
            x, s = _tokens(rng, n, shape, expect.vocab.get(name, 100), outputs)
        else:
            x = rng.standard_normal((n, *[d or SYNTHETIC_MAX_LEN for d in shape])).astype(np.float32)
            w = rng.standard_normal((int(np.prod(x.shape[1:])), outputs)).astype(np.float32)
            s = x.reshape(n, -1) @ w / np.sqrt(w.shape[0])
        inputs.append(x)
        score += s
    return Arrays(inputs, _synthetic_labels(score, inputs, expect, rng), f"synthetic(n={n}, seed={seed})")


def _tokens(rng, n: int, shape, vocab: int, outputs: int):
    length = shape[0] or SYNTHETIC_MAX_LEN
    x = rng.integers(1, max(vocab, 2), size=(n, length)).astype(np.int64)
    if shape[0] is None:  # `?` lengths: pad the tail of each row with 0
        lengths = rng.integers(length // 2, length + 1, size=n)
        x[np.arange(length)[None, :] >= lengths[:, None]] = 0
    table = rng.standard_normal((max(vocab, 2), outputs)).astype(np.float32)
    table[0] = 0.0
    counts = np.maximum((x != 0).sum(1, keepdims=True), 1)
    return x, table[x].sum(1) / np.sqrt(counts)


def _synthetic_labels(score: np.ndarray, inputs: list[np.ndarray], expect: Expect, rng) -> np.ndarray:
    n = len(score)
    if expect.kind == "multiclass":
        if dense.positions(expect) is not None:
            return dense.synthetic_labels(inputs, expect, rng)
        return score.argmax(1).astype(np.int64)
    if expect.kind == "binary":
        out = expect.out_shape
        if len(out) == 3:  # per-pixel masks: bright where the (first) image is positive
            image = next((x for x in inputs if x.ndim == 4 and x.shape[2:] == out[1:]), None)
            if image is not None:
                return np.broadcast_to((image.mean(1, keepdims=True) > 0), (n, *out)).astype(np.float32)
        labels = (score > np.median(score, axis=0)).astype(np.float32)
        return np.broadcast_to(labels[:, :1].reshape(n, *([1] * len(out))), (n, *out)).copy() \
            if labels.shape[1] != int(np.prod(out)) else labels.reshape(n, *out)
    noise = 0.1 * rng.standard_normal(score.shape).astype(np.float32)
    return (score + noise).reshape(n, *expect.out_shape)


# ------------------------------------------------------------------ split and standardise


def split_indices(y: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation indices, stratified by class when every class has 2+ rows."""
    n = len(y)
    idx = np.arange(n)
    if fraction <= 0:
        return idx, idx[:0]
    n_val = max(1, int(round(n * fraction)))
    if n_val >= n:
        raise UserError(f"validation {fraction} of {n} rows leaves nothing to train on",
                        help="lower `validation`, or give more data")
    from sklearn.model_selection import train_test_split

    strata = None
    if stratify and y.ndim == 1:
        counts = np.bincount(y)
        if counts[counts > 0].min() >= 2 and n_val >= int((counts > 0).sum()) and n - n_val >= int((counts > 0).sum()):
            strata = y
    train, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=strata)
    return np.sort(train), np.sort(val)


def fold_indices(y: np.ndarray, fold: tuple[int, int], seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fold k of K (k from 0): its rows validate, the others train. Seeded and shuffled, stratified
    by class when every class has at least K rows, so the K validation folds partition the data."""
    from sklearn.model_selection import KFold, StratifiedKFold

    k, folds = fold
    n = len(y)
    if folds > n:
        raise UserError(f"folds {folds} needs at least {folds} rows; the data has {n}",
                        help=f"use at most `folds {max(n, 2)}`, or give more data")
    strata = None
    if stratify and y.ndim == 1:
        counts = np.bincount(y)
        if counts[counts > 0].min() >= folds:
            strata = y
    splitter = (StratifiedKFold if strata is not None else KFold)(folds, shuffle=True, random_state=seed)
    train, val = list(splitter.split(np.zeros(n), strata))[k]
    return np.sort(train), np.sort(val)


def fit_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = x.mean(0), x.std(0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):  # values near float32's limit: sum in float64
        mean, std = x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)
    return {"mean": mean.astype(np.float32), "std": safe_std(std)}


def safe_std(std: np.ndarray) -> np.ndarray:
    """A fitted std as float32, with 1 for a (near-)constant feature: standardising it divides by 1."""
    return np.where(std > 1e-12, std, 1.0).astype(np.float32)


def prepare(arrays: Arrays, expect: Expect, validation: float, seed: int, standardize: bool,
            fold: tuple[int, int] | None = None, fitted: Mapping[str, Any] | None = None) -> Data:
    """Split, fit on the training rows, standardise. `fitted`: the data meta of a run whose fitted
    state (a vocabulary) is reused instead of fitted again (evaluate)."""
    import torch

    from . import images

    # by class when each sample has one (not for a class per pixel or step)
    stratify = (expect.kind == "multiclass" and arrays.y.ndim == 1) or (expect.kind == "binary" and arrays.y.ndim == 2 and arrays.y.shape[1] == 1)
    if arrays.y.ndim == 1:
        strata_y = arrays.y
    else:  # the first value of each row; as class ids only where they are (regression targets may be 1e30)
        strata_y = arrays.y.reshape(len(arrays.y), -1)[:, 0]
        strata_y = strata_y.astype(np.int64) if stratify else strata_y
    stratify = stratify and strata_y.dtype == np.int64
    train_idx, val_idx = (fold_indices(strata_y, fold, seed, stratify) if fold is not None
                          else split_indices(strata_y, validation, seed, stratify))
    if arrays.fit is not None:  # fitted on the training rows only: validation rows stay unseen
        arrays = arrays.fit(train_idx, fitted)
    from . import shards

    if shards.is_sharded(arrays):  # rows on disk: statistics streamed, batches read by workers
        return shards.prepare_split(arrays, expect, train_idx, val_idx, standardize)
    stats = {}
    inputs = list(arrays.inputs)
    if standardize and arrays.tabular:
        name = expect.inputs[0][0]
        s = fit_stats(inputs[0][train_idx])
        inputs[0] = (inputs[0] - s["mean"]) / s["std"]
        stats[name] = {k: torch.from_numpy(v) for k, v in s.items()}
    labels = arrays.y
    if expect.target_input:  # the input as the model sees it (standardised), in the output's shape
        from .autoencoder import labels_from_inputs

        labels = labels_from_inputs(inputs, expect.out_shape)

    def split(idx) -> Split:
        if images.is_streamed(arrays):  # image files: decoded batch by batch, labels in memory
            return images.streamed_split(arrays, idx, torch)
        kind = PaddedSplit if arrays.padded else Split
        return kind([torch.from_numpy(np.ascontiguousarray(x[idx])) for x in inputs],
                    torch.from_numpy(np.ascontiguousarray(labels[idx])))

    val = split(val_idx) if len(val_idx) else None
    return Data(split(train_idx), val, arrays.origin, stats, arrays.target, dict(arrays.meta))


def load_data(run, spec_path: str | Path | None = None, override: str | tuple | None = None, *,
              validation: float | None = None, seed: int | None = None, fold: tuple[int, int] | None = None,
              fitted: Mapping[str, Any] | None = None) -> Data:
    """A run's data (`run`: a RunConfig), checked against the spec's inputs and task, split (by
    `validation`, or into cross-validation fold (k, K)) and standardised. For the Python API, `run`
    may be a checked spec with its file's path and a data `override` (`--data` text, or a bound source)."""
    if not isinstance(run, RunConfig):
        run = _run_of(run, spec_path, override)
    expect = Expect.of(run.checked)
    arrays = load_arrays(run.data, expect, run.base_dir, where=run.data_where)
    return prepare(arrays, expect, run.validation if validation is None else validation,
                   run.seed if seed is None else seed, run.standardize, fold, fitted)


def _run_of(checked, spec_path, override) -> RunConfig:
    """The RunConfig of a checked spec read from `spec_path`, trained on `override` if given."""
    where = None
    if isinstance(override, str):
        from ..pipeline import data_override  # the front end, for the Python API's `--data` text

        override, where = data_override(override)
    return resolve(checked, "", str(spec_path) if spec_path else "", data=override, data_where=where)
