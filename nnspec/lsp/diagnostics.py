"""The checker's diagnostics as LSP diagnostics: severity, code, message with its help line,
and notes as related information (at the line a note names, else at the diagnostic itself)."""
from __future__ import annotations

import re

from lsprotocol import types

from ..diagnostics import Diagnostic, Span
from .convert import span_range

SOURCE = "nnspec"
_NOTE_LINE = re.compile(r"\bline (\d+)\b")


def to_lsp(diags, uri: str, lines: list[str]) -> list[types.Diagnostic]:
    return [_one(d, uri, lines) for d in diags]


def _one(d: Diagnostic, uri: str, lines: list[str]) -> types.Diagnostic:
    message = d.message + (f"\nhelp: {d.help}" if d.help else "")
    severity = types.DiagnosticSeverity.Error if d.is_error else types.DiagnosticSeverity.Warning
    return types.Diagnostic(range=span_range(d.span), message=message, severity=severity, code=d.code,
                            source=SOURCE, code_description=None,
                            related_information=[_related(note, d.span, uri, lines) for note in d.notes] or None)


def _related(note: str, span: Span, uri: str, lines: list[str]) -> types.DiagnosticRelatedInformation:
    """A note such as "the first definition is at line 4" points at that line's text."""
    m = _NOTE_LINE.search(note)
    target = span
    if m and 1 <= int(m.group(1)) <= len(lines):
        n = int(m.group(1))
        text = lines[n - 1]
        indent = len(text) - len(text.lstrip())
        target = Span(n, indent + 1, n, max(len(text), indent + 1) + 1)
    return types.DiagnosticRelatedInformation(location=types.Location(uri=uri, range=span_range(target)),
                                              message=note)
