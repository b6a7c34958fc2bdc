"""One document's checked state, kept per URI: the latest result, and the latest spec that
parsed (so that outline and go-to-definition still work while the text has a syntax error)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from .. import ir
from ..pipeline import Result, check_text

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Analysis:
    text: str
    result: Result
    spec: ir.Spec | None  # the last spec that parsed, perhaps of an older text

    @cached_property
    def lines(self) -> list[str]:  # split once per document version: a request reads it several times
        return self.text.split("\n")


def analyze(text: str, filename: str, previous: Analysis | None = None) -> Analysis:
    result = check_text(text, filename)
    spec = result.checked.spec if result.checked is not None else (previous.spec if previous else None)
    return Analysis(text, result, spec)


def word_at(lines: list[str], line: int, character: int) -> tuple[str, int, int] | None:
    """The identifier under a 0-based (line, character): (word, start, end) with 0-based columns."""
    if not 0 <= line < len(lines):
        return None
    for m in WORD.finditer(lines[line]):
        if m.start() <= character <= m.end():
            return m.group(), m.start(), m.end()
    return None


def contains(span, line: int, col: int) -> bool:
    """Whether a 1-based (line, col) lies in a Span (end column exclusive, but the cursor just
    after a word still counts as on it)."""
    if (line, col) < (span.line, span.col):
        return False
    return (line, col) <= (span.end_line, span.end_col)


def specs_of(spec: ir.Spec) -> list[ir.Spec]:
    """The model and each of its `network`s (a GAN), each with its own inputs, blocks and layers."""
    return [spec, *spec.networks]
