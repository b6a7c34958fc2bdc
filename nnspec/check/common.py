"""What the checker's parts share: its limits, where a diagnostic about the whole model points,
and how an expression of the layers section is read (a tensor or an operation, its operands,
the expressions inside it)."""
from __future__ import annotations

import functools
import re

from .. import catalog, ir
from ..diagnostics import Span

MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 256  # blocks using blocks; 200-deep nesting must check


def header_span(spec: ir.Spec, keyword: str = "model") -> Span:
    """`model NAME` (`network NAME`): where diagnostics about the whole model point (not the whole body)."""
    sp = spec.span
    return Span(sp.line, sp.col, sp.line, sp.col + len(keyword) + 1 + len(spec.name))


@functools.lru_cache(maxsize=1024)  # a few dozen kinds (and block names), asked for once per node
def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


def tensor_like(e: ir.Expr, env) -> bool:
    """Whether `e` stands for a tensor (a name in `env`, the tensor names defined so far; a sum;
    concat(...); activation(tensor); a chain or group starting with one) rather than an operation."""
    if isinstance(e, ir.Ident):
        return e.name in env
    if isinstance(e, ir.Add):
        return True
    if isinstance(e, ir.Call):
        if e.name == "concat":
            return True
        first = e.positional[:1]
        return e.name in catalog.activations and bool(first) and tensor_like(first[0], env)
    if isinstance(e, ir.Chain):
        return tensor_like(e.items[0], env)
    if isinstance(e, ir.Group):
        return tensor_like(e.inner, env)
    return False


def first_item(e: ir.Expr) -> ir.Expr:
    return e.items[0] if isinstance(e, ir.Chain) else e


def operands(e: ir.Expr) -> tuple:
    """The tensors a sum, concat(...) or activation(tensor) combines."""
    if isinstance(e, ir.Add):
        return e.terms
    if isinstance(e, ir.Call) and e.name == "concat":
        return tuple(a.value for a in e.args)
    if isinstance(e, ir.Call):
        return e.positional[:1]
    return ()


def names_in(expr: ir.Expr) -> set[str]:
    """Every bare name and called name in an expression (tensors, blocks, layers)."""
    return {e.name for e in subexpressions(expr) if isinstance(e, (ir.Ident, ir.Call))}


def subexpressions(expr: ir.Expr) -> list[ir.Expr]:
    """An expression and every expression inside it, in source order."""
    found: list[ir.Expr] = []
    todo: list = [expr]
    while todo:
        e = todo.pop()
        found.append(e)
        if isinstance(e, ir.Call):
            todo.extend(a.value for a in e.args)
        elif isinstance(e, (ir.Chain, ir.ListExpr)):
            todo.extend(e.items)
        elif isinstance(e, ir.Add):
            todo.extend(e.terms)
        elif isinstance(e, ir.Mul):
            todo.extend((e.left, e.right))
        elif isinstance(e, ir.Group):
            todo.append(e.inner)
        elif isinstance(e, ir.Space):
            todo.extend(e.options)
        elif isinstance(e, ir.Neg):
            todo.append(e.value)
    return sorted(found, key=lambda e: (e.span.line, e.span.col))


def has_activation(entry: catalog.LayerEntry, call: ir.Call) -> bool:
    """Whether a layer call gives an activation (which the elaborator makes a second node)."""
    if entry.name == "Bidirectional":
        return True
    if not entry.activation_param:
        return False
    if any(a.name == "activation" for a in call.args):
        return True
    names = [p.name for p in entry.params]
    return "activation" in names and len(call.positional) > names.index("activation")


def show(expr: ir.Expr) -> str:
    if isinstance(expr, ir.Ident):
        return expr.name
    if isinstance(expr, ir.Num):
        return str(expr.value)
    if isinstance(expr, ir.Call):
        return f"{expr.name}(...)"
    if isinstance(expr, ir.Space):
        return f"{expr.kind}(...)"
    if isinstance(expr, ir.Str):
        return f'"{expr.value}"'
    return type(expr).__name__.lower()
