"""Are specs/digits_gan.nn's samples digits? Scored by a digits classifier that nnspec trained.

Trains specs/digits_cnn.nn on the real digits (or reads --classifier RUN_DIR), trains
specs/digits_gan.nn (or reads --gan RUN_DIR), draws 1,000 samples with `nnspec sample`'s code and
prints, for the samples and for 1,000 real digits (drawn from all 1,797: the classifier trained on
about 80 % of them, so the real row is an upper reference):
- the classifier's mean top probability (confident: the sample looks like one digit),
- how many of the 10 classes are predicted at least 20 times (coverage: no mode collapse),
- the Inception-style score exp(E_x[KL(p(y|x) || p(y))]) (1 to 10: confident and varied).
Nothing here asserts (tests/test_gan.py checks the mechanics on a tiny run).

    .venv/bin/python bench/gan_digits.py                           # trains both (a few minutes on one core)
    .venv/bin/python bench/gan_digits.py --gan runs/DigitsGAN/1 --classifier runs/DigitsCNN/1
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nnspec.backends.torch_model import build_model
from nnspec.pipeline import check_file, check_text
from nnspec.train import checkpoint as ckpt_io
from nnspec.train.gan import sample_run
from nnspec.train.run import train_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
N = 1000


def classifier(run_dir: Path):
    state = ckpt_io.load(run_dir / "best.pt")
    result = check_text(state["spec_source"], str(run_dir / "spec.nn"))
    model = build_model(result.checked)
    model.load_state_dict(state["model"])
    return model.eval()


def scores(model, pixels: np.ndarray) -> tuple[float, int, float]:
    """(mean top probability, classes predicted >= 20 times, Inception-style score) of images in 0..16."""
    with torch.no_grad():
        p = model(torch.from_numpy(pixels.astype(np.float32) / 16.0)).double().numpy()  # nnspec reads digits / 16
    counts = np.bincount(p.argmax(1), minlength=10)
    marginal = p.mean(0, keepdims=True)
    kl = (p * (np.log(p + 1e-12) - np.log(marginal + 1e-12))).sum(1)
    return float(p.max(1).mean()), int((counts >= 20).sum()), float(np.exp(kl.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan", type=Path, help="a trained run of specs/digits_gan.nn (default: train one)")
    parser.add_argument("--classifier", type=Path, help="a trained run of specs/digits_cnn.nn (default: train one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples' noise")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cls_dir = args.classifier or train_spec(check_file(SPECS / "digits_cnn.nn"), out_dir=Path(tmp) / "cnn").out_dir
        gan_dir = args.gan
        if gan_dir is None:
            t0 = time.perf_counter()
            gan_dir = train_spec(check_file(SPECS / "digits_gan.nn"), out_dir=Path(tmp) / "gan").out_dir
            print(f"trained digits_gan in {time.perf_counter() - t0:.0f} s")
        model = classifier(cls_dir)
        _, _ = sample_run(str(gan_dir), N, str(Path(tmp) / "samples.npz"), args.seed, check_text)
        fake = np.load(Path(tmp) / "samples.npz")["x"]
        from sklearn.datasets import load_digits

        real = load_digits().data.reshape(-1, 1, 8, 8)
        real = real[np.random.default_rng(0).choice(len(real), N, replace=False)]
        print(f"samples: {fake.shape}, values {fake.min():.2f}..{fake.max():.2f} (data units 0..16)")
        print("                 mean top p  classes >= 20  Inception-style score")
        for name, pixels in (("1,000 samples", fake), ("1,000 real", real)):
            top, classes, score = scores(model, pixels)
            print(f"{name:<16} {top:>10.3f}  {classes:>13d}  {score:>21.2f}")


if __name__ == "__main__":
    main()
