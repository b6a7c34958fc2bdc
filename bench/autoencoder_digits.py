"""A digits autoencoder (`target input`): how much better than predicting each pixel's mean?

Trains specs/digits_autoencoder.nn (an encoder to a 16-value `code`, a decoder back, gaussian
noise on the training inputs) and compares its validation MSE with the MSE of the simplest
predictor: each pixel's mean over the training images. Prints both and their ratio (the bar is
0.5: half the mean predictor's error); the run folder holds reconstructions.png. Nothing here
asserts (tests/test_autoencoder.py does, for a shorter run on one seed).

    .venv/bin/python bench/autoencoder_digits.py                 # seed 0, the spec's 40 epochs
    .venv/bin/python bench/autoencoder_digits.py --seeds 0 1 2 --epochs 20
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from nnspec.pipeline import check_file
from nnspec.train.autoencoder import mean_predictor_mse
from nnspec.train.data import load_data
from nnspec.train.run import train_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "digits_autoencoder.nn"


def one_run(seed: int, epochs: int | None, out: Path) -> tuple[float, float]:
    """(validation MSE of the trained autoencoder at its best epoch, of the per-pixel mean)."""
    result = check_file(SPEC)
    run = train_spec(result, out_dir=out, seed=seed, epochs=epochs)
    data = load_data(result.run_config(seed=seed))  # the same split the run trained on
    return run.best["val_loss"], mean_predictor_mse(data.train.y, data.val.y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the spec's")
    args = parser.parse_args()
    print("seed  val MSE  mean-pixel MSE  ratio")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            mse, baseline = one_run(seed, args.epochs, Path(tmp) / f"seed{seed}")
            print(f"{seed:>4}  {mse:.5f}  {baseline:.5f}         {mse / baseline:.3f}")


if __name__ == "__main__":
    main()
