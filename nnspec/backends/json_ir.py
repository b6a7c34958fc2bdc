"""The checked IR with inferred shapes, as JSON-ready data (`nnspec compile --emit json`)."""
from __future__ import annotations

from typing import Any

from .. import ir
from ..checked import Checked
from .summary import totals


def _value(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_value(i) for i in v]
    if isinstance(v, dict):
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, ir.Call):
        return {"call": v.name, "args": {a.name or str(i): expr_json(a.value) for i, a in enumerate(v.args)}}
    return expr_json(v)


def expr_json(e: Any) -> Any:
    """A spec-IR expression as JSON: a literal's value, a name, a list, a search space or a call."""
    if isinstance(e, (ir.Num, ir.Str, ir.Bool)):
        return e.value
    if isinstance(e, (ir.Ident, ir.Dotted)):
        return e.name
    if isinstance(e, ir.ListExpr):
        return [expr_json(i) for i in e.items]
    if isinstance(e, ir.Space):
        return space(e)
    if isinstance(e, ir.Call):
        return _value(e)
    return str(type(e).__name__)


def space(s: ir.Space) -> dict[str, Any]:
    return {"search": s.kind, "options": [expr_json(o) for o in s.options], "label": s.label,
            "line": s.span.line, "col": s.span.col}


def node(n: ir.Node) -> dict[str, Any]:
    frozen = {} if n.trainable else {"trainable": False}  # only when frozen: the IR hash of other specs stays
    return {
        "name": n.name, "op": n.op, "kind": n.kind,
        "args": {k: _value(v) for k, v in sorted(n.args.items())},
        "inputs": list(n.inputs),
        "output": None if n.out is None else {"shape": list(n.out.shape), "dtype": n.out.dtype},
        "params": n.params, "non_trainable": n.non_trainable,
        "scope": list(n.scope), "alias": n.alias,
        "searched": {k: space(s) for k, s in sorted(n.searched.items())}, **frozen,
        "span": {"line": n.span.line, "col": n.span.col, "end_line": n.span.end_line, "end_col": n.span.end_col},
    }


def as_json(checked: Checked) -> dict[str, Any]:
    spec = checked.spec
    task = checked.task
    return {
        "model": spec.name,
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in spec.inputs],
        "output": checked.graph.output,
        "nodes": [node(n) for n in checked.graph.nodes],
        "task": None if task is None else {"kind": task.kind, "classes": task.classes,
                                           "output_activation": task.output_activation},
        "loss": [{"weight": w, "loss": name, "args": _value(dict(args))} for w, name, args in checked.loss],
        "optimizer": None if checked.optimizer is None else {"name": checked.optimizer[0], "args": _value(dict(checked.optimizer[1]))},
        "metrics": [{"name": m, "args": _value(dict(a))} for m, a in checked.metrics],
        "train": _value(dict(checked.train)),
        "search": _value(dict(checked.search)),
        "params": totals(checked),
        **({"adversarial": _value(dict(checked.adversarial))} if checked.networks else {}),  # a GAN's pairing
    }
