"""Layer entries: schema, pure shape rule, parameter count and torch module, side by side.

A layer is one entry here (or one rank of a family): adding one touches this file, and
`python -m nnspec.docgen` regenerates the reference. The tests run every entry's examples
through the checker, PyTorch, ONNX and the ejected Python source.

The window layers (convolutions, transposed convolutions, pooling, upsampling) are families over
1, 2 or 3 spatial axes, one class each (as Keras's BaseConv(rank) or Equinox's
Conv(num_spatial_dims)); their geometry is `geometry.py`'s.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..ir import TensorType
from .base import (RANKS, Example, LayerEntry, ShapeError, TorchModule, feature_axis, join_channels, no_params,
                   require_float, require_known, require_rank, split_channels, torch_module)
from .geometry import conv_out, convt_out, per_axis, upsample_out
from .schema import Param

Args = Mapping[str, Any]
Ins = Sequence[TensorType]

ACT = Param("activation", "activation", None, doc="activation applied to the output")
BIAS = Param("bias", "bool", True, doc="learn an additive bias")
L1 = Param("l1", "float", 0.0, min=0.0, doc="L1 penalty on the weights, added to the loss")
L2 = Param("l2", "float", 0.0, min=0.0, doc="L2 penalty on the weights, added to the loss")
PADDING = ("valid", "same")
# Every layer and every block use takes it, by name only (Keras's name); the checker takes it out of
# the call before binding the entry's own parameters, so it is no entry's parameter.
TRAINABLE = Param("trainable", "bool", True, doc="false freezes the layer (or every layer of a block use): its "
                  "weights are not trained, its BatchNorm statistics are not updated")


def _positive(out: int | None, layer: str, ins: TensorType, what: str) -> None:
    if out is not None and out <= 0:
        raise ShapeError(f"{layer} would produce an empty output from {ins}: the {what} is larger than the input",
                         "use padding=same, a smaller kernel or stride, or a larger input", code="E303")


# ---------------------------------------------------------------- core
def dense_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "Dense")
    require_rank(x, (1, 2), "Dense", "add Flatten() before Dense to turn an image into a vector")
    require_known(x.shape[-1], "feature size", "Dense")
    return TensorType(x.shape[:-1] + (a["units"],))


def dense_count(a: Args, ins: Ins) -> tuple[int, int]:
    f = ins[0].shape[-1]
    return f * a["units"] + (a["units"] if a["bias"] else 0), 0


def dense_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("nn.Linear", ins[0].shape[-1], a["units"], bias=a["bias"])


def flatten_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    n = x.numel
    if n is None:
        raise ShapeError(f"Flatten needs every dimension known; received {x}",
                         "pool over the variable axis first (GlobalAvgPool) or fix the input size", code="E306")
    return TensorType((n,), x.dtype)


def flatten_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("Flatten")


def reshape_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    target = a["shape"] if isinstance(a["shape"], list) else [a["shape"]]
    n = x.numel
    if n is None:
        raise ShapeError(f"Reshape needs every dimension known; received {x}", code="E306")
    if sum(1 for d in target if d == -1) > 1 or any(d == 0 or d < -1 for d in target):
        raise ShapeError(f"Reshape's shape may hold positive sizes and at most one -1; received {target}",
                         code="E305")
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if n % known:
            raise ShapeError(f"cannot reshape {x} ({n} elements) to {target}", code="E305")
        target = [n // known if d == -1 else d for d in target]
    if math.prod(target) != n:
        raise ShapeError(f"cannot reshape {x} ({n} elements) to {target} ({math.prod(target)} elements)",
                         "the number of elements must stay the same", code="E305")
    return TensorType(tuple(target), x.dtype)


def reshape_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("Reshape", a["shape"] if isinstance(a["shape"], list) else [a["shape"]])


def dropout_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("nn.Dropout", a["rate"])


def same_shape(a: Args, ins: Ins) -> TensorType:
    return ins[0]


def batchnorm_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "BatchNorm")
    require_rank(x, (1, 2, 3), "BatchNorm")
    require_known(x.shape[feature_axis(len(x.shape))], "feature/channel size", "BatchNorm")
    return x


def batchnorm_count(a: Args, ins: Ins) -> tuple[int, int]:
    c = ins[0].shape[feature_axis(len(ins[0].shape))]
    return 2 * c, 2 * c  # gamma, beta; running mean and variance


BATCHNORM_MODULES = {1: "nn.BatchNorm1d", 2: "SeqBatchNorm", 3: "nn.BatchNorm2d"}


def batchnorm_build(a: Args, ins: Ins) -> TorchModule:
    x = ins[0]
    return torch_module(BATCHNORM_MODULES[len(x.shape)], x.shape[feature_axis(len(x.shape))], eps=a["eps"],
                        momentum=a["momentum"])


def layernorm_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "LayerNorm")
    require_rank(x, (1, 2), "LayerNorm", "LayerNorm normalizes the feature axis of [F] or [T, F]; use BatchNorm on images")
    require_known(x.shape[-1], "feature size", "LayerNorm")
    return x


def layernorm_count(a: Args, ins: Ins) -> tuple[int, int]:
    return 2 * ins[0].shape[-1], 0


def layernorm_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("nn.LayerNorm", ins[0].shape[-1], eps=a["eps"])


# ---------------------------------------------------------------- window families
class _Window:
    """A family of layers that differ only in the number of spatial axes they run over (`dims`,
    1 to 3): an input of rank dims + 1, [T, F] (features last), [C, H, W] or [C, D, H, W]. One
    instance is one catalog entry; its methods are the entry's shape, count and build rules."""

    title = ""  # the entry's name, with {} for dims: "Conv{}D"

    def __init__(self, dims: int):
        self.dims = dims
        self.name = self.title.format(dims)

    def spatial(self, x: TensorType, hint: str | None = None) -> tuple[Any, tuple]:
        """(channels, spatial sizes) of a float input of this family's rank."""
        require_float(x, self.name)
        require_rank(x, (self.dims + 1,), self.name, hint)
        return split_channels(x.shape)

    def channels(self, c: int | None) -> int:
        return require_known(c, "feature size" if self.dims == 1 else "channel count", self.name)

    def output(self, x: TensorType, channels: Any, sizes: tuple, what: str) -> TensorType:
        """The output of `channels` over spatial `sizes`; E303 where one is empty (`what` is too large)."""
        for n in sizes:
            _positive(n, self.name, x, what)
        return TensorType(join_channels(channels, sizes))

    def entry(self, params: tuple[Param, ...], doc: str, category: str, aliases: tuple[str, ...],
              example: Example, variants: tuple[Example, ...], **traits: Any) -> LayerEntry:
        return LayerEntry(self.name, params, self.shape, self.count, doc, aliases, category, self.build,
                          example=example[0], example_input=(example[1],), variants=variants, **traits)

    def shape(self, a: Args, ins: Ins) -> TensorType:
        raise NotImplementedError

    def count(self, a: Args, ins: Ins) -> tuple[int, int]:
        return 0, 0

    def build(self, a: Args, ins: Ins) -> TorchModule:
        raise NotImplementedError


def _conv_params(kernel_type: str) -> tuple[Param, ...]:
    return (
        Param("filters", "int", min=1, doc="output channels"),
        Param("kernel", kernel_type, min=1, doc="kernel size"),
        Param("stride", kernel_type, 1, min=1),
        Param("padding", "int|enum", "valid", min=0, choices=PADDING,
              doc="valid (none), same (output size = input size / stride) or a size"),
        Param("dilation", kernel_type, 1, min=1),
        Param("groups", "int", 1, min=1),
        BIAS, ACT, L1, L2,
    )


OVER = {1: "over time of a sequence [T, F] (F = channels)", 2: "of an image [C, H, W]", 3: "of a volume [C, D, H, W]"}


class Conv(_Window):
    """Conv1D, Conv2D, Conv3D. padding=same gives ceil(size / stride) outputs per axis, padded as
    TensorFlow does (the odd one at the end), for any stride and dilation."""

    title = "Conv{}D"

    def shape(self, a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        other = 1 if self.dims == 2 else 2
        c, sizes = self.spatial(x, f"{self.name} runs over {RANKS[self.dims + 1].name}; "
                                   f"for {RANKS[other + 1].plural} use Conv{other}D")
        _check_groups(self.name, self.channels(c), a)
        kernel, stride, dilation = (per_axis(a[p], self.dims) for p in ("kernel", "stride", "dilation"))
        out = tuple(conv_out(n, k, s, a["padding"], d) for n, k, s, d in zip(sizes, kernel, stride, dilation))
        return self.output(x, a["filters"], out, "kernel")

    def count(self, a: Args, ins: Ins) -> tuple[int, int]:
        c, _ = split_channels(ins[0].shape)
        kernel = math.prod(per_axis(a["kernel"], self.dims))
        return kernel * (c // a.get("groups", 1)) * a["filters"] + (a["filters"] if a["bias"] else 0), 0

    def build(self, a: Args, ins: Ins) -> TorchModule:
        return torch_module("Conv", self.dims, split_channels(ins[0].shape)[0], a["filters"],
                            per_axis(a["kernel"], self.dims), stride=per_axis(a["stride"], self.dims),
                            padding=a["padding"], dilation=per_axis(a["dilation"], self.dims),
                            groups=a["groups"], bias=a["bias"])

    @classmethod
    def make(cls, dims: int, example: Example, *variants: Example) -> LayerEntry:
        f = cls(dims)
        return f.entry(_conv_params("int" if dims == 1 else "ints"), f"{dims}-D convolution {OVER[dims]}.", "conv",
                       (f"Conv{dims}d",), example, variants, activation_param=True)


def _check_groups(layer: str, channels: int, a: Args) -> None:
    g = a["groups"]
    if channels % g or a["filters"] % g:
        raise ShapeError(f"{layer}'s groups={g} must divide both its input channels ({channels}) and filters ({a['filters']})",
                         code="E300")


class ConvTranspose(Conv):
    """ConvTranspose1D, ConvTranspose2D, ConvTranspose3D (learned upsampling); Conv's count."""

    title = "ConvTranspose{}D"

    def shape(self, a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        c, sizes = self.spatial(x)
        self.channels(c)
        kernel, stride = per_axis(a["kernel"], self.dims), per_axis(a["stride"], self.dims)
        pad, op = a["padding"], a["output_padding"]
        if op > 0 and op >= min(stride):  # PyTorch's rule, on every axis
            raise ShapeError(f"{self.name}'s output_padding ({op}) must be smaller than its stride ({a['stride']})",
                             code="E108")
        out = tuple(convt_out(n, k, s, pad, op) for n, k, s in zip(sizes, kernel, stride))
        return self.output(x, a["filters"], out, "padding")

    def build(self, a: Args, ins: Ins) -> TorchModule:
        return torch_module("ConvTranspose", self.dims, split_channels(ins[0].shape)[0], a["filters"],
                            per_axis(a["kernel"], self.dims), stride=per_axis(a["stride"], self.dims),
                            padding=a["padding"], output_padding=a["output_padding"], bias=a["bias"])

    @classmethod
    def make(cls, dims: int, example: Example, *variants: Example) -> LayerEntry:
        sizes = "int" if dims == 1 else "ints"
        params = (Param("filters", "int", min=1), Param("kernel", sizes, min=1), Param("stride", sizes, 1, min=1),
                  Param("padding", "int", 0, min=0), Param("output_padding", "int", 0, min=0), BIAS, ACT, L1, L2)
        return cls(dims).entry(params, f"Transposed {dims}-D convolution (learned upsampling).", "conv",
                               (f"Conv{dims}DTranspose",), example, variants, activation_param=True)


POOL_PARAMS = (
    Param("size", "int", 2, min=1, doc="window size"),
    Param("stride", "int", None, min=1, doc="defaults to the window size"),
    Param("padding", "int|enum", "valid", min=0, choices=PADDING),
)
POOLS = {"Max": ("max", "Max", "MaxPooling{}D"), "Avg": ("avg", "Mean", "AveragePooling{}D")}


class Pool(_Window):
    """MaxPool1D/2D/3D and AvgPool1D/2D/3D. padding=same gives ceil(size / stride) outputs, padded
    as TensorFlow does; the padding is never a maximum and is left out of means (as in Keras)."""

    def __init__(self, kind: str, dims: int):
        self.title = kind + "Pool{}D"
        self.kind = POOLS[kind][0]
        super().__init__(dims)

    def shape(self, a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        c, sizes = self.spatial(x, f"{self.name} expects {RANKS[self.dims + 1].layout}")
        size, stride = a["size"], a["stride"] or a["size"]
        if isinstance(a["padding"], int) and a["padding"] > size // 2:
            raise ShapeError(f"{self.name}'s padding ({a['padding']}) must be at most half its size ({size})", code="E108")
        return self.output(x, c, tuple(conv_out(n, size, stride, a["padding"]) for n in sizes), "pool size")

    def build(self, a: Args, ins: Ins) -> TorchModule:
        return torch_module("Pool", self.kind, self.dims, a["size"], a["stride"] or a["size"], a["padding"])

    @classmethod
    def make(cls, kind: str, dims: int, example: Example, *variants: Example) -> LayerEntry:
        over = "windows of time" if dims == 1 else "spatial windows"
        return cls(kind, dims).entry(POOL_PARAMS, f"{POOLS[kind][1]} over {over}.", "pool",
                                     (POOLS[kind][2].format(dims),), example, variants)


INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}  # F.interpolate's mode by spatial axes


class Upsample(_Window):
    """Upsample1D/2D/3D, and Upsample, which takes the spatial axes of its input ([T, F] or [C, H, W])."""

    def __init__(self, dims: int | None):
        self.accepts = (1, 2) if dims is None else (dims,)
        self.title = "Upsample" if dims is None else "Upsample{}D"
        super().__init__(dims)

    def shape(self, a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        require_float(x, self.name)
        require_rank(x, tuple(d + 1 for d in self.accepts), self.name)
        dims, mode = len(x.shape) - 1, a["mode"]
        if mode not in ("nearest", INTERPOLATION[dims]):
            fits = next(d for d, m in INTERPOLATION.items() if m == mode)
            raise ShapeError(f"{self.name} mode={mode} needs {RANKS[fits + 1].name}; use mode=nearest or "
                             f"{INTERPOLATION[dims]} on {RANKS[dims + 1].plural}", code="E109")
        c, sizes = split_channels(x.shape)
        return TensorType(join_channels(c, tuple(upsample_out(n, a["scale"]) for n in sizes)))

    def build(self, a: Args, ins: Ins) -> TorchModule:
        return torch_module("Upsample", len(ins[0].shape) - 1, a["scale"], a["mode"])

    @classmethod
    def make(cls, dims: int | None, example: Example, *variants: Example, aliases: tuple[str, ...] = ()) -> LayerEntry:
        f = cls(dims)
        modes = ("nearest",) + tuple(INTERPOLATION[d] for d in sorted(f.accepts, reverse=True))
        params = (Param("scale", "int", 2, min=1), Param("mode", "enum", "nearest", choices=modes))
        doc = ("Repeat pixels (or steps) `scale` times along each spatial axis." if dims is None else
               f"Repeat the {'steps' if dims == 1 else 'cells'} of {RANKS[dims + 1].name} `scale` times along each "
               f"spatial axis (nearest), or interpolate ({INTERPOLATION[dims]}).")
        return f.entry(params, doc, "pool", aliases, example, variants)


def global_pool_shape(layer: str):
    def rule(a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        require_float(x, layer)
        require_rank(x, (2, 3), layer, f"{layer} pools a sequence [T, F] over time or an image [C, H, W] over space")
        axis = feature_axis(len(x.shape))
        return TensorType((require_known(x.shape[axis], "feature/channel size", layer),))
    return rule


def global_pool_build(kind: str):
    def build(a: Args, ins: Ins) -> TorchModule:
        return torch_module("GlobalPool", kind, len(ins[0].shape))
    return build


# ---------------------------------------------------------------- embeddings and recurrence
def embedding_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    if x.dtype != "int":
        raise ShapeError(f"Embedding expects integer token ids (an `int[...]` input); received float {x}",
                         "declare the input as int[T] or int[?]", code="E304")
    require_rank(x, (1,), "Embedding", "Embedding takes a sequence of token ids int[T]")
    pad = a["padding_idx"]
    if pad is not None and pad >= a["vocab"]:
        raise ShapeError(f"Embedding's padding_idx ({pad}) must be smaller than vocab ({a['vocab']})", code="E108")
    return TensorType((x.shape[0], a["dim"]))


def embedding_count(a: Args, ins: Ins) -> tuple[int, int]:
    return a["vocab"] * a["dim"], 0


def embedding_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("Embedding", a["vocab"], a["dim"], padding_idx=a["padding_idx"])


RNN_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def rnn_shape(layer: str):
    def rule(a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        require_float(x, layer)
        require_rank(x, (2,), layer, f"{layer} reads a sequence [T, F]; for an image use Reshape or Conv2D first")
        require_known(x.shape[1], "feature size", layer)
        width = a["units"] * (2 if a["bidirectional"] else 1)
        return TensorType((x.shape[0], width) if a["return_sequences"] else (width,))
    return rule


def rnn_count(layer: str):
    def rule(a: Args, ins: Ins) -> tuple[int, int]:
        gates, units = RNN_GATES[layer], a["units"]
        dirs = 2 if a["bidirectional"] else 1
        # PyTorch keeps two bias vectors (input-hidden and hidden-hidden) per gate. The first
        # layer reads the input's width, the others units * dirs; closed form, since a loop over
        # a user-given `layers` would hang on layers=10**12.
        def per_layer(width: int) -> int:
            return dirs * gates * (units * (width + units) + 2 * units)
        return per_layer(ins[0].shape[1]) + (a["layers"] - 1) * per_layer(units * dirs), 0
    return rule


def rnn_build(layer: str):
    def build(a: Args, ins: Ins) -> TorchModule:
        dropout = a["dropout"] if a["layers"] > 1 else 0.0  # PyTorch applies it between layers only
        return torch_module(layer, ins[0].shape[1], a["units"], num_layers=a["layers"], batch_first=True,
                            dropout=dropout, bidirectional=a["bidirectional"], return_sequences=a["return_sequences"])
    return build


def bidirectional_shape(a: Args, ins: Ins) -> TensorType:
    inner = a["layer"]  # resolved by the checker into (entry, args)
    entry, inner_args = inner
    return entry.shape(dict(inner_args, bidirectional=True), ins)


def bidirectional_count(a: Args, ins: Ins) -> tuple[int, int]:
    entry, inner_args = a["layer"]
    return entry.count(dict(inner_args, bidirectional=True), ins)


def attention_shape(layer: str):
    def rule(a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        require_float(x, layer)
        require_rank(x, (2,), layer, f"{layer} attends over a sequence [T, F]")
        f = require_known(x.shape[1], "feature size", layer)
        if f % a["heads"]:
            raise ShapeError(f"{layer}: the feature size ({f}) must be divisible by heads ({a['heads']})",
                             f"choose heads among the divisors of {f}")
        return x
    return rule


def attention_count(a: Args, ins: Ins) -> tuple[int, int]:
    f = ins[0].shape[1]
    return 4 * f * f + 4 * f, 0  # q, k, v and output projections with biases


def attention_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("SelfAttention", ins[0].shape[1], a["heads"], dropout=a["dropout"], batch_first=True)


def transformer_count(a: Args, ins: Ins) -> tuple[int, int]:
    f, ff = ins[0].shape[1], a["ff"]
    per_layer = (4 * f * f + 4 * f) + (f * ff + ff) + (ff * f + f) + 4 * f
    return a["layers"] * per_layer, 0


def transformer_build(a: Args, ins: Ins) -> TorchModule:
    layer = torch_module("nn.TransformerEncoderLayer", ins[0].shape[1], a["heads"], dim_feedforward=a["ff"],
                         dropout=a["dropout"], activation=a["activation"], batch_first=True, norm_first=a["norm_first"])
    return torch_module("TransformerEncoder", layer, a["layers"], enable_nested_tensor=False)


def posenc_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "PositionalEncoding")
    require_rank(x, (2,), "PositionalEncoding", "PositionalEncoding adds positions to a sequence [T, F]")
    require_known(x.shape[1], "feature size", "PositionalEncoding")
    t = x.shape[0]
    if t is not None and t > a["max_len"]:
        raise ShapeError(f"PositionalEncoding's max_len ({a['max_len']}) is shorter than the sequence ({t})",
                         f"set max_len={t} or more", code="E108")
    if a["kind"] == "sinusoidal" and x.shape[1] % 2:
        raise ShapeError(f"sinusoidal PositionalEncoding needs an even feature size; received {x.shape[1]}",
                         "use kind=learned or an even embedding size")
    return x


def posenc_count(a: Args, ins: Ins) -> tuple[int, int]:
    return (a["max_len"] * ins[0].shape[1], 0) if a["kind"] == "learned" else (0, 0)


def posenc_build(a: Args, ins: Ins) -> TorchModule:
    return torch_module("PositionalEncoding", a["max_len"], ins[0].shape[1], a["kind"], a["dropout"])


# ---------------------------------------------------------------- the entries
RNN_PARAMS = (
    Param("units", "int", min=1, doc="hidden size"),
    Param("layers", "int", 1, min=1, doc="stacked recurrent layers"),
    Param("return_sequences", "bool", False, doc="output every step [T, units] instead of the last [units]"),
    Param("dropout", "float", 0.0, min=0.0, max=1.0, doc="dropout between stacked layers"),
    Param("bidirectional", "bool", False),
)


def _rnn(name: str, doc: str, example: Example, *variants: Example, aliases: tuple[str, ...] = ()) -> LayerEntry:
    return LayerEntry(name, RNN_PARAMS, rnn_shape(name), rnn_count(name), doc, aliases, "sequence", rnn_build(name),
                      example=example[0], example_input=(example[1],), variants=variants)


# Each entry's `example` (documented) and `variants` are run by the tests through the checker,
# PyTorch (shapes, parameter counts, gradients), ONNX and the ejected Python source.
LAYERS: tuple[LayerEntry, ...] = (
    LayerEntry("Dense", (Param("units", "int", min=1, doc="output features"), ACT, BIAS, L1, L2),
               dense_shape, dense_count, "Fully connected: y = x W + b, on the last axis of [F] or [T, F].",
               aliases=("Linear",), build=dense_build, activation_param=True, example="Dense(8)", example_input=((5,),),
               variants=(("Dense(3, bias=false)", (4, 6)),)),
    LayerEntry("Flatten", (), flatten_shape, no_params, "Collapse all dimensions into one vector.", build=flatten_build,
               example="Flatten()", example_input=((2, 3, 4),)),
    LayerEntry("Reshape", (Param("shape", "ints", doc="target shape without batch; one -1 allowed"),),
               reshape_shape, no_params, "Rearrange into another shape with the same element count.",
               build=reshape_build, example="Reshape([6, 4])", example_input=((2, 3, 4),),
               variants=(("Reshape([-1, 3])", (4, 3, 2)),)),
    LayerEntry("Dropout", (Param("rate", "float", 0.5, min=0.0, max=1.0, doc="fraction of units zeroed in training"),),
               same_shape, no_params, "Randomly zero units during training.", build=dropout_build,
               example="Dropout(0.3)", example_input=((7,),)),
    LayerEntry("BatchNorm", (Param("momentum", "float", 0.1, min=0.0, max=1.0), Param("eps", "float", 1e-5, min=0.0, min_exclusive=True)),
               batchnorm_shape, batchnorm_count, "Batch normalization over the feature/channel axis.",
               aliases=("BatchNormalization",), build=batchnorm_build, example="BatchNorm()", example_input=((4, 5, 5),),
               variants=(("BatchNorm()", (5,)), ("BatchNorm(momentum=0.01)", (6, 4)))),
    LayerEntry("LayerNorm", (Param("eps", "float", 1e-5, min=0.0, min_exclusive=True),),
               layernorm_shape, layernorm_count, "Layer normalization over the feature axis.",
               aliases=("LayerNormalization",), build=layernorm_build, example="LayerNorm()", example_input=((6, 8),)),
    Conv.make(1, ("Conv1D(4, 3)", (10, 3)),
              ("Conv1D(6, 3, padding=same, dilation=2, groups=3)", (9, 3)), ("Conv1D(2, 3, stride=2, padding=1)", (9, 4)),
              ("Conv1D(3, 4, stride=3, padding=same, dilation=2)", (10, 2)),
              ("Conv1D(3, 3, stride=2, padding=same)", (None, 2))),
    Conv.make(2, ("Conv2D(4, 3, padding=same)", (2, 9, 9)),
              ("Conv2D(4, [3, 2], stride=2, groups=2)", (2, 9, 8)),
              ("Conv2D(3, [4, 3], stride=[2, 3], padding=same, dilation=[1, 2])", (2, 9, 10))),
    Conv.make(3, ("Conv3D(4, 3, padding=same)", (2, 5, 6, 4)),
              ("Conv3D(4, [3, 2, 1], stride=[1, 2, 3], groups=2, bias=false)", (2, 5, 6, 7)),
              ("Conv3D(2, 3, stride=2, padding=same)", (3, 5, 6, 7))),
    ConvTranspose.make(1, ("ConvTranspose1D(3, 3, stride=2)", (5, 4)),
                       ("ConvTranspose1D(2, 4, stride=3, padding=1, output_padding=2, bias=false)", (6, 3))),
    ConvTranspose.make(2, ("ConvTranspose2D(3, 2, stride=2)", (4, 5, 5)),
                       ("ConvTranspose2D(2, 3, stride=2, padding=1, output_padding=1)", (3, 4, 5))),
    ConvTranspose.make(3, ("ConvTranspose3D(2, 2, stride=2)", (3, 3, 4, 2)),
                       ("ConvTranspose3D(2, [3, 2, 2], stride=[2, 3, 2], padding=1, output_padding=1)", (2, 3, 4, 3))),
    Pool.make("Max", 1, ("MaxPool1D(2)", (9, 3)), ("MaxPool1D(3, stride=2, padding=same)", (10, 2))),
    Pool.make("Max", 2, ("MaxPool2D(2)", (3, 9, 8)), ("MaxPool2D(3, stride=2, padding=same)", (2, 7, 6))),
    Pool.make("Max", 3, ("MaxPool3D(2)", (2, 4, 5, 6)), ("MaxPool3D(3, stride=2, padding=same)", (2, 5, 6, 7)),
              ("MaxPool3D(3, stride=2, padding=1)", (2, 5, 6, 7))),
    Pool.make("Avg", 1, ("AvgPool1D(3, stride=2)", (9, 3)), ("AvgPool1D(2, padding=same)", (7, 3)),
              ("AvgPool1D(3, stride=2, padding=same)", (None, 2))),
    Pool.make("Avg", 2, ("AvgPool2D(2, padding=same)", (3, 7, 7)), ("AvgPool2D(3, stride=2, padding=1)", (2, 7, 6))),
    Pool.make("Avg", 3, ("AvgPool3D(2)", (2, 4, 5, 6)), ("AvgPool3D(3, stride=2, padding=same)", (2, 5, 6, 7)),
              ("AvgPool3D(3, stride=1, padding=1)", (2, 3, 4, 5))),
    LayerEntry("GlobalAvgPool", (), global_pool_shape("GlobalAvgPool"), no_params,
               "Mean over space ([C, H, W] -> [C]) or time ([T, F] -> [F]; padding excluded).", category="pool",
               aliases=("GlobalAveragePooling2D", "GlobalAveragePooling1D"), build=global_pool_build("avg"),
               example="GlobalAvgPool()", example_input=((3, 4, 4),), variants=(("GlobalAvgPool()", (6, 3)),)),
    LayerEntry("GlobalMaxPool", (), global_pool_shape("GlobalMaxPool"), no_params,
               "Max over space ([C, H, W] -> [C]) or time ([T, F] -> [F]; padding excluded).", category="pool",
               aliases=("GlobalMaxPooling2D", "GlobalMaxPooling1D"), build=global_pool_build("max"),
               example="GlobalMaxPool()", example_input=((6, 3),), variants=(("GlobalMaxPool()", (3, 4, 4)),)),
    Upsample.make(None, ("Upsample(2)", (2, 3, 3)), ("Upsample(3, mode=linear)", (4, 2)),
                  ("Upsample(2, mode=bilinear)", (2, 3, 3)), aliases=("UpSampling2D",)),
    Upsample.make(1, ("Upsample1D(2)", (4, 3)), ("Upsample1D(3, mode=linear)", (5, 2)), aliases=("UpSampling1D",)),
    Upsample.make(2, ("Upsample2D(2, mode=bilinear)", (2, 3, 4)), ("Upsample2D(3)", (1, 2, 3))),
    Upsample.make(3, ("Upsample3D(2)", (2, 2, 3, 2)), ("Upsample3D(2, mode=trilinear)", (1, 3, 2, 4)),
                  aliases=("UpSampling3D",)),
    LayerEntry("Embedding", (Param("vocab", "int", min=1, doc="number of token ids"), Param("dim", "int", min=1, doc="vector size"),
                             Param("padding_idx", "int", None, min=0, doc="id of padding; its positions are masked downstream")),
               embedding_shape, embedding_count, "Look up a learned vector for each token id: int[T] -> [T, dim].",
               category="sequence", build=embedding_build, accepts_int=True, example="Embedding(vocab=20, dim=4)",
               example_input=(("int", 7),), variants=(("Embedding(vocab=9, dim=3, padding_idx=0)", ("int", None)),)),
    _rnn("SimpleRNN", "Elman recurrent layer (tanh).", ("SimpleRNN(5, return_sequences=true)", (6, 3)),
         ("SimpleRNN(4, layers=2)", (5, 3)), aliases=("RNN",)),
    _rnn("LSTM", "Long short-term memory.", ("LSTM(5, layers=2)", (6, 3)),
         ("LSTM(4, bidirectional=true, layers=2)", (5, 3))),
    _rnn("GRU", "Gated recurrent unit.", ("GRU(5, bidirectional=true)", (6, 3)),
         ("GRU(4, return_sequences=true, layers=2, dropout=0.2)", (5, 3))),
    LayerEntry("Bidirectional", (Param("layer", "layer", doc="a SimpleRNN, LSTM or GRU call"),),
               bidirectional_shape, bidirectional_count, "Run a recurrent layer both ways and join the outputs.",
               category="sequence", example="Bidirectional(LSTM(4, return_sequences=true))", example_input=((6, 3),),
               variants=(("Bidirectional(GRU(3))", (5, 2)),)),
    LayerEntry("MultiHeadAttention", (Param("heads", "int", min=1), Param("dropout", "float", 0.0, min=0.0, max=1.0)),
               attention_shape("MultiHeadAttention"), attention_count,
               "Multi-head self-attention over a sequence [T, F] (padding masked).", category="attention",
               build=attention_build, example="MultiHeadAttention(heads=2)", example_input=((5, 8),),
               variants=(("MultiHeadAttention(heads=4, dropout=0.1)", (5, 8)),)),
    LayerEntry("TransformerEncoder", (
        Param("heads", "int", min=1), Param("ff", "int", 2048, min=1, doc="feed-forward width"),
        Param("layers", "int", 1, min=1), Param("dropout", "float", 0.1, min=0.0, max=1.0),
        Param("activation", "enum", "relu", choices=("relu", "gelu")), Param("norm_first", "bool", False)),
        attention_shape("TransformerEncoder"), transformer_count,
        "A stack of Transformer encoder layers (self-attention + feed-forward) over [T, F].",
        category="attention", build=transformer_build, example="TransformerEncoder(heads=2, ff=16, layers=2)",
        example_input=((5, 8),), variants=(("TransformerEncoder(heads=2, ff=8, activation=gelu, norm_first=true)", (4, 6)),)),
    LayerEntry("PositionalEncoding", (Param("max_len", "int", 5000, min=1), Param("kind", "enum", "sinusoidal", choices=("sinusoidal", "learned")),
                                      Param("dropout", "float", 0.0, min=0.0, max=1.0)),
               posenc_shape, posenc_count, "Add position information to a sequence [T, F] (sinusoidal or learned).",
               category="attention", build=posenc_build, example="PositionalEncoding()", example_input=((5, 8),),
               variants=(("PositionalEncoding(max_len=10, kind=learned)", (5, 4)),)),
)
