"""Standalone PyTorch source for a spec (`nnspec compile FILE --emit python`): the way out.

The text is one `nn.Module` class that imports only torch and reproduces the lowered module
(`torch_model.build_model`): the same submodule names (so the same state_dict keys and
shapes) and the same forward. Constructor arguments are read from the modules that
`build_model` creates, so the two cannot drift apart; the forward is written node by node
from the graph, one local variable per node, named as the node.

nnspec only writes this text; it never executes it (the tests import the generated file).
"""
from __future__ import annotations

import keyword
import re
from pathlib import Path

from ..catalog.base import feature_axis
from ..diagnostics import UserError
from ..ir import Node

INDENT = " " * 8


def _py(v) -> str:
    """A Python literal (floats keep every digit, so the emitted numbers are exactly ours)."""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple) and len(v) == 1:
        return f"({_py(v[0])},)"
    if isinstance(v, (tuple, list)):
        inner = ", ".join(_py(i) for i in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    return repr(v)


def in_docstring(text: str) -> str:
    """`text` for inside a \"\"\"docstring\"\"\" of the generated source, where it must end nothing
    and run nothing: backslashes, quotes, newlines and every non-ASCII or unprintable character
    are escaped, so the docstring holds exactly `text` (a file may be named `m\"\"\"; import os`)."""
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


RESERVED = {"self", "torch", "nn", "F"}  # the generated module's own names


def class_name(model: str) -> str:
    """The model's name as a Python class name: a keyword (`model lambda`) or one of the module's
    own names gets a trailing underscore. (The grammar allows only [A-Za-z_][A-Za-z_0-9]*.)"""
    if not model.isidentifier():  # the grammar never lets one through; refuse rather than write it
        raise UserError(f"the model name {model!r} is not a Python identifier")
    return model + "_" if keyword.iskeyword(model) or model in RESERVED else model


class Writer:
    filename = "<spec>"  # the spec's file name, for the module docstring

    def __init__(self, checked, model):
        self.checked, self.model = checked, model
        self.graph = checked.graph
        self.init: list[str] = []
        self.body: list[str] = []
        self.containers: set[str] = set()
        self.vars: dict[str, str] = {}
        self.masks: dict[str, str | None] = {}
        self.used_names: set[str] = set()

    # ------------------------------------------------------------ names
    def var(self, node_name: str) -> str:
        if node_name not in self.vars:
            base = re.sub(r"\W", "_", node_name.replace(".", "_"))
            if keyword.iskeyword(base) or base in ("self", "torch", "nn", "F"):
                base += "_"
            name, n = base, 1
            while name in self.used_names:
                n += 1
                name = f"{base}_{n}"
            self.used_names.add(name)
            self.vars[node_name] = name
        return self.vars[node_name]

    def declare(self, node: Node, ctor: str) -> None:
        """`self.<name> = <ctor>`, creating plain containers for block instances first."""
        parts = node.name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in self.containers:
                self.containers.add(prefix)
                self.init.append(f"self.{prefix} = nn.Module()  # block instance {prefix}")
        self.init.append(f"self.{node.name} = {ctor}")

    def emit(self, line: str) -> None:
        self.body.append(line)

    # ------------------------------------------------------------ graph
    def write(self) -> str:
        for name in self.graph.inputs:
            self.var(name)
            self.masks[name] = None
        for node in self.graph.nodes:
            if node.op == "input":
                continue
            x = self.var(node.inputs[0]) if node.inputs else None
            out = self.var(node.name)
            if node.op == "layer":
                self.layer(node, x, out)
            elif node.op == "activation":
                self.emit(f"{out} = {activation_text(node, x)}")
                self.masks[node.name] = self.masks[node.inputs[0]]
            elif node.op == "add":
                self.emit(f"{out} = {' + '.join(self.var(i) for i in node.inputs)}")
                self.masks[node.name] = self.first_mask(node)
            elif node.op == "concat":
                axis = 1 + feature_axis(len(node.out.shape))
                self.emit(f"{out} = torch.cat([{', '.join(self.var(i) for i in node.inputs)}], dim={axis})")
                self.masks[node.name] = self.first_mask(node)
            else:
                raise AssertionError(f"unknown graph op {node.op}")
        return self.source()

    def first_mask(self, node: Node) -> str | None:
        return next((self.masks[i] for i in node.inputs if self.masks[i] is not None), None)

    def layer(self, node: Node, x: str, out: str) -> None:
        module = self.model.get_submodule(node.name)
        mask = self.masks[node.inputs[0]]
        writer = LAYER_WRITERS.get(node.kind)
        if writer is None:
            raise UserError(f"layer '{node.name}' ({node.kind}) has no PyTorch source writer",
                            where=f"line {node.span.line}", help="use nnspec compile --emit onnx")
        self.masks[node.name] = writer(self, node, module, x, out, mask)

    # ------------------------------------------------------------ text
    def source(self) -> str:
        spec = self.checked.spec
        ins = ", ".join(self.var(n) for n in self.graph.inputs)
        described = "\n".join(
            f"        {self.var(n)}: [N, {', '.join('T' if d is None else str(d) for d in self.graph.node(n).out.shape)}]"
            f" {'int64 token ids' if self.graph.node(n).out.dtype == 'int' else 'float32'}"
            for n in self.graph.inputs)
        out = self.graph.output_node
        cls = class_name(spec.name)
        lines = [
            f'"""{cls}: standalone PyTorch source generated by nnspec from {in_docstring(self.filename)}.',
            "",
            "It needs only torch. Load weights trained by nnspec with",
            f"    model = {cls}(); model.load_state_dict(torch.load(path, weights_only=True)['model'])",
            "(or any state_dict of the same keys); call model.eval() before inference.",
            '"""',
            "import torch",
            "import torch.nn.functional as F",
            "from torch import nn",
            "",
            "",
            f"class {cls}(nn.Module):",
            "    def __init__(self):",
            "        super().__init__()",
            *[INDENT + line for line in self.init],
            "",
            f"    def forward(self, {ins}):",
            '        """Inputs (batch first):',
            described,
            f"        Returns [N, {', '.join('T' if d is None else str(d) for d in out.out.shape)}]"
            f" ({out.kind if out.op == 'activation' else 'as written'}).",
            '        """',
            *[INDENT + line for line in self.body],
            f"        return {self.var(self.graph.output)}",
            "",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------- activations
def activation_text(node: Node, x: str) -> str:
    """The call `torch_layers.activation_call` makes, as text (the same function, same kwargs)."""
    from . import torch_layers as tl

    rank = len(node.out.shape) if node.out is not None else 1
    call = tl.activation_call(node.kind, node.args, rank)
    if call is None:
        return x
    fn, kwargs = call
    if fn is tl.step:
        return f"(torch.sign({x}) + 1 + ({x} == 0).to({x}.dtype)) / 2  # step (Heaviside), zero gradient"
    if fn is tl.scaled_tanh:
        a, b = kwargs["a"], kwargs["b"]
        return f"torch.tanh({x}) * {_py((b - a) / 2)} + {_py((a + b) / 2)}  # scaled_tanh onto [{a}, {b}]"
    args = "".join(f", {k}={_py(v)}" for k, v in kwargs.items())
    return f"{_function_name(fn)}({x}{args})"


def _function_name(fn) -> str:
    import torch
    import torch.nn.functional as F

    name = fn.__name__
    if getattr(F, name, None) is fn:
        return f"F.{name}"
    if getattr(torch, name, None) is fn:
        return f"torch.{name}"
    raise AssertionError(f"activation function {fn} is neither torch.* nor F.*")


# ---------------------------------------------------------------- layers
def w_dense(w, node, m, x, out, mask):
    w.declare(node, f"nn.Linear({m.in_features}, {m.out_features}, bias={m.bias is not None})")
    w.emit(f"{out} = self.{node.name}({x})")
    return mask


def w_flatten(w, node, m, x, out, mask):
    w.emit(f"{out} = {x}.flatten(1)")
    return None


def w_reshape(w, node, m, x, out, mask):
    w.emit(f"{out} = {x}.reshape({x}.shape[0], {', '.join(str(d) for d in m.shape)})")
    return None


def w_dropout(w, node, m, x, out, mask):
    w.declare(node, f"nn.Dropout({_py(float(m.p))})")
    w.emit(f"{out} = self.{node.name}({x})")
    return mask


def w_batchnorm(w, node, m, x, out, mask):
    from . import torch_layers as tl

    cls = type(m).__name__ if not isinstance(m, tl.SeqBatchNorm) else "BatchNorm1d"
    w.declare(node, f"nn.{cls}({m.num_features}, eps={_py(m.eps)}, momentum={_py(m.momentum)})")
    if isinstance(m, tl.SeqBatchNorm):  # features last: BatchNorm1d wants [N, F, T]
        w.emit(f"{out} = self.{node.name}({x}.transpose(1, 2)).transpose(1, 2)")
    else:
        w.emit(f"{out} = self.{node.name}({x})")
    return mask


def w_layernorm(w, node, m, x, out, mask):
    w.declare(node, f"nn.LayerNorm({_py(tuple(m.normalized_shape))}, eps={_py(m.eps)})")
    w.emit(f"{out} = self.{node.name}({x})")
    return mask


def _conv_args(m) -> str:
    pad = m.padding if isinstance(m.padding, str) else _py(tuple(m.padding))
    pad = repr(pad) if isinstance(m.padding, str) else pad
    return (f"kernel_size={_py(tuple(m.kernel_size))}, stride={_py(tuple(m.stride))}, padding={pad}, "
            f"dilation={_py(tuple(m.dilation))}, groups={m.groups}, bias={m.bias is not None}")


def _resized_mask(w, out: str, mask: str | None, kernel: int, stride: int, padding, dilation: int = 1,
                  length_of: str | None = None) -> str | None:
    """The padding mask after a convolution or pooling over time: each row's valid length
    goes through the layer's length formula; steps past it are padding."""
    if mask is None:
        return None
    def plus(n: int) -> str:
        return f" + {n}" if n > 0 else (f" - {-n}" if n < 0 else "")

    if padding == "same":
        length = f"torch.div({mask}.sum(1){plus(stride - 1)}, {stride}, rounding_mode='floor')"
    else:
        pad = 0 if padding == "valid" else padding
        length = (f"(torch.div({mask}.sum(1){plus(2 * pad - dilation * (kernel - 1) - 1)}, {stride}, "
                  "rounding_mode='floor') + 1)")
    w.emit(f"{out}_mask = torch.arange({length_of or out + '.shape[1]'}, device={out}.device)[None, :] < "
           f"{length}.clamp(min=0)[:, None]  # valid steps after {out}")
    return f"{out}_mask"


def w_conv1d(w, node, m, x, out, mask):
    w.declare(node, f"nn.Conv1d({m.in_channels}, {m.out_channels}, {_conv_args(m)})")
    if mask is not None:  # padded steps read as zeros, like the convolution's own padding
        w.emit(f"{out}_in = {x}.masked_fill(~{mask}[:, :, None], 0.0)")
        x = f"{out}_in"
    w.emit(f"{out} = self.{node.name}({x}.transpose(1, 2)).transpose(1, 2)  # over time: [N, T, F] <-> [N, F, T]")
    pad = m.padding if isinstance(m.padding, str) else m.padding[0]
    return _resized_mask(w, out, mask, m.kernel_size[0], m.stride[0], pad, m.dilation[0])


def w_conv2d(w, node, m, x, out, mask):
    w.declare(node, f"nn.Conv2d({m.in_channels}, {m.out_channels}, {_conv_args(m)})")
    w.emit(f"{out} = self.{node.name}({x})")
    return None


def w_convt2d(w, node, m, x, out, mask):
    w.declare(node, f"nn.ConvTranspose2d({m.in_channels}, {m.out_channels}, kernel_size={_py(tuple(m.kernel_size))}, "
                    f"stride={_py(tuple(m.stride))}, padding={_py(tuple(m.padding))}, "
                    f"output_padding={_py(tuple(m.output_padding))}, bias={m.bias is not None})")
    w.emit(f"{out} = self.{node.name}({x})")
    return None


def w_pool(w, node, m, x, out, mask):
    dims = 1 if m.rank == 2 else 2
    fn = f"F.{m.kind}_pool{dims}d"
    src = x
    if m.rank == 2:  # pooling over time: [N, T, F] -> [N, F, T]
        src = f"{out}_in"
        w.emit(f"{src} = {x}.transpose(1, 2)")
    k, s = _py((m.size,) * dims), _py((m.stride,) * dims)
    pads = _pool_pads(w, node, m, out, src, dims)
    pad = (lambda t, value="": f"F.pad({t}, {pads}{value})") if pads else (lambda t, value="": t)
    real = f"{mask}[:, None, :]" if mask is not None else None
    if m.kind == "max":
        if real is not None:  # padded steps never win the max
            w.emit(f"{src} = {src}.masked_fill(~{real}, float('-inf'))")
        padded = pad(src, ", value=float('-inf')")
        w.emit(f"{out} = {fn}({padded}, {k}, {s})")
    elif real is None and not pads:
        w.emit(f"{out} = {fn}({src}, {k}, {s})")
    else:  # the mean over the real cells of each window: (window mean of x) / (window mean of 1s)
        if real is None:
            w.emit(f"{out}_real = torch.ones((1, 1) + tuple({src}.shape[-{dims}:]), dtype={src}.dtype, "
                   f"device={src}.device)")
        else:
            w.emit(f"{out}_real = {real}.to({src}.dtype)")
            w.emit(f"{src} = {src}.masked_fill(~{real}, 0.0)")
        w.emit(f"{out} = {fn}({pad(src)}, {k}, {s}) / {fn}({pad(out + '_real')}, {k}, {s}).clamp_min(1e-12)")
    if m.rank != 2:
        return mask
    new_mask = _resized_mask(w, out, mask, m.size, m.stride, m.padding, length_of=f"{out}.shape[2]")
    if new_mask is not None:  # a window holding no real step gives 0
        w.emit(f"{out} = {out}.masked_fill(~{new_mask}[:, None, :], 0.0)")
    w.emit(f"{out} = {out}.transpose(1, 2)")
    return new_mask


def _pool_pads(w, node, m, out: str, src: str, dims: int) -> str | None:
    """F.pad's list (last axis first) for the pooling's padding, as text; None for valid."""
    if m.padding == "valid":
        return None
    if m.padding != "same":
        return _py([m.padding] * (2 * dims))
    w.emit(f"# {node.name}: {node.kind}(size={m.size}, stride={m.stride}, padding=same) gives "
           f"ceil(L / {m.stride}) outputs per axis")
    pads = []
    for axis in range(-1, -dims - 1, -1):
        p = f"{out}_pad{-axis}"
        w.emit(f"{p} = max((-(-{src}.shape[{axis}] // {m.stride}) - 1) * {m.stride} + {m.size} - "
               f"{src}.shape[{axis}], 0)")
        pads += [f"{p} // 2", f"{p} - {p} // 2"]
    return "[" + ", ".join(pads) + "]"


def w_global(w, node, m, x, out, mask):
    red = "mean" if m.kind == "avg" else "amax"
    if m.rank == 3:
        w.emit(f"{out} = {x}.{red}((2, 3))")
    elif mask is None:
        w.emit(f"{out} = {x}.{red}(1)")
    elif m.kind == "max":  # padded steps excluded; a row of padding only pools to 0
        w.emit(f"{out} = {x}.masked_fill(~{mask}.unsqueeze(-1), float('-inf')).amax(1)"
               f".masked_fill(~{mask}.any(1, keepdim=True), 0)")
    else:  # the mean over real steps
        w.emit(f"{out} = {x}.masked_fill(~{mask}.unsqueeze(-1), 0).sum(1) / "
               f"{mask}.sum(1, keepdim=True).clamp(min=1).to({x}.dtype)")
    return None


def w_upsample(w, node, m, x, out, mask):
    corners = ", align_corners=False" if m.mode in ("linear", "bilinear") else ""
    if m.rank == 2:
        if mask is not None and m.mode == "linear":  # interpolate up to the real end only
            w.emit(f"{out}_last = ({mask}.sum(1, keepdim=True) - 1).clamp(min=0)")
            w.emit(f"{out}_steps = torch.minimum(torch.arange({x}.shape[1], device={x}.device)[None, :], {out}_last)")
            w.emit(f"{out}_in = {x}.gather(1, {out}_steps[:, :, None].expand(-1, -1, {x}.shape[2]))")
            x = f"{out}_in"
        w.emit(f"{out} = F.interpolate({x}.transpose(1, 2), scale_factor={m.scale}, mode={m.mode!r}{corners})"
               ".transpose(1, 2)")
        if mask is not None:
            w.emit(f"{out}_mask = {mask}.repeat_interleave({m.scale}, dim=1)")
            return f"{out}_mask"
        return None
    w.emit(f"{out} = F.interpolate({x}, scale_factor={m.scale}, mode={m.mode!r}{corners})")
    return mask


def w_embedding(w, node, m, x, out, mask):
    w.declare(node, f"nn.Embedding({m.num_embeddings}, {m.embedding_dim}, padding_idx={m.padding_idx})")
    w.emit(f"{out} = self.{node.name}({x})")
    pad = node.args.get("padding_idx")
    if pad is None:
        return None
    w.emit(f"{out}_mask = {x} != {pad}  # True at real tokens, False at padding")
    return f"{out}_mask"


def w_rnn(w, node, m, x, out, mask):
    cls = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}[m.mode]
    extra = ", nonlinearity='relu'" if m.mode == "RNN_RELU" else ""
    w.declare(node, f"nn.{cls}({m.input_size}, {m.hidden_size}, num_layers={m.num_layers}, bias={m.bias}, "
                    f"batch_first=True, dropout={_py(float(m.dropout))}, bidirectional={m.bidirectional}{extra})")
    seqs = out if m.return_sequences else "_"
    if mask is None:
        w.emit(f"{seqs}, {out}_state = self.{node.name}({x})")
    else:  # the real steps only: packed by length (padding at the end of each row)
        w.emit(f"{out}_packed = nn.utils.rnn.pack_padded_sequence({x}, {mask}.sum(1).clamp(min=1).cpu(), "
               "batch_first=True, enforce_sorted=False)")
        w.emit(f"{seqs}, {out}_state = self.{node.name}({out}_packed)")
        if m.return_sequences:
            w.emit(f"{out}, _ = nn.utils.rnn.pad_packed_sequence({out}, batch_first=True, total_length={x}.shape[1])")
    if m.return_sequences:
        return mask
    h = f"{out}_state[0]" if cls == "LSTM" else f"{out}_state"  # LSTM's state is (h, c)
    if m.bidirectional:
        w.emit(f"{out} = torch.cat(({h}[-2], {h}[-1]), dim=1)  # last step of both directions")
    else:
        w.emit(f"{out} = {h}[-1]  # the last (real) step")
    return None


def w_attention(w, node, m, x, out, mask):
    w.declare(node, f"nn.MultiheadAttention({m.embed_dim}, {m.num_heads}, dropout={_py(float(m.dropout))}, "
                    "batch_first=True)")
    pad = "None" if mask is None else f"~{mask}"
    w.emit(f"{out}, _ = self.{node.name}({x}, {x}, {x}, key_padding_mask={pad}, need_weights=False)")
    return mask


def w_transformer(w, node, m, x, out, mask):
    layer = m.layers[0]
    a = node.args
    w.declare(node, "nn.TransformerEncoder(\n"
                    f"{INDENT}    nn.TransformerEncoderLayer({layer.self_attn.embed_dim}, {layer.self_attn.num_heads}, "
                    f"dim_feedforward={layer.linear1.out_features}, dropout={_py(float(a['dropout']))},\n"
                    f"{INDENT}                               activation={a['activation']!r}, "
                    f"layer_norm_eps={_py(layer.norm1.eps)}, batch_first=True, norm_first={layer.norm_first}),\n"
                    f"{INDENT}    {m.num_layers}, enable_nested_tensor=False)")
    pad = "None" if mask is None else f"~{mask}"
    w.emit(f"{out} = self.{node.name}({x}, src_key_padding_mask={pad})")
    return mask


def w_posenc(w, node, m, x, out, mask):
    """A container with `weight` (a learned Parameter, or the fixed sinusoidal table as a
    non-saved buffer) and `dropout`: the same state_dict as nnspec's PositionalEncoding."""
    import math

    max_len, features = m.weight.shape
    w.declare(node, "nn.Module()")
    p = node.name
    if m.kind == "learned":
        w.init.append(f"self.{p}.weight = nn.Parameter(torch.empty({max_len}, {features}).normal_(std=0.02))")
    else:
        w.init += [
            f"{p.replace('.', '_')}_pos = torch.arange({max_len}, dtype=torch.float32)[:, None]",
            f"{p.replace('.', '_')}_freq = torch.exp(torch.arange(0, {features}, 2, dtype=torch.float32) * "
            f"{_py(-math.log(10000.0) / features)})  # 10000^(-2i/d)",
            f"{p.replace('.', '_')}_table = torch.zeros({max_len}, {features})",
            f"{p.replace('.', '_')}_table[:, 0::2] = torch.sin({p.replace('.', '_')}_pos * {p.replace('.', '_')}_freq)",
            f"{p.replace('.', '_')}_table[:, 1::2] = torch.cos({p.replace('.', '_')}_pos * {p.replace('.', '_')}_freq)",
            f"self.{p}.register_buffer('weight', {p.replace('.', '_')}_table, persistent=False)  # sinusoidal, fixed",
        ]
    w.init.append(f"self.{p}.dropout = nn.Dropout({_py(float(m.dropout.p))})")
    w.emit(f"{out} = self.{p}.dropout({x} + self.{p}.weight[: {x}.shape[1]].to({x}.dtype))")
    return mask


LAYER_WRITERS = {
    "Dense": w_dense, "Flatten": w_flatten, "Reshape": w_reshape, "Dropout": w_dropout,
    "BatchNorm": w_batchnorm, "LayerNorm": w_layernorm, "Conv1D": w_conv1d, "Conv2D": w_conv2d,
    "ConvTranspose2D": w_convt2d, "MaxPool1D": w_pool, "MaxPool2D": w_pool, "AvgPool1D": w_pool,
    "AvgPool2D": w_pool, "GlobalAvgPool": w_global, "GlobalMaxPool": w_global, "Upsample": w_upsample,
    "Embedding": w_embedding, "SimpleRNN": w_rnn, "LSTM": w_rnn, "GRU": w_rnn,
    "MultiHeadAttention": w_attention, "TransformerEncoder": w_transformer, "PositionalEncoding": w_posenc,
}


def python_source(checked, filename: str = "<spec>") -> str:
    from .torch_model import build_model

    writer = Writer(checked, build_model(checked))
    writer.filename = Path(filename).name
    return writer.write()


def emit(result, output: str | None) -> None:
    """`nnspec compile FILE --emit python [-o model.py]` (default: <spec>.py beside the spec)."""
    import click

    from ..fsutil import atomic_write_text

    path = Path(output) if output else Path(result.filename).with_suffix(".py")
    text = python_source(result.checked, result.filename)
    atomic_write_text(path, text)
    click.echo(f"wrote {path} (class {class_name(result.checked.spec.name)}, imports only torch)")
