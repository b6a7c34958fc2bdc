"""PyTorch modules for every catalog layer and functions for every activation.

One table, `BUILDERS`: layer kind -> builder(args, in_types) -> nn.Module. Modules take and
return batch-first tensors in nnspec's layout ([N, F], [N, T, F], [N, C, H, W]); where
PyTorch wants [N, C, L] the module transposes (subclassing the torch module keeps the
parameter names PyTorch users expect: `conv1d_1.weight`).

Padding of variable-length sequences travels as a boolean mask [N, T] (True = a real step).
A module's `mask_mode` says what it does with it:
- "none": per-step or T-preserving without looking at it (Dense, LayerNorm...); mask passes on;
- "use": forward(x, mask) and the mask passes on (RNN with return_sequences, attention);
- "consume": forward(x, mask) and no mask follows (global pools, RNN returning the last step);
- "resize": the time axis changes length; `resize_mask(mask)` gives the new mask
  (Conv1D, 1-D pools, Upsample on sequences); with `takes_mask` the layer also reads it, so
  that padded steps act as the layer's own padding (zeros for Conv1D, excluded from pools).
- "drop": the time axis disappears without a mask being needed (Flatten, Reshape of a known T).

Parameters are created in construction order with PyTorch's default initialisation, so a
hand-written model that builds the same torch modules in the same order gets the same
weights for the same seed.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..catalog.base import feature_axis
from ..ir import TensorType

Args = Mapping[str, Any]
Ins = Sequence[TensorType]

# Catalog entries the checker elaborates into other kinds: Bidirectional(LSTM(..)) becomes an
# LSTM node with bidirectional=True, so it needs no builder of its own.
ELABORATED = {"Bidirectional": "elaborated into its inner SimpleRNN/LSTM/GRU node with bidirectional=True"}


def _pair(v) -> tuple[int, int]:
    return (v[0], v[1]) if isinstance(v, list) else (v, v)


def _single(v) -> int:
    return v[0] if isinstance(v, list) else v


def _conv_padding(p):
    return 0 if p == "valid" else p  # "same" and ints are PyTorch's own spellings


def _to_channels_first(x: Tensor) -> Tensor:
    return x.transpose(1, 2)  # [N, T, F] <-> [N, F, T]


def conv_lengths(lengths: Tensor, kernel: int, stride: int, padding, dilation: int = 1) -> Tensor:
    """Valid lengths after a convolution or pooling along time (the catalog's conv_out, batched)."""
    if padding == "same":
        return torch.div(lengths + stride - 1, stride, rounding_mode="floor")
    pad = 0 if padding == "valid" else padding
    return torch.div(lengths + 2 * pad - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1


def lengths_to_mask(lengths: Tensor, t: int) -> Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


# ---------------------------------------------------------------- core
class Reshape(nn.Module):
    mask_mode = "drop"

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


class SeqBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the feature axis of [N, T, F] (PyTorch's BatchNorm1d wants [N, F, T]).

    With a padding mask, training statistics come from the real steps only (padded steps
    are left at 0), so padding does not shift the running mean and variance."""

    mask_mode = "use"

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None or not self.training:
            return super().forward(x.transpose(1, 2)).transpose(1, 2)
        out = torch.zeros_like(x)
        out[mask] = super().forward(x[mask])  # the real steps as one [M, F] batch
        return out


def build_dense(a: Args, ins: Ins) -> nn.Module:
    return nn.Linear(ins[0].shape[-1], a["units"], bias=a["bias"])


def build_flatten(a: Args, ins: Ins) -> nn.Module:
    m = nn.Flatten()
    m.mask_mode = "drop"
    return m


def build_batchnorm(a: Args, ins: Ins) -> nn.Module:
    x = ins[0]
    c = x.shape[feature_axis(len(x.shape))]
    cls = {1: nn.BatchNorm1d, 2: SeqBatchNorm, 3: nn.BatchNorm2d}[len(x.shape)]
    return cls(c, eps=a["eps"], momentum=a["momentum"])


# ---------------------------------------------------------------- convolution
class SeqConv1d(nn.Conv1d):
    """Conv1d over time of [N, T, F]."""

    mask_mode = "resize"
    takes_mask = True

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is not None:  # padded steps read as zeros, like the convolution's own padding
            x = x.masked_fill(~mask[:, :, None], 0.0)
        return _to_channels_first(super().forward(_to_channels_first(x)))

    def resize_mask(self, mask: Tensor) -> Tensor:
        pad = self.padding if isinstance(self.padding, str) else self.padding[0]
        lengths = conv_lengths(mask.sum(1), self.kernel_size[0], self.stride[0], pad, self.dilation[0])
        return lengths_to_mask(lengths, _conv_len(mask.shape[1], self))


def _conv_len(t: int, conv: nn.Conv1d) -> int:
    pad = conv.padding if isinstance(conv.padding, str) else conv.padding[0]
    if pad == "same":
        return t
    return (t + 2 * pad - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1


def build_conv1d(a: Args, ins: Ins) -> nn.Module:
    return SeqConv1d(ins[0].shape[1], a["filters"], a["kernel"], stride=a["stride"],
                     padding=_conv_padding(a["padding"]), dilation=a["dilation"], groups=a["groups"], bias=a["bias"])


def build_conv2d(a: Args, ins: Ins) -> nn.Module:
    return nn.Conv2d(ins[0].shape[0], a["filters"], _pair(a["kernel"]), stride=_pair(a["stride"]),
                     padding=_conv_padding(a["padding"]), dilation=_pair(a["dilation"]), groups=a["groups"],
                     bias=a["bias"])


def build_convt2d(a: Args, ins: Ins) -> nn.Module:
    return nn.ConvTranspose2d(ins[0].shape[0], a["filters"], _pair(a["kernel"]), stride=_pair(a["stride"]),
                              padding=a["padding"], output_padding=a["output_padding"], bias=a["bias"])


# ---------------------------------------------------------------- pooling
class Pool(nn.Module):
    """Max or average pooling over time ([N, T, F]) or space ([N, C, H, W]).

    padding=same gives ceil(L / stride) outputs: max pools pad with -inf, average pools
    exclude the padding from the mean (as Keras does). Integer padding also excludes it. On a
    padded sequence, padded steps count as padding too. (With padding=same and stride > 1 the
    windows' alignment depends on the length, as in Keras, so a padded batch can differ from
    the sequences run alone there; with stride 1, valid or integer padding it cannot.)
    """

    takes_mask = True  # with mask_mode "resize": reads the mask, and hands on a resized one

    def __init__(self, kind: str, rank: int, size: int, stride: int | None, padding):
        super().__init__()
        self.kind, self.rank = kind, rank
        self.size, self.stride, self.padding = size, stride or size, padding
        self.mask_mode = "resize" if rank == 2 else "none"

    def extra_repr(self) -> str:
        return f"{self.kind}, size={self.size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.rank == 3:
            return self._pool(x, 2, None)
        y = self._pool(_to_channels_first(x), 1, None if mask is None else mask[:, None, :])
        if mask is not None:  # windows holding no real step
            y = y.masked_fill(~self.resize_mask(mask)[:, None, :], 0.0)
        return _to_channels_first(y)

    def _pads(self, shape, dims: int) -> list[int]:
        """F.pad's list (last axis first) for this layer's padding."""
        if self.padding == "valid":
            return []
        if self.padding != "same":
            return [self.padding] * (2 * dims)
        pads: list[int] = []
        for length in reversed(shape[-dims:]):
            out = -(-length // self.stride)
            total = max((out - 1) * self.stride + self.size - length, 0)
            pads += [total // 2, total - total // 2]
        return pads

    def _pool(self, x: Tensor, dims: int, m: Tensor | None) -> Tensor:
        k, s = (self.size,) * dims, (self.stride,) * dims
        pads = self._pads(x.shape, dims)
        if self.kind == "max":
            if m is not None:
                x = x.masked_fill(~m, -math.inf)
            return (F.max_pool1d if dims == 1 else F.max_pool2d)(F.pad(x, pads, value=-math.inf) if pads else x, k, s)
        avg = F.avg_pool1d if dims == 1 else F.avg_pool2d
        if m is None and not pads:
            return avg(x, k, s)
        # mean over the real elements of each window: (window mean of x) / (window mean of 1s)
        if m is None:
            w = torch.ones((1, 1) + tuple(x.shape[-dims:]), dtype=x.dtype, device=x.device)
        else:
            w, x = m.to(x.dtype), x.masked_fill(~m, 0.0)
        den = avg(F.pad(w, pads) if pads else w, k, s).clamp_min(1e-12)  # 0 only where all is padding
        return avg(F.pad(x, pads) if pads else x, k, s) / den

    def resize_mask(self, mask: Tensor) -> Tensor:
        lengths = conv_lengths(mask.sum(1), self.size, self.stride, self.padding)
        t = mask.shape[1]
        if self.padding == "same":
            out = -(-t // self.stride)
        else:
            pad = 0 if self.padding == "valid" else self.padding
            out = (t + 2 * pad - self.size) // self.stride + 1
        return lengths_to_mask(lengths.clamp(min=0), out)


def pool_builder(kind: str, rank: int):
    def build(a: Args, ins: Ins) -> nn.Module:
        return Pool(kind, rank, a["size"], a["stride"], a["padding"])
    return build


class GlobalPool(nn.Module):
    """Mean or max over space ([N, C, H, W] -> [N, C]) or time ([N, T, F] -> [N, F], padding excluded)."""

    mask_mode = "consume"

    def __init__(self, kind: str, rank: int):
        super().__init__()
        self.kind, self.rank = kind, rank

    def extra_repr(self) -> str:
        return self.kind

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.rank == 3:
            return x.mean((2, 3)) if self.kind == "avg" else x.amax((2, 3))
        if mask is None:
            return x.mean(1) if self.kind == "avg" else x.amax(1)
        m = mask.unsqueeze(-1)
        if self.kind == "max":  # a row with no real step (all padding) pools to 0, not -inf
            return x.masked_fill(~m, -math.inf).amax(1).masked_fill(~m.any(1), 0)
        # masked_fill, not a product: a padded step may hold anything (even NaN from a fast path)
        return x.masked_fill(~m, 0).sum(1) / m.sum(1).clamp(min=1).to(x.dtype)


def global_builder(kind: str):
    def build(a: Args, ins: Ins) -> nn.Module:
        return GlobalPool(kind, len(ins[0].shape))
    return build


class Upsample(nn.Module):
    def __init__(self, scale: int, mode: str, rank: int):
        super().__init__()
        self.scale, self.mode, self.rank = scale, mode, rank
        self.mask_mode = "resize" if rank == 2 else "none"

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode}"

    takes_mask = True

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        corners = False if self.mode in ("linear", "bilinear") else None
        if self.rank == 2:
            if mask is not None and self.mode == "linear":
                # interpolate up to the real end only: padded steps repeat the last real one
                last = (mask.sum(1, keepdim=True) - 1).clamp(min=0)
                idx = torch.minimum(torch.arange(x.shape[1], device=x.device)[None, :], last)
                x = x.gather(1, idx[:, :, None].expand(-1, -1, x.shape[2]))
            y = F.interpolate(_to_channels_first(x), scale_factor=self.scale, mode=self.mode, align_corners=corners)
            return _to_channels_first(y)
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=corners)

    def resize_mask(self, mask: Tensor) -> Tensor:
        return mask.repeat_interleave(self.scale, dim=1)


def build_upsample(a: Args, ins: Ins) -> nn.Module:
    return Upsample(a["scale"], a["mode"], len(ins[0].shape))


# ---------------------------------------------------------------- recurrence
class _Recurrent:
    """Mixin for nn.RNN/LSTM/GRU: batch-first, packed when a padding mask is known.

    The last step of a padded sequence is its last *real* step; the backward direction of a
    bidirectional layer starts at the real end (both come from the packed final state).
    """

    return_sequences: bool

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            out, state = super().forward(x)
        else:
            # An all-padding row still needs one step to be packed; its output is then ignored.
            lengths = mask.sum(1).clamp(min=1).cpu()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, state = super().forward(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        if self.return_sequences:
            return out
        h = state[0] if isinstance(state, tuple) else state  # LSTM's state is (h, c)
        if self.bidirectional:
            return torch.cat((h[-2], h[-1]), dim=1)
        return h[-1]


class SimpleRNN(_Recurrent, nn.RNN):
    pass


class LSTM(_Recurrent, nn.LSTM):
    pass


class GRU(_Recurrent, nn.GRU):
    pass


RNN_CLASSES = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}


def rnn_builder(kind: str):
    def build(a: Args, ins: Ins) -> nn.Module:
        cls = RNN_CLASSES[kind]
        dropout = a["dropout"] if a["layers"] > 1 else 0.0  # PyTorch applies it between layers only
        m = cls(ins[0].shape[1], a["units"], num_layers=a["layers"], batch_first=True, dropout=dropout,
                bidirectional=a["bidirectional"])
        m.return_sequences = a["return_sequences"]
        m.mask_mode = "use" if a["return_sequences"] else "consume"
        return m
    return build


class Embedding(nn.Embedding):
    """int64 token ids [N, T] -> [N, T, dim]. With padding_idx, the model derives a padding
    mask (ids != padding_idx) and hands it to the layers downstream."""


def build_embedding(a: Args, ins: Ins) -> nn.Module:
    return Embedding(a["vocab"], a["dim"], padding_idx=a["padding_idx"])


# ---------------------------------------------------------------- attention
class SelfAttention(nn.MultiheadAttention):
    """Multi-head self-attention over [N, T, F]; padded keys are masked out."""

    mask_mode = "use"

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        pad = None if mask is None else ~mask
        out, _ = super().forward(x, x, x, key_padding_mask=pad, need_weights=False)
        return out


def build_attention(a: Args, ins: Ins) -> nn.Module:
    return SelfAttention(ins[0].shape[1], a["heads"], dropout=a["dropout"], batch_first=True)


class TransformerEncoder(nn.TransformerEncoder):
    mask_mode = "use"

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return super().forward(x, src_key_padding_mask=None if mask is None else ~mask)


def build_transformer(a: Args, ins: Ins) -> nn.Module:
    f = ins[0].shape[1]
    layer = nn.TransformerEncoderLayer(f, a["heads"], dim_feedforward=a["ff"], dropout=a["dropout"],
                                       activation=a["activation"], batch_first=True, norm_first=a["norm_first"])
    return TransformerEncoder(layer, a["layers"], enable_nested_tensor=False)


class PositionalEncoding(nn.Module):
    """x + P[:T], P sinusoidal (a fixed, non-saved buffer) or learned; then dropout."""

    def __init__(self, max_len: int, features: int, kind: str, dropout: float):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.weight = nn.Parameter(torch.empty(max_len, features))
            nn.init.normal_(self.weight, std=0.02)
        else:
            pos = torch.arange(max_len, dtype=torch.float32)[:, None]
            freq = torch.exp(torch.arange(0, features, 2, dtype=torch.float32) * (-math.log(10000.0) / features))
            pe = torch.zeros(max_len, features)
            pe[:, 0::2] = torch.sin(pos * freq)
            pe[:, 1::2] = torch.cos(pos * freq)
            self.register_buffer("weight", pe, persistent=False)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return self.kind

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x + self.weight[: x.shape[1]].to(x.dtype))


def build_posenc(a: Args, ins: Ins) -> nn.Module:
    return PositionalEncoding(a["max_len"], ins[0].shape[1], a["kind"], a["dropout"])


BUILDERS: dict[str, Callable[[Args, Ins], nn.Module]] = {
    "Dense": build_dense,
    "Flatten": build_flatten,
    "Reshape": lambda a, ins: Reshape(a["shape"] if isinstance(a["shape"], list) else [a["shape"]]),
    "Dropout": lambda a, ins: nn.Dropout(a["rate"]),
    "BatchNorm": build_batchnorm,
    "LayerNorm": lambda a, ins: nn.LayerNorm(ins[0].shape[-1], eps=a["eps"]),
    "Conv1D": build_conv1d,
    "Conv2D": build_conv2d,
    "ConvTranspose2D": build_convt2d,
    "MaxPool1D": pool_builder("max", 2),
    "MaxPool2D": pool_builder("max", 3),
    "AvgPool1D": pool_builder("avg", 2),
    "AvgPool2D": pool_builder("avg", 3),
    "GlobalAvgPool": global_builder("avg"),
    "GlobalMaxPool": global_builder("max"),
    "Upsample": build_upsample,
    "Embedding": build_embedding,
    "SimpleRNN": rnn_builder("SimpleRNN"),
    "LSTM": rnn_builder("LSTM"),
    "GRU": rnn_builder("GRU"),
    "MultiHeadAttention": build_attention,
    "TransformerEncoder": build_transformer,
    "PositionalEncoding": build_posenc,
}


def build_layer(kind: str, args: Args, in_types: Ins) -> nn.Module:
    return BUILDERS[kind](args, in_types)


def mask_mode(module: nn.Module) -> str:
    return getattr(module, "mask_mode", "none")


# ---------------------------------------------------------------- activations
def step(x: Tensor) -> Tensor:
    """Heaviside: 1 where x >= 0, else 0 (exact in the forward pass; zero gradient).

    Written through sign (whose gradient is zero) so the result stays in the autograd graph:
    a gradient optimizer then sees a zero gradient, as the checker's W403 warns, instead of a
    tensor with no grad_fn; and it exports to ONNX as plain Sign/Equal/Add/Div.
    """
    return (torch.sign(x) + 1 + (x == 0).to(x.dtype)) / 2


def scaled_tanh(x: Tensor, a: float, b: float) -> Tensor:
    """(b - a)/2 * tanh(x) + (a + b)/2: tanh stretched onto [a, b]."""
    return torch.tanh(x) * ((b - a) / 2) + ((a + b) / 2)


def activation_call(kind: str, args: Args, rank: int) -> tuple[Callable, dict] | None:
    """(function, keyword arguments) applying activation `kind` to a batch of rank `rank` (without
    batch); None for the identity. `rank` places softmax on the feature/channel axis."""
    dim = 1 + feature_axis(rank) if rank else -1
    table: dict[str, tuple[Callable, dict]] = {
        "step": (step, {}),
        "sign": (torch.sign, {}),
        "relu": (torch.relu, {}),
        "sigmoid": (torch.sigmoid, {}),
        "tanh": (torch.tanh, {}),
        "scaled_tanh": (scaled_tanh, {"a": args.get("a"), "b": args.get("b")}),
        "softmax": (torch.softmax, {"dim": dim}),
        "elu": (F.elu, {"alpha": args.get("alpha", 1.0)}),
        "leaky_relu": (F.leaky_relu, {"negative_slope": args.get("alpha", 0.01)}),
        "gelu": (F.gelu, {}),
        "selu": (torch.selu, {}),
        "silu": (F.silu, {}),
        "softplus": (F.softplus, {}),
        "mish": (F.mish, {}),
    }
    if kind == "linear":
        return None
    return table[kind]


ACTIVATION_NAMES = ("step", "sign", "linear", "relu", "sigmoid", "tanh", "scaled_tanh", "softmax", "elu",
                    "leaky_relu", "gelu", "selu", "silu", "softplus", "mish")
