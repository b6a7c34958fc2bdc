"""The text(...) data source against the model it feeds (E129-E131): one `int` sequence input,
a `vocab` within the Embedding's, a `max_len` within a fixed input length. The rule is written once,
in catalog/settings.py (text_source_problem); loading applies it to a `--data` source too."""
from __future__ import annotations

from .. import ir
from ..catalog.settings import text_source_problem
from ..diagnostics import Sink


def check_text_source(spec: ir.Spec, graph: ir.Graph, train: dict, sink: Sink) -> None:
    source = train.get("data")
    if not source or source[0] != "text" or any(graph.node(n).out is None for n in graph.inputs):
        return
    inputs = [(n, tuple(graph.node(n).out.shape), graph.node(n).out.dtype) for n in graph.inputs]
    problem = text_source_problem(source[1], inputs, embedding_vocabs(graph))
    if problem is not None:
        code, message, help = problem
        setting = spec.train_setting("data")
        sink.error(code, message, setting.values[0].span if setting else spec.span, help=help)


def embedding_vocabs(graph: ir.Graph) -> dict[str, int]:
    """Input name -> the smallest vocab of the Embeddings reading it."""
    vocabs: dict[str, int] = {}
    for node in graph.nodes:
        if node.kind == "Embedding" and isinstance(node.args.get("vocab"), int):
            for src in node.inputs:
                vocabs[src] = min(vocabs.get(src, node.args["vocab"]), node.args["vocab"])
    return vocabs
