"""`target input`: the label is the model's input as the model sees it (an autoencoder).

The data sources give inputs only (`input_rows` for CSV and NPZ files: no label column or array
`y` is needed; sklearn sets and synthetic data drop their labels), and `data.prepare` sets the
label to the (standardised) input, reshaped to the output's shape. Augmentation changes the
training batches' inputs only, so `augment [gaussian_noise(0.1)]` trains a denoising autoencoder.

At the end of training, a model whose input is an image [C, H, W] draws `reconstructions.png` in
its run folder: originals above, their reconstructions below (`write_reconstructions`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..catalog.targets import reads_inputs  # noqa: F401 (data.py asks here)
from ..diagnostics import UserError

SHOWN = 10  # examples drawn in reconstructions.png


def refuse_source(source: str) -> UserError:
    return UserError(f"`target input` cannot read data source {source}: it reads sklearn.*, synthetic, "
                     "csv(...) and npz(...) (inputs only)",
                     help="give the inputs as csv(\"file.csv\") (every column an input, or target=\"y\" to leave "
                          "one out) or npz(\"file.npz\") (array x)")


def input_rows(path: Path, args: Mapping[str, Any], expect) -> Any:
    """A CSV or NPZ file's inputs, whole, as data.Arrays whose labels are the inputs. A CSV's every
    column is an input but `target=` (left out when given); an NPZ's array `y` is not read."""
    from .data import Arrays
    from .row_files import row_batches

    kwargs = {"target": args.get("target"), "delimiter": args.get("delimiter") or ","} if path.suffix.lower() == ".csv" else {}
    batches = list(row_batches(path, expect, 4096, labels=False, **kwargs))
    if not batches:
        raise UserError(f"{path} has no data rows", help="give at least one row")
    inputs = [np.concatenate([b.inputs[i] for b in batches]) for i in range(len(expect.inputs))]
    tabular = len(inputs) == 1 and inputs[0].ndim == 2 and inputs[0].dtype == np.float32
    return Arrays(inputs, inputs[0], str(path), tabular=tabular)


def labels_from_inputs(inputs: list, out_shape: tuple) -> np.ndarray:
    """The labels of `target input`: the first (only) input as the model sees it, in the output's shape."""
    x = inputs[0]
    shape = tuple(d if d is not None else -1 for d in out_shape)
    return np.ascontiguousarray(x.reshape(len(x), *shape), dtype=np.float32)


def is_image(shape: tuple) -> bool:
    return len(shape) == 3 and None not in shape


def write_reconstructions(path: Path, model, split, input_shape: tuple, title: str) -> None:
    """The first SHOWN examples of `split` (originals, top row) and the model's outputs for them
    (bottom row), one image each: the first channel, or RGB when there are 3 channels."""
    import matplotlib
    import torch

    from . import checkpoint as ckpt_io
    from .loop import predict

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = min(SHOWN, len(split))
    x = split.inputs[0][:n]
    with torch.no_grad():
        out = predict(model, [x]).float().cpu().reshape(n, *input_shape).numpy()
    originals = x.float().cpu().numpy()
    low, high = float(originals.min()), float(originals.max())  # one scale for both rows
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.8), squeeze=False)
    for row, images in enumerate((originals, out)):
        for i in range(n):
            ax = axes[row][i]
            ax.imshow(_picture(images[i]), cmap="gray", vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(("original", "reconstructed")[row])
    fig.suptitle(title)
    fig.tight_layout()
    ckpt_io.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _picture(image: np.ndarray) -> np.ndarray:
    """[C, H, W] -> what imshow draws: H x W (one channel), or H x W x 3 clipped to the first row's scale."""
    if image.shape[0] == 3:
        return np.clip(np.moveaxis(image, 0, -1), 0.0, 1.0)
    return image[0]


def mean_predictor_mse(train_y, val_y) -> float:
    """The validation MSE of predicting each value's training mean: the bar an autoencoder must beat."""
    mean = train_y.float().mean(0, keepdim=True)
    return float(((val_y.float() - mean) ** 2).mean())
