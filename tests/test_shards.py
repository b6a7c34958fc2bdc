"""Data bigger than memory: `shards("dir/")` (.npz shards) and `parquet(...)`, read from disk in batches
by DataLoader workers. Checked against the same rows trained from one in-memory .npz, numpy's own
mean and std, and the set of rows an epoch must cover."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.train.data import load_data
from nnspec.train.run import evaluate_spec, train_spec
from nnspec.train.shards import streamed_stats

torch.set_num_threads(1)  # tiny models: one thread is faster than several contending for two cores

SPEC = """model Rows {{
    input x: [6]
    layers {{
        Dense(8) -> relu
        Dense(3) -> softmax
    }}
    loss      categorical_crossentropy
    optimizer SGD(lr=0.1)
    metrics   [accuracy]
    train {{ data {data}; epochs {epochs}; batch_size 16; validation {validation}; seed 0; {extra} }}
}}
"""
SIZES = (40, 25, 35)  # rows per shard: uneven, so batches cross shard boundaries


def rows(n: int = sum(SIZES), seed: int = 0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 6)) * [1, 2, 3, 4, 5, 6] + [0, 1, 2, 3, 4, 5]).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 2)


def write_shards(folder: Path, x, y, compressed: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    start = 0
    for i, n in enumerate(SIZES):
        save(folder / f"part-{i:03d}.npz", x=x[start:start + n], y=y[start:start + n])
        start += n
    return folder


def spec_for(tmp_path: Path, data: str, *, epochs: int = 2, validation: float = 0.2, extra: str = ""):
    path = tmp_path / "rows.nn"
    path.write_text(SPEC.format(data=data, epochs=epochs, validation=validation, extra=extra))
    result = check_text(path.read_text(), str(path))
    assert result.ok, result.render()
    return result


def history(summary):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in summary.history]


def trained_from_disk_and_memory(tmp_path: Path, source: str, x, y) -> tuple[list, list]:
    """The histories of two unshuffled, unstandardised runs: from `source` on disk, and from the same
    rows `x`, `y` in one .npz read into memory."""
    np.savez(tmp_path / "all.npz", x=x, y=y)
    extra = "shuffle false; standardize false"
    disk = train_spec(spec_for(tmp_path, source, extra=extra), out_dir=tmp_path / "a")
    memory = train_spec(spec_for(tmp_path, 'npz("all.npz")', extra=extra), out_dir=tmp_path / "b")
    return history(disk), history(memory)


@pytest.mark.parametrize("compressed", [False, True])
def test_unshuffled_shards_train_as_the_same_rows_in_memory(tmp_path, compressed):
    """Same split, same batches in the same order, same numbers (standardisation off: its float64
    streaming sums round differently from numpy's float32 ones, compared in the next test)."""
    x, y = rows()
    write_shards(tmp_path / "parts", x, y, compressed)
    disk, memory = trained_from_disk_and_memory(tmp_path, 'shards("parts", workers=2)', x, y)
    assert disk == memory


def test_standardisation_statistics_are_numpys_over_the_training_rows(tmp_path):
    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    data = load_data(spec_for(tmp_path, 'shards("parts", workers=0)').run_config())
    np.savez(tmp_path / "all.npz", x=x, y=y)
    same = load_data(spec_for(tmp_path, 'npz("all.npz")').run_config())
    train_rows = data.train.files.rows
    np.testing.assert_allclose(data.stats["x"]["mean"].numpy(), x[train_rows].mean(0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(data.stats["x"]["std"].numpy(), x[train_rows].std(0, dtype=np.float64), rtol=1e-6)
    (got,), _ = data.train.batch(torch.arange(len(data.train)))
    np.testing.assert_allclose(got.numpy(), same.train.inputs[0].numpy(), rtol=1e-5, atol=1e-6)
    assert torch.equal(data.train.y, same.train.y) and torch.equal(data.val.y, same.val.y)


def test_streamed_stats_chunk_by_chunk(monkeypatch, tmp_path):
    """Many small chunks merged (Chan et al.) give numpy's mean and population std."""
    import nnspec.train.shards as S

    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    monkeypatch.setattr(S, "STATS_BYTES", 7 * 8 * 6)  # 7 rows of 6 float64 values
    data = load_data(spec_for(tmp_path, 'shards("parts", workers=0)', validation=0).run_config())
    stats = streamed_stats(data.train.files)
    np.testing.assert_allclose(stats["mean"], x.mean(0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], x.std(0, dtype=np.float64), rtol=1e-6)


def test_shuffle_is_seeded_covers_every_row_once_and_keeps_blocks_together(tmp_path):
    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    train = load_data(spec_for(tmp_path, 'shards("parts", workers=0)', validation=0).run_config()).train
    first = train.shuffled(torch.Generator().manual_seed(3))
    again = train.shuffled(torch.Generator().manual_seed(3))
    other = train.shuffled(torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert sorted(first.tolist()) == list(range(sum(SIZES)))
    shard = np.searchsorted(np.cumsum(SIZES), first.numpy(), side="right")
    assert (np.diff(shard) != 0).sum() == len(SIZES) - 1  # each shard's rows in one run: 3 blocks, 2 switches
    assert first[:SIZES[0]].tolist() != sorted(first[:SIZES[0]].tolist()) or shard[0] != 0  # shuffled within


def test_shuffled_rows_pair_each_input_with_its_label(tmp_path):
    """A row's label in memory and its input read from disk stay together through the shuffle."""
    x, _ = rows()
    y = np.arange(len(x)) % 3
    x[:, 0] = np.arange(len(x))  # the row's id, readable from its input
    write_shards(tmp_path / "parts", x, y)
    train = load_data(spec_for(tmp_path, 'shards("parts", workers=2)', validation=0, extra="standardize false")
                      .run_config()).train
    order = train.shuffled(torch.Generator().manual_seed(0))
    for (xb,), yb in train.batches(order[s:s + 16] for s in range(0, len(order), 16)):
        ids = xb[:, 0].long()
        assert torch.equal(yb, ids % 3)


def test_parquet_reads_feature_columns_by_name(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x, y = rows()
    names = [f"f{i}" for i in range(6)]
    table = pa.table({"label": y, **{n: x[:, i] for i, n in enumerate(names)}})  # the label first: named
    (tmp_path / "pq").mkdir()
    pq.write_table(table.slice(0, 60), tmp_path / "pq" / "a.parquet", row_group_size=25)
    pq.write_table(table.slice(60), tmp_path / "pq" / "b.parquet", row_group_size=25)
    disk, memory = trained_from_disk_and_memory(tmp_path, 'parquet("pq", target="label", workers=1)', x, y)
    assert disk == memory


def test_evaluate_streams_the_validation_rows_and_other_shards(tmp_path):
    """evaluate re-makes the split and reads the validation rows from disk; `--data shards(...)`
    scores every row of other shards with the run's statistics: both as the same rows from memory."""
    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    np.savez(tmp_path / "all.npz", x=x, y=y)
    disk = spec_for(tmp_path, 'shards("parts", workers=1)', epochs=3)
    summary = train_spec(disk, out_dir=tmp_path / "run")
    checkpoint = str(Path(summary.out_dir) / "best.pt")
    own = evaluate_spec(disk, checkpoint)
    best = next(r for r in summary.history if r["epoch"] == own["epoch"])
    assert own["samples"] == 20 and own["split"] == "validation split"
    assert own["loss"] == pytest.approx(best["val_loss"], rel=1e-5) and own["accuracy"] == best["val_accuracy"]
    other = evaluate_spec(disk, checkpoint, data=f'shards("{tmp_path}/parts")')
    whole = evaluate_spec(disk, checkpoint, data=f'npz("{tmp_path}/all.npz")')
    assert other["samples"] == whole["samples"] == sum(SIZES)
    assert other["loss"] == pytest.approx(whole["loss"], rel=1e-5) and other["accuracy"] == whole["accuracy"]


# ------------------------------------------------------------------ refusals, each naming what is wrong


def load(tmp_path, data: str):
    return load_data(spec_for(tmp_path, data).run_config())


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path, 'shards("nowhere")')


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no .npz files"):
        load(tmp_path, 'shards("empty")')


def test_a_shard_with_another_shape_is_named(tmp_path):
    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    np.savez(tmp_path / "parts" / "part-001.npz", x=np.zeros((5, 7), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(UserError, match=r"part-001\.npz: .*\[6\]|part-001\.npz: input 'x' expects"):
        load(tmp_path, 'shards("parts")')


def test_a_shard_with_other_arrays_is_named(tmp_path):
    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    np.savez(tmp_path / "parts" / "part-002.npz", features=x[:5], y=y[:5])
    with pytest.raises(UserError, match=r"part-002\.npz"):
        load(tmp_path, 'shards("parts")')


def test_a_shard_without_labels_is_named(tmp_path):
    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    np.savez(tmp_path / "parts" / "part-002.npz", x=x[:5])
    with pytest.raises(UserError, match=r"part-002\.npz has no array 'y'"):
        load(tmp_path, 'shards("parts")')


@pytest.mark.parametrize("workers", [0, 1])
def test_a_non_finite_value_is_named_by_file_and_row(tmp_path, workers):
    """Found where the row is read: by the statistics pass, or (standardize false) by a worker."""
    x, y = rows()
    x[40 + 7, 2] = np.nan  # shard 1, its row 7
    write_shards(tmp_path / "parts", x, y)
    for extra in ("", "standardize false"):
        result = spec_for(tmp_path, f'shards("parts", workers={workers})', validation=0, extra=extra)
        with pytest.raises(UserError, match=r"part-001\.npz: array 'x' row 7 holds a NaN or infinite value"):
            train_spec(result, out_dir=tmp_path / "run")


def test_parquet_non_numeric_column_is_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x, y = rows(10)
    columns = {f"f{i}": x[:, i] for i in range(5)}
    pq.write_table(pa.table({**columns, "city": ["a"] * 10, "y": y}), tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"t\.parquet: column 'city' holds string values, not numbers"):
        load(tmp_path, 'parquet("t.parquet", target="y")')


def test_parquet_missing_target_is_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x, y = rows(10)
    pq.write_table(pa.table({**{f"f{i}": x[:, i] for i in range(6)}, "y": y}), tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"t\.parquet has no column 'label'"):
        load(tmp_path, 'parquet("t.parquet", target="label")')


# ------------------------------------------------------------------ data-parallel ranks

RECORDER = """
import json, os, sys
import torch
from nnspec.train import loop, shards

seen = []
original = shards.ShardedSplit.batches
def batches(self, indices):  # record the global row ids of every training batch this rank reads
    indices = [i.tolist() for i in indices]
    if len(self) == {train_rows}:
        seen.extend(int(r) for i in indices for r in self.files.rows[i])
    return original(self, indices)
shards.ShardedSplit.batches = batches

from nnspec.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    rank = os.environ.get("RANK", "0")
    with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as f:
        json.dump(seen, f)
"""


@pytest.mark.slow
def test_two_ranks_read_every_row_once_per_epoch(tmp_path):
    """torchrun with 2 workers, 1 epoch: the union of the rows the ranks read is the data set, once."""
    x, y = rows()
    write_shards(tmp_path / "parts", x, y)
    spec_for(tmp_path, 'shards("parts", workers=0)', epochs=1, validation=0)
    script = tmp_path / "record.py"
    script.write_text(RECORDER.format(train_rows=sum(SIZES), out=str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           "train", str(tmp_path / "rows.nn"), "--out", str(tmp_path / "run")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] and ranks[1] and not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(sum(SIZES)))
