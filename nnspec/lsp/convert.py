"""nnspec Spans (1-based, end column exclusive) as LSP ranges (0-based)."""
from __future__ import annotations

from lsprotocol import types

from ..diagnostics import Span


def position(line: int, col: int) -> types.Position:
    return types.Position(line=max(line - 1, 0), character=max(col - 1, 0))


def span_range(span: Span) -> types.Range:
    if span.line == 0:  # a diagnostic about the whole file: its first character
        return types.Range(start=position(1, 1), end=position(1, 2))
    return types.Range(start=position(span.line, span.col), end=position(span.end_line, span.end_col))


def word_range(line: int, start: int, end: int) -> types.Range:
    """A 0-based line and 0-based columns as a Range."""
    return types.Range(start=types.Position(line=line, character=start),
                       end=types.Position(line=line, character=end))
