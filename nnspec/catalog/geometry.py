"""The geometry of windowed layers, written once: output lengths of convolutions, transposed
convolutions, pooling and upsampling, `same` padding, and per-axis sizes.

The shape rules (`catalog/layers.py`), the torch modules (`backends/torch_layers.py`, for
padding and the lengths of padded sequences) and the ejected Python source (which copies these
functions) all call these. They use nothing but `+ - * //` and `max`, so `size` may be an int,
None (a size known only at run time: the result is None) or, for the lengths of padded
sequences, a torch integer tensor. Divisions keep their operands non-negative, ceil(a / b)
being (a + b - 1) // b: ONNX's integer Div truncates where Python's // floors, so a traced
-(-a // b) exports as the wrong size.
"""
from __future__ import annotations

from .base import ShapeError

AXIS_NAMES = {2: "two [height, width]", 3: "three [depth, height, width]"}


def per_axis(value, dims: int) -> tuple:
    """One size for every one of `dims` axes (3 -> (3, 3)), or one per axis ([3, 2] -> (3, 2))."""
    if not isinstance(value, (list, tuple)):
        return (value,) * dims
    if len(value) != dims:
        raise ShapeError(f"expected one size or {AXIS_NAMES.get(dims, dims)}; received {list(value)}", code="E107")
    return tuple(value)


def conv_out(size, kernel: int, stride: int = 1, padding="valid", dilation: int = 1):
    """Output length of a convolution or pooling along one axis: PyTorch's formula for `valid` (no
    padding) and an integer padding on both sides; ceil(size / stride) for `same`."""
    if size is None:
        return None
    if padding == "same":
        return (size + stride - 1) // stride
    pad = 0 if padding == "valid" else padding
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def same_pads(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding that gives ceil(size / stride) outputs (TensorFlow's rule): the total
    max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0), the odd one at the end."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def pad_list(sizes, kernels, strides, padding, dilations) -> list[int]:
    """F.pad's list (last axis first, before then after) for a window layer's padding over the
    trailing spatial `sizes`; empty for `valid`."""
    if padding == "valid":
        return []
    pads: list[int] = []
    for size, k, s, d in reversed(list(zip(sizes, kernels, strides, dilations))):
        pads += same_pads(size, k, s, d) if padding == "same" else (padding, padding)
    return pads


def convt_out(size, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1):
    """Output length of a transposed convolution along one axis (PyTorch's formula)."""
    if size is None:
        return None
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def upsample_out(size, scale: int):
    return None if size is None else size * scale
