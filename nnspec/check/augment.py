"""The `augment` and `target` train settings: bound against the catalog, then checked against the
model's inputs and output (E117-E120).

- `augment [random_crop(padding=1), rotate(10), gaussian_noise(0.05), flip_horizontal]`: each item
  an augmentation of catalog/augmentations.py with its arguments (E117 for anything else); each
  must apply to every input of the model (E118: spatial ones to float images [C, H, W] of known
  size, gaussian_noise to any float input, none to integer token ids), and spatial ones cannot
  move the pixels of per-pixel labels that stay put (E119).
- `target input`: the output learns to reproduce the one float input, value for value (E120).
"""
from __future__ import annotations

from .. import catalog, ir
from ..catalog.augmentations import AUGMENTATIONS, IMAGE
from ..catalog.base import rank_name
from ..catalog.schema import bind
from ..catalog.targets import reads_inputs
from ..checked import Task
from ..diagnostics import Sink, suggest

augmentations = catalog.Registry("augmentation", AUGMENTATIONS)
EXAMPLE = "augment [random_crop(padding=1), rotate(10), gaussian_noise(0.05), flip_horizontal]"


def _items(expr: ir.Expr) -> tuple[ir.Expr, ...]:
    return expr.items if isinstance(expr, ir.ListExpr) else (expr,)


def _as_call(item: ir.Expr) -> ir.Call | None:
    if isinstance(item, ir.Ident):
        return ir.Call(item.name, (), item.span, item.span)
    return item if isinstance(item, ir.Call) else None


def augment_setting(expr: ir.Expr, sink: Sink) -> tuple[tuple[str, dict], ...] | None:
    """`augment [...]` -> ((name, arguments), ...) in the order written (applied in that order)."""
    out = []
    for item in _items(expr):
        call = _as_call(item)
        if call is None:
            sink.error("E117", "expected an augmentation (a name or a call)", item.span, help=f"e.g. `{EXAMPLE}`")
            continue
        entry = augmentations.get(call.name)
        if entry is None:
            sink.error("E117", f"unknown augmentation '{call.name}'", call.name_span,
                       help=suggest(call.name, augmentations.spellings)
                       or f"augmentations: {', '.join(augmentations.spellings)}")
            continue
        out.append((entry.name, dict(bind(entry.params, call, f"augmentation {entry.name}", sink).values)))
    return tuple(out)


def check_augment(spec: ir.Spec, graph: ir.Graph, train: dict, sink: Sink) -> None:
    """Each augmentation applies to every input (E118); spatial ones need labels that do not
    stay put pixel by pixel (E119)."""
    setting = spec.train_setting("augment")
    if setting is None or len(setting.values) != 1 or not train.get("augment"):
        return
    inputs = [(name, graph.node(name).out) for name in graph.inputs if graph.node(name).out is not None]
    out = graph.output_node.out if graph.output_node is not None else None
    for item in _items(setting.values[0]):
        call = _as_call(item)
        entry = augmentations.get(call.name) if call is not None else None
        if entry is None:
            continue  # E117, reported
        for name, t in inputs:
            problem = _not_applicable(entry, t)
            if problem:
                sink.error("E118", f"augmentation {entry.name} {problem}; input '{name}' is {_described(t)}",
                           call.span, help=_applies_help(entry))
                break
        else:
            if IMAGE in entry.traits and out is not None and len(out.shape) == 3 and train.get("target") != "input":
                sink.error("E119", f"augmentation {entry.name} moves the input's pixels, but the labels are per pixel "
                           f"(output {out}) and would stay where they are", call.span,
                           help="augment with gaussian_noise only, or train without augment")


def _not_applicable(entry, t: ir.TensorType) -> str | None:
    if t.dtype == "int":
        return "changes float values, not integer token ids"
    if IMAGE not in entry.traits:
        return None
    if len(t.shape) != 3:
        return "moves the pixels of an image [C, H, W]"
    if None in t.shape[1:]:
        return "needs an image of known height and width"
    return None


def _described(t: ir.TensorType) -> str:
    return f"integer token ids {t}" if t.dtype == "int" else f"{t} ({rank_name(t)})"


def _applies_help(entry) -> str:
    if IMAGE in entry.traits:
        return "spatial augmentations apply to float images [C, H, W]; gaussian_noise applies to any float input"
    return "augmentations apply to float inputs; integer token ids take none"


def check_target(spec: ir.Spec, graph: ir.Graph, task: Task | None, train: dict, sink: Sink) -> None:
    """`target input`: one float input, a regression loss, an output with as many values as the input."""
    setting = spec.train_setting("target")
    if setting is None or train.get("target") != "input":
        return
    span = setting.span
    if len(graph.inputs) != 1:
        sink.error("E120", f"`target input` needs a model with one input; this one has {len(graph.inputs)} "
                   f"({', '.join(graph.inputs)})", span, help="reproduce one input, or train on labels")
        return
    t = graph.node(graph.inputs[0]).out
    out = graph.output_node.out if graph.output_node is not None else None
    if t is None or out is None:
        return
    if t.dtype == "int":
        sink.error("E120", f"`target input` reproduces float values; input '{graph.inputs[0]}' is integer token ids {t}",
                   span, help="train a model of token ids on labels, or give it a float input")
        return
    if task is not None and task.kind != "regression":
        sink.error("E120", f"`target input` compares the output with the input's values, which needs a regression "
                   f"loss; this model's loss makes it a {task.kind} classifier", span,
                   help="use `loss mse` (or mae, huber) and an output without softmax")
        return
    data = train.get("data")
    if data is not None and not reads_inputs(data[0]):
        where = spec.train_setting("data")
        sink.error("E120", f"`target input` cannot read data source {data[0]}: it reads sklearn.*, synthetic, "
                   "csv(...) and npz(...)", where.values[0].span if where and where.values else span,
                   help="give the inputs as csv(\"file.csv\") or npz(\"file.npz\")")
    have, want = _values(out.shape), _values(t.shape)
    if have is not None and want is not None and have != want:
        sink.error("E120", f"`target input`: the output {out} has {have} values per example; the input {t} has {want}",
                   span, help=f"end the decoder with {want} values, e.g. Dense({want}) and Reshape to the input's shape")


def _values(shape: tuple) -> int | None:
    if None in shape:
        return None
    n = 1
    for d in shape:
        n *= d
    return n
