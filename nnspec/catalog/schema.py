"""Parameter schemas and argument binding, shared by every catalog entry.

A `Param` states a name, a type, a default (or REQUIRED), bounds and enum values. `bind`
turns a call's written arguments into validated Python values, reporting every problem as
a Diagnostic that quotes what was received (Keras's habit: "Received: units=-3").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .. import ir
from ..diagnostics import Sink, Span, suggest
from . import spellings


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

def bound_text(x: float) -> str:
    """A bound as written: 4294967295, not 4.29497e+09; 0.9, not 0.900000."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


@dataclass(frozen=True)
class Param:
    name: str
    # int, float, bool, str, enum, int|enum (either: padding = valid | same | 2), ints, activation,
    # layer, name, any
    type: str
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""
    min_exclusive: bool = False
    # for values bounds cannot state (a CSV delimiter is one character): value -> what it must be, or None
    validate: Callable[[Any], str | None] | None = field(default=None, compare=False, repr=False)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        kind = {"int|enum": f"int or one of {', '.join(self.choices)}",
                "enum": f"one of {', '.join(self.choices)}", "ints": "int or list of ints"}.get(self.type, self.type)
        bounds = []
        if self.min is not None:
            bounds.append(f"{'>' if self.min_exclusive else '>='} {bound_text(self.min)}")
        if self.max is not None:
            bounds.append(f"<= {bound_text(self.max)}")
        return kind + (f" ({', '.join(bounds)})" if bounds else "")


@dataclass(frozen=True)
class Bound:
    values: Mapping[str, Any]
    searched: Mapping[str, ir.Space] = field(default_factory=dict)
    spans: Mapping[str, Span] = field(default_factory=dict)


def literal(expr: ir.Expr, searched: dict, key: str) -> Any:
    """A written value as Python: numbers, strings, bools, names (str), lists, calls (kept).

    A search space stands for its default value; it is recorded in `searched`.
    """
    if isinstance(expr, ir.Space):
        searched[key] = expr
        return literal(expr.default, {}, key)
    if isinstance(expr, (ir.Num, ir.Str, ir.Bool)):
        return expr.value
    if isinstance(expr, ir.Ident):
        return expr.name
    if isinstance(expr, ir.Dotted):
        return expr.name
    if isinstance(expr, ir.ListExpr):
        return [literal(i, searched, key) for i in expr.items]
    if isinstance(expr, ir.Group):
        return literal(expr.inner, searched, key)
    return expr  # calls and graph expressions are interpreted by the parameter's type


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int):
        return "an int"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a name"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, ir.Call):
        return f"a call of {value.name}"
    return "an expression"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ir.Call):
        return f"{value.name}(...)"
    operator = {ir.Chain: "... -> ...", ir.Add: "... + ...", ir.Mul: "... * ...", ir.Neg: "-(...)"}
    if type(value) in operator:  # never the dataclass repr of an expression tree
        return operator[type(value)]
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:60] + "..." + text[-10:]


def coerce(param: Param, value: Any, where: str, span: Span, sink: Sink, expr: ir.Expr | None = None) -> Any:
    """Check one value against its parameter; return the value to use (or None on error)."""
    t = param.type
    got = f"Received: {param.name}={_shown(value)}"
    if t == "any":
        return value
    if isinstance(expr, ir.Str) and t not in ("str", "activation", "layer"):
        sink.error("E107", f"`{param.name}` of {where} must be {param.describe()}, not a string. "
                   f"Received: {param.name}=\"{value}\"", span, help="only file paths and column names are quoted; "
                   "write the value without quotes")
        return None
    if t == "str":
        if isinstance(expr, ir.Str) or (isinstance(value, str) and not isinstance(expr, ir.Ident)):
            problem = param.validate(value) if param.validate is not None else None
            if problem is not None:
                sink.error("E108", f"`{param.name}` of {where} must be {problem}. {got}", span)
                return None
            return value
        return _type_error(param, value, where, span, sink, 'a string in double quotes', got)
    if t in ("enum", "name"):
        if isinstance(value, str) and not isinstance(expr, ir.Str):
            if t == "enum" and value not in param.choices:
                sink.error("E109", f"`{param.name}` of {where} must be one of {', '.join(param.choices)}. {got}",
                           span, help=suggest(value, param.choices) or f"use one of {', '.join(param.choices)}")
                return None
            return value
        return _type_error(param, value, where, span, sink, param.describe(), got)
    if t == "int|enum":
        if isinstance(value, str) and not isinstance(expr, ir.Str):
            return coerce(Param(param.name, "enum", choices=param.choices), value, where, span, sink, expr)
        return coerce(Param(param.name, "int", min=param.min, max=param.max), value, where, span, sink, expr)
    if t == "ints":
        items = value if isinstance(value, list) else [value]
        checked = [coerce(Param(param.name, "int", min=param.min, max=param.max), v, where, span, sink) for v in items]
        if any(c is None for c in checked) or not checked:
            if not checked:
                sink.error("E107", f"`{param.name}` of {where} must not be empty", span)
            return None
        result = checked if isinstance(value, list) else checked[0]
        problem = param.validate(result) if param.validate is not None else None
        if problem is not None:  # a shape bounds cannot state: `size` is exactly [H, W]
            sink.error("E108", f"`{param.name}` of {where} must be {problem}. {got}", span)
            return None
        return result
    if t == "bool":
        if isinstance(value, bool):
            return value
        return _type_error(param, value, where, span, sink, "true or false", got)
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return _type_error(param, value, where, span, sink, "a whole number", got,
                                   help=f"write {int(value)} without the decimal point")
            return _type_error(param, value, where, span, sink, "a whole number", got)
        return _range(param, value, where, span, sink, got)
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _type_error(param, value, where, span, sink, "a number", got)
        return _range(param, float(value), where, span, sink, got)
    return value  # "activation" and "layer" are resolved by the checker


def _type_error(param: Param, value: Any, where: str, span: Span, sink: Sink, expected: str, got: str,
                help: str | None = None) -> None:
    sink.error("E107", f"`{param.name}` of {where} must be {expected}, not {_type_name(value)}. {got}",
               span, help=help)
    return None


def _range(param: Param, value, where: str, span: Span, sink: Sink, got: str):
    low_bad = param.min is not None and (value <= param.min if param.min_exclusive else value < param.min)
    high_bad = param.max is not None and value > param.max
    if low_bad or high_bad:
        sink.error("E108", f"`{param.name}` of {where} is out of range: it must be {param.describe()}. {got}",
                   span)
        return None
    return value


def bind(params: Sequence[Param], call: ir.Call, where: str, sink: Sink,
         resolve: Callable[[ir.Expr], ir.Expr] = lambda e: e) -> Bound:
    """Match a call's arguments to a schema, filling defaults; report every problem."""
    by_name = {p.name: p for p in params}
    written: dict[str, tuple[ir.Expr, Span]] = {}
    positional = [a for a in call.args if a.name is None]
    if len(positional) > len(params):
        extra = positional[len(params)]
        most = f"at most {len(params)} positional argument{'s' if len(params) != 1 else ''}" if params else "no arguments"
        sink.error("E110", f"{where} takes {most}; received {len(positional)}", extra.span,
                   help=f"its parameters are: {', '.join(p.name for p in params)}" if params
                   else f"write {call.name} without arguments")
    for param, arg in zip(params, positional):
        written[param.name] = (resolve(arg.value), arg.span)
    stand_ins: list[tuple[str, ir.Arg]] = []  # (meant parameter, misspelled argument)
    for arg in call.args:
        if arg.name is None:
            continue
        if arg.name not in by_name:
            suggestion = suggest(arg.name, by_name)
            meant = spellings.intended(arg.name, by_name, suggestion)
            hint = (spellings.hint(arg.name, meant, f"{meant}={_shown(literal(arg.value, {}, meant))}") if meant else suggestion) or (
                f"its parameters are: {', '.join(by_name)}" if by_name else f"{where} takes no arguments")
            sink.error("E105", f"{where} has no argument `{arg.name}`", arg.span, help=hint)
            if meant:
                stand_ins.append((meant, arg))
            continue
        if arg.name in written:
            sink.error("E111", f"argument `{arg.name}` of {where} is given twice", arg.span)
            continue
        written[arg.name] = (resolve(arg.value), arg.span)
    for meant, arg in stand_ins:  # checked as meant: one mistake, one error (no E106 for `meant`)
        written.setdefault(meant, (resolve(arg.value), arg.span))
    values: dict[str, Any] = {}
    searched: dict[str, ir.Space] = {}
    spans: dict[str, Span] = {}
    for param in params:
        if param.name in written:
            expr, sp = written[param.name]
            raw = literal(expr, searched, param.name)
            shown_expr = expr.default if isinstance(expr, ir.Space) else expr
            values[param.name] = coerce(param, raw, where, sp, sink, shown_expr)
            spans[param.name] = sp
            if isinstance(expr, ir.Space):  # every choice or bound must be valid, not only the default
                for option in expr.options[1:]:
                    coerce(param, literal(option, {}, param.name), where, option.span, sink, option)
        elif param.required:
            sink.error("E106", f"{where} is missing its required argument `{param.name}` ({param.describe()})",
                       call.span, help=f"write e.g. {call.name}({param.name}=...)")
            values[param.name] = None
        else:
            values[param.name] = param.default
    return Bound(values, searched, spans)
