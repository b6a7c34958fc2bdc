"""Transfer learning on scikit-learn's digits: does a frozen, pre-trained feature extractor help?

1. pre-train a small CNN on every image of the digits 0-4 (`nnspec train`, one run folder);
2. fine-tune the same network on 100 images of the digits 5-9: its feature block frozen
   (`Features(..., trainable=false)`), started from the pre-trained run (`init "..."`);
3. train the same network from scratch (nothing frozen, fresh weights) on the same 100 images;
4. score both on the other images of 5-9 (`nnspec evaluate --data`).

The digits 5-9 are labelled 0-4, so both tasks have 5 classes. Both runs on the 100 images get the
same budget, fixed beforehand (40 epochs, scored at the last one). Prints the two validation
accuracies per seed, their difference and ratio, and the means; nothing here asserts
(tests/test_transfer.py does, on the mean over seeds 0-2). About 2-3 minutes for six seeds.

    .venv/bin/python bench/transfer_digits.py              # seeds 0-5
    .venv/bin/python bench/transfer_digits.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from nnspec.pipeline import check_text
from nnspec.train.run import evaluate_spec, train_spec

NETWORK = """model {name} {{
    input image: [1, 8, 8]
    block Features(a, b) {{
        Conv2D(a, kernel=3, padding=same) -> BatchNorm() -> relu
        MaxPool2D(2)
        Conv2D(b, kernel=3, padding=same) -> BatchNorm() -> relu
        Flatten()
    }}{classifier}
    layers {{
        Features({widths}{frozen})
        Dropout(0.3)
        {head}
    }}
    loss      categorical_crossentropy
    optimizer Adam(lr=0.002)
    metrics   [accuracy]
    train {{ data npz("{data}"); epochs {epochs}; batch_size 32; seed {seed}{init} }}
}}
"""
# The new task's classifier starts fresh: in a block, its layer is `classifier_1.dense_1`, a name the
# pre-trained run (whose classifier is `dense_1`) does not have, so `init` skips it.
CLASSIFIER = """
    block Classifier(classes) {
        Dense(classes) -> softmax
    }"""
FEW = 100  # training images of the digits 5-9
WIDTHS = (64, 128)  # channels of the two convolutions of the frozen feature block


def write_splits(folder: Path, seed: int) -> dict[str, Path]:
    """digits 0-4 (all), 100 images of 5-9 and the rest of 5-9, as .npz files of x [N, 1, 8, 8] in [0, 1] and y."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target
    low, high = np.flatnonzero(y < 5), np.random.default_rng(seed).permutation(np.flatnonzero(y >= 5))
    parts = {"low": (low, 0), "few": (high[:FEW], 5), "rest": (high[FEW:], 5)}
    paths = {}
    for name, (rows, offset) in parts.items():
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], x=x[rows], y=(y[rows] - offset).astype(np.int64))
    return paths


def train(folder: Path, name: str, data: Path, epochs: int, seed: int, frozen: bool = False,
          init: Path | None = None, pretrain: bool = False):
    text = NETWORK.format(name=name, data=data, epochs=epochs, seed=seed, widths=", ".join(map(str, WIDTHS)),
                          frozen=", trainable=false" if frozen else "",
                          init=f'; init "{init}"' if init is not None else "",
                          classifier="" if pretrain else CLASSIFIER, head="Dense(5) -> softmax" if pretrain else "Classifier(5)")
    result = check_text(text, str(folder / f"{name}.nn"))
    assert result.ok, result.render()
    run = train_spec(result, out_dir=folder / name, device="cpu")
    return result, run


def compare(folder: Path, seed: int = 0, pretrain_epochs: int = 20, epochs: int = 40,
            pretrained: Path | None = None) -> dict[str, float]:
    """Validation accuracy on the rest of 5-9: fine-tuned from the 0-4 network vs trained from scratch.

    `pretrained`: a run folder of the 0-4 network to reuse (the 0-4 images are the same for every seed;
    only the split of 5-9 and the seeds of the two runs change); by default it is trained here with `seed`.
    """
    paths = write_splits(folder, seed)
    if pretrained is None:
        train(folder, "Pretrained", paths["low"], pretrain_epochs, seed, pretrain=True)
        pretrained = folder / "Pretrained"
    scores = {"pretrained": pretrained}
    for name, frozen, init in (("FineTuned", True, pretrained), ("Scratch", False, None)):
        result, run = train(folder, name, paths["few"], epochs, seed, frozen, init)
        if init is not None:
            scores["init_notes"] = run.notes
        report = evaluate_spec(result, str(run.out_dir / "last.pt"), data=f'npz("{paths["rest"]}")', device="cpu")
        scores[name] = report["accuracy"]
        scores["validation_images"] = report["samples"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=40, help="epochs on the 100 images (both runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small models: one thread is faster, and the sums come in one order
    both = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            s = compare(Path(tmp), seed, epochs=args.epochs)
        tuned, scratch = s["FineTuned"], s["Scratch"]
        both.append((tuned, scratch))
        print(f"seed {seed}: validation accuracy on {s['validation_images']} images of 5-9 after training on "
              f"{FEW}: fine-tuned (frozen features, init) {tuned:.4f}, from scratch {scratch:.4f}; "
              f"difference {tuned - scratch:+.4f}, ratio {tuned / scratch:.4f}", flush=True)
        if seed == args.seeds[0]:
            print("\n".join("    " + note for note in s["init_notes"]))
    tuned, scratch = (sum(column) / len(both) for column in zip(*both))
    wins = sum(t > s for t, s in both)
    print(f"mean over {len(both)} seed(s): fine-tuned {tuned:.4f}, from scratch {scratch:.4f}; "
          f"difference {tuned - scratch:+.4f}, ratio {tuned / scratch:.4f}; fine-tuned better for {wins} of {len(both)}")


if __name__ == "__main__":
    main()
