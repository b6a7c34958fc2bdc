"""The checker: names, arguments, shape inference and cross-checks over a spec IR.

It elaborates the spec into the graph IR (blocks and repetitions expanded, every layer
instance with a unique readable name and an inferred output type) and collects ALL
diagnostics in one pass; it never stops at the first problem and never imports torch.

- elaborate.py: the layers section into the graph (expansion.py counts it first: E209);
- sections.py: loss and task, metrics, optimizer, train/search settings, data sources;
- budget.py: memory and size limits (E307, W307, W113);
- common.py: what they share.
`check_spec` runs them in that order and returns the `Checked` result (nnspec/checked.py).
"""
from __future__ import annotations

import bisect
import itertools

from .. import ir
from ..catalog.settings import SEARCH_SETTINGS, TRAIN_SETTINGS
from ..checked import Checked, Task
from ..diagnostics import Diagnostic, Sink, Span
from ..memory import MAX_PARAM_BYTES, MAX_TRAIN_BYTES, count_text, memory_text  # noqa: F401 (re-exported)
from .adversarial import check_adversarial, is_adversarial
from .augment import check_augment, check_target
from .budget import MAX_ELEMENTS, check_data_size, check_memory
from .images import check_image_source
from .common import MAX_BLOCK_DEPTH, MAX_REPEAT, header_span, snake
from .elaborate import Elaborator
from .expansion import LEVELS_PER_NODE, MAX_GRAPH_NODES, RECURSIVE_STEPS, Expansion, expansion_text
from .sections import (check_cross, check_loss, check_metrics, check_optimizer, check_settings, data_source,
                       data_sources, schedules)
from .text_source import check_text_source

_Expansion = Expansion  # the name tests/test_fuzz.py patches (check._Expansion.plan)

__all__ = ["Checked", "Task", "check_spec", "data_source", "data_sources", "schedules", "header_span", "snake",
           "Elaborator", "Expansion", "expansion_text", "MAX_GRAPH_NODES", "MAX_REPEAT", "MAX_BLOCK_DEPTH",
           "MAX_ELEMENTS", "LEVELS_PER_NODE", "RECURSIVE_STEPS", "MAX_PARAM_BYTES", "MAX_TRAIN_BYTES",
           "count_text", "memory_text"]


def check_spec(spec: ir.Spec, sink: Sink) -> Checked:
    if is_adversarial(spec):  # `network`s paired by `adversarial { }`: a GAN (check/adversarial.py)
        return check_adversarial(spec, sink, MAX_GRAPH_NODES)
    graph = Elaborator(spec, sink, MAX_GRAPH_NODES).run()  # this module's limit, read now (tests lower it)
    train = check_settings(spec.train, TRAIN_SETTINGS, "train", sink)
    loss, task = check_loss(spec, graph, sink, reconstructs=train.get("target") == "input")
    metrics = check_metrics(spec, task, sink)
    optimizer = check_optimizer(spec, graph, sink)
    search = check_settings(spec.search, SEARCH_SETTINGS, "search", sink)
    check_cross(task, train, spec, sink)
    check_text_source(spec, graph, train, sink)  # E129-E131
    check_augment(spec, graph, train, sink)  # E118, E119
    check_target(spec, graph, task, train, sink)  # E120
    check_image_source(spec, graph, train, sink)  # E123
    check_memory(train, graph, spec, sink)  # E307 / W307
    check_data_size(train, graph, spec, sink)  # W113: synthetic data beyond this machine's memory
    return Checked(spec, graph, task, loss, optimizer, metrics, train, search, _without_cascades(sink.sorted()))


def _without_cascades(diags: list[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Drop value errors about a search space that is itself reported as malformed (E404):
    the stand-in value lowering gave it (`choice()` -> 0) is not the user's."""
    bad = sorted(((d.span.line, d.span.col), (d.span.end_line, d.span.end_col)) for d in diags if d.code == "E404")
    if not bad:
        return tuple(diags)
    starts = [start for start, _ in bad]
    furthest = list(itertools.accumulate((end for _, end in bad), max))  # of the spaces starting up to here

    def covered(sp: Span) -> bool:  # by an E404's span: one starting at or before it, ending at or after it
        i = bisect.bisect_right(starts, (sp.line, sp.col))
        return i > 0 and furthest[i - 1] >= (sp.end_line, sp.end_col)
    return tuple(d for d in diags if not (d.code in ("E107", "E108", "E109") and covered(d.span)))
