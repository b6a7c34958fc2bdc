"""The outline: the model (and each `network`), its inputs, blocks with their named tensors,
the layers section with its named tensors, and the loss/optimizer/metrics/train sections."""
from __future__ import annotations

from lsprotocol import types

from .. import ir
from ..diagnostics import Span
from .convert import span_range

K = types.SymbolKind


def symbols(spec: ir.Spec | None) -> list[types.DocumentSymbol]:
    return [] if spec is None else [_spec(spec, "model", K.Class)]


def _spec(spec: ir.Spec, what: str, kind) -> types.DocumentSymbol:
    children = [_sym(i.name, K.Variable, i.span, "input " + _shape(i)) for i in spec.inputs]
    children += [_sym(b.name, K.Function, b.span, f"block({', '.join(b.params)})", _named(b.body)) for b in spec.blocks]
    children += [_spec(n, "network", K.Module) for n in spec.networks]
    for name, span in spec.sections.items():
        if name in ("input", "block", "network"):
            continue
        kids = _named(spec.layers) if name == "layers" else []
        whole = _section_span(spec, name, span)
        children.append(_sym(name, K.Namespace, whole, "section", kids, selection=span))
    return _sym(spec.name, kind, spec.span, what, children)


def _section_span(spec: ir.Spec, name: str, head: Span) -> Span:
    """A section's extent: from its keyword to the end of what it holds, as far as the IR says."""
    inner = {"layers": [s.span for s in spec.layers], "loss": [t.span for t in spec.loss],
             "optimizer": [spec.optimizer.span] if spec.optimizer else [], "metrics": [m.span for m in spec.metrics],
             "train": [s.span for s in spec.train], "search": [s.span for s in spec.search],
             "adversarial": [s.span for s in spec.adversarial]}.get(name, [])
    end = max(((s.end_line, s.end_col) for s in inner if s.line), default=(head.end_line, head.end_col))
    end = max(end, (head.end_line, head.end_col))
    return Span(head.line, head.col, *end)


def _named(stmts) -> list[types.DocumentSymbol]:
    return [_sym(st.target, K.Variable, st.span, "tensor") for st in stmts if st.target]


def _shape(i: ir.Input) -> str:
    return str(ir.TensorType(i.shape, i.dtype))


def _sym(name: str, kind, span: Span, detail: str, children=None, selection: Span | None = None) -> types.DocumentSymbol:
    whole = span_range(span)
    sel = span_range(selection) if selection is not None else whole
    return types.DocumentSymbol(name=name, kind=kind, range=whole, selection_range=sel, detail=detail,
                                children=children or None)
