"""Fuzzing the data readers: no data file makes nnspec crash, hang or balloon.

Random and mutated CSV and .npz files, from a fixed seed (CI runs the same inputs every time), are
fed to the function `nnspec train` loads its data with (`data.load_data`: read, check against the
spec, split, standardise) and to the batch reader of `evaluate` and `predict`
(`row_files.row_batches`, with and without labels). Each must load, or raise the project's user-error type (UserError, SpecError): never any
other exception, never more than a few seconds, and the whole run never more than 500 MB above
where it started. A message must not quote the file: every generated file carries a marker string
in its cells, header and array names, and no message may contain it.

Kinds of input (counted and printed with -s; each kind must occur). CI runs 250 CSV and 250 NPZ
inputs, each through both readers, in a few seconds:
- CSV: random tables (random delimiters, quoting, line ends, BOM; NaN, inf, huge and fractional
  numbers; text; empty cells; ragged rows), byte-level mutations of a good file (bit flips,
  deletions, insertions, duplicated or dropped lines), binary garbage and invalid UTF-8, empty
  files, unclosed quotes, over-long lines, and spec arguments (target, delimiter) good and bad;
- NPZ: valid archives of random dtypes (floats, ints, uint64, bool, complex, text, bytes, object,
  datetime, structured, zero-size) and shapes (0-d, empty, wrong widths, Fortran order) and keys
  (x, y, per-input names, extra members, missing y), truncated and bit-flipped archives, .npy
  headers with absurd shapes, negative dimensions, bad descriptors, wrong versions and long
  header lengths, stored/deflated/bzip2/lzma members, weird member names, directories, and
  files that are not zips at all.

`make fuzz` runs NNSPEC_FUZZ_DATA_INPUTS of each (5,000 there; 6,000 of each ran clean with
-W error::RuntimeWarning when this was written). Also asserted: some inputs of each format load
(the fuzzer reaches past the first check), and most are refused.
A failure prints the kind, the seed of the input and the exception, to reproduce it.
"""
from __future__ import annotations

import io
import os
import random
import resource
import struct
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nnspec.diagnostics import SpecError, UserError
from nnspec.pipeline import check_text
from nnspec.train.data import Expect, load_data
from nnspec.train.row_files import row_batches

torch.set_num_threads(1)

SEED = 20261201
EACH = int(os.environ.get("NNSPEC_FUZZ_DATA_INPUTS", "250"))  # CSV inputs, and as many NPZ inputs
SECONDS_PER_INPUT = 60.0  # a hang guard for one input, not a measurement
MEMORY_GROWTH = 500 << 20
MARK = "S3CR3T"  # in every generated file; no message may quote it

SPECS = {
    "tabular": ("input x: [4]", "Dense(8) -> relu\n Dense(3) -> softmax", "categorical_crossentropy"),
    "binary": ("input x: [4]", "Dense(1) -> sigmoid", "binary_crossentropy"),
    "regression": ("input x: [4]", "Dense(1)", "mse"),
    "tokens": ("input x: int[6]", "Embedding(vocab=20, dim=4)\n GlobalAvgPool\n Dense(3) -> softmax",
               "categorical_crossentropy"),
    "two_inputs": ("input a: [4]\n input b: [2]", "h = concat(a, b) -> Dense(3) -> softmax",
                   "categorical_crossentropy"),
}


def _checked(name: str):
    inputs, layers, loss = SPECS[name]
    text = (f"model M {{\n {inputs}\n layers {{\n {layers}\n }}\n loss {loss}\n optimizer Adam(lr=0.01)\n"
            " train { validation 0.25 }\n}\n")
    result = check_text(text, "fuzz.nn")
    assert result.ok, result.render()
    return result.checked


CHECKED = {name: _checked(name) for name in SPECS}


# ---------------------------------------------------------------- CSV inputs

NUMBERS = ["0", "1", "2", "-1", "0.5", "3.25", "1e30", "-1e30", "1e400", "99999999999999999999", "nan", "NaN",
           "inf", "-inf", "Infinity", "1_000", " 7 ", "0x10", "1e-320", "+2", ".5", "5.", "", " ", "1,5",
           f"{MARK}", f"x{MARK}", "\u00e9", "\x00", "\x0b", "2**64", "18446744073709551615", "-0"]
DELIMITERS = [",", ";", "\t", "|", ":", " ", "a", "\u00a7", "\x00"]
BAD_DELIMITERS = ["", "ab", "\n", "\r", '"', ",,"]


def _cell(rng: random.Random, delimiter: str) -> str:
    value = rng.choice(NUMBERS) if rng.random() < 0.85 else "".join(
        rng.choice(f"ab{delimiter}\"\n\r ,;{MARK}") for _ in range(rng.randint(0, 8)))
    if rng.random() < 0.15 or any(c in value for c in (delimiter, '"', "\n", "\r")):
        if rng.random() < 0.9:
            return '"' + value.replace('"', '""') + '"'
        return '"' + value  # an unclosed quote
    return value


def _table(rng: random.Random, spec: str) -> tuple[bytes, dict]:
    clean = rng.random() < 0.35  # a table that fits the spec, but for its delimiter, quoting and line ends
    delimiter = rng.choice(DELIMITERS) if rng.random() < 0.4 else ","
    features = 6 if spec == "tokens" else 4
    width = features + 1 if clean or rng.random() < 0.75 else rng.choice([1, 2, 3, 5, 6, 7, 40])
    names = [rng.choice([f"f{i}", f"c{MARK}{i}", "label", "", "y", " a b ", "\u00e9t\u00e9"]) if not clean
             else f"c{MARK}{i}" for i in range(width)]
    if clean or rng.random() < 0.7:
        names[-1] = "label"
    rows = [delimiter.join(names)]
    labels = {"binary": ["0", "1"], "regression": ["0.5", "-2", "1e3"]}.get(spec, ["0", "1", "2"])
    if rng.random() < 0.3 and not clean:
        labels = NUMBERS
    odd = 0.0 if clean else rng.choice([0.0, 0.01, 0.05, 0.3])  # how often a cell is an odd one
    ragged = 0.0 if clean else rng.choice([0.0, 0.0, 0.05])
    plain = ["1", "2", "0", "3", "19"] if spec == "tokens" else ["0.1", "2", "-3.5", "4e2"]
    for _ in range(rng.choice([8, 20, 60, 60] if clean else [0, 1, 2, 3, 8, 20, 60])):
        row_width = width if rng.random() >= ragged else rng.randint(0, width + 2)
        cells = [_cell(rng, delimiter) if rng.random() < odd else rng.choice(plain) for _ in range(row_width)]
        if cells and (clean or rng.random() < 0.8):
            cells[-1] = rng.choice(labels)
        rows.append(delimiter.join(cells))
    if rng.random() < 0.2:
        rows.insert(rng.randint(1, len(rows)), "")
    end = rng.choice(["\n", "\n", "\r\n", "\r"])
    text = end.join(rows) + (end if rng.random() < 0.8 else "")
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    args = {"delimiter": delimiter}
    if clean:
        if rng.random() < 0.5:
            args["target"] = "label"
    elif rng.random() < 0.5:
        args["target"] = rng.choice(["label", "y", names[0], "missing", ""])
    if rng.random() < 0.05 and not clean:
        args["delimiter"] = rng.choice(BAD_DELIMITERS)
    return data, args


GOOD_CSV = ("f0,f1,f2,f3,label\n" + "".join(f"{i % 7}.5,{i % 3},{-i},{i * 0.25},{i % 3}\n" for i in range(30))).encode()


def _mutated(rng: random.Random) -> bytes:
    data = bytearray(GOOD_CSV)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del data[at:at + rng.randint(1, 20)]
        elif op == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == 3:
            data[at:at] = rng.choice([b'"', b",", b"\n", b"\r", b"\x00", b"\xff", MARK.encode(), b"1e999", b"nan"])
        elif op == 4:
            lines = bytes(data).split(b"\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i] * rng.randint(2, 5))
            data = bytearray(b"\n".join(lines))
        else:
            lines = bytes(data).split(b"\n")
            del lines[rng.randrange(len(lines))]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _csv_input(rng: random.Random, kind: str, spec: str) -> tuple[bytes, dict]:
    if kind == "table":
        return _table(rng, spec)
    if kind == "mutated":
        return _mutated(rng), {}
    if kind == "garbage":
        size = rng.choice([1, 10, 100, 3000])
        data = bytes(rng.randrange(256) for _ in range(size))
        if rng.random() < 0.5:
            data = b"a,b,c,d,label\n" + data
        return data + MARK.encode(), {}
    if kind == "empty":
        return rng.choice([b"", b"\n", b"\r\n\r\n", b"label\n", b"a,b,c,d,label\n", b"\xef\xbb\xbf",
                           b"a,b,c,d,label\n\n\n", b" \n"]), {}
    if kind == "unclosed_quote":
        return (b"a,b,c,d,label\n1,2,3,\"4" + MARK.encode() + b",0\n" + b"5,6,7,8,1\n" * rng.randint(1, 50)), {}
    if kind == "long_line":
        n = rng.choice([(1 << 20) + 10, 200_000, 2 << 20])
        filler = rng.choice([b"1", b"1,", b'"'])
        return b"a,b,c,d,label\n" + filler * (n // len(filler)) + b",0\n", {}
    raise AssertionError(kind)


CSV_KINDS = {"table": 50, "mutated": 25, "garbage": 10, "empty": 5, "unclosed_quote": 5, "long_line": 1}


# ---------------------------------------------------------------- NPZ inputs

def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _header(shape, descr, fortran=False, version=(1, 0), length: int | None = None, raw: str | None = None) -> bytes:
    text = raw if raw is not None else repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    body = text.encode("latin1", "replace") + b" " * 3 + b"\n"
    size = struct.pack("<H" if version == (1, 0) else "<I", len(body) if length is None else length)
    return b"\x93NUMPY" + bytes(version) + size + body


def _random_array(rng: random.Random, rows: int, width) -> np.ndarray:
    kind = "f4" if rng.random() < 0.6 else rng.choice(["f8", "f2", "i8", "i4", "u1", "u8", "bool", "c8", "U3", "S3",
                                                       "O", "M8[s]", "struct", "nan", "huge"])
    shape = (rows,) if width is None else (rows, *width) if isinstance(width, tuple) else (rows, width)
    values = np.random.default_rng(rng.randrange(2**32)).standard_normal(shape) * 3
    if kind == "nan":
        if values.size:
            values.flat[rng.randrange(values.size)] = np.nan
        return values.astype(np.float32)
    if kind == "huge":
        return (values * 1e300).astype(np.float64)
    if kind == "struct":
        return np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i2")])
    if kind == "O":
        return np.array([{"k": MARK}] * rows, dtype=object)
    if kind in ("U3", "S3"):
        return np.abs(values).astype(int).astype(str).astype(kind)
    if kind == "M8[s]":
        return np.abs(values).astype(np.int64).astype("M8[s]")
    if kind == "u8":
        return np.where(values > 2, np.uint64(2**64 - 1), np.abs(values).astype(np.uint64) % 3)
    return np.abs(values).astype(kind) % 3 if kind in ("i8", "i4", "u1") else values.astype(kind)


def _zip(members: dict[str, bytes], rng: random.Random) -> bytes:
    buffer = io.BytesIO()  # (duplicate names are made on purpose in zip_oddities)
    method = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                         zipfile.ZIP_LZMA]) if rng.random() < 0.3 else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _valid_members(rng: random.Random, spec: str) -> dict[str, bytes]:
    clean = rng.random() < 0.3  # arrays that fit the spec, in the archive's random form
    rows = rng.choice([12, 30] if clean else [0, 1, 2, 5, 12, 30, 30, 30])
    width = {"tabular": 4, "binary": 4, "regression": 4, "tokens": 6, "two_inputs": 4}[spec]
    if rng.random() < 0.15 and not clean:
        width = rng.choice([None, 3, 5, (2, 2), (4, 1), 0])
    x = _random_array(rng, rows, width) if not clean else \
        np.random.default_rng(rows).standard_normal((rows, width)).astype(rng.choice(["<f4", ">f8", "<f2"]))
    if spec == "tokens" and rng.random() < 0.7:
        x = np.random.default_rng(rng.randrange(2**32)).integers(0, rng.choice([20, 20, 25, 2**40]), (rows, 6))
    if rng.random() < 0.1:
        x = np.asfortranarray(x)
    y_kind = rng.random() if not clean else 0.0
    if y_kind < 0.5:
        y = np.arange(rows) % {"binary": 2, "regression": 3}.get(spec, 3)
        if spec == "regression":
            y = np.random.default_rng(rows).standard_normal((rows, 2)).astype(np.float32)
    elif y_kind < 0.6:
        y = np.eye(rng.choice([2, 3, 4]))[np.arange(rows) % 2]
    else:
        y = _random_array(rng, rows, rng.choice([None, None, 1, 2, 3]))
    if rng.random() < 0.1 and not clean:
        y = y[: max(rows - 1, 0)]
    members = {}
    keys = ["x"] if spec != "two_inputs" else ["a", "b"]
    for key in keys:
        members[f"{key}.npy"] = _npy(x if key != "b" else x[:, :2] if x.ndim == 2 else x)
    if clean or rng.random() < 0.92:
        members["y.npy"] = _npy(y)
    if rng.random() < 0.2:
        members[rng.choice(["extra.npy", f"notes{MARK}.txt", "dir/x.npy", "\u00e9.npy", f"y{MARK}"])] = rng.choice(
            [b"", MARK.encode(), _npy(np.zeros(3))])
    if rng.random() < 0.05:  # arrays under other names (shown in messages: .npy names are array names)
        members = {f"z{k}": v for k, v in members.items()}
    return members


ABSURD = [
    ((10**12, 4), "<f4"), ((-5, 4), "<f4"), ((4, -1), "<f4"), ((2**63, 2**63), "<f8"), ((), "<f4"),
    ((12, 4), "<c16"), ((12, 4), "|O"), ((12, 4), [("a", "<f4")]), ((12, 4), "|V8"), ((12, 4), "<U0"),
    ((12, 4), ">f8"), ((12,), "<M8[s]"), ((12, 4), "<f4", True), ((12, 4), "nonsense"), ((12, 4), 5),
    ((0, 4), "<f4"), ((12,) * 40, "<f4"), ((12, 4), "<U1000000000"), ((12, 4), ("<f4", (2, 2))),
]


def _absurd_member(rng: random.Random) -> bytes:
    choice = rng.randrange(8)
    if choice < 4:
        entry = rng.choice(ABSURD)
        fortran = len(entry) > 2
        head = _header(entry[0], entry[1], fortran, version=rng.choice([(1, 0), (2, 0), (3, 0)]))
    elif choice == 4:
        head = _header((12, 4), "<f4", version=(2, 0), length=rng.choice([2**32 - 1, 10**6, 50_000]))
    elif choice == 5:
        head = _header(None, None, raw=rng.choice([
            "[1, 2]", "{'descr': '<f4'}", f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({'(' * 150}12,{')' * 150})}}",
            "{'descr': '<f4', 'fortran_order': 'no', 'shape': (12, 4)}", f"'{MARK}'", "\x00\xff",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1" + "0" * 5000 + ", 4)}"]))
    elif choice == 6:
        head = b"\x93NUMPY" + bytes([rng.randrange(256), rng.randrange(256)]) + b"\x10\x00" + b"{}" * 8
    else:
        head = b"\x93NUMP"
    data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 16, 192, 1000])))
    return head + data


def _npz_input(rng: random.Random, kind: str, spec: str) -> bytes:
    if kind == "valid":
        return _zip(_valid_members(rng, spec), rng)
    if kind == "truncated":
        data = _zip(_valid_members(rng, spec), rng)
        return data[: rng.randrange(len(data))]
    if kind == "bitflip":
        data = bytearray(_zip(_valid_members(rng, spec), rng))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == "absurd_header":
        members = _valid_members(rng, spec)
        members[rng.choice(list(members) or ["x.npy"])] = _absurd_member(rng)
        return _zip(members, rng)
    if kind == "zip_oddities":
        members = _valid_members(rng, spec)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": on purpose
            archive.writestr(zipfile.ZipInfo("x/"), b"")  # a directory
            for name, data in members.items():
                archive.writestr(name, data)
                if rng.random() < 0.3:
                    archive.writestr(name, data[: len(data) // 2])  # the same name twice
        data = bytearray(buffer.getvalue())
        if rng.random() < 0.3:  # set the "encrypted" flag of every central directory entry
            at = 0
            while (at := data.find(b"PK\x01\x02", at)) >= 0:
                data[at + 8] |= 1
                at += 4
        return bytes(data)
    if kind == "not_a_zip":
        return rng.choice([b"", b"PK", b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200)),
                           _npy(np.zeros((12, 4), np.float32)), MARK.encode() * 10, b"\x93NUMPY\x01\x00",
                           bytes(rng.randrange(256) for _ in range(500))])
    raise AssertionError(kind)


NPZ_KINDS = {"valid": 35, "truncated": 15, "bitflip": 20, "absurd_header": 20, "zip_oddities": 5, "not_a_zip": 5}


# ---------------------------------------------------------------- the invariant

def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _load_both(path: Path, source: tuple, spec: str, outcomes: dict) -> list[str]:
    """Train's loader, then evaluate's and predict's batch readers; the problems found (empty: the
    invariant holds)."""
    problems = []
    checked = CHECKED[spec]
    for what, load in (("train", lambda: load_data(checked, path.parent / "spec.nn", source)),
                       ("evaluate", lambda: list(row_batches(path, Expect.of(checked), 7, labels=True,
                                                             target=source[1].get("target"),
                                                             delimiter=source[1].get("delimiter", ",")))),
                       ("predict", lambda: list(row_batches(path, Expect.of(checked), 7,
                                                            target=source[1].get("target"),
                                                            delimiter=source[1].get("delimiter", ","))))):
        start = time.perf_counter()
        try:
            load()
            outcomes["loaded"] += 1
        except (UserError, SpecError) as err:
            outcomes["refused"] += 1
            text = err.render() if isinstance(err, UserError) else str(err)
            if MARK in text.replace(str(path), ""):
                problems.append(f"{what}: the message quotes the file: {text[:600]}")
        except Exception as err:  # noqa: BLE001 -- the point of the test
            problems.append(f"{what}: {type(err).__name__}: {str(err)[:400]}")
        seconds = time.perf_counter() - start
        if seconds > SECONDS_PER_INPUT:
            problems.append(f"{what}: took {seconds:.1f} s")
    return problems


def _run(kind_weights: dict[str, int], make, suffix: str, tmp_path: Path, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {k: 0 for k in kind_weights}
    outcomes = {"loaded": 0, "refused": 0}  # train, evaluate and predict, each
    failures = []
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for i in range(EACH):
        kind = _pick(rng, kind_weights)
        input_seed = rng.randrange(2**32)
        spec = random.Random(input_seed).choice(list(SPECS))
        data, args = make(random.Random(input_seed), kind, spec)
        path = tmp_path / f"in{i % 4}{suffix}"
        path.write_bytes(data)
        source = (suffix[1:], {"path": str(path), **args})
        counts[kind] += 1
        for problem in _load_both(path, source, spec, outcomes):
            failures.append(f"{kind} input (seed {input_seed}, spec {spec}, args {args}): {problem}")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert not failures, f"{len(failures)} of {EACH} inputs broke the invariant:\n" + "\n".join(failures[:8])
    assert grown < MEMORY_GROWTH, f"the readers grew the process by {grown >> 20} MiB"
    if EACH >= 150:  # every kind occurs, and the inputs reach the loading code, not only its first check
        assert all(counts.values()), f"every kind must occur: {counts}"
        assert outcomes["loaded"] >= EACH // 10 and outcomes["refused"] >= EACH // 2, outcomes
    return counts, outcomes


def test_random_and_mutated_csv_files_load_or_are_user_errors(tmp_path: Path):
    counts, outcomes = _run(CSV_KINDS, _csv_input, ".csv", tmp_path, SEED)
    print(f"CSV inputs by kind: {counts}; outcomes (train, evaluate, predict): {outcomes}")


def test_random_and_mutated_npz_files_load_or_are_user_errors(tmp_path: Path):
    counts, outcomes = _run(NPZ_KINDS, lambda rng, kind, spec: (_npz_input(rng, kind, spec), {}), ".npz", tmp_path,
                            SEED + 1)
    print(f"NPZ inputs by kind: {counts}; outcomes (train, evaluate, predict): {outcomes}")
