"""Training on data bigger than the memory the run uses: `shards("dir/")` against an in-memory slice.

    .venv/bin/python bench/out_of_core.py [--gb 8] [--features 512] [--shard-mb 64] [--batch 256]
                                          [--workers N] [--slice-gb 0.5] [--steps N] [--threads N] [--keep DIR]

Writes GB of float32 rows (FEATURES standard-normal features, 10 classes from a fixed random linear
map: a learnable signal) as uncompressed .npz shards of SHARD-MB each, then trains one MLP for one
epoch on them through `train_spec` (what `nnspec train` runs) in a fresh process, which reports
its peak resident memory (VmHWM of /proc/self/status; its DataLoader workers' peak apart, from
getrusage(RUSAGE_CHILDREN)). Then the same model, one epoch, in another fresh process on an .npz of
the first SLICE-GB of the rows (loaded whole, batched by indexing). samples/s = training rows /
the epoch's `seconds` in the run's history (training plus nnspec's per-epoch work; no validation
split; the streamed run's statistics pass and the loading are before the epoch and not in it, and
are reported as the run's wall time). With --steps, each run stops after that many batches (the
streamed one still shuffles, reads the statistics of, and plans the epoch over, all the rows).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = """model Rows {{
    input x: [{features}]
    layers {{
        Dense(64) -> relu
        Dense(10) -> softmax
    }}
    loss      categorical_crossentropy
    optimizer SGD(lr=0.05, momentum=0.9)
    metrics   [accuracy]
    train {{ data {data}; epochs 1; batch_size {batch}; validation 0; seed 0{steps} }}
}}
"""

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
if {threads}:
    torch.set_num_threads({threads})
from nnspec.pipeline import check_file
from nnspec.train.run import train_spec
started = time.perf_counter()
summary = train_spec(check_file({spec!r}), out_dir={out!r})
wall = time.perf_counter() - started
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({{"history": summary.history, "wall": wall,
                   "peak_kb": int(status["VmHWM"].split()[0]),
                   "workers_peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}}))
"""


def write_shards(folder: Path, gb: float, features: int, shard_mb: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((features, 10)).astype(np.float32)
    per_shard = max(1, (shard_mb << 20) // (4 * features))
    total = int(gb * (1 << 30)) // (4 * features)
    for i, start in enumerate(range(0, total, per_shard)):
        n = min(per_shard, total - start)
        x = rng.standard_normal((n, features), dtype=np.float32)
        np.savez(folder / f"part-{i:05d}.npz", x=x, y=(x @ w).argmax(1))
    return total


def run(spec: Path, out: Path, threads: int) -> dict:
    code = CHILD.format(root=str(ROOT), spec=str(spec), out=str(out), threads=threads)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(name: str, rows: int, result: dict, batch: int, steps: int | None) -> float:
    rows = rows if steps is None else min(rows, steps * batch)
    seconds = result["history"][-1]["seconds"]
    rate = rows / seconds
    print(f"{name:>9}: {rows:,} rows, epoch {seconds:.1f} s = {rate:,.0f} samples/s, run wall {result['wall']:.1f} s, "
          f"peak RSS {result['peak_kb'] / 2**20:.2f} GiB (workers' peak {result['workers_peak_kb'] / 2**20:.2f} GiB), "
          f"loss {result['history'][-1]['loss']:.4f}, accuracy {result['history'][-1].get('accuracy', float('nan')):.4f}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=8.0)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--shard-mb", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="reading processes (default: the source's own)")
    parser.add_argument("--slice-gb", type=float, default=0.5, help="the in-memory comparison's share of the rows")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of each run (default: torch's)")
    parser.add_argument("--steps", type=int, default=None, help="stop each run's epoch after this many batches")
    parser.add_argument("--keep", type=Path, default=None, help="write the shards here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.keep or tmp / "parts"
        started = time.perf_counter()
        rows = write_shards(data, args.gb, args.features, args.shard_mb)
        print(f"wrote {rows:,} rows x {args.features} float32 = {rows * args.features * 4 / 2**30:.2f} GiB in "
              f"{len(list(data.glob('*.npz')))} shards, {time.perf_counter() - started:.0f} s; "
              f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
        steps = "" if args.steps is None else f"; steps {args.steps}"
        workers = "" if args.workers is None else f", workers={args.workers}"
        spec = tmp / "shards.nn"
        spec.write_text(SPEC.format(features=args.features, data=f'shards("{data}"{workers})', batch=args.batch, steps=steps))
        disk = report("streamed", rows, run(spec, tmp / "run_disk", args.threads), args.batch, args.steps)
        slice_rows = min(rows, int(args.slice_gb * (1 << 30)) // (4 * args.features))
        xs, ys, have = [], [], 0
        for path in sorted(data.glob("*.npz")):
            if have >= slice_rows:
                break
            with np.load(path) as part:
                xs.append(part["x"][:slice_rows - have])
                ys.append(part["y"][:slice_rows - have])
            have += len(xs[-1])
        np.savez(tmp / "slice.npz", x=np.concatenate(xs), y=np.concatenate(ys))
        del xs, ys
        spec_mem = tmp / "memory.nn"
        spec_mem.write_text(SPEC.format(features=args.features, data=f'npz("{tmp / "slice.npz"}")', batch=args.batch, steps=steps))
        memory = report("in memory", slice_rows, run(spec_mem, tmp / "run_memory", args.threads), args.batch, args.steps)
        print(f"streamed / in memory: {disk / memory:.2f}")


if __name__ == "__main__":
    main()
