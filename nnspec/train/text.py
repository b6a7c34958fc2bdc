"""Raw text as token ids: `text("reviews.csv", text="review", target="label", vocab=N, max_len=L)`.

Tokenizer: the text is lowercased (unless `lowercase=false`) and split into words by the regular
expression TOKEN: runs of letters, digits and underscores, with inner apostrophes kept ("don't",
"it's"); everything else (spaces, punctuation) separates words.

Vocabulary: fitted on the TRAINING rows only (`prepare` calls `TextRows.fitted` with the training
indices, after the split), so a word seen only in validation rows is out of vocabulary there as it
will be on new text. Ids: 0 = padding, 1 = out of vocabulary, 2.. the most frequent training words
(ties in alphabetical order) up to `vocab` ids in all. A text becomes its first `max_len` ids,
right-padded with 0. The fitted vocabulary is the run's data meta under "text" (saved in the
checkpoint, and as vocab.json in the run folder); `evaluate` and `predict` encode raw text with it.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..catalog.settings import TEXT_MAX_LEN, text_source_problem
from ..diagnostics import UserError
from .data import (Arrays, Expect, class_labels, csv_rows, label_column, label_name, label_numbers, labels_from_array,
                   require_finite_rows)

TOKEN = r"\w+(?:'\w+)*"
PAD, OOV, FIRST_WORD = 0, 1, 2
_token = re.compile(TOKEN)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return _token.findall(text.lower() if lowercase else text)


@dataclass(frozen=True)
class Vocabulary:
    """Words -> token ids (see the module's docstring), and how texts are cut and padded."""

    words: tuple[str, ...]  # the word of id FIRST_WORD + i
    size: int  # ids 0..size-1
    max_len: int
    lowercase: bool = True
    column: str = "text"  # the CSV column holding the text

    @staticmethod
    def fit(texts, size: int, max_len: int, lowercase: bool, column: str) -> "Vocabulary":
        """The `size - 2` most frequent words of `texts` (token lists), ties in alphabetical order."""
        counts = Counter(word for tokens in texts for word in tokens)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size - FIRST_WORD]
        return Vocabulary(tuple(word for word, _ in ranked), size, max_len, lowercase, column)

    @property
    def ids(self) -> dict[str, int]:
        return {word: FIRST_WORD + i for i, word in enumerate(self.words)}

    def encode(self, texts, width: int | None = None) -> np.ndarray:
        """Token lists -> int64 [N, width] (default: the longest text, at most max_len), right-padded with 0."""
        ids = self.ids
        kept = [tokens[:self.max_len] for tokens in texts]
        width = width if width is not None else max((len(t) for t in kept), default=1)
        x = np.zeros((len(kept), max(width, 1)), np.int64)
        for row, tokens in enumerate(kept):
            x[row, :len(tokens)] = [ids.get(word, OOV) for word in tokens]
        return x

    def meta(self) -> dict[str, Any]:
        """JSON-safe: what evaluate and predict need to encode raw text as training did."""
        return {"column": self.column, "token_pattern": TOKEN, "lowercase": self.lowercase, "max_len": self.max_len,
                "vocab": self.size, "padding_id": PAD, "oov_id": OOV, "words": list(self.words)}

    @staticmethod
    def from_meta(meta: Mapping[str, Any]) -> "Vocabulary":
        return Vocabulary(tuple(meta["words"]), int(meta["vocab"]), int(meta["max_len"]), bool(meta["lowercase"]),
                          str(meta["column"]))


# ------------------------------------------------------------------ the source


@dataclass
class TextRows:
    """A text CSV read whole: each row's words and label; the token ids wait for the vocabulary."""

    texts: list[list[str]]
    y: np.ndarray
    origin: str
    target: str
    meta: dict[str, Any]
    settings: dict[str, Any]  # vocab, max_len, lowercase, column, width (the input's fixed length or None)

    def fitted(self, train_idx: np.ndarray, fitted: Mapping[str, Any] | None = None) -> Arrays:
        """The Arrays with a vocabulary fitted on the rows `train_idx`, or the one a run fitted
        earlier (`fitted`: its data meta, for evaluate)."""
        s = self.settings
        if fitted and "text" in fitted:
            vocab = Vocabulary.from_meta(fitted["text"])
        else:
            vocab = Vocabulary.fit((self.texts[i] for i in train_idx), s["vocab"], s["max_len"], s["lowercase"],
                                   s["column"])
        x = vocab.encode(self.texts, s["width"] or vocab.max_len)
        meta = {**self.meta, "text": {**vocab.meta(), "delimiter": s["delimiter"]}}
        return Arrays([x], self.y, self.origin, target=self.target, meta=meta, padded=s["width"] is None)


def settings_for(args: Mapping[str, Any], expect: Expect) -> dict[str, Any]:
    """The source's arguments resolved against the model: vocab, max_len, the padded width."""
    problem = text_source_problem(args, expect.inputs, expect.vocab)
    if problem is not None:
        code, message, help = problem
        err = UserError(message, help=help, code=code)
        err.about_source = True  # load_arrays locates it where the source is written
        raise err
    name, (length,), _ = expect.inputs[0]
    return {"vocab": args.get("vocab") or expect.vocab[name], "max_len": args.get("max_len") or length or TEXT_MAX_LEN,
            "lowercase": args.get("lowercase", True), "column": args["text"], "width": length,
            "delimiter": args.get("delimiter") or ","}


def load_text(path: Path, args: Mapping[str, Any], expect: Expect) -> TextRows:
    """A text CSV -> the words of each row and the labels (text labels: classes in sorted order)."""
    settings = settings_for(args, expect)
    delimiter = settings["delimiter"]
    rows = csv_rows(path, delimiter, what="data file", help="paths in a spec are relative to the spec file")
    line, header = _header(rows, path)
    at = text_column(header, settings["column"], path, line)
    t = label_column(header, args.get("target"), path, line, delimiter)
    if t == at:
        raise UserError(f"{path}: the text column '{settings['column']}' is also the label column",
                        help='name the label column: text("file.csv", text="review", target="label")')
    texts, cells, lines = [], [], []
    interned: dict[str, str] = {}  # words repeat: one string each
    for line, row in rows:
        tokens = words_of(row[at], settings, path, line)
        texts.append([interned.setdefault(w, w) for w in tokens])
        cells.append(row[t])
        lines.append(line)
    if not texts:
        raise UserError(f"{path} has no data rows", help="a CSV file needs a header line and at least one row")
    y, names = labels(cells, lines, path, label_name(args.get("target"), t), expect)
    meta = {"class_names": names} if names is not None else {}
    return TextRows(texts, y, str(path), header[t], meta, settings)


def _header(rows, path: Path) -> tuple[int, list[str]]:
    first = next(rows, None)
    if first is None:
        raise UserError(f"{path} has no data rows", help="a CSV file needs a header line and at least one row")
    return first


def text_column(header: list[str], column: str, path: Path, line: int = 1) -> int:
    """The index of the text column; a missing one is named as the spec (or the run) names it."""
    if column in header:
        return header.index(column)
    raise UserError(f"{path}: no column named '{column}' in the header (line {line}, {len(header)} "
                    f"column{'s' if len(header) != 1 else ''}) to read the text from",
                    help='name the text column as the header of the file names it: text("file.csv", text="review")')


def words_of(cell: str, settings: Mapping[str, Any], path: Path, line: int) -> list[str]:
    """One row's words; an empty text, or one without a word, is refused by its line."""
    column = settings["column"]
    if not cell.strip():
        raise UserError(f"{path}:{line}: the text column '{column}' is empty",
                        help="every row needs some text: fill it in or remove the row")
    tokens = tokenize(cell, settings["lowercase"])
    if not tokens:
        raise UserError(f"{path}:{line}: the text column '{column}' holds no word (letters or digits)",
                        help="every row needs at least one word: fill it in or remove the row")
    return tokens


def labels(cells: list[str], lines: list[int], path: Path, label: str, expect: Expect,
           names: list[str] | None = None) -> tuple[np.ndarray, list[str] | None]:
    """A label column -> (labels as the loss expects them, the class names when they are text).
    `names`: the class names a run was trained with (evaluate): text labels are numbered by them."""
    empty = next((line for line, v in zip(lines, cells) if not v.strip()), None)
    if empty is not None:
        raise UserError(f"{path}:{empty}: {label} is empty", help="every row needs a label")
    numbers = label_numbers(cells)
    if numbers is not None:
        require_finite_rows(numbers.reshape(len(numbers), 1), path, [label], lines)
        return labels_from_array(numbers, expect, str(path), place=lambda i: f"{path}:{lines[i]}"), None
    if expect.kind == "regression":
        raise UserError(f"{path}: the target column holds text but the model is a regressor",
                        help="give numeric targets, or use a classification loss")
    names = names if names is not None else sorted(set(cells))  # classes in sorted order, as csv(...) numbers them
    index = {name: i for i, name in enumerate(names)}
    unknown = next((line for line, v in zip(lines, cells) if v not in index), None)
    if unknown is not None:
        raise UserError(f"{path}:{unknown}: {label} holds a class the run was not trained on",
                        help="the run's classes: " + ", ".join(names)[:300])
    ids = np.fromiter((index[c] for c in cells), np.int64, len(cells))
    return class_labels(ids, len(names), expect, str(path)), names


# ------------------------------------------------------------------ evaluate and predict on raw text


def text_batches(path: Path, meta: Mapping[str, Any], expect: Expect, batch: int, *, labels_from: str | None = None,
                 delimiter: str = ",", column: str | None = None) -> Iterator[tuple[list[np.ndarray], np.ndarray | None]]:
    """(inputs, labels or None) of a raw-text CSV, `batch` rows at a time, encoded with a run's
    vocabulary (`meta`: its data meta). `labels_from`: the label column (evaluate), else none (predict);
    `column`: the text column (default: the run's)."""
    vocab = Vocabulary.from_meta(meta["text"])
    width = expect.inputs[0][1][0]  # a fixed input length, or None: each batch as long as its longest text
    settings = {"column": column or vocab.column, "lowercase": vocab.lowercase}
    rows = csv_rows(path, delimiter, what="data file")
    line, header = _header(rows, path)
    at = text_column(header, settings["column"], path, line)
    t = label_column(header, labels_from, path, line, delimiter) if labels_from is not None else None
    texts, cells, lines = [], [], []

    def encoded():
        x = vocab.encode(texts, width)
        y = labels(cells, lines, path, label_name(labels_from, t), expect, meta.get("class_names"))[0] \
            if t is not None else None
        return [x], y

    for line, row in rows:
        texts.append(words_of(row[at], settings, path, line))
        cells.append(row[t] if t is not None else "")
        lines.append(line)
        if len(texts) == batch:
            yield encoded()
            texts, cells, lines = [], [], []
    if texts:
        yield encoded()


def vocabulary_meta(state: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The text meta (vocabulary) of a checkpoint's run, or None when it did not train on raw text."""
    meta = state.get("data_meta") or {}
    return meta if isinstance(meta.get("text"), Mapping) else None


def reads_text(state: Mapping[str, Any], source_name: str) -> bool:
    """Whether evaluate reads `source_name` (csv or text) as raw text with the run's vocabulary."""
    if source_name == "text" and vocabulary_meta(state) is None:
        raise UserError("text(...) needs the vocabulary of a run trained on raw text; this checkpoint's run "
                        "was trained on token ids (or by an older nnspec)",
                        help="evaluate it on token ids: --data file.npz or a CSV of ids")
    return source_name == "text" or (source_name == "csv" and vocabulary_meta(state) is not None)


def eval_batches(source, base_dir: Path, state: Mapping[str, Any], expect: Expect, batch: int):
    """evaluate --data on raw text: (batches of (inputs, labels), the file), encoded with the run's vocabulary
    (its tokenizer, vocab and max_len, whatever text(...) says of them here); the text and label columns
    are the source's (text(...)'s `text`, its or csv(...)'s `target`), else the run's."""
    from .data import resolve_path

    _, args = source
    path = resolve_path(args["path"], base_dir)
    meta = vocabulary_meta(state)
    target = args.get("target") or state.get("data_target")
    delimiter = args.get("delimiter") or meta["text"].get("delimiter", ",")
    return text_batches(path, meta, expect, batch, labels_from=target, delimiter=delimiter,
                        column=args.get("text")), str(path)


def predict_rows(path: Path, state: Mapping[str, Any], expect: Expect, batch: int) -> Iterator:
    """predict on a raw-text CSV: RowBatch-like objects whose `inputs` are the encoded rows."""
    from .row_files import RowBatch

    meta = vocabulary_meta(state)
    start = 0
    for inputs, _ in text_batches(path, meta, expect, batch, delimiter=meta["text"].get("delimiter", ",")):
        yield RowBatch(start, inputs)
        start += len(inputs[0])


def write_vocab(folder: Path, meta: Mapping[str, Any]) -> None:
    """vocab.json in the run folder: the fitted vocabulary, readable without torch (the checkpoint holds it too)."""
    import json

    from .. import fsutil

    if isinstance(meta.get("text"), Mapping):
        fsutil.atomic_write_text(folder / "vocab.json", json.dumps(meta["text"], indent=1) + "\n")
