"""Search spaces of a spec: collect them as dimensions, and make a concrete spec from chosen values.

A dimension is one search space *as written*: a space inside a block body is one dimension
however many times the block is used. Concretization substitutes the text of each space by its
chosen value, so the concrete spec keeps the author's comments and layout, and is checked again
by the ordinary pipeline (a combination can be invalid even when the defaults are not).

No optuna and no torch here: `check`, `fmt` and tests use this module on its own.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from . import ir
from .diagnostics import Span, UserError


@dataclass(frozen=True)
class Dimension:
    """One search space of a spec, ready for a sampler.

    name: the space's label (`Dense.units`, `Adam.lr`, `train.batch_size`).
    choices: for `choice`, the values a sampler picks from (numbers, names, strings);
    texts: the source text of each choice option, written back into the spec;
    low/high: the bounds of uniform, loguniform and int_range.
    """

    name: str
    kind: str
    span: Span
    choices: tuple[Any, ...] = ()
    texts: tuple[str, ...] = ()
    low: float | int | None = None
    high: float | int | None = None

    @property
    def default(self) -> Any:
        """The value `check` and `train --defaults` use: the first choice or the lower bound."""
        return self.choices[0] if self.kind == "choice" else self.low

    def text(self, value: Any) -> str:
        """The source text that stands for `value` in a concrete spec."""
        if self.kind == "choice":
            return self.texts[self._index(value)]
        if self.kind == "int_range":
            return str(int(value))
        return repr(round_float(value))

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return any(_same(value, c) for c in self.choices)
        return self.low <= value <= self.high

    def _index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if _same(value, c):
                return i
        raise UserError(f"{value!r} is not one of the choices of {self.name}: "
                        f"{', '.join(map(str, self.choices))}")


def round_float(value: float) -> float:
    """Six significant digits: what a person writes, and what the concrete spec trains with."""
    return float(f"{float(value):.6g}")


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # True is not 1, 1 is not 1.0


# ---------------------------------------------------------------- collection
def spaces_of(spec: ir.Spec) -> list[ir.Space]:
    """Every search space written in the spec, once each, in source order."""
    found: dict[tuple, ir.Space] = {}
    for space in _walk(spec):
        found.setdefault(_span_key(space.span), space)
    return [found[k] for k in sorted(found)]


def _walk(node: Any) -> Iterator[ir.Space]:
    if isinstance(node, ir.Space):
        nested = [s for o in node.options for s in _walk(o)]
        if nested:
            raise UserError(f"a search space inside another one ({nested[0].label} inside {node.label}) "
                            "is not supported", where=_where(nested[0].span),
                            help="write the inner value as a constant, or make separate choices")
        yield node
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from _walk(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type) and not isinstance(node, Span):
        for f in dataclasses.fields(node):
            yield from _walk(getattr(node, f.name))


def _span_key(span: Span) -> tuple[int, int, int, int]:
    return (span.line, span.col, span.end_line, span.end_col)


def _where(span: Span) -> str:
    return f"line {span.line}, column {span.col}"


def dimensions(spec: ir.Spec, source: str) -> list[Dimension]:
    """The search dimensions of a checked spec, with unique names, in source order."""
    dims = [_dimension(space, source) for space in spaces_of(spec)]
    seen: dict[str, int] = {}
    unique = []
    for d in dims:
        seen[d.name] = seen.get(d.name, 0) + 1
        unique.append(d if seen[d.name] == 1 else dataclasses.replace(d, name=f"{d.name}_{seen[d.name]}"))
    return unique


def _dimension(space: ir.Space, source: str) -> Dimension:
    if space.kind == "choice":
        texts = tuple(source_text(source, o.span) for o in space.options)
        values = tuple(_option_value(o, t) for o, t in zip(space.options, texts))
        if len({(type(v), v) for v in values}) != len(values):
            values = texts  # e.g. the name relu and the string "relu": keep them apart by their text
        return Dimension(space.label, "choice", space.span, values, texts)
    low, high = (o.value for o in space.options)
    return Dimension(space.label, space.kind, space.span, low=low, high=high)


def _option_value(option: ir.Expr, text: str) -> Any:
    if isinstance(option, (ir.Num, ir.Str, ir.Bool)):
        return option.value
    if isinstance(option, (ir.Ident, ir.Dotted)):
        return option.name
    return text  # a call such as leaky_relu(0.2): its text is its name


# ---------------------------------------------------------------- source text
def _line_starts(source: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(source):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def _offsets(source: str, span: Span, starts: list[int] | None = None) -> tuple[int, int]:
    starts = starts or _line_starts(source)
    return starts[span.line - 1] + span.col - 1, starts[span.end_line - 1] + span.end_col - 1


def source_text(source: str, span: Span) -> str:
    start, end = _offsets(source, span)
    return source[start:end]


def concretize(source: str, dims: list[Dimension], values: Mapping[str, Any]) -> str:
    """The spec text with every dimension's space replaced by its value (missing ones: the default)."""
    starts = _line_starts(source)
    edits = sorted(((_offsets(source, d.span, starts), d.text(values.get(d.name, d.default))) for d in dims),
                   reverse=True)
    text = source
    for (start, end), replacement in edits:
        text = text[:start] + replacement + text[end:]
    return text


def defaults(dims: list[Dimension]) -> dict[str, Any]:
    return {d.name: d.default for d in dims}


def sample(dims: list[Dimension], rng: random.Random) -> dict[str, Any]:
    """A uniformly random assignment (for tests and quick looks; tuning uses Optuna's samplers)."""
    out: dict[str, Any] = {}
    for d in dims:
        if d.kind == "choice":
            out[d.name] = rng.choice(d.choices)
        elif d.kind == "int_range":
            out[d.name] = rng.randint(int(d.low), int(d.high))
        elif d.kind == "loguniform":
            out[d.name] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
        else:
            out[d.name] = rng.uniform(d.low, d.high)
    return out


def describe(dims: list[Dimension]) -> str:
    """One line per dimension, for the tune command's header."""
    lines = []
    for d in dims:
        what = ", ".join(d.texts) if d.kind == "choice" else f"{d.low} .. {d.high}"
        lines.append(f"  {d.name:<24} {d.kind}({what})")
    return "\n".join(lines)
