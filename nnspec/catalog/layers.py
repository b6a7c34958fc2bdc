"""Layer entries: schema, pure shape rule, parameter count. Adding a layer touches this file
(and its torch builder in `nnspec/backends/torch_layers.py`) and one test row."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ..ir import TensorType
from .base import (LayerEntry, ShapeError, feature_axis, no_params, require_float, require_known,
                   require_rank)
from .schema import Param

Args = Mapping[str, Any]
Ins = Sequence[TensorType]

ACT = Param("activation", "activation", None, doc="activation applied to the output")
BIAS = Param("bias", "bool", True, doc="learn an additive bias")
L1 = Param("l1", "float", 0.0, min=0.0, doc="L1 penalty on the weights, added to the loss")
L2 = Param("l2", "float", 0.0, min=0.0, doc="L2 penalty on the weights, added to the loss")
PADDING = ("valid", "same")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, list):
        if len(v) != 2:
            raise ShapeError(f"expected one size or two [height, width]; received {v}", code="E107")
        return v[0], v[1]
    return v, v


def conv_out(size: int | None, kernel: int, stride: int, padding, dilation: int = 1) -> int | None:
    """Output length of a convolution or pooling along one axis (PyTorch's formula)."""
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / stride)
    pad = 0 if padding == "valid" else padding
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


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


def flatten_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    n = x.numel
    if n is None:
        raise ShapeError(f"Flatten needs every dimension known; received {x}",
                         "pool over the variable axis first (GlobalAvgPool) or fix the input size", code="E306")
    return TensorType((n,), x.dtype)


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


def same_shape(a: Args, ins: Ins) -> TensorType:
    return ins[0]


def float_same_shape(layer: str):
    def rule(a: Args, ins: Ins) -> TensorType:
        require_float(ins[0], layer)
        return ins[0]
    return rule


def batchnorm_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "BatchNorm")
    require_rank(x, (1, 2, 3), "BatchNorm")
    require_known(x.shape[feature_axis(len(x.shape))], "feature/channel size", "BatchNorm")
    return x


def batchnorm_count(a: Args, ins: Ins) -> tuple[int, int]:
    c = ins[0].shape[feature_axis(len(ins[0].shape))]
    return 2 * c, 2 * c  # gamma, beta; running mean and variance


def layernorm_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "LayerNorm")
    require_rank(x, (1, 2), "LayerNorm", "LayerNorm normalizes the feature axis of [F] or [T, F]; use BatchNorm on images")
    require_known(x.shape[-1], "feature size", "LayerNorm")
    return x


def layernorm_count(a: Args, ins: Ins) -> tuple[int, int]:
    return 2 * ins[0].shape[-1], 0


# ---------------------------------------------------------------- convolution and pooling
def conv1d_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "Conv1D")
    require_rank(x, (2,), "Conv1D", "Conv1D runs over a sequence [T, F]; for images use Conv2D")
    f = require_known(x.shape[1], "feature size", "Conv1D")
    _check_groups("Conv1D", f, a)
    _check_same_stride("Conv1D", a)
    t = conv_out(x.shape[0], a["kernel"], a["stride"], a["padding"], a["dilation"])
    _positive(t, "Conv1D", x, "kernel")
    return TensorType((t, a["filters"]))


def conv1d_count(a: Args, ins: Ins) -> tuple[int, int]:
    f = ins[0].shape[1]
    return a["kernel"] * (f // a["groups"]) * a["filters"] + (a["filters"] if a["bias"] else 0), 0


def _check_groups(layer: str, channels: int, a: Args) -> None:
    g = a["groups"]
    if channels % g or a["filters"] % g:
        raise ShapeError(f"{layer}'s groups={g} must divide both its input channels ({channels}) and filters ({a['filters']})",
                         code="E300")


def _check_same_stride(layer: str, a: Args) -> None:
    strides = a["stride"] if isinstance(a["stride"], list) else [a["stride"]]
    if a["padding"] == "same" and any(s != 1 for s in strides):
        raise ShapeError(f"{layer} with padding=same supports stride 1 only (as PyTorch does); received stride={a['stride']}",
                         "use padding=valid or an explicit padding size with stride > 1", code="E108")


def conv2d_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "Conv2D")
    require_rank(x, (3,), "Conv2D", "Conv2D runs over an image [C, H, W]; for sequences use Conv1D")
    c = require_known(x.shape[0], "channel count", "Conv2D")
    _check_groups("Conv2D", c, a)
    _check_same_stride("Conv2D", a)
    (kh, kw), (sh, sw), (dh, dw) = _pair(a["kernel"]), _pair(a["stride"]), _pair(a["dilation"])
    h = conv_out(x.shape[1], kh, sh, a["padding"], dh)
    w = conv_out(x.shape[2], kw, sw, a["padding"], dw)
    _positive(h, "Conv2D", x, "kernel")
    _positive(w, "Conv2D", x, "kernel")
    return TensorType((a["filters"], h, w))


def conv2d_count(a: Args, ins: Ins) -> tuple[int, int]:
    c = ins[0].shape[0]
    kh, kw = _pair(a["kernel"])
    return kh * kw * (c // a["groups"]) * a["filters"] + (a["filters"] if a["bias"] else 0), 0


def convt2d_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "ConvTranspose2D")
    require_rank(x, (3,), "ConvTranspose2D")
    require_known(x.shape[0], "channel count", "ConvTranspose2D")
    (kh, kw), (sh, sw) = _pair(a["kernel"]), _pair(a["stride"])
    pad, op = a["padding"], a["output_padding"]
    if op >= max(sh, sw) and op > 0:
        raise ShapeError(f"ConvTranspose2D's output_padding ({op}) must be smaller than its stride ({a['stride']})",
                         code="E108")

    def out(size, k, s):
        return None if size is None else (size - 1) * s - 2 * pad + (k - 1) + op + 1
    h, w = out(x.shape[1], kh, sh), out(x.shape[2], kw, sw)
    _positive(h, "ConvTranspose2D", x, "padding")
    _positive(w, "ConvTranspose2D", x, "padding")
    return TensorType((a["filters"], h, w))


def convt2d_count(a: Args, ins: Ins) -> tuple[int, int]:
    kh, kw = _pair(a["kernel"])
    return kh * kw * ins[0].shape[0] * a["filters"] + (a["filters"] if a["bias"] else 0), 0


def pool_shape(layer: str, rank: int):
    def rule(a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        require_float(x, layer)
        require_rank(x, (rank,), layer, f"{layer} expects {'[T, F]' if rank == 2 else '[C, H, W]'}")
        size, stride = a["size"], a["stride"] or a["size"]
        if isinstance(a["padding"], int) and a["padding"] > size // 2:
            raise ShapeError(f"{layer}'s padding ({a['padding']}) must be at most half its size ({size})", code="E108")
        if rank == 2:
            t = conv_out(x.shape[0], size, stride, a["padding"])
            _positive(t, layer, x, "pool size")
            return TensorType((t, x.shape[1]))
        h = conv_out(x.shape[1], size, stride, a["padding"])
        w = conv_out(x.shape[2], size, stride, a["padding"])
        _positive(h, layer, x, "pool size")
        _positive(w, layer, x, "pool size")
        return TensorType((x.shape[0], h, w))
    return rule


def global_pool_shape(layer: str):
    def rule(a: Args, ins: Ins) -> TensorType:
        x = ins[0]
        require_float(x, layer)
        require_rank(x, (2, 3), layer, f"{layer} pools a sequence [T, F] over time or an image [C, H, W] over space")
        axis = feature_axis(len(x.shape))
        return TensorType((require_known(x.shape[axis], "feature/channel size", layer),))
    return rule


def upsample_shape(a: Args, ins: Ins) -> TensorType:
    x = ins[0]
    require_float(x, "Upsample")
    require_rank(x, (2, 3), "Upsample")
    s = a["scale"]
    if len(x.shape) == 2:
        if a["mode"] == "bilinear":
            raise ShapeError("Upsample mode=bilinear needs an image [C, H, W]; use mode=nearest or linear on sequences",
                             code="E109")
        return TensorType((None if x.shape[0] is None else x.shape[0] * s, x.shape[1]))
    if a["mode"] == "linear":
        raise ShapeError("Upsample mode=linear is for sequences; use nearest or bilinear on images", code="E109")
    return TensorType((x.shape[0],) + tuple(None if d is None else d * s for d in x.shape[1:]))


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


def transformer_count(a: Args, ins: Ins) -> tuple[int, int]:
    f, ff = ins[0].shape[1], a["ff"]
    per_layer = (4 * f * f + 4 * f) + (f * ff + ff) + (ff * f + f) + 4 * f
    return a["layers"] * per_layer, 0


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


# ---------------------------------------------------------------- the entries
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


POOL_PARAMS = (
    Param("size", "int", 2, min=1, doc="window size"),
    Param("stride", "int", None, min=1, doc="defaults to the window size"),
    Param("padding", "int|enum", "valid", min=0, choices=PADDING),
)

RNN_PARAMS = (
    Param("units", "int", min=1, doc="hidden size"),
    Param("layers", "int", 1, min=1, doc="stacked recurrent layers"),
    Param("return_sequences", "bool", False, doc="output every step [T, units] instead of the last [units]"),
    Param("dropout", "float", 0.0, min=0.0, max=1.0, doc="dropout between stacked layers"),
    Param("bidirectional", "bool", False),
)

LAYERS: tuple[LayerEntry, ...] = (
    LayerEntry("Dense", (Param("units", "int", min=1, doc="output features"), ACT, BIAS, L1, L2),
               dense_shape, dense_count, "Fully connected: y = x W + b, on the last axis of [F] or [T, F].",
               aliases=("Linear",), activation_param=True, example="Dense(8)", example_input=((5,),)),
    LayerEntry("Flatten", (), flatten_shape, no_params, "Collapse all dimensions into one vector.",
               example="Flatten()", example_input=((2, 3, 4),)),
    LayerEntry("Reshape", (Param("shape", "ints", doc="target shape without batch; one -1 allowed"),),
               reshape_shape, no_params, "Rearrange into another shape with the same element count.",
               example="Reshape([6, 4])", example_input=((2, 3, 4),)),
    LayerEntry("Dropout", (Param("rate", "float", 0.5, min=0.0, max=1.0, doc="fraction of units zeroed in training"),),
               same_shape, no_params, "Randomly zero units during training.",
               example="Dropout(0.3)", example_input=((7,),)),
    LayerEntry("BatchNorm", (Param("momentum", "float", 0.1, min=0.0, max=1.0), Param("eps", "float", 1e-5, min=0.0, min_exclusive=True)),
               batchnorm_shape, batchnorm_count, "Batch normalization over the feature/channel axis.",
               aliases=("BatchNormalization",), example="BatchNorm()", example_input=((4, 5, 5),)),
    LayerEntry("LayerNorm", (Param("eps", "float", 1e-5, min=0.0, min_exclusive=True),),
               layernorm_shape, layernorm_count, "Layer normalization over the feature axis.",
               aliases=("LayerNormalization",), example="LayerNorm()", example_input=((6, 8),)),
    LayerEntry("Conv1D", _conv_params("int"), conv1d_shape, conv1d_count,
               "1-D convolution over time of a sequence [T, F] (F = channels).", category="conv",
               activation_param=True, example="Conv1D(4, 3)", example_input=((10, 3),)),
    LayerEntry("Conv2D", _conv_params("ints"), conv2d_shape, conv2d_count,
               "2-D convolution of an image [C, H, W].", category="conv", aliases=("Conv2d",),
               activation_param=True, example="Conv2D(4, 3, padding=same)", example_input=((2, 9, 9),)),
    LayerEntry("ConvTranspose2D", (
        Param("filters", "int", min=1), Param("kernel", "ints", min=1), Param("stride", "ints", 1, min=1),
        Param("padding", "int", 0, min=0), Param("output_padding", "int", 0, min=0), BIAS, ACT, L1, L2),
        convt2d_shape, convt2d_count, "Transposed 2-D convolution (learned upsampling).", category="conv",
        aliases=("Conv2DTranspose",), activation_param=True, example="ConvTranspose2D(3, 2, stride=2)",
        example_input=((4, 5, 5),)),
    LayerEntry("MaxPool1D", POOL_PARAMS, pool_shape("MaxPool1D", 2), no_params, "Max over windows of time.",
               category="pool", aliases=("MaxPooling1D",), example="MaxPool1D(2)", example_input=((9, 3),)),
    LayerEntry("MaxPool2D", POOL_PARAMS, pool_shape("MaxPool2D", 3), no_params, "Max over spatial windows.",
               category="pool", aliases=("MaxPooling2D",), example="MaxPool2D(2)", example_input=((3, 9, 8),)),
    LayerEntry("AvgPool1D", POOL_PARAMS, pool_shape("AvgPool1D", 2), no_params, "Mean over windows of time.",
               category="pool", aliases=("AveragePooling1D",), example="AvgPool1D(3, stride=2)", example_input=((9, 3),)),
    LayerEntry("AvgPool2D", POOL_PARAMS, pool_shape("AvgPool2D", 3), no_params, "Mean over spatial windows.",
               category="pool", aliases=("AveragePooling2D",), example="AvgPool2D(2, padding=same)", example_input=((3, 7, 7),)),
    LayerEntry("GlobalAvgPool", (), global_pool_shape("GlobalAvgPool"), no_params,
               "Mean over space ([C, H, W] -> [C]) or time ([T, F] -> [F]; padding excluded).", category="pool",
               aliases=("GlobalAveragePooling2D", "GlobalAveragePooling1D"), example="GlobalAvgPool()", example_input=((3, 4, 4),)),
    LayerEntry("GlobalMaxPool", (), global_pool_shape("GlobalMaxPool"), no_params,
               "Max over space ([C, H, W] -> [C]) or time ([T, F] -> [F]; padding excluded).", category="pool",
               aliases=("GlobalMaxPooling2D", "GlobalMaxPooling1D"), example="GlobalMaxPool()", example_input=((6, 3),)),
    LayerEntry("Upsample", (Param("scale", "int", 2, min=1), Param("mode", "enum", "nearest", choices=("nearest", "bilinear", "linear"))),
               upsample_shape, no_params, "Repeat pixels (or steps) `scale` times along each spatial axis.",
               category="pool", aliases=("UpSampling2D",), example="Upsample(2)", example_input=((2, 3, 3),)),
    LayerEntry("Embedding", (Param("vocab", "int", min=1, doc="number of token ids"), Param("dim", "int", min=1, doc="vector size"),
                             Param("padding_idx", "int", None, min=0, doc="id of padding; its positions are masked downstream")),
               embedding_shape, embedding_count, "Look up a learned vector for each token id: int[T] -> [T, dim].",
               category="sequence", accepts_int=True, example="Embedding(vocab=20, dim=4)", example_input=(("int", 7),)),
    LayerEntry("SimpleRNN", RNN_PARAMS, rnn_shape("SimpleRNN"), rnn_count("SimpleRNN"),
               "Elman recurrent layer (tanh).", category="sequence", aliases=("RNN",),
               example="SimpleRNN(5, return_sequences=true)", example_input=((6, 3),)),
    LayerEntry("LSTM", RNN_PARAMS, rnn_shape("LSTM"), rnn_count("LSTM"), "Long short-term memory.",
               category="sequence", example="LSTM(5, layers=2)", example_input=((6, 3),)),
    LayerEntry("GRU", RNN_PARAMS, rnn_shape("GRU"), rnn_count("GRU"), "Gated recurrent unit.",
               category="sequence", example="GRU(5, bidirectional=true)", example_input=((6, 3),)),
    LayerEntry("Bidirectional", (Param("layer", "layer", doc="a SimpleRNN, LSTM or GRU call"),),
               bidirectional_shape, bidirectional_count, "Run a recurrent layer both ways and join the outputs.",
               category="sequence", example="Bidirectional(LSTM(4, return_sequences=true))", example_input=((6, 3),)),
    LayerEntry("MultiHeadAttention", (Param("heads", "int", min=1), Param("dropout", "float", 0.0, min=0.0, max=1.0)),
               attention_shape("MultiHeadAttention"), attention_count,
               "Multi-head self-attention over a sequence [T, F] (padding masked).", category="attention",
               example="MultiHeadAttention(heads=2)", example_input=((5, 8),)),
    LayerEntry("TransformerEncoder", (
        Param("heads", "int", min=1), Param("ff", "int", 2048, min=1, doc="feed-forward width"),
        Param("layers", "int", 1, min=1), Param("dropout", "float", 0.1, min=0.0, max=1.0),
        Param("activation", "enum", "relu", choices=("relu", "gelu")), Param("norm_first", "bool", False)),
        attention_shape("TransformerEncoder"), transformer_count,
        "A stack of Transformer encoder layers (self-attention + feed-forward) over [T, F].",
        category="attention", example="TransformerEncoder(heads=2, ff=16, layers=2)", example_input=((5, 8),)),
    LayerEntry("PositionalEncoding", (Param("max_len", "int", 5000, min=1), Param("kind", "enum", "sinusoidal", choices=("sinusoidal", "learned")),
                                      Param("dropout", "float", 0.0, min=0.0, max=1.0)),
               posenc_shape, posenc_count, "Add position information to a sequence [T, F] (sinusoidal or learned).",
               category="attention", example="PositionalEncoding()", example_input=((5, 8),)),
)
