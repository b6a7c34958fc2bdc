"""The sections after the layers: loss (and the task it implies), metrics, optimizer, the train
and search settings, data sources and schedules, and the checks across them."""
from __future__ import annotations

from typing import Any

from .. import catalog, ir
from ..catalog.base import feature_axis
from ..catalog import spellings
from ..catalog.schema import Param, bind, coerce, literal
from ..catalog.settings import DATA_SOURCES, SCHEDULES
from ..checked import Task, output_activation
from ..diagnostics import Sink, suggest
from .augment import augment_setting
from .common import header_span

data_sources = catalog.Registry("data source", DATA_SOURCES)
schedules = catalog.Registry("schedule", SCHEDULES)


def check_loss(spec: ir.Spec, graph: ir.Graph, sink: Sink, reconstructs: bool = False) -> tuple[tuple, Task | None]:
    """The loss terms and the task they make. `reconstructs` (`target input`): the targets are the
    input's own values, so a loss that fits any output (mse, mae, ...) is regression whatever the
    output activation (a sigmoid decoder of pixels in [0, 1] is not a binary classifier)."""
    terms = []
    for term in spec.loss:
        entry = catalog.losses.get(term.loss.name)
        if entry is None:
            sink.error("E102", f"unknown loss '{term.loss.name}'", term.loss.name_span,
                       help=suggest(term.loss.name, catalog.losses.spellings) or
                       f"known losses: {', '.join(e.name for e in catalog.losses)}")
            continue
        bound = bind(entry.params, term.loss, entry.name, sink)
        terms.append((term.weight, entry, bound.values, term))
    if not spec.loss and "loss" not in spec.sections:
        sink.warning("W012", "the model has no `loss`: it can be checked and drawn, not trained",
                     header_span(spec), help="add e.g. `loss categorical_crossentropy`")
    out = graph.output_node
    if not terms or out is None or out.out is None:
        return tuple((w, e.name, v) for w, e, v, _ in terms), None
    task = None
    for weight, entry, _, term in terms:
        t = _task_for(entry, out, graph, term, sink, reconstructs)
        task = task or t
    return tuple((w, e.name, v) for w, e, v, _ in terms), task


def _task_for(entry, out: ir.Node, graph: ir.Graph, term: ir.LossTerm, sink: Sink,
              reconstructs: bool = False) -> Task | None:
    shape = out.out.shape
    act = output_activation(graph)
    feat = shape[feature_axis(len(shape))] if shape else None
    traits = entry.traits
    sp = term.loss.span
    if "distribution" in traits and act != "softmax":
        sink.error("E400", f"{entry.name} compares probability distributions; the output ends in {act or 'no activation'}",
                   sp, help="end the network with `-> softmax`")
        return None
    if "multiclass" in traits:
        if act in ("sigmoid", "step", "sign", "tanh", "scaled_tanh"):
            sink.error("E400", f"{entry.name} needs class scores (softmax or logits); the output ends in {act}", sp,
                       help="end with `-> softmax` (or no activation), or use binary_crossentropy for a sigmoid output")
            return None
        if feat is not None and feat < 2:
            sink.error("E400", f"{entry.name} needs at least 2 classes; the output {out.out} has {feat}", sp,
                       help="use binary_crossentropy with `Dense(1) -> sigmoid` for two classes")
            return None
        return Task("multiclass", feat, act)
    if "binary" in traits:
        if act == "softmax" and feat is not None and feat > 1:
            sink.error("E400", f"{entry.name} expects independent probabilities in [0, 1]; the output is a {feat}-way softmax",
                       sp, help="use categorical_crossentropy for one-of-N classes, or end with `-> sigmoid`")
            return None
        if act not in ("sigmoid", "step"):
            sink.error("E400", f"{entry.name} expects a sigmoid output in [0, 1]; the output ends in {act or 'no activation'}",
                       sp, help="end the network with `-> sigmoid`")
            return None
        return Task("binary", feat, act)
    return Task("regression" if reconstructs else task_of_activation(act), feat, act)


def task_of_activation(act: str | None) -> str:
    """The task of a loss that fits any output (mse, mae, huber, cosine_similarity): the output
    activation decides, one rule for all of them. Probabilities over classes (softmax) are a
    multi-class task, one value in [0, 1] per output (sigmoid, step) a binary one, anything else
    (linear, tanh, relu, scaled_tanh) regression."""
    traits = catalog.activations.get(act).traits if act and act in catalog.activations else frozenset()
    if "probabilities" in traits:
        return "multiclass"
    return "binary" if "unit_interval" in traits else "regression"


def check_metrics(spec: ir.Spec, task: Task | None, sink: Sink) -> tuple:
    out = []
    for call in spec.metrics:
        entry = catalog.metrics.get(call.name)
        if entry is None:
            sink.error("E104", f"unknown metric '{call.name}'", call.name_span,
                       help=suggest(call.name, catalog.metrics.spellings) or
                       f"known metrics: {', '.join(e.name for e in catalog.metrics)}")
            continue
        bound = bind(entry.params, call, entry.name, sink)
        out.append((entry.name, bound.values))
        if task is None:
            continue
        if task.kind not in entry.traits:
            sink.error("E401", f"metric {entry.name} does not apply to a {task.kind} task", call.span,
                       help=_metric_hint(task))
        elif entry.name == "top_k_accuracy" and bound.values.get("k") and task.classes and bound.values["k"] >= task.classes:
            sink.error("E401", f"top_k_accuracy with k={bound.values['k']} is always 1 with {task.classes} classes",
                       call.span, help=f"choose k < {task.classes}")
    return tuple(out)


def _metric_hint(task: Task) -> str:
    fitting = [e.name for e in catalog.metrics if task.kind in e.traits]
    why = ""
    if task.kind != "regression" and task.output_activation in ("sigmoid", "step", "softmax"):
        # the output activation decides the task (task_of_activation): say so, and the way out
        why = (f"; the output ends in {task.output_activation}, which makes it a {task.kind} task "
               "(for regression end in no activation, or scaled_tanh(a, b) for a bounded range)")
    return f"metrics for a {task.kind} task: {', '.join(fitting)}{why}"


def check_optimizer(spec: ir.Spec, graph: ir.Graph, sink: Sink):
    call = spec.optimizer
    if call is None:
        return None
    entry = catalog.optimizers.get(call.name)
    if entry is None:
        sink.error("E103", f"unknown optimizer '{call.name}'", call.name_span,
                   help=suggest(call.name, catalog.optimizers.spellings) or
                   f"known optimizers: {', '.join(e.name for e in catalog.optimizers)}")
        return None
    bound = bind(entry.params, call, entry.name, sink)
    layers = [n for n in graph.nodes if n.op != "input"]
    if "no_gradient" in entry.traits:
        kinds = [n.kind for n in layers]
        already_wrong = any(n.op == "invalid" for n in layers)  # reported; the kinds are not known
        if not already_wrong and (kinds != ["Dense", "step"] or len(graph.inputs) != 1):
            sink.error("E402", "the Perceptron rule trains a single Dense layer followed by `step`; "
                       f"this network has {', '.join(kinds) or 'no layers'}", call.span,
                       help="write `Dense(1) -> step`, or use a gradient optimizer such as SGD or Adam")
    else:
        for n in layers:
            if n.op == "activation" and n.kind in ("step", "sign"):
                sink.warning("W403", f"`{n.kind}` has a zero gradient almost everywhere: {entry.name} cannot train "
                             "the layers before it", n.span,
                             help="use sigmoid or tanh, or the Perceptron optimizer for a single Dense -> step")
    return entry.name, bound.values


def _written(st: ir.Setting) -> str:
    """A setting's one simple value (a number or name) as written, else `...`."""
    value = literal(st.values[0], {}, st.name) if len(st.values) == 1 else None
    return str(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else "..."


def check_settings(settings: tuple[ir.Setting, ...], schema: tuple[Param, ...], section: str,
                    sink: Sink) -> dict[str, Any]:
    by_name = {p.name: p for p in schema}
    values: dict[str, Any] = {p.name: p.default for p in schema}
    seen: set[str] = set()
    for st in settings:
        param = by_name.get(st.name)
        if param is None:
            suggestion = suggest(st.name, by_name)
            meant = spellings.intended(st.name, by_name, None)  # a Keras/PyTorch name says which one
            sink.error("E016", f"unknown {section} setting '{st.name}'", st.span,
                       help=(spellings.hint(st.name, meant, f"`{meant} {_written(st)}`") if meant else suggestion)
                       or f"{section} settings: {', '.join(by_name)}")
            continue
        if st.name in seen:
            sink.error("E010", f"{section} setting '{st.name}' is written twice", st.span)
            continue
        seen.add(st.name)
        if st.name == "objective" and section == "search":  # `adversarial`'s objective is an enum
            values["objective"] = _objective(st, sink)
            continue
        if len(st.values) != 1:
            sink.error("E017", f"{section} setting '{st.name}' takes one value; received {len(st.values)}", st.span,
                       help=f"write e.g. `{st.name} {_example(param)}`")
            continue
        expr = st.values[0]
        reader = _SETTING_READERS.get(st.name)
        if reader is not None:  # a call or list that its own catalog checks, not a literal
            values[st.name] = reader(expr, sink)
            continue
        raw = literal(expr, {}, st.name)
        shown = expr.default if isinstance(expr, ir.Space) else expr
        values[st.name] = coerce(param, raw, f"the {section} section", expr.span, sink, shown)
    return values


def _example(param: Param) -> str:
    return {"int": "10", "float": "0.1", "bool": "true", "enum": param.choices[0] if param.choices else "x",
            "int|enum": "32"}.get(param.type, "...")


def _objective(st: ir.Setting, sink: Sink):
    words = [literal(v, {}, "objective") for v in st.values]
    if len(words) == 1 and isinstance(words[0], str) and words[0] not in ("minimize", "maximize"):
        words = ["minimize" if "loss" in words[0] else "maximize", words[0]]
    if len(words) != 2 or words[0] not in ("minimize", "maximize") or not isinstance(words[1], str):
        sink.error("E017", "objective is `minimize METRIC` or `maximize METRIC`", st.span,
                   help="e.g. `objective maximize val_auc`")
        return None
    return tuple(words)


def data_source(expr: ir.Expr, sink: Sink):
    """A data source as the spec writes it (a name, a call, or a path string), bound against the
    data-source catalog: (name, arguments), or None after an error in the sink."""
    if isinstance(expr, (ir.Dotted, ir.Ident)):
        call = ir.Call(expr.name, (), expr.span, expr.span)
    elif isinstance(expr, ir.Call):
        call = expr
    elif isinstance(expr, ir.Str):
        path = expr.value
        kind = "npz" if path.endswith(".npz") else "csv"
        call = ir.Call(kind, (ir.Arg(None, expr, expr.span),), expr.span, expr.span)
    else:
        sink.error("E112", "expected a data source", expr.span,
                   help="e.g. sklearn.iris, logic.xor, synthetic(n=1000), csv(\"data.csv\", target=\"y\")")
        return None
    entry = data_sources.get(call.name)
    if entry is None:
        sink.error("E112", f"unknown data source '{call.name}'", call.name_span,
                   help=suggest(call.name, data_sources.spellings) or f"known sources: {', '.join(data_sources.spellings)}")
        return None
    bound = bind(entry.params, call, f"data source {entry.name}", sink)
    return entry.name, dict(bound.values)


def _schedule(expr: ir.Expr, sink: Sink):
    call = ir.Call(expr.name, (), expr.span, expr.span) if isinstance(expr, ir.Ident) else expr
    if not isinstance(call, ir.Call) or call.name not in schedules:
        name = getattr(call, "name", "?")
        sink.error("E016", f"unknown learning-rate schedule '{name}'", expr.span,
                   help=suggest(str(name), schedules.spellings) or f"schedules: {', '.join(schedules.spellings)}")
        return None
    entry = schedules.get(call.name)
    return entry.name, dict(bind(entry.params, call, f"schedule {entry.name}", sink).values)


def _class_weights(expr: ir.Expr, sink: Sink):
    value = literal(expr, {}, "class_weights")
    if value == "balanced":
        return "balanced"
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value):
        return [float(v) for v in value]
    sink.error("E017", "class_weights is `balanced` or a list of non-negative weights, one per class", expr.span)
    return None


def check_cross(checked_task: Task | None, train: dict, spec: ir.Spec, sink: Sink) -> None:
    weights = train.get("class_weights")
    if isinstance(weights, list) and checked_task and checked_task.kind == "multiclass" and checked_task.classes \
            and len(weights) != checked_task.classes:
        st = spec.train_setting("class_weights")
        sink.error("E017", f"class_weights has {len(weights)} weights for {checked_task.classes} classes",
                   st.span if st else spec.span)
    if train.get("folds") and train.get("validation"):
        st = spec.train_setting("folds")
        sink.error("E020", f"`folds {train['folds']}` and `validation {train['validation']}` both choose the "
                   "validation rows", st.span if st else spec.span,
                   help=f"keep one: with folds, each of the {train['folds']} runs validates on its own fold")


# The settings whose value is a call or list read by its own reader (bound against its catalog)
_SETTING_READERS = {"data": data_source, "schedule": _schedule, "class_weights": _class_weights,
                    "augment": augment_setting}
