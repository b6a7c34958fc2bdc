"""Hover: on a layer or activation, its output shape and parameter count as the checker computed
them (every use of it when it sits in a block used several times) and the catalog's documentation;
on a block, a named tensor or an input, what it is; on any catalog name, its documentation."""
from __future__ import annotations

from lsprotocol import types

from .. import ir
from .analysis import Analysis, contains, specs_of, word_at
from .catalog_text import lookup, markdown
from .convert import span_range, word_range


def hover(a: Analysis, line: int, character: int) -> types.Hover | None:
    found = word_at(a.lines, line, character)
    if found is None:
        return None
    word, start, end = found
    checked = a.result.checked
    if checked is not None:
        nodes = _nodes_at(checked.graph, line + 1, start + 1)
        if nodes:
            return types.Hover(contents=_markup(_node_text(nodes)), range=span_range(nodes[0].span))
    text = _named_text(a.spec, word, checked) if a.spec is not None else None
    if text is None:
        entry = lookup(word)
        text = markdown(entry) if entry else None
    return types.Hover(contents=_markup(text), range=word_range(line, start, end)) if text else None


def _markup(text: str) -> types.MarkupContent:
    return types.MarkupContent(kind=types.MarkupKind.Markdown, value=text)


def _nodes_at(graph: ir.Graph, line: int, col: int) -> list[ir.Node]:
    """The graph nodes written at the cursor: those whose span starts with the word under it
    (a layer's call, an activation), every instance of it when a block is used several times."""
    hits = [n for n in graph.nodes if n.op != "input" and n.span.line == line and contains(n.span, line, col)]
    if not hits:
        return []
    start = max((n.span.line, n.span.col) for n in hits)  # the innermost: the one that starts last
    return [n for n in hits if (n.span.line, n.span.col) == start]


def _node_text(nodes: list[ir.Node]) -> str:
    first = nodes[0]
    shapes = sorted({str(n.out) for n in nodes if n.out is not None})
    params = sorted({n.params for n in nodes})
    head = f"**{first.kind}** → `{' | '.join(shapes) or '?'}` · {' | '.join(f'{p:,}' for p in params)} parameters"
    parts = [head]
    if len(nodes) > 1:
        parts.append(f"{len(nodes)} uses: " + ", ".join(f"`{n.name}`" for n in nodes[:8])
                     + (" …" if len(nodes) > 8 else "") + f" ({sum(n.params for n in nodes):,} parameters in all)")
    if any(not n.trainable for n in nodes):
        parts.append("frozen (`trainable=false`)")
    entry = lookup(first.kind, ("layer", "activation"))
    if entry is not None:
        parts.append(markdown(entry))
    return "\n\n".join(parts)


def _named_text(spec: ir.Spec, word: str, checked) -> str | None:
    for s in specs_of(spec):
        block = next((b for b in s.blocks if b.name == word), None)
        if block is not None:
            return f"```nnspec\nblock {block.name}({', '.join(block.params)})\n```\n\n*block* defined at line {block.span.line}"
        inp = next((i for i in s.inputs if i.name == word), None)
        if inp is not None:
            return f"**{word}**: input `{ir.TensorType(inp.shape, inp.dtype)}`"
    if checked is not None:
        named = [n for n in checked.graph.nodes if n.alias == word and n.out is not None]
        if named:
            shapes = sorted({str(n.out) for n in named})
            return f"**{word}**: tensor `{' | '.join(shapes)}`"
    return None
