"""Training data, all offline: bundled scikit-learn sets, logic tables, synthetic data, CSV and NPZ.

Every source becomes the same thing: one float or int64 array per spec input plus labels in the
form the loss expects (multi-class: int64 class indices [N], or float distributions [N, C];
binary: float 0/1 shaped like the output; regression: float shaped like the output). Then a
seeded, stratified train/validation split, and standardisation of tabular features fitted on the
training split only. Batches are cut by indexing in-memory tensors (`Split.batch`): no DataLoader,
no per-sample Python.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..diagnostics import UserError
from ..catalog.settings import LOGIC_TABLES, SKLEARN_SETS

SOURCE_NAMES = (*(f"sklearn.{n}" for n in SKLEARN_SETS), *(f"logic.{n}" for n in LOGIC_TABLES), "synthetic", "csv", "npz")
SYNTHETIC_MAX_LEN = 24  # length of padded batches made for `int[?]` inputs


@dataclass
class Arrays:
    """A whole data set as NumPy arrays: one per input (spec order), and the labels."""

    inputs: list[np.ndarray]
    y: np.ndarray
    origin: str  # words for messages: "sklearn.iris", "data.csv"
    tabular: bool = False  # rank-1 float features that standardisation applies to
    target: str | None = None  # the CSV label column, remembered for `predict`


@dataclass
class Split:
    """Tensors of one split, on the device the loop uses."""

    inputs: list[Any]
    y: Any

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, index) -> tuple[list[Any], Any]:
        return [x[index] for x in self.inputs], self.y[index]

    def to(self, device) -> "Split":
        return Split([x.to(device) for x in self.inputs], self.y.to(device))


@dataclass
class Data:
    train: Split
    val: Split | None
    origin: str
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # input -> {"mean", "std"} tensors
    target: str | None = None


# ------------------------------------------------------------------ the `--data` option


def parse_source(text: str) -> tuple[str, dict[str, Any]]:
    """`--data`: read by the spec's own grammar and bound against the data-source catalog
    (pipeline.data_option), so it is written, quoted and bounded exactly as in a spec."""
    from ..pipeline import data_option  # the front end; imported here, where the option is read

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

    @staticmethod
    def of(checked) -> "Expect":
        g = checked.graph
        inputs = tuple((n, tuple(g.node(n).out.shape), g.node(n).out.dtype) for n in g.inputs)
        vocab = {}
        for node in g.nodes:
            if node.kind == "Embedding":
                for src in node.inputs:
                    vocab[src] = int(node.args["vocab"])
        task = checked.task
        kind = task.kind if task else "regression"
        return Expect(inputs, kind, task.classes if task else None, tuple(g.output_node.out.shape), vocab)

    def shape_text(self, i: int) -> str:
        name, shape, dtype = self.inputs[i]
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        return f"{'int' if dtype == 'int' else ''}[{dims}]"


# ------------------------------------------------------------------ sources


def load_arrays(source: tuple[str, Mapping[str, Any]], expect: Expect, base_dir: Path) -> Arrays:
    name, args = source
    if name.startswith("sklearn."):
        return _sklearn(name.split(".", 1)[1], expect)
    if name.startswith("logic."):
        return _logic(name.split(".", 1)[1], expect)
    if name == "synthetic":
        return synthetic(expect, int(args.get("n", 1024)), int(args.get("seed", 0)))
    if name == "csv":
        return _csv(_resolve(args["path"], base_dir), args.get("target"), args.get("delimiter", ","), expect)
    if name == "npz":
        return _npz(_resolve(args["path"], base_dir), expect)
    raise _bad_source(name)


def _resolve(path: str, base_dir: Path) -> Path:
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
    if which == "diabetes":
        return Arrays([x], _regression_labels(y.astype(np.float32), expect, origin), origin, tabular)
    return Arrays([x], _class_labels(y, int(y.max()) + 1, expect, origin), origin, tabular)


def _logic(op: str, expect: Expect) -> Arrays:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    a, b = x[:, 0].astype(bool), x[:, 1].astype(bool)
    y = {"and": a & b, "or": a | b, "xor": a ^ b, "nand": ~(a & b), "nor": ~(a | b)}[op].astype(np.int64)
    origin = f"logic.{op}"
    _single_vector_input(expect, origin, 2)
    if expect.kind == "regression":
        return Arrays([x], _regression_labels(y.astype(np.float32), expect, origin), origin)
    return Arrays([x], _class_labels(y, 2, expect, origin), origin)


def _class_labels(y: np.ndarray, classes: int, expect: Expect, origin: str) -> np.ndarray:
    """Integer class ids -> the labels the spec's loss expects, or a clear mismatch error."""
    if expect.kind == "regression":
        raise UserError(f"{origin} is a classification data set ({classes} classes) but the model is a regressor "
                        f"(output {list(expect.out_shape)}, a regression loss)",
                        help="use a classification loss such as categorical_crossentropy, or a regression data set")
    if expect.kind == "multiclass":
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


def labels_from_array(y: np.ndarray, expect: Expect, origin: str) -> np.ndarray:
    """Labels read from a file: class ids, one-hot rows, 0/1, or targets; checked against the spec."""
    if expect.kind == "regression":
        if not np.issubdtype(y.dtype, np.number):
            raise UserError(f"{origin}: the target column holds text but the model is a regressor",
                            help="give numeric targets, or use a classification loss")
        return _regression_labels(y, expect, origin)
    if expect.kind == "multiclass" and y.ndim == 2 and y.shape[1] == expect.classes and y.shape[1] > 1:
        y = y.astype(np.float32)
        if np.all((y == 0) | (y == 1)) and np.all(y.sum(1) == 1):
            return y.argmax(1).astype(np.int64)  # one-hot rows -> indices
        if np.all(y >= 0) and np.allclose(y.sum(1), 1, atol=1e-4):
            return y  # distributions, e.g. for kl_divergence
        raise UserError(f"{origin}: labels of shape {list(y.shape)} are neither one-hot rows nor distributions")
    if expect.kind == "binary" and y.ndim > 1:
        if tuple(y.shape[1:]) != tuple(expect.out_shape) and y[0].size != int(np.prod(expect.out_shape)):
            raise UserError(f"{origin}: labels of shape {list(y.shape[1:])} per row do not match the output "
                            f"{list(expect.out_shape)}")
        values = np.unique(y)
        if not np.all(np.isin(values, [0, 1])):
            raise UserError(f"{origin}: binary labels must be 0 or 1; received values {values[:5].tolist()}")
        return y.astype(np.float32).reshape(len(y), *expect.out_shape)
    if not np.issubdtype(y.dtype, np.number):  # text classes -> ids in sorted order
        names, y = np.unique(y.astype(str), return_inverse=True)
        return _class_labels(y, len(names), expect, origin)
    if np.any(y != np.round(y)) or np.any(y < 0):
        raise UserError(f"{origin}: class labels must be integers 0..{(expect.classes or 2) - 1}; "
                        f"received values such as {y[(y != np.round(y)) | (y < 0)][:3].tolist()}")
    y = y.astype(np.int64).reshape(len(y))
    top = int(y.max()) if len(y) else 0
    classes = expect.classes if expect.kind == "multiclass" else 2
    if top >= classes:
        raise UserError(f"{origin}: found class label {top} but the model has {classes} classes "
                        f"(labels 0..{classes - 1})", help=f"end the network with Dense({top + 1}) -> softmax")
    return _class_labels(y, classes, expect, origin)


def _csv(path: Path, target: str | None, delimiter: str, expect: Expect) -> Arrays:
    header, rows, lines = read_csv(path, delimiter)
    if target is None:
        target = header[-1]
    if target not in header:
        raise UserError(f"{path}: no column named '{target}'; the columns are: {', '.join(header)}",
                        help='name the label column: csv("file.csv", target="label")')
    t = header.index(target)
    features = [c for i, c in enumerate(header) if i != t]
    x = numeric_rows([[r[i] for i in range(len(header)) if i != t] for r in rows], path, features, lines)
    require_finite_rows(x, path, features, lines)
    shape = _single_vector_input(expect, str(path), x.shape[1])
    if expect.inputs[0][2] == "int":
        x = x.astype(np.int64)
    raw = np.array(require_labels([r[t] for r in rows], lines, path, target))
    try:
        y = raw.astype(np.float64)
    except ValueError:
        y = raw
    if y.dtype.kind == "f":
        require_finite_rows(y.reshape(len(y), 1), path, [target], lines)
    y = labels_from_array(y, expect, str(path))
    return Arrays([x.reshape(len(x), *shape)], y, str(path), tabular=len(shape) == 1, target=target)


def _require_finite(x: np.ndarray, origin: str, columns: list[str] | None = None, first_line: int | None = None,
                    array: str | None = None, first_row: int = 0, scope: str = "in all") -> None:
    """NaN or infinite values would turn the loss into NaN after an epoch of wasted time: refuse them
    here, naming the file, the row and the column (CSV) or the array and the index (NPZ).
    `first_row`: x is a batch of rows from there on (indices are the whole array's); `scope` words the count."""
    if x.dtype.kind != "f" or np.isfinite(x).all():
        return
    where = np.argwhere(~np.isfinite(x))[0]
    value = x[tuple(where)]
    if columns is not None:
        place = f"{origin}:{int(where[0]) + (first_line or 0)}: column '{columns[int(where[1])]}' holds {value}"
    else:
        index = (int(where[0]) + first_row, *(int(i) for i in where[1:]))
        place = f"{origin}: array '{array}' holds {value} at index {index}"
    count = int((~np.isfinite(x)).sum())
    raise UserError(f"{place}, not a finite number ({count} such value{'s' if count != 1 else ''} {scope})",
                    help="remove or fill in the missing values (NaN) and infinities before training")


def read_csv(path: Path, delimiter: str = ",") -> tuple[list[str], list[list[str]], list[int]]:
    """A whole data file: its header, its rows and each row's line in the file."""
    table = list(csv_rows(path, delimiter, what="data file", help="paths in a spec are relative to the spec file"))
    if len(table) < 2:
        raise UserError(f"{path} has no data rows", help="a CSV file needs a header line and at least one row")
    return table[0][1], [row for _, row in table[1:]], [line for line, _ in table[1:]]


def csv_rows(path: Path, delimiter: str, *, what: str = "file", help: str | None = None):
    """(line in the file, row) of every non-empty row, the header first; a row whose width is not
    the header's is an error naming its line. `what`, `help`: how a missing file is reported."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")  # -sig: a BOM is not part of the first column's name
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}", help=help) from None
    except OSError as err:  # a folder, no permission...
        raise UserError(f"cannot read the {what} {path}: {err.strerror or err}") from None
    with f:
        reader = csv.reader(f, delimiter=delimiter)
        width = None
        try:
            for row in reader:
                if not row:
                    continue
                if width is not None and len(row) != width:
                    raise UserError(f"{path}:{reader.line_num}: {len(row)} values but the header has {width} columns")
                width = len(row) if width is None else width
                yield reader.line_num, row
        except (UnicodeDecodeError, csv.Error) as err:
            raise UserError(f"{path} is not a readable CSV file ({err})") from None


def require_finite_rows(x: np.ndarray, path: Path, columns: list[str], lines: list[int],
                        scope: str = "in all") -> None:
    """CSV rows (x[i] read from file line lines[i]) must hold finite numbers: the first that does
    not is named by its line and column."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(1) if x.dtype.kind == "f" else None
    if bad is not None and bad.any():
        first = int(np.argmax(bad))
        _require_finite(x[first:], str(path), columns, first_line=lines[first], scope=scope)


def require_labels(cells: list[str], lines: list[int], path: Path, target: str) -> list[str]:
    """Every row of the label column holds something."""
    empty = next((line for line, v in zip(lines, cells) if not v.strip()), None)
    if empty is not None:
        raise UserError(f"{path}:{empty}: the label column '{target}' is empty", help="every row needs a label")
    return cells


def numeric_rows(rows: list[list[str]], path: Path, names: list[str], lines=None) -> np.ndarray:
    """CSV cells -> float32 rows; a cell that is not a number is named by its file line (`lines`,
    default: the rows follow the header) and column."""
    try:
        return np.array(rows, dtype=np.float32).reshape(len(rows), len(names))
    except ValueError:
        for i, row in zip(lines if lines is not None else range(2, len(rows) + 2), rows):
            for name, v in zip(names, row):
                try:
                    float(v)
                except ValueError:
                    raise UserError(f"{path}:{i}: column '{name}' holds '{v}', not a number",
                                    help="feature columns must be numeric") from None
        raise


def npz_input_arrays(arrays: dict, names: list[str], path) -> list:
    """The arrays of an .npz that feed the inputs: one per input name, or `x` for a single input."""
    if all(n in arrays for n in names):
        return [arrays[n] for n in names]
    if "x" in arrays and len(names) == 1:
        return [arrays["x"]]
    raise UserError(f"{path} needs an array 'x' (one input) or one array per input ({', '.join(names)}); "
                    f"it has: {', '.join(arrays)}")


def _npz(path: Path, expect: Expect) -> Arrays:
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if not magic.startswith((b"PK", b"\x93NUMPY")):
            raise UserError(f"{path} is not an .npz file (not a zip archive of arrays)",
                            help="save with numpy.savez(path, x=features, y=labels)")
        loaded = np.load(path, allow_pickle=False)  # never unpickle: object arrays are refused
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise UserError(f"{path} holds a single array (.npy), not an .npz archive of named arrays",
                            help="save with numpy.savez(path, x=features, y=labels)")
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UserError(f"data file not found: {path}", help="paths in a spec are relative to the spec file") from None
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{path} is not a readable .npz file ({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                        help="save with numpy.savez(path, x=features, y=labels); object arrays (pickles) are refused") from None
    if "y" not in arrays:
        raise UserError(f"{path} has no array 'y' (labels); it has: {', '.join(arrays) or 'nothing'}")
    names = [n for n, _, _ in expect.inputs]
    xs = npz_input_arrays(arrays, names, path)
    inputs = [_match_array(x, i, expect, str(path)) for i, x in enumerate(xs)]
    for x, key in zip(inputs, names if all(n in arrays for n in names) else ["x"]):
        _require_finite(x, str(path), array=key)
    if arrays["y"].dtype.kind == "f":
        _require_finite(arrays["y"], str(path), array="y")
    if len(arrays["y"]) == 0:
        raise UserError(f"{path} has no rows: array 'y' is empty", help="give at least one sample")
    y = labels_from_array(arrays["y"], expect, str(path))
    if any(len(x) != len(y) for x in inputs):
        raise UserError(f"{path}: {len(y)} labels but the inputs have {[len(x) for x in inputs]} rows")
    tabular = len(inputs) == 1 and inputs[0].ndim == 2 and inputs[0].dtype == np.float32
    return Arrays(inputs, y, str(path), tabular=tabular)


def match_input(x: np.ndarray, i: int, expect: Expect, origin: str) -> np.ndarray:
    return _match_array(x, i, expect, origin)


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


def _match_array(x: np.ndarray, i: int, expect: Expect, origin: str) -> np.ndarray:
    """Check one input array against the spec (shape without batch, dtype) -> float32 or int64 rows."""
    sample = input_layout(x.shape, x.dtype, i, expect, origin)
    x = x.reshape(len(x), *sample)
    return x.astype(np.int64 if expect.inputs[i][2] == "int" else np.float32)


# ------------------------------------------------------------------ synthetic data


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
        if len(expect.out_shape) != 1:
            raise UserError(f"synthetic data cannot make labels for a multi-class output {list(expect.out_shape)}",
                            help='give data: csv("file.csv", target="label") or npz("file.npz")')
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
    mean = x.mean(0)
    std = x.std(0)
    return {"mean": mean.astype(np.float32), "std": np.where(std > 1e-12, std, 1.0).astype(np.float32)}


def prepare(arrays: Arrays, expect: Expect, validation: float, seed: int, standardize: bool,
            fold: tuple[int, int] | None = None) -> Data:
    import torch

    stratify = expect.kind == "multiclass" or (expect.kind == "binary" and arrays.y.ndim == 2 and arrays.y.shape[1] == 1)
    strata_y = arrays.y if arrays.y.ndim == 1 else arrays.y.reshape(len(arrays.y), -1)[:, 0].astype(np.int64)
    if arrays.y.dtype != np.int64 and not stratify:
        strata_y = arrays.y.reshape(len(arrays.y), -1)[:, 0]
    stratify = stratify and strata_y.dtype == np.int64
    train_idx, val_idx = (fold_indices(strata_y, fold, seed, stratify) if fold is not None
                          else split_indices(strata_y, validation, seed, stratify))
    stats = {}
    inputs = list(arrays.inputs)
    if standardize and arrays.tabular:
        name = expect.inputs[0][0]
        s = fit_stats(inputs[0][train_idx])
        inputs[0] = (inputs[0] - s["mean"]) / s["std"]
        stats[name] = {k: torch.from_numpy(v) for k, v in s.items()}

    def split(idx) -> Split:
        return Split([torch.from_numpy(np.ascontiguousarray(x[idx])) for x in inputs],
                     torch.from_numpy(np.ascontiguousarray(arrays.y[idx])))

    val = split(val_idx) if len(val_idx) else None
    return Data(split(train_idx), val, arrays.origin, stats, arrays.target)


def load_data(checked, spec_path: str | Path, override: str | tuple | None = None, *, validation: float | None = None,
              seed: int | None = None, fold: tuple[int, int] | None = None) -> Data:
    """The spec's data (or `override`), checked against its inputs and task, split (by `validation`,
    or into cross-validation fold (k, K)) and standardised."""
    source = _source(checked, override)
    expect = Expect.of(checked)
    base = Path(spec_path).parent if spec_path else Path(".")
    arrays = load_arrays(source, expect, base)
    train = checked.train
    return prepare(arrays, expect, train["validation"] if validation is None else validation,
                   train["seed"] if seed is None else seed, train["standardize"], fold)


def _source(checked, override) -> tuple[str, dict[str, Any]]:
    if isinstance(override, str):
        name, args = parse_source(override)
        if "path" in args:  # typed on the command line: relative to the current folder, not to the spec
            args["path"] = str(Path(args["path"]).absolute())
        return name, args
    if override is not None:
        return override
    source = checked.train.get("data")
    if source is None:
        return "synthetic", {"n": 1024, "seed": 0}
    return source[0], dict(source[1])
