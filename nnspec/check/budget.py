"""The memory budget and size limits the checker reports: an activation no device can hold
(E307), the model's memory for one training step against any device and this machine (E307,
W307: memory.memory_problem, the decision `nnspec train` takes again for its real batch and
device) and synthetic data beyond this machine's memory (W113)."""
from __future__ import annotations

from .. import ir, memory
from ..diagnostics import Diagnostic, Sink, Span
from ..memory import count_text, memory_text, synthetic_bytes
from ..runconfig import batch_value
from .common import header_span

MAX_ELEMENTS = 2**31  # a single activation larger than this cannot be trained on one device


def check_elements(t: ir.TensorType, span: Span, what: str, sink: Sink) -> None:
    """E307: one example's output of a layer (or an input) beyond MAX_ELEMENTS elements."""
    n = t.numel
    if n is not None and n > MAX_ELEMENTS:
        sink.error("E307", f"{what} has {count_text(n)} elements per example: it would need "
                   f"{memory_text(n * 4)} of memory in float32 for a batch of one",
                   span, help="reduce the sizes; nothing this large fits in a device's memory")


def check_memory(train: dict, graph: ir.Graph, spec: ir.Spec, sink: Sink) -> None:
    """E307 for what no single device holds, W307 for more than this machine's memory: the one
    decision, memory.memory_problem, that `nnspec train` takes again (and refuses either) for the
    batch and the device it really uses. A model with a loss is counted for one training step."""
    batch = None
    if spec.loss:  # `full` (the data's size is not known here): one example, a lower bound
        batch = batch_value(train.get("batch_size")) or 1
    problem = memory.memory_problem(graph, batch, memory.machine_memory())
    if problem is None:
        return
    st = spec.train_setting("batch_size")
    if problem.code == "E307":
        span = header_span(spec) if problem.what == "weights" or st is None else st.span
    elif problem.what == "training" and st is not None:
        span = st.span
    else:  # the layer with the most parameters, else the layers section
        biggest = max((n for n in graph.nodes if n.params), key=lambda n: n.params, default=None)
        where = spec.sections.get("layers")
        span = biggest.span if biggest is not None and problem.what == "weights" else \
            Span(where.line, where.col, where.line, where.col + len("layers")) if where else header_span(spec)
    sink.add(Diagnostic("error" if problem.code == "E307" else "warning", problem.code, problem.message, span,
                        (), problem.help))


def check_data_size(train: dict, graph, spec, sink) -> None:
    """`nnspec check`: warn (W113) when the spec's synthetic data would not fit in this machine's
    memory; `nnspec train` then refuses it with the numbers, before allocating anything."""
    source = train.get("data")
    if not source or source[0] != "synthetic":
        return
    n = source[1].get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return
    nodes = [graph.node(name) for name in graph.inputs]
    if graph.output_node is None or graph.output_node.out is None or any(nd.out is None for nd in nodes):
        return
    outputs = 1
    for d in graph.output_node.out.shape:
        outputs *= d or 1
    need = synthetic_bytes([(nd.out.shape, nd.out.dtype) for nd in nodes], outputs, n)
    total = memory.machine_memory()
    if total is None or need <= total:
        return
    setting = spec.train_setting("data")
    span = setting.span if setting is not None else spec.span
    call = setting.values[0] if setting is not None and setting.values else None
    for i, arg in enumerate(getattr(call, "args", ())):
        if arg.name == "n" or (arg.name is None and i == 0):
            span = arg.span
    sink.warning("W113", f"synthetic(n={n}) would make {memory_text(need)} of data; this machine has "
                 f"{memory_text(total)} of memory, so `nnspec train` will refuse it here",
                 span, help="use a smaller n: synthetic data is made whole, in memory")
