"""E123: an `images(...)` data source must fit the model's one image input (catalog/images.py says how)."""
from __future__ import annotations

from .. import ir
from ..catalog.images import image_source_problem
from ..diagnostics import Sink


def check_image_source(spec: ir.Spec, graph: ir.Graph, train: dict, sink: Sink) -> None:
    source = train.get("data")
    if not source or source[0] != "images":
        return
    nodes = [graph.node(n) for n in graph.inputs]
    if any(n is None or n.out is None for n in nodes):
        return  # an input already reported as wrong
    problem = image_source_problem(source[1], [(n.name, tuple(n.out.shape), n.out.dtype) for n in nodes])
    if problem is not None:
        setting = spec.train_setting("data")
        sink.error("E123", problem[0], setting.span if setting else spec.span, help=problem[1])
