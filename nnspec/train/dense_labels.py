"""Dense class labels: one class per position of a per-pixel or per-step softmax output.

A multi-class output of rank 2 or more scores every position: [C, H, W] (channels first, a class
per pixel) or [T, C] (features last, a class per step after `return_sequences`). Its labels are
class ids with the class axis left out ([N, H, W], [N, T]) or of size 1 ([N, 1, H, W], [N, T, 1]),
or one-hot vectors along it ([N, C, H, W], [N, T, C]); both become int64 ids, which PyTorch's cross_entropy takes with
[N, C, d1, ...] logits. A position labelled `NOT_SCORED` (-100, PyTorch's ignore_index; or an
all-zero one-hot vector) counts in neither the loss nor the metrics: the loader gives that label
to the padding tokens of a per-step output read from an Embedding with `padding_idx`.
"""
from __future__ import annotations

import math

import numpy as np

from ..catalog.base import feature_axis
from ..diagnostics import UserError
from .metrics import NOT_SCORED


def positions(expect) -> tuple | None:
    """The output's shape without its class axis, for a multi-class output with one class per
    position ([C, H, W] -> (H, W), [T, C] -> (T,)); None for one class per sample."""
    out = tuple(expect.out_shape)
    if expect.kind != "multiclass" or len(out) < 2:
        return None
    axis = feature_axis(len(out))
    return out[:axis] + out[axis + 1:]


def _dims(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _fits(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w is None or w == g for w, g in zip(want, got))


def labels(y: np.ndarray, expect, origin: str, place) -> np.ndarray:
    """Per-position labels from a file -> int64 class ids [N, *positions], NOT_SCORED where a
    position is not scored; any other shape or value is a clear error (`place(i)`: where sample i is)."""
    where = positions(expect)
    out, classes = tuple(expect.out_shape), expect.classes
    got = tuple(y.shape[1:])
    if y.ndim == 1:
        raise one_per_sample_error(expect, origin)
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool) or y.dtype.kind == "c":
        raise UserError(f"{origin}: per-position labels must be class ids or one-hot vectors; the labels hold "
                        f"{'text' if y.dtype.kind in 'US' else f'{y.dtype} values'}",
                        help=f"give class ids 0..{classes - 1} of shape [N, {_dims(where)[1:]}")
    if _fits(got, where):
        return _ids(y, classes, place)
    axis = feature_axis(len(out))
    if _fits(got, out[:axis] + (1,) + out[axis + 1:]):  # ids with a class axis of 1: masks [N, 1, H, W]
        return _ids(np.squeeze(y, 1 + axis), classes, place)
    if _fits(got, out):
        return _from_one_hot(y, len(out), classes, place)
    raise UserError(f"{origin}: labels of shape {list(got)} per sample do not fit the output {_dims(out)}, "
                    f"which has a class per position",
                    help=f"give class ids {_dims(where)} (0..{classes - 1}, {NOT_SCORED} = not scored) or one-hot "
                         f"vectors {_dims(out)} per sample")


def _ids(y: np.ndarray, classes: int, place) -> np.ndarray:
    values = y.astype(np.float64)  # compared before any cast: 1e30 or 2**64 - 1 must not wrap around
    expected = f"per-position class labels must be integers 0..{classes - 1} or {NOT_SCORED} (not scored)"
    per_sample = lambda bad: bad.reshape(len(y), -1).any(1)  # noqa: E731
    _first_bad(per_sample(values != np.round(values)), place, expected, "a fractional label",
               "give each position the integer id of its class")
    _first_bad(per_sample((values < 0) & (values != NOT_SCORED)), place, expected, "a negative label",
               f"mark positions that are not scored with {NOT_SCORED}")
    _first_bad(per_sample(values >= classes), place, expected, f"a class label above {classes - 1}",
               "end the network with one channel per class, counting the classes in the labels")
    return values.astype(np.int64)


def _from_one_hot(y: np.ndarray, rank: int, classes: int, place) -> np.ndarray:
    """One-hot vectors along the output's class axis -> ids; an all-zero vector is not scored."""
    v = np.moveaxis(y, 1 + feature_axis(rank), -1)
    with np.errstate(over="ignore", invalid="ignore"):
        v = v.astype(np.float32)
        sums = v.sum(-1)
    bad = ~(((v == 0) | (v == 1)).all(-1) & ((sums == 1) | (sums == 0)))
    _first_bad(bad.reshape(len(y), -1).any(1), place,
               f"one-hot labels must hold a single 1 among the {classes} classes of each position (or all 0: not scored)",
               "a position that is not one-hot", "class probabilities per position are not supported: give one-hot "
               "vectors or class ids")
    ids = v.argmax(-1).astype(np.int64)
    ids[sums == 0] = NOT_SCORED
    return ids


def _first_bad(bad: np.ndarray, place, expected: str, received: str, help: str) -> None:
    if bad.any():
        first, count = int(np.argmax(bad)), int(bad.sum())
        raise UserError(f"{place(first)}: {expected}; received {received}"
                        + (f" ({count} such samples)" if count > 1 else ""), help=help)


def one_per_sample_error(expect, origin: str) -> UserError:
    """A source with one class per sample (a CSV column, sklearn, logic) for a per-position output."""
    return UserError(f"{origin} gives one class per sample but the output {_dims(expect.out_shape)} has a class per "
                     f"position {_dims(positions(expect))}",
                     help=f'give per-position labels in an .npz file: npz("file.npz") with y of shape '
                          f"[N, {_dims(positions(expect))[1:]} (class ids) or one-hot [N, {_dims(expect.out_shape)[1:]}")


def match_inputs(inputs: list[np.ndarray], y: np.ndarray, expect, origin: str) -> np.ndarray:
    """Per-step labels against the inputs: a `?` length as long as the input's; the padding tokens
    of an input read by an Embedding with `padding_idx` labelled NOT_SCORED (a copy; y is not changed)."""
    where = positions(expect)
    if where is None or len(where) != 1:
        return y
    for (name, shape, dtype), x in zip(expect.inputs, inputs):
        if not shape or shape[0] is not None or where[0] is not None or x.ndim < 2 or len(x) != len(y):
            continue
        if x.shape[1] != y.shape[1]:
            raise UserError(f"{origin}: the labels have {y.shape[1]} steps per sample but input '{name}' has "
                            f"{x.shape[1]}", help="give one label per step of the input (pad both to one length)")
    for (name, shape, dtype), x in zip(expect.inputs, inputs):
        pad = expect.padding.get(name)
        if pad is not None and x.shape == y.shape:
            y = np.where(x == pad, NOT_SCORED, y)
    return y


# ------------------------------------------------------------------ synthetic data


def synthetic_labels(inputs: list[np.ndarray], expect, rng) -> np.ndarray:
    """Per-position class ids that depend on the inputs (a learnable signal): per step, a random
    linear function of the step and the step before (tokens: of their ids); per pixel, the
    smoothed brightness of the image cut into `classes` equally common bands."""
    where, classes = positions(expect), expect.classes
    if len(where) == 1:
        return _sequence_labels(inputs, expect, classes, rng)
    image = next((x for x in inputs if x.ndim == 2 + len(where) and tuple(x.shape[2:]) == tuple(where)), None)
    if image is None:
        raise UserError(f"synthetic data makes per-pixel classes from an input image of the same size as the output "
                        f"{_dims(expect.out_shape)}; the model has none",
                        help='give data: npz("file.npz") with per-position labels y')
    brightness = _box_blur(image.mean(1))
    cuts = np.quantile(brightness, np.arange(1, classes) / classes)
    return np.searchsorted(cuts, brightness).astype(np.int64)


def _box_blur(x: np.ndarray) -> np.ndarray:
    """The 3x3 (3x3x3...) mean of each pixel's neighbourhood, edges padded by reflection."""
    out = x
    for axis in range(1, x.ndim):
        padded = np.pad(out, [(1, 1) if a == axis else (0, 0) for a in range(x.ndim)], mode="reflect")
        n = out.shape[axis]
        out = sum(np.take(padded, np.arange(k, k + n), axis=axis) for k in range(3)) / 3.0
    return out


def _sequence_labels(inputs: list[np.ndarray], expect, classes: int, rng) -> np.ndarray:
    steps = positions(expect)[0]
    for (name, shape, dtype), x in zip(expect.inputs, inputs):
        if not shape or x.ndim < 2 or (steps is not None and x.shape[1] != steps):
            continue
        if dtype == "int":
            vocab = max(int(x.max()) + 1, expect.vocab.get(name, 2))
            now, before = (rng.standard_normal((vocab, classes)).astype(np.float32) for _ in range(2))
            score = now[x] + 0.5 * before[np.pad(x, ((0, 0), (1, 0)))[:, :-1]]
        else:
            feats = x.reshape(len(x), x.shape[1], -1)
            w, w_before = (rng.standard_normal((feats.shape[2], classes)).astype(np.float32) for _ in range(2))
            shifted = np.pad(feats, ((0, 0), (1, 0), (0, 0)))[:, :-1]
            score = (feats @ w + 0.5 * shifted @ w_before) / math.sqrt(feats.shape[2])
        return score.argmax(-1).astype(np.int64)
    raise UserError(f"synthetic data makes per-step classes from an input sequence as long as the output "
                    f"{_dims(expect.out_shape)}; the model has none", help='give data: npz("file.npz") with labels y')


# ------------------------------------------------------------------ predict


def padding_positions(inputs: list[np.ndarray], expect) -> np.ndarray | None:
    """Where a per-step output's steps are padding tokens (True), as match_inputs finds them; else None."""
    where = positions(expect)
    if where is None or len(where) != 1:
        return None
    for (name, _, _), x in zip(expect.inputs, inputs):
        if expect.padding.get(name) is not None and x.ndim == 2:
            return x == expect.padding[name]
    return None


def prediction_table(probs: np.ndarray, class_names: list[str] | None = None,
                     padding: np.ndarray | None = None) -> tuple[list[str], list[list]]:
    """One row per sample, one column per position: `pred_<t>` (steps) or `pred_<h>_<w>` (pixels)
    holding the predicted class id, or its name when the run has `class_names`; a padding step
    (`padding`: bool [N, T]) is left empty."""
    ids = probs.argmax(1 + feature_axis(probs.ndim - 1))
    header = ["pred_" + "_".join(map(str, index)) for index in np.ndindex(*ids.shape[1:])]
    names = class_names if class_names and len(class_names) == probs.shape[1 + feature_axis(probs.ndim - 1)] else None
    cells = np.asarray(names, dtype=object)[ids] if names else ids.astype(object)
    if padding is not None and padding.shape == ids.shape:
        cells = np.where(padding, "", cells)
    return header, cells.reshape(len(ids), -1).tolist()
