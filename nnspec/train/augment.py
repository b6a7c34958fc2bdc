"""The `augment [...]` train setting: kornia.augmentation modules applied to training batches.

Only the inputs of training batches are augmented (never the labels, validation, evaluate or
predict): `fit` wraps its step function with `Augmenter.wrap`. With `target input` the label is
the clean input, so an augmentation such as gaussian_noise trains a denoising autoencoder.

Each catalog entry (catalog/augmentations.py) becomes one kornia module; they are applied in the
order written. Images [C, H, W] go to kornia as the batch [B, C, H, W]; any other float input is
seen as a one-row image [B, 1, 1, N] (gaussian_noise is elementwise, so its layout does not matter).

Randomness, seeded and resumable: kornia draws its random parameters from torch's global CPU
generator (its modules sample on the CPU unless moved with `.to()`, which nnspec never does, so a
run on a GPU draws the same numbers; the transforms themselves run on the batch's device). An
Augmenter keeps its own generator state, seeded from the run's seed: around each batch it swaps
that state into the global CPU generator inside `torch.random.fork_rng`, which puts the global
state back afterwards. So augmentation neither disturbs nor depends on the draws of initialisation
and dropout, and its state alone, saved in checkpoints (`rng["augment"]`), makes `--resume`
continue the same stream.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

SEED_OFFSET = 0x5EED  # the augmentation stream's seed is the run's seed plus this: not the shuffling stream


def kornia_module(name: str, args: Mapping[str, Any], image_size: tuple[int, int] | None):
    """The kornia.augmentation module of one catalog entry (`image_size`: (H, W) for random_crop)."""
    from ..extras import require

    K = require("kornia.augmentation")  # the `augment` extra: a clear error when it is missing
    p = float(args["p"])
    if name == "random_crop":
        return K.RandomCrop(image_size, padding=int(args["padding"]), p=p)
    if name == "rotate":
        return K.RandomRotation(degrees=float(args["degrees"]), p=p)
    if name == "translate":
        return K.RandomAffine(degrees=0.0, translate=(float(args["fraction"]),) * 2, p=p)
    if name == "flip_horizontal":
        return K.RandomHorizontalFlip(p=p)
    if name == "flip_vertical":
        return K.RandomVerticalFlip(p=p)
    if name == "gaussian_noise":
        return K.RandomGaussianNoise(mean=0.0, std=float(args["std"]), p=p)
    raise AssertionError(f"augmentation {name} has no kornia module")  # catalog and builder out of step


class Augmenter:
    """Applies the spec's augmentations to a batch's inputs, from its own random stream."""

    def __init__(self, augmentations: Sequence[tuple[str, Mapping[str, Any]]], input_shapes: Sequence[tuple],
                 seed: int):
        self.pipelines = [[kornia_module(name, args, _image_size(shape)) for name, args in augmentations]
                          for shape in input_shapes]
        self.shapes = [tuple(shape) for shape in input_shapes]
        self.state = torch.Generator().manual_seed(seed + SEED_OFFSET).get_state()

    def __call__(self, inputs: list) -> list:
        with torch.random.fork_rng(devices=[]):  # the global CPU generator is put back afterwards
            torch.set_rng_state(self.state)
            out = [_apply(modules, x, shape) for modules, x, shape in zip(self.pipelines, inputs, self.shapes)]
            self.state = torch.get_rng_state()
        return out

    def wrap(self, step: Callable) -> Callable:
        """`step(xb, yb, weight)` with the inputs xb augmented first."""
        def augmented_step(xb, yb, weight=1.0):
            return step(self(xb), yb, weight)
        return augmented_step


def _image_size(shape: tuple) -> tuple[int, int] | None:
    return (int(shape[1]), int(shape[2])) if len(shape) == 3 and None not in shape[1:] else None


def _apply(modules: list, x: torch.Tensor, shape: tuple) -> torch.Tensor:
    if not modules:
        return x
    batch = x if len(shape) == 3 else x.reshape(len(x), 1, 1, -1)
    for module in modules:
        batch = module(batch)
    return batch.reshape(x.shape)


def build(augmentations, input_shapes: Sequence[tuple], seed: int) -> Augmenter | None:
    """The run's Augmenter, or None when the spec augments nothing."""
    return Augmenter(augmentations, input_shapes, seed) if augmentations else None
