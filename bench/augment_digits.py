"""Does augmentation help a digits CNN trained on 300 images?

Trains specs/digits_augmented.nn (300 training images: `validation 0.833` of scikit-learn's
1,797 digits; `augment [random_crop(padding=1), rotate(5)]`) and the same
spec without its `augment` line, on the same split, for each seed; prints the validation
accuracy of each at the last epoch and at its best epoch (by val_loss). Nothing here asserts.

    .venv/bin/python bench/augment_digits.py                   # seeds 0 1 2, the spec's 150 epochs
    .venv/bin/python bench/augment_digits.py --seeds 0 --epochs 30
"""
from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

from nnspec.pipeline import check_text
from nnspec.train.run import train_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "digits_augmented.nn"


def variants() -> dict[str, str]:
    """The spec as written, and the same without its `augment` setting."""
    text = SPEC.read_text(encoding="utf-8")
    plain = re.sub(r"^\s*augment \[.*\]\n", "", text, flags=re.M)
    assert plain != text, "specs/digits_augmented.nn has no `augment [...]` line"
    return {"augmented": text, "plain": plain}


def accuracy(text: str, seed: int, epochs: int | None, out: Path) -> tuple[float, float]:
    """(validation accuracy at the last epoch, at the best epoch by val_loss)."""
    run = train_spec(check_text(text, str(SPEC)), out_dir=out, seed=seed, epochs=epochs)
    return run.final["val_accuracy"], run.best["val_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the spec's")
    args = parser.parse_args()
    finals: dict[str, list[float]] = {"plain": [], "augmented": []}
    print("seed  variant    val_accuracy (last epoch)  (best epoch)")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name, text in variants().items():
                last, best = accuracy(text, seed, args.epochs, Path(tmp) / f"{name}{seed}")
                finals[name].append(last)
                print(f"{seed:>4}  {name:<9}  {last:.4f}                     {best:.4f}", flush=True)
    for name, values in finals.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"mean  {name:<9}  {statistics.mean(values):.4f} ± {spread:.4f}")


if __name__ == "__main__":
    main()
