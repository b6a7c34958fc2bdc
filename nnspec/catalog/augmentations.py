"""Data augmentations: `augment [random_crop(padding=1), rotate(10), gaussian_noise(0.05), flip_horizontal]`.

One entry per augmentation: its parameters (types, defaults, bounds) and which inputs it applies
to, as a trait:
- `image`: a float image [C, H, W] of known height and width (it moves pixels);
- `float`: any float input (it changes values in place, e.g. adds noise).
Integer token ids take none of them. The checker validates a spec's `augment` list from these
entries (nnspec/check/augment.py); training builds each as a kornia.augmentation module
(nnspec/train/augment.py). Plain data here: the catalog never imports torch or kornia.
"""
from __future__ import annotations

from .base import FunctionEntry
from .schema import Param

F = FunctionEntry
IMAGE, FLOAT = "image", "float"  # the traits: what an augmentation applies to


def _p(default: float) -> Param:
    return Param("p", "float", default, min=0.0, max=1.0, doc="probability of applying it to each example")


AUGMENTATIONS: tuple[FunctionEntry, ...] = (
    F("random_crop", (Param("padding", "int", 2, min=1, doc="pixels of zeros added on each side"), _p(1.0)),
      doc="pad each side with `padding` zero pixels, then crop a random window of the image's size "
          "(a shift by up to `padding` pixels)", traits=frozenset({IMAGE})),
    F("rotate", (Param("degrees", "float", 10.0, min=0.0, max=180.0, min_exclusive=True,
                       doc="largest angle, either way"), _p(1.0)),
      doc="rotate by an angle drawn uniformly from [-degrees, degrees] about the centre", traits=frozenset({IMAGE})),
    F("translate", (Param("fraction", "float", 0.1, min=0.0, max=1.0, min_exclusive=True,
                          doc="largest shift, as a fraction of the width and of the height"), _p(1.0)),
      doc="shift by up to `fraction` of the width and height (the uncovered edge is zeros)", traits=frozenset({IMAGE})),
    F("flip_horizontal", (_p(0.5),), doc="mirror left to right", traits=frozenset({IMAGE})),
    F("flip_vertical", (_p(0.5),), doc="mirror top to bottom", traits=frozenset({IMAGE})),
    F("gaussian_noise", (Param("std", "float", 0.1, min=0.0, min_exclusive=True, doc="standard deviation"), _p(1.0)),
      doc="add noise drawn from N(0, std^2) to every value (of any float input: images, vectors, sequences)",
      traits=frozenset({FLOAT})),
)
