"""Diagnostics are data: a severity, a code, a message, a span, notes and a help line.

Every phase reports problems by creating `Diagnostic`s; one renderer turns them into
`file:line:col: error[E###]: message`, the source line, carets under the span, and `help:`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Span:
    """A region of source text; lines and columns are 1-based, `end_col` is exclusive."""

    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def point(line: int, col: int) -> "Span":
        return Span(line, col, line, col + 1)

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


NO_SPAN = Span(0, 0, 0, 0)


@dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" | "warning"
    code: str
    message: str
    span: Span = NO_SPAN
    notes: tuple[str, ...] = ()
    help: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def error(code: str, message: str, span: Span = NO_SPAN, help: str | None = None,
          notes: Sequence[str] = ()) -> Diagnostic:
    return Diagnostic("error", code, message, span, tuple(notes), help)


def warning(code: str, message: str, span: Span = NO_SPAN, help: str | None = None,
            notes: Sequence[str] = ()) -> Diagnostic:
    return Diagnostic("warning", code, message, span, tuple(notes), help)


class SpecError(Exception):
    """Raised by a phase that cannot go on; carries every diagnostic collected so far."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("; ".join(d.message for d in self.diagnostics))


class UserError(Exception):
    """A problem with something the user gave (data file, flag, checkpoint) outside a spec.

    Rendered as `error: message` plus an optional `where` prefix and `help:` line; never a
    traceback.
    """

    def __init__(self, message: str, *, where: str | None = None, help: str | None = None,
                 code: str = "E900"):
        self.message = message
        self.where = where
        self.help = help
        self.code = code
        super().__init__(message)

    def render(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        text = f"{prefix}error[{self.code}]: {self.message}"
        if self.help:
            text += f"\n  = help: {self.help}"
        return text


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """`did you mean 'X'?` for the closest candidate, case-insensitively, or None."""
    lowered: dict[str, str] = {}
    for c in candidates:  # the first spelling given wins: a canonical name before its aliases
        lowered.setdefault(c.lower(), c)
    if name.lower() in lowered and lowered[name.lower()] != name:
        return f"did you mean '{lowered[name.lower()]}'?"
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return f"did you mean '{lowered[close[0]]}'?"
    return None


def _caret_line(source_line: str, span: Span) -> str:
    start = max(span.col - 1, 0)
    if span.end_line == span.line and span.end_col > span.col:
        width = span.end_col - span.col
    else:
        width = max(len(source_line.rstrip()) - start, 1)
    prefix = "".join(ch if ch == "\t" else " " for ch in source_line[:start])
    return prefix + "^" * max(width, 1)


def render(diag: Diagnostic, filename: str, source: str) -> str:
    """Render one diagnostic the way compilers do."""
    loc = f"{filename}:{diag.span.line}:{diag.span.col}" if diag.span.line else filename
    out = [f"{loc}: {diag.severity}[{diag.code}]: {diag.message}"]
    lines = source.split("\n")  # as the lexer counts lines: not at form feeds or other separators
    if 1 <= diag.span.line <= len(lines):
        text = lines[diag.span.line - 1].rstrip("\r")
        gutter = str(diag.span.line)
        pad = " " * len(gutter)
        out.append(f"{pad} |")
        out.append(f"{gutter} | {text}")
        out.append(f"{pad} | {_caret_line(text, diag.span)}")
    for note in diag.notes:
        out.append(f"  = note: {note}")
    if diag.help:
        out.append(f"  = help: {diag.help}")
    return "\n".join(out)


def render_all(diags: Iterable[Diagnostic], filename: str, source: str) -> str:
    return "\n\n".join(render(d, filename, source) for d in diags)


def sort_key(diag: Diagnostic) -> tuple:
    return (diag.span.line, diag.span.col, diag.code)


@dataclass
class Sink:
    """Collects diagnostics from a phase; phases never stop at the first problem."""

    items: list[Diagnostic] = field(default_factory=list)
    _seen: set = field(default_factory=set, repr=False, compare=False)

    def add(self, diag: Diagnostic) -> None:
        # The set keeps thousands of diagnostics linear; the list scan (only for one seen before)
        # stays exact when a phase edits `items` directly.
        if diag in self._seen and diag in self.items:
            return
        self._seen.add(diag)
        self.items.append(diag)

    def error(self, code: str, message: str, span: Span = NO_SPAN, help: str | None = None,
              notes: Sequence[str] = ()) -> None:
        self.add(error(code, message, span, help, notes))

    def warning(self, code: str, message: str, span: Span = NO_SPAN, help: str | None = None,
                notes: Sequence[str] = ()) -> None:
        self.add(warning(code, message, span, help, notes))

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=sort_key)
