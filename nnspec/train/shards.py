"""Data bigger than memory: `shards("dir/")` (a folder of .npz shards) and `parquet("dir/" or "f.parquet")`.

Loading reads every shard's headers (names, shapes, dtypes: a shard unlike the first is refused by
name) and its labels, which stay in memory (8 bytes a row for class ids: the loop scores training
metrics from them). The inputs never are all in memory: the one streaming pass over the training
rows computes the standardisation statistics (Chan et al.'s merge of per-chunk means and squared
deviations, in float64), then DataLoader worker processes read each batch's rows from disk.

A "block" is what a reader opens at a time: an uncompressed .npz member is memory-mapped (only the
pages of the rows read are touched), a compressed one is decompressed whole, a Parquet row group is
read whole; a worker keeps its last block open, so its memory holds at most one block. The epoch's order (`ShardedSplit.shuffled`) permutes the
blocks, then the rows within each block, with the run's seeded shuffle generator: so a batch reads
one or two blocks, and the order is reproducible and saved with the generator in checkpoints
(`--resume` continues at an epoch boundary, as for every source). Data-parallel ranks split each
global batch (distributed.shard), so every row is read once per epoch in total.
"""
from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..diagnostics import UserError, first_line
from .images import StreamedSplit
from .npz_files import Archive, names_text, shown_name

READ_HELP = "every shard needs the same arrays, shapes and dtypes; rewrite or remove this one"
READ_BYTES = 16 << 20  # what a worker reads in one go: whole batches, at least one
STATS_BYTES = 32 << 20  # float64 values summed at a time by the statistics pass: its memory, bounded


@dataclass(frozen=True)
class Block:
    """Rows [start, start + rows) of the data set, held by one file (and one Parquet row group)."""

    path: str
    start: int
    rows: int
    group: int = -1  # Parquet row group; -1 for an .npz member
    data_offset: int = -1  # byte offset of an uncompressed .npz member's data (memory-mapped); -1: decompress


@dataclass(frozen=True)
class ShardRows:
    """The inputs of some rows of a sharded data set, on disk: `decode(positions)` reads a batch."""

    blocks: tuple[Block, ...]
    rows: np.ndarray  # the global row ids of this split, sorted
    key: str  # the .npz array, or the Parquet feature columns joined by ","
    sample: tuple[int, ...]
    dtype: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    help = READ_HELP  # for StreamedSplit's message when a worker cannot read a batch

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property  # the blocks never change: built once (kept in the instance's __dict__, pickled with it)
    def starts(self) -> np.ndarray:
        return np.array([b.start for b in self.blocks], np.int64)

    def decode(self, positions) -> np.ndarray:
        """The rows at `positions` (of this split) as float32 [n, *sample], standardised if fitted."""
        rows = self.rows[np.asarray(list(positions), np.int64)]
        block_of = np.searchsorted(self.starts, rows, side="right") - 1
        if len(rows) and block_of[0] == block_of[-1] and (block_of == block_of[0]).all():  # most batches: one block
            block = self.blocks[int(block_of[0])]
            out = read_block_rows(block, self, rows - block.start)
        else:
            out = np.empty((len(rows), *self.sample), np.float32)
            for b in np.unique(block_of):
                mask = block_of == b
                block = self.blocks[int(b)]
                out[mask] = read_block_rows(block, self, rows[mask] - block.start)
        if not np.isfinite(out).all():  # NaN or inf would turn the loss into NaN: name the file and row
            raise self._not_finite(rows[~np.isfinite(out.reshape(len(out), -1)).all(1)][0])
        if self.mean is not None:  # in place: the same float32 operations as prepare's (x - mean) / std
            out -= self.mean
            out /= self.std
        return out


    def _not_finite(self, row: int) -> UserError:
        block = self.blocks[int(np.searchsorted(self.starts, row, side="right") - 1)]
        where = f"row group {block.group}, row {row - block.start}" if block.group >= 0 else \
            f"array '{shown_name(self.key)}' row {row - block.start}"
        return UserError(f"{block.path}: {where} holds a NaN or infinite value (as float32)",
                         help="fix or drop the row: a non-finite input makes the loss NaN")


# ------------------------------------------------------------------ reading blocks (in workers)

_cache: dict[str, Any] = {}  # one open block per process: the last one read


def read_block_rows(block: Block, rows: ShardRows, local: np.ndarray) -> np.ndarray:
    """Rows `local` of `block` as a float32 copy. A process keeps its last block open: an uncompressed
    .npz member memory-mapped (only the pages of rows read are touched, at most one shard's worth
    mapped at a time), anything else read whole."""
    ident = (block, rows.key, rows.dtype)
    if _cache.get("ident") != ident:
        _cache.clear()
        _cache["ident"], _cache["x"] = ident, open_block(block, rows)
    return np.asarray(_cache["x"][local]).astype(np.float32, copy=False)  # fancy indexing: a copy, writable


def open_block(block: Block, rows: ShardRows) -> np.ndarray:
    if block.group < 0 and block.data_offset >= 0:
        return np.memmap(block.path, dtype=np.dtype(rows.dtype), mode="r", offset=block.data_offset,
                         shape=(block.rows, *rows.sample))
    return whole_block(block, rows.key, rows.sample)


def whole_block(block: Block, key: str, sample: tuple[int, ...]) -> np.ndarray:
    if block.group >= 0:
        return parquet_features(block, key.split(","))
    with Archive(Path(block.path)) as archive:
        return archive.read(archive.member(key)).reshape(block.rows, *sample).astype(np.float32, copy=False)


def parquet_features(block: Block, columns: list[str]) -> np.ndarray:
    from ..extras import require

    pq = require("pyarrow.parquet")
    table = pq.ParquetFile(block.path).read_row_group(block.group, columns=columns)
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
                            for c in columns]) if columns else np.empty((block.rows, 0), np.float32)


def _member_data_offset(path: Path, info: zipfile.ZipInfo, header: int) -> int:
    """Where an uncompressed member's array data starts in the file: after the zip local header
    (30 bytes, the name, the extra field) and the .npy header."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len + header


# ------------------------------------------------------------------ the sources


def _files(root: Path, suffix: str, source: str) -> list[Path]:
    if not root.exists():
        raise UserError(f"{source} path {root} does not exist",
                        help=f'give a folder of {suffix} files, e.g. {source}("data/")')
    found = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.suffix == suffix and not p.name.startswith("."))
    if not found:
        raise UserError(f"{root} holds no {suffix} files", help=f"put the {suffix} shards of the data set in it")
    return found


def load_shards(args: Mapping[str, Any], expect, base_dir: Path):
    """`shards(path)`: every .npz in the folder (sorted by name), each with x (or the input's name) and y."""
    from .data import Arrays, input_layout, labels_from_array, npz_input_keys, require_finite, resolve_path

    name = _one_input(expect, "shards")
    blocks, labels, first, total = [], [], None, 0  # total: the rows of the blocks so far (the next one's start)
    for path in _files(resolve_path(args["path"], base_dir), ".npz", "shards"):
        with Archive(path) as archive:
            if "y" not in archive.names:
                raise UserError(f"{path} has no array 'y' (labels); it has: {names_text(archive.names)}", help=READ_HELP)
            key = npz_input_keys(archive.names, [name], path)[0]
            x, y = archive.member(key), archive.member("y")
            if first is None:
                sample = input_layout(x.shape, x.dtype, 0, expect, str(path))
                first = (path, key, tuple(x.shape[1:]), x.dtype)
            elif (key, tuple(x.shape[1:]), x.dtype) != first[1:]:
                raise UserError(f"{path}: array '{shown_name(key)}' is {list(x.shape[1:])} {x.dtype} per row, but "
                                f"{first[0].name} has '{shown_name(first[1])}' {list(first[2])} {first[3]}", help=READ_HELP)
            if len(x.shape) == 0 or len(y.shape) == 0 or len(x) != len(y):
                raise UserError(f"{path}: '{shown_name(key)}' has {len(x) if x.shape else 0} rows and 'y' "
                                f"{len(y) if y.shape else 0}", help="give every shard one label per row")
            stored = x.info.compress_type == zipfile.ZIP_STORED and not x.fortran
            offset = _member_data_offset(path, x.info, x.offset) if stored else -1
            blocks.append(Block(str(path), total, len(x), -1, offset))
            total += len(x)
            labels.append(archive.read(y))
    y = np.concatenate(labels)
    if y.dtype.kind == "f":
        require_finite(y, str(args["path"]), array="y")
    y = labels_from_array(y, expect, str(args["path"]))
    rows = ShardRows(tuple(blocks), np.arange(len(y)), first[1], tuple(sample), first[3].str)
    return Arrays([rows], y, f'shards("{args["path"]}")', tabular=len(sample) == 1, meta=_meta(args))


def load_parquet(args: Mapping[str, Any], expect, base_dir: Path):
    """`parquet(path, target)`: one file or a folder of them; `target` names the label column (default:
    the last), every other column is a feature, as for csv."""
    from ..extras import require
    from .data import Arrays, _single_vector_input, labels_from_array, resolve_path

    pq = require("pyarrow.parquet")
    pa_types = require("pyarrow.types")
    name = _one_input(expect, "parquet")
    blocks, labels, columns, target, total = [], [], None, args.get("target"), 0
    for path in _files(resolve_path(args["path"], base_dir), ".parquet", "parquet"):
        try:
            file = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises its own kinds for a file that is not Parquet
            raise UserError(f"{path}: cannot read it as Parquet ({first_line(err)})", help=READ_HELP) from None
        schema = file.schema_arrow
        names = list(schema.names)
        target = target or names[-1]
        if target not in names:
            raise UserError(f"{path} has no column '{target}'; it has: {', '.join(names[:20])}",
                            help='name the label column: parquet("data/", target="label")')
        features = [c for c in names if c != target]
        if columns is None:
            columns = features
            for c in features:
                kind = schema.field(c).type
                if not (pa_types.is_integer(kind) or pa_types.is_floating(kind) or pa_types.is_boolean(kind)):
                    raise UserError(f"{path}: column '{c}' holds {kind} values, not numbers",
                                    help="give numeric feature columns only (encode text or categories as numbers)")
        elif features != columns:
            raise UserError(f"{path} has columns {', '.join(features)}; the first file has {', '.join(columns)}",
                            help=READ_HELP)
        for g in range(file.num_row_groups):
            n = file.metadata.row_group(g).num_rows
            blocks.append(Block(str(path), total, n, g))
            total += n
            labels.append(file.read_row_group(g, columns=[target]).column(target).to_numpy(zero_copy_only=False))
    sample = _single_vector_input(expect, str(args["path"]), len(columns))
    y = labels_from_array(np.concatenate(labels), expect, str(args["path"]))
    rows = ShardRows(tuple(blocks), np.arange(len(y)), ",".join(columns), tuple(sample), "float32")
    return Arrays([rows], y, f'parquet("{args["path"]}")', tabular=len(sample) == 1, target=target, meta=_meta(args))


def _one_input(expect, source: str) -> str:
    if len(expect.inputs) != 1 or expect.inputs[0][2] == "int":
        shown = ", ".join(f"{n}: {expect.shape_text(i)}" for i, (n, _, _) in enumerate(expect.inputs))
        raise UserError(f"{source}(...) feeds one float input; this model has {shown}",
                        help="give the model one input, or use npz(...) for several inputs or token ids")
    return expect.inputs[0][0]


def _meta(args) -> dict:
    return {"shards": {"workers": args.get("workers")}}


def is_sharded(arrays) -> bool:
    return any(isinstance(x, ShardRows) for x in arrays.inputs)


# ------------------------------------------------------------------ split, statistics, shuffle


def streamed_stats(rows: ShardRows) -> dict[str, np.ndarray]:
    """Mean and (population) std of each feature over `rows`, in one pass, chunk by chunk."""
    from .data import safe_std
    from .streaming import _Welford

    acc = _Welford()
    whole = replace(rows, mean=None, std=None)
    chunk = max(1, STATS_BYTES // (8 * max(int(np.prod(rows.sample)), 1)))
    for start in range(0, len(rows), chunk):
        acc.add(whole.decode(range(start, min(start + chunk, len(rows)))).astype(np.float64))
    std = np.sqrt(acc.squared_deviations() / max(acc.n, 1))
    return {"mean": acc.mean.astype(np.float32), "std": safe_std(std)}


class ShardedSplit(StreamedSplit):
    """A split whose labels are in memory and whose inputs are read from the shards in batches."""

    def batches(self, indices):
        """As StreamedSplit's, but a worker reads READ_BYTES of batches at a time (one array, one
        hand-over to this process): per batch, a worker's fixed costs are what slow streaming."""
        import torch

        from .images import _as_list

        plan = [_as_list(i, len(self)) for i in indices]
        row_bytes = 4 * int(np.prod(self.files.sample))
        per_read = max(1, READ_BYTES // max(row_bytes * max(len(plan[0]) if plan else 1, 1), 1))
        groups = [plan[g:g + per_read] for g in range(0, len(plan), per_read)]
        self._plan.batches = [[i for index in group for i in index] for group in groups]
        for group, rows in zip(groups, self._loader_for()):
            if isinstance(rows, str):
                raise UserError(rows, help=READ_HELP)
            rows = rows.to(self.device, non_blocking=True)
            start = 0
            for index in group:
                yield [rows[start:start + len(index)]], self.y[torch.as_tensor(index, device=self.y.device)]
                start += len(index)

    def shuffled(self, generator):
        """This epoch's order: the blocks permuted, then the rows within each block (positions of this split)."""
        import torch

        bounds = np.searchsorted(self.files.rows, self.files.starts)  # the first position of each block
        ends = np.append(bounds[1:], len(self))
        parts = [lo + torch.randperm(int(hi - lo), generator=generator)
                 for b in torch.randperm(len(bounds), generator=generator).tolist()
                 for lo, hi in [(int(bounds[b]), int(ends[b]))] if hi > lo]
        return torch.cat(parts) if parts else torch.arange(0)


def prepare_split(arrays, expect, train_idx, val_idx, standardize: bool):
    """prepare's Data for sharded arrays: statistics streamed over the training rows, two ShardedSplits."""
    import torch

    from .data import Data

    rows: ShardRows = arrays.inputs[0]
    stats, fitted = {}, {}
    if standardize and arrays.tabular:
        fitted = streamed_stats(replace(rows, rows=rows.rows[train_idx], mean=None, std=None))
        stats[expect.inputs[0][0]] = {k: torch.from_numpy(v) for k, v in fitted.items()}
    workers = arrays.meta.get("shards", {}).get("workers")

    def split(idx):
        part = replace(rows, rows=rows.rows[idx], mean=fitted.get("mean"), std=fitted.get("std"))
        return ShardedSplit(part, torch.from_numpy(np.ascontiguousarray(arrays.y[idx])), workers)

    val = split(val_idx) if len(val_idx) else None
    return Data(split(train_idx), val, arrays.origin, stats, arrays.target, dict(arrays.meta))


# ------------------------------------------------------------------ evaluate


def eval_batches(source, base_dir: Path, expect, state: Mapping[str, Any], batch: int):
    """`evaluate --data shards(...)|parquet(...)`: every row in order, standardised with the run's
    statistics, read batch by batch -> (NumPy batches, the source's words for messages)."""
    import torch

    from .data import load_arrays
    from .images import numpy_batches

    arrays = load_arrays(source, expect, base_dir)
    rows: ShardRows = arrays.inputs[0]
    stats = (state.get("data_stats") or {}).get(expect.inputs[0][0])
    mean, std = (stats["mean"].numpy(), stats["std"].numpy()) if stats else (None, None)
    split = ShardedSplit(replace(rows, mean=mean, std=std),
                         torch.from_numpy(np.ascontiguousarray(arrays.y)), arrays.meta["shards"].get("workers"))
    return numpy_batches(split, batch), arrays.origin
