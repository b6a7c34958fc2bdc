"""ONNX export of the lowered module (`nnspec compile FILE`, the default `--emit onnx`).

Exporter: PyTorch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`) at
opset 17. It handles LSTM/GRU/SimpleRNN and the transformer encoder in seconds, where the
dynamo exporter took ~40 s for a GRU and failed on the packed (padding-masked) LSTM.

What the file holds:
- one self-contained .onnx (weights inside; no .onnx.data sidecar below 2 GB);
- inputs named as in the spec, output `output`; axis 0 is the dynamic `batch`, and every `?`
  dimension is dynamic too (`steps` for a sequence's length);
- node names carry the layer that made them (`/conv2d_1/Conv`, `/residual_1/conv2d_1/Conv`)
  and initializers are named after the state_dict (`conv2d_1.weight`); the recurrent weights
  that ONNX stores re-ordered are named `<layer>.W`, `.R`, `.B` (`lstm_1.W`);
- metadata_props: `nnspec.model` (the model's name) and `nnspec.source` (the spec's text).

Every export is checked with `onnx.checker.check_model(full_check=True)` and run in
onnxruntime against PyTorch on random inputs at batch 1 and 3 (max abs diff <= 1e-5).

Variable-length sequences: PyTorch packs them (`pack_padded_sequence`), which the exporter
cannot trace reliably. For the export, a recurrent layer that receives a padding mask runs
each direction as a plain recurrence: forward over the sequence as is, backward over each
sequence reversed within its own length. That is what packing computes, written with
gathers that ONNX has (same weights, same numbers; tested against the packed module).
"""
from __future__ import annotations

import contextlib
import errno
import io
import logging
import re
import types
import warnings
from pathlib import Path
from typing import Any

from ..diagnostics import UserError
from ..extras import require

OPSET = 17
TOLERANCE = 1e-5
OUTPUT_NAME = "output"


class ExportMismatch(AssertionError):
    """onnxruntime disagrees with PyTorch: a bug in nnspec or the exporter, not in the spec."""


# ---------------------------------------------------------------- export-friendly recurrences
def _positions(mask):
    """[[0, 1, ..., T-1]] for a [N, T] mask, from the mask itself: a cumulative sum, not an arange
    over a traced length, which the exporter may freeze."""
    import torch

    return torch.cumsum(torch.ones_like(mask[:1], dtype=torch.long), dim=1) - 1


def _reverse_within_length(x, lengths, t):
    """x[n, t] -> x[n, L_n - 1 - t] for t < L_n (steps past the length stay where they are)."""
    import torch

    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[2]))


def _run_direction(module, x, layer: int, suffix: str):
    """One layer, one direction of nn.RNN/LSTM/GRU `module` over batch-first x (eval mode)."""
    import torch
    from torch import _VF

    names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
    if module.bias:
        names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
    weights = [getattr(module, n) for n in names]
    h0 = torch.zeros_like(x[None, :, 0, :1]).repeat(1, 1, module.hidden_size)  # [1, N, H], N from the data
    if module.mode == "LSTM":
        out, _, _ = _VF.lstm(x, (h0, h0), weights, module.bias, 1, 0.0, False, False, True)
    elif module.mode == "GRU":
        out, _ = _VF.gru(x, h0, weights, module.bias, 1, 0.0, False, False, True)
    else:
        fn = _VF.rnn_tanh if module.mode == "RNN_TANH" else _VF.rnn_relu
        out, _ = fn(x, h0, weights, module.bias, 1, 0.0, False, False, True)
    return out


def _masked_recurrent_forward(self, x, mask=None):
    """Same results as the packed forward of nnspec's recurrent layers (see the module doc)."""
    import torch

    if mask is None:
        return type(self).forward(self, x)
    lengths = mask.sum(1).clamp(min=1)  # as the packed forward: an all-padding row runs one step
    t = _positions(mask)
    valid = (t < lengths[:, None]).unsqueeze(-1)
    last = (lengths - 1)[:, None, None]
    h = x
    finals = []
    for layer in range(self.num_layers):
        fwd = _run_direction(self, h, layer, "")
        outs, finals = [fwd], [torch.gather(fwd, 1, last.expand(-1, 1, fwd.shape[2])).squeeze(1)]
        if self.bidirectional:
            rev = _run_direction(self, _reverse_within_length(h, lengths, t), layer, "_reverse")
            finals.append(torch.gather(rev, 1, last.expand(-1, 1, rev.shape[2])).squeeze(1))
            outs.append(_reverse_within_length(rev, lengths, t))
        h = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    if self.return_sequences:
        return h.masked_fill(~valid, 0.0)  # pad_packed_sequence pads with zeros
    return torch.cat(finals, dim=1) if len(finals) > 1 else finals[0]


def _attend(mha, x, key_padding=None):
    """Batch-first multi-head self-attention of nn.MultiheadAttention `mha` (eval mode), written
    out: PyTorch's own forward bakes the traced batch size into a reshape when a padding mask is
    given; this one reshapes per head only. key_padding: bool [N, T] (True = padding) or an
    additive float mask (0 / -inf), as PyTorch accepts."""
    import torch
    import torch.nn.functional as F

    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    heads = mha.num_heads
    # [N, T, H*d] -> [N, H, T, d] and back by chunk/stack and cat: no sizes taken from the trace
    q, k, v = (torch.stack(t.chunk(heads, dim=-1), dim=1) for t in (q, k, v))
    scores = torch.matmul(q, k.transpose(-2, -1)) / float(q.shape[-1]) ** 0.5
    if key_padding is not None:
        if key_padding.dtype == torch.bool:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        else:
            scores = scores + key_padding[:, None, None, :].to(scores.dtype)
    out = torch.cat(torch.matmul(torch.softmax(scores, dim=-1), v).unbind(1), dim=-1)
    return mha.out_proj(out)


def _attention_forward(self, x, mask=None):
    """nnspec's SelfAttention (mask: True = a real step)."""
    return _attend(self, x, None if mask is None else ~mask)


def _mha_forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                 average_attn_weights=True, is_causal=False):
    """nn.MultiheadAttention as a TransformerEncoderLayer calls it: self-attention, batch first."""
    if attn_mask is not None or is_causal or not (self.batch_first and self._qkv_same_embed_dim):
        return type(self).forward(self, query, key, value, key_padding_mask=key_padding_mask,
                                  need_weights=need_weights, attn_mask=attn_mask,
                                  average_attn_weights=average_attn_weights, is_causal=is_causal)
    return _attend(self, query, key_padding_mask), None


@contextlib.contextmanager
def export_friendly(model, fixed_sizes: frozenset[str] = frozenset()):
    """Within the block, recurrent layers given a padding mask use the gather-based forward and
    self-attention layers a batch-size-free one; window layers whose padding does not depend on
    the input's size (stride 1, or a layer in `fixed_sizes`: no `?` dimension) pad by constants."""
    import torch

    from . import torch_layers as tl

    patched = []
    for name, m in model.named_modules():
        if hasattr(m, "resize_mask"):
            keeps = _keeps_length(m)
            m.resize_mask = types.MethodType(_same_mask if keeps else _mask_resize_unsupported(name), m)
            patched.append(m)
        if isinstance(m, (tl.Conv, tl.Pool)) and (name in fixed_sizes or _stride_one(m)):
            m.window = types.MethodType(_constant_pads(type(m).window), m)
            patched.append(m)
        if isinstance(m, (tl.SimpleRNN, tl.LSTM, tl.GRU)):
            m.forward = types.MethodType(_masked_recurrent_forward, m)
            patched.append(m)
        elif isinstance(m, tl.SelfAttention):
            m.forward = types.MethodType(_attention_forward, m)
            patched.append(m)
        elif isinstance(m, torch.nn.MultiheadAttention):  # inside a TransformerEncoderLayer
            m.forward = types.MethodType(_mha_forward, m)
            patched.append(m)
    try:
        yield model
    finally:
        for m in patched:
            for attr in ("forward", "resize_mask", "window"):
                m.__dict__.pop(attr, None)


class MaskNotExportable(Exception):
    def __init__(self, layer: str):
        super().__init__(layer)
        self.layer = layer


def _keeps_length(module) -> bool:
    """Whether a layer over time keeps every sequence's length (Conv1D with padding=same and
    stride 1): its padding mask passes through unchanged, which a trace keeps as it is."""
    out_length = getattr(module, "out_length", None)
    try:
        return out_length is not None and all(out_length(n) == n for n in (1, 2, 3, 7, 64))
    except (TypeError, ValueError):
        return False


def _same_mask(self, mask):
    return mask


def _stride_one(module) -> bool:
    stride = module.stride if isinstance(module.stride, tuple) else (module.stride,)
    return all(s == 1 for s in stride)


def _constant_pads(window):
    """`window` with the padding computed from Python integers: the exporter would otherwise
    trace the arithmetic on the input's shape (dozens of Shape/Gather/Div nodes per layer) for
    a padding that is the same for every input it is called for."""
    from . import torch_layers as tl

    def constant(self, x, real=None):
        original = tl.pad_list
        tl.pad_list = lambda sizes, *rest: original([int(s) for s in sizes], *rest)
        try:
            return window(self, x, real)
        finally:
            tl.pad_list = original
    return constant


def fixed_size_layers(checked) -> frozenset[str]:
    """Layers whose input has no `?` dimension: the trace may take their sizes as constants."""
    fixed = set()
    for n in checked.graph.nodes:
        if n.op == "layer" and n.inputs and all(d is not None for d in checked.graph.node(n.inputs[0]).out.shape):
            fixed.add(n.name)
    return frozenset(fixed)


def _mask_resize_unsupported(layer: str):
    """A padding mask whose length a layer changes (Conv1D, 1-D pooling, Upsample over a
    padded sequence) is computed with Python integers, which a trace would freeze."""
    def resize_mask(self, mask):
        raise MaskNotExportable(layer)
    return resize_mask


# ---------------------------------------------------------------- inputs
def example_inputs(checked, batch: int, steps: int = 7, seed: int = 0, padded: bool = True):
    """Random batch-first inputs in nnspec's layout; `?` dimensions get `steps`. Token ids are
    in [1, vocab) and, when `padded`, each row after a random length holds the padding id."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for name in checked.graph.inputs:
        t = checked.graph.node(name).out
        shape = [batch] + [steps if d is None else d for d in t.shape]
        if t.dtype != "int":
            out.append(torch.randn(shape, generator=gen))
            continue
        vocab, pad = _vocab_of(checked, name)
        ids = torch.randint(1 if pad is not None else 0, vocab, shape, generator=gen)
        if padded and pad is not None and len(shape) == 2:
            lengths = torch.randint(1, shape[1] + 1, (batch,), generator=gen)
            lengths[0] = shape[1]  # one full row, so the longest length is seen
            ids = ids.masked_fill(torch.arange(shape[1])[None, :] >= lengths[:, None], pad)
        out.append(ids)
    return tuple(out)


def _vocab_of(checked, input_name: str) -> tuple[int, int | None]:
    """The vocabulary size and padding id of the Embedding reading an integer input."""
    for n in checked.graph.nodes:
        if n.kind == "Embedding" and input_name in n.inputs:
            return int(n.args["vocab"]), n.args.get("padding_idx")
    return 2, None


def dynamic_axes(checked) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name in checked.graph.inputs:
        t = checked.graph.node(name).out
        dims = {0: "batch"}
        for i, d in enumerate(t.shape):
            if d is None:
                dims[i + 1] = "steps" if len(t.shape) == 2 and i == 0 else f"{name}_dim{i + 1}"
        axes[name] = dims
    out = checked.graph.output_node
    dims = {0: "batch"}
    if out is not None and out.out is not None:
        for i, d in enumerate(out.out.shape):
            if d is None:
                dims[i + 1] = "steps" if len(out.out.shape) == 2 and i == 0 else f"output_dim{i + 1}"
    axes[OUTPUT_NAME] = dims
    return axes


# ---------------------------------------------------------------- export
def build_eval_model(checked, seed: int | None = None):
    import torch

    from .torch_model import build_model

    torch.manual_seed(checked.train.get("seed", 0) if seed is None else seed)
    return build_model(checked).eval()


def export(checked, source: str, path: str | Path, model=None, filename: str | None = None) -> dict[str, Any]:
    """Write the ONNX file, check it and compare it with PyTorch. Returns the measured diffs.
    `filename`: the spec's file, for errors that name a layer."""
    onnx = require("onnx")
    path = Path(path)
    model = build_eval_model(checked) if model is None else model.eval()
    proto = build_proto(checked, source, model, filename)
    from ..fsutil import atomic_path

    # Checked and verified in a temporary file that replaces `path` only then: a full disk, an
    # unwritable folder or a failed check leaves no 0-byte or half file, and an old one intact.
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp), full_check=True)
        diffs = verify(checked, model, tmp)
    return {"path": str(path), "max_abs_diff": diffs}


def build_proto(checked, source: str, model, filename: str | None = None):
    """The eval-mode `model` as an ONNX ModelProto, tidied for reading (onnx_tidy) and carrying
    the spec's name and source in its metadata; not yet checked or verified."""
    onnx = require("onnx")
    require("onnxscript")  # which torch.onnx.export imports itself in some PyTorch versions
    require("onnxruntime")  # for verify(): say so before the export, not after it
    import torch

    from . import onnx_tidy

    names = list(model.input_names)
    args = example_inputs(checked, batch=2)
    buffer = io.BytesIO()
    # Not under no_grad: that would send the transformer layers down PyTorch's fused fast path
    # (aten::_transformer_encoder_layer_fwd), which has no ONNX form.
    with export_friendly(model, fixed_size_layers(checked)), _layer_scopes(checked), warnings.catch_warnings(), \
            _quiet_fds() as log:
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, args, buffer, dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes(checked),
                              do_constant_folding=True, training=torch.onnx.TrainingMode.PRESERVE)
        except Exception as exc:  # the exporter's own failure, said with the layer it happened in
            failure = exc
        else:
            failure = None
    if isinstance(failure, MaskNotExportable):
        node = checked.graph.node(failure.layer)
        raise UserError(f"layer '{node.name}' ({node.kind}) changes the length of a padded sequence; its "
                        "padding mask cannot be exported to ONNX yet", where=_where(node, filename),
                        help="give the input a fixed length (no padding_idx), or use --emit python")
    if failure is not None:
        raise _unsupported(checked, failure, log.read(), filename) from None
    proto = onnx.load_from_string(buffer.getvalue())
    _restore_scope_dots(proto)
    _name_initializers(proto)
    onnx_tidy.tidy(proto, checked)
    proto.graph.name = checked.spec.name
    proto.producer_name = "nnspec"
    proto.doc_string = f"nnspec model {checked.spec.name}"
    add_metadata(proto, {"nnspec.model": checked.spec.name, "nnspec.source": source})
    return proto


def add_metadata(proto, entries: dict[str, str]) -> None:
    """Set metadata_props entries (Netron lists them under the model's properties)."""
    for key, value in entries.items():
        old = [e for e in proto.metadata_props if e.key == key]
        for e in old:
            proto.metadata_props.remove(e)
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _where(node, filename: str | None) -> str:
    """file:line:col of a layer, as every other diagnostic names a place."""
    line, col = node.span.line, node.span.col
    return f"{filename}:{line}:{col}" if filename else f"line {line}, column {col}"


def verify(checked, model, path: Path) -> dict[int, float]:
    """max |onnxruntime - PyTorch| on random inputs at batch 1 and 3 (other `?` lengths than the
    traced one); raises ExportMismatch above TOLERANCE."""
    import numpy as np
    ort = require("onnxruntime")
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = {}
    for batch in (1, 3):
        xs = example_inputs(checked, batch=batch, steps=5 + batch, seed=batch)
        with torch.no_grad():
            expected = model(*xs).numpy()
        try:
            got = session.run(None, {n: x.numpy() for n, x in zip(model.input_names, xs)})[0]
        except Exception as exc:  # e.g. a size the trace froze: say which batch broke it
            raise ExportMismatch(f"onnxruntime cannot run the export at batch {batch}: {exc}") from None
        if got.shape != expected.shape:
            raise ExportMismatch(f"ONNX output shape {got.shape} != PyTorch's {expected.shape} at batch {batch}")
        diffs[batch] = float(np.abs(got - expected).max()) if expected.size else 0.0
        if not diffs[batch] <= TOLERANCE:
            raise ExportMismatch(f"onnxruntime differs from PyTorch by {diffs[batch]:.3g} at batch {batch} "
                                 f"(tolerance {TOLERANCE:g})")
    return diffs


SCOPE_DOT = "__"  # stands for the dots of block layers' names while the exporter names nodes
_RNN_INPUTS = {1: "W", 2: "R", 3: "B"}
_WEIGHT_INPUTS = {1: "weight", 2: "bias"}  # Conv/Gemm weights re-made by the exporter (BatchNorm folded in)


@contextlib.contextmanager
def _layer_scopes(checked):
    """Name the exporter's node scopes after the IR layers, block prefix included.

    The TorchScript exporter names a node after the module that made it, by its last attribute
    name only (`conv2d_1` for `residual_1.conv2d_1`; block containers are never called so they
    add no scope). For the export, layer modules are given their whole name (dots spelled
    SCOPE_DOT, put back afterwards)."""
    import torch
    from torch.onnx._internal.torchscript_exporter import utils

    layers = {n.name for n in checked.graph.nodes if n.op == "layer"}
    original = utils._setup_trace_module_map

    def setup(model, export_modules_as_functions):
        result = original(model, export_modules_as_functions)
        table = torch.jit._trace._trace_module_map
        for name, module in model.named_modules():
            if name in layers and table is not None:
                table[module] = torch._C._jit_onnx_create_full_scope_name(
                    torch.typename(type(module)), name.replace(".", SCOPE_DOT))
        return result

    utils._setup_trace_module_map = setup
    try:
        yield
    finally:
        utils._setup_trace_module_map = original


def _restore_scope_dots(proto) -> None:
    """Node names and the exporter's value names (`/residual_1__conv2d_1/Conv_output_0`) get
    their dots back; names the user gave (inputs) are left alone."""
    def fix(name: str) -> str:
        return name.replace(SCOPE_DOT, ".") if name.startswith("/") else name

    for node in proto.graph.node:
        node.name = fix(node.name)
        for i, name in enumerate(node.input):
            node.input[i] = fix(name)
        for i, name in enumerate(node.output):
            node.output[i] = fix(name)
    for value in list(proto.graph.value_info) + list(proto.graph.output):
        value.name = fix(value.name)


def _name_initializers(proto) -> None:
    """Give the exporter's anonymous initializers (`onnx::LSTM_186`) their layer's name."""
    inits = {i.name: i for i in proto.graph.initializer}
    renames: dict[str, str] = {}
    for node in proto.graph.node:
        layer = _layer_of(node.name)
        for pos, name in enumerate(node.input):
            if name in inits and name.startswith("onnx::") and name not in renames and layer:
                if node.op_type in ("LSTM", "GRU", "RNN"):
                    suffix = _RNN_INPUTS.get(pos, f"input{pos}")
                elif node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
                    suffix = _WEIGHT_INPUTS.get(pos, f"input{pos}")
                else:
                    suffix = f"{node.op_type}_{pos}"
                candidate = f"{layer}.{suffix}"
                n = 1
                while candidate in inits or candidate in renames.values():
                    n += 1
                    candidate = f"{layer}.{suffix}_{n}"
                renames[name] = candidate
    for init in proto.graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def _layer_of(node_name: str) -> str:
    """`/residual_1/conv2d_1/Conv` -> `residual_1.conv2d_1`; the exporter names nodes by module path."""
    return ".".join([p for p in node_name.split("/") if p][:-1])


@contextlib.contextmanager
def _quiet_fds():
    """Capture what the exporter prints, Python and C++ alike (it dumps its whole graph to
    stderr on failure); yields a file holding it."""
    import os
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    log = tempfile.TemporaryFile(mode="w+")
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield log
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.seek(0)


def _unsupported(checked, exc: Exception, log: str = "", filename: str | None = None) -> UserError:
    """Name the layer the export failed in: from the message, else from the graph dump's
    `scope:` of the line using the operator the message names."""
    text = str(exc)
    op = re.search(r"operator '([\w:.]+)'", text)
    where = text
    if op:
        where += "\n" + "\n".join(line for line in log.splitlines() if op.group(1) + "(" in line)
    layer = None
    for n in sorted(checked.graph.nodes, key=lambda n: -len(n.name)):
        if n.op == "layer" and re.search(rf"(?<![\w.]){re.escape(n.name)}(?![\w])", where):
            layer = n
            break
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    if layer is not None:
        return UserError(f"layer '{layer.name}' ({layer.kind}) cannot be exported to ONNX: {first}",
                         where=_where(layer, filename),
                         help="export the PyTorch source instead: nnspec compile FILE --emit python")
    return UserError(f"the model cannot be exported to ONNX: {first}",
                     help="export the PyTorch source instead: nnspec compile FILE --emit python")


# ---------------------------------------------------------------- cli glue
def default_path(result, output: str | None) -> Path:
    if output:
        return Path(output)
    return Path(result.filename).with_suffix(".onnx")


def emit(result, output: str | None) -> None:
    """`nnspec compile FILE --emit onnx [-o model.onnx]`."""
    import click

    path = default_path(result, output)
    info = export(result.checked, result.source, path, filename=result.filename)
    d = info["max_abs_diff"]
    click.echo(f"wrote {path} (opset {OPSET}; onnxruntime vs PyTorch max abs diff {d[1]:.1e} at batch 1, "
               f"{d[3]:.1e} at batch 3)")


def serve_netron(result, port: int, browse: bool, out_dir: str | None = None, block: bool = True,
                 port_given: bool = True, make_file=None):
    """Export the ONNX and serve it with Netron on 127.0.0.1; prints the URL. `make_file`: a
    function that writes the ONNX file to serve and returns its path (a trained run's export),
    instead of exporting `result` beside the spec or in `out_dir`.

    A port in use is refused with a message naming it when it was asked for (`port_given`);
    otherwise (the default port) Netron gets a free port from the system instead."""
    import click

    netron = require("netron")
    for name in ("onnx", "onnxscript", "onnxruntime"):  # the `netron` extra brings these too
        require(name, "netron", "`nnspec viz --netron`")
    notes = []
    # Netron logs its own "Serving ..." and "Stopping ..." (twice: in wait() and stop()); nnspec says each once
    logging.getLogger("netron").setLevel(logging.WARNING)
    problem = _port_problem(port)
    if problem is not None:  # before the export, which takes seconds
        if port_given or problem.errno != errno.EADDRINUSE:
            raise _port_error(port, problem)
        notes.append(f"port {port} on {LOCALHOST} is in use; serving on a free port instead")
        port = 0
    if out_dir:
        from ..fsutil import make_dir

        make_dir(out_dir)
    if make_file is not None:
        path = Path(make_file())
    else:
        folder = Path(out_dir) if out_dir else Path(result.filename).parent
        path = folder / (Path(result.filename).stem + ".onnx")
        export(result.checked, result.source, path, filename=result.filename)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            address = netron.serve(str(path), None, address=(LOCALHOST, port), browse=browse)
    except OSError as err:  # taken between the check above and now
        if port_given or port == 0 or err.errno != errno.EADDRINUSE:
            raise _port_error(port, err) from None
        notes.append(f"port {port} on {LOCALHOST} is in use; serving on a free port instead")
        with contextlib.redirect_stdout(io.StringIO()):
            address = netron.serve(str(path), None, address=(LOCALHOST, 0), browse=browse)
    host, bound = address if isinstance(address, tuple) else (LOCALHOST, port)
    click.echo(f"wrote {path}")
    for note in notes:
        click.echo(f"note: {note}")
    click.echo(f"Netron is serving {path.name} at http://{host}:{bound}/  (Ctrl+C to stop)", nl=True)
    if block:
        try:
            netron.wait()
        except KeyboardInterrupt:
            pass
        finally:
            netron.stop(address)
            click.echo(f"Stopping Netron at http://{host}:{bound}/")
    return address


LOCALHOST = "127.0.0.1"  # Netron is never served to the network


def _port_problem(port: int) -> OSError | None:
    """Why Netron could not listen on LOCALHOST:port (in use, not allowed), or None. Port 0 is any free port."""
    import socket

    if port == 0:
        return None
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Netron's server does
        probe.bind((LOCALHOST, port))
    except OSError as err:
        return err
    finally:
        probe.close()
    return None


def _port_error(port: int, err: OSError) -> UserError:
    if err.errno == errno.EADDRINUSE:
        return UserError(f"cannot serve Netron on {LOCALHOST}:{port}: the port is in use (by another program, "
                         "or another `nnspec viz --netron`)",
                         help="choose another port with --port N, or --port 0 for any free port")
    if err.errno in (errno.EACCES, errno.EPERM):
        return UserError(f"cannot serve Netron on {LOCALHOST}:{port}: permission denied (ports below 1024 need "
                         "administrator rights)", help="choose a port above 1024 with --port N, or --port 0 for any free port")
    return UserError(f"cannot serve Netron on {LOCALHOST}:{port}: {err.strerror or err}",
                     help="choose another port with --port N, or --port 0 for any free port")
