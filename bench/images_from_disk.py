"""Image-folder training from disk against the same images already in memory.

    .venv/bin/python bench/images_from_disk.py [--size 32] [--epochs 4] [--batch 64] [--workers N] [--threads N]
                                               [--repeats 2]

The 1,797 scikit-learn digits, upscaled (bilinear) to SIZE x SIZE gray, are written as PNG files,
one folder per class, to a temporary folder. The same small CNN trains through `train_spec` (what
`nnspec train` runs) twice from the same seed: once on `images("folder", size=[S, S])` (headers
checked at load, pixels decoded by DataLoader workers batch by batch), once on an .npz of exactly
the pixels those PNGs decode to (in memory, batched by indexing). Each epoch's time comes from the
run's history (`seconds`: training plus nnspec's per-epoch work; no validation split). The first
epoch is reported apart (it starts the worker processes); samples/s is the median of the others.
The two runs see the same batches in the same order, so their losses match too (printed).
Each repeat runs both, in alternating order; the ratio printed last is the median over repeats.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPEC = """model DigitsFromDisk {{
    input image: [1, {s}, {s}]
    layers {{
        Conv2D(16, kernel=3, padding=same) -> relu
        MaxPool2D(2)
        Conv2D(32, kernel=3, padding=same) -> relu
        MaxPool2D(2)
        Flatten()
        Dense(10) -> softmax
    }}
    loss      categorical_crossentropy
    optimizer Adam(lr=0.001)
    metrics   [accuracy]
    train {{ data {data}; epochs {epochs}; batch_size {batch}; seed 0 }}
}}
"""


def write_pngs(folder: Path, size: int) -> np.ndarray:
    """The digits as SIZE x SIZE PNGs under folder/<digit>/; returns the labels in file order."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for k in range(10):
        (folder / str(k)).mkdir(parents=True)
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        image = Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        image.save(folder / str(label) / f"{i:05d}.png")
    return digits.target


def train(spec_text: str, spec_path: Path, out: Path):
    from nnspec.pipeline import check_text
    from nnspec.train.run import train_spec

    result = check_text(spec_text, str(spec_path))
    assert result.ok, result.render()
    started = time.perf_counter()
    summary = train_spec(result, out_dir=out)
    return summary.history, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: images' own)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs (disk and memory)")
    args = parser.parse_args()
    import torch

    from nnspec.train.images import ImageFiles, worker_count

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_pngs(tmp / "digits", args.size)
        # the in-memory copy: exactly the pixels the PNGs decode to, in the order images(...) lists them
        paths = sorted((p for p in (tmp / "digits").rglob("*.png")), key=lambda p: (p.parent.name, p.name))
        files = ImageFiles(tuple(map(str, paths)), (args.size, args.size), "gray")
        x = files.decode(range(len(files)))
        y = np.array([int(p.parent.name) for p in paths], np.int64)
        np.savez(tmp / "digits.npz", x=x, y=y)
        workers = "" if args.workers is None else f", workers={args.workers}"
        sources = {"disk": f'images("digits", size=[{args.size}, {args.size}]{workers})', "memory": 'npz("digits.npz")'}
        n = len(y)
        print(f"{n} images {args.size}x{args.size} gray, batch {args.batch}, {args.epochs} epochs, "
              f"torch threads {torch.get_num_threads()}, decoding workers "
              f"{args.workers if args.workers is not None else worker_count(None)}, {os.cpu_count()} CPU cores, "
              f"load average {os.getloadavg()[0]:.1f}")
        ratios = []
        for repeat in range(args.repeats):  # the order alternates, so drift in a shared machine's load evens out
            rates = {}
            for name in (("disk", "memory") if repeat % 2 == 0 else ("memory", "disk")):
                text = SPEC.format(s=args.size, data=sources[name], epochs=args.epochs, batch=args.batch)
                history, total = train(text, tmp / "spec.nn", tmp / f"run_{name}_{repeat}")
                seconds = [row["seconds"] for row in history]
                rates[name] = n / statistics.median(seconds[1:]) if len(seconds) > 1 else n / seconds[0]
                losses = ", ".join(f"{row['loss']:.6f}" for row in history)
                print(f"{name:>6}: first epoch {seconds[0]:.2f} s, then {rates[name]:,.0f} samples/s "
                      f"(median), run {total:.1f} s; losses {losses}")
            ratios.append(rates["disk"] / rates["memory"])
            print(f"repeat {repeat + 1}: disk / memory {ratios[-1]:.2f}")
    print(f"disk / memory, median of {len(ratios)}: {statistics.median(ratios):.2f} "
          f"(load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
