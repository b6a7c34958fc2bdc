"""Diagnostics are data: a severity, a code, a message, a span, notes and a help line.

Every phase reports problems by creating `Diagnostic`s; one renderer turns them into
`file:line:col: error[E###]: message`, the source line, carets under the span, and `help:`.
"""
from __future__ import annotations

import contextvars
import difflib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Sequence

MAX_SHOWN = 100  # diagnostics `render_all` prints; the rest are counted in one last line
MAX_LINE_SHOWN = 200  # characters of a source line shown; a longer line is an excerpt around the span
SUGGEST_FREE_POOL = 100  # `suggest` always searches a pool this small (the catalog's lists are)
SUGGEST_BUDGET = 300_000  # names that larger pools (tensors, blocks) may cost in one check


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


def first_line(exc: BaseException, limit: int | None = 200) -> str:
    """An exception's first line for a message (a library's may run to pages), or its type's name
    when it says nothing."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


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


_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("nnspec_suggest_budget", default=None)


@contextmanager
def suggestion_budget(names: int = SUGGEST_BUDGET):
    """Within it, `suggest` compares at most `names` candidates from pools larger than
    SUGGEST_FREE_POOL, then suggests nothing from them: thousands of mistyped names among thousands
    of tensor names would otherwise cost time quadratic in the spec's size."""
    token = _budget.set([names])
    try:
        yield
    finally:
        _budget.reset(token)


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """`did you mean 'X'?` for the closest candidate, case-insensitively, or None."""
    budget = _budget.get()
    if budget is not None:
        if not hasattr(candidates, "__len__"):
            candidates = list(candidates)
        size = len(candidates)  # type: ignore[arg-type]
        if size > SUGGEST_FREE_POOL:
            if budget[0] < size:
                return None
            budget[0] -= size
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


def _excerpt(text: str, span: Span) -> tuple[str, str]:
    """The source line and its carets; a line longer than MAX_LINE_SHOWN is cut to an excerpt of
    that many characters around the start of the span, `...` marking each cut."""
    if len(text) <= MAX_LINE_SHOWN:
        return text, _caret_line(text, span)
    start = max(span.col - 1, 0)
    lo = max(0, min(start - MAX_LINE_SHOWN // 4, len(text) - MAX_LINE_SHOWN))
    hi = lo + MAX_LINE_SHOWN
    head, tail = ("..." if lo > 0 else ""), ("..." if hi < len(text) else "")
    end = span.end_col - 1 if span.end_line == span.line and span.end_col > span.col else len(text.rstrip())
    local = Span(span.line, start - lo + 1 + len(head), span.line, min(end, hi) - lo + 1 + len(head))
    shown = head + text[lo:hi] + tail
    return shown, _caret_line(shown, local)


def render(diag: Diagnostic, filename: str, source: str, lines: Sequence[str] | None = None) -> str:
    """Render one diagnostic the way compilers do; `lines`: the source already split (render_all)."""
    loc = f"{filename}:{diag.span.line}:{diag.span.col}" if diag.span.line else filename
    out = [f"{loc}: {diag.severity}[{diag.code}]: {diag.message}"]
    if lines is None:
        lines = source.split("\n")  # as the lexer counts lines: not at form feeds or other separators
    if 1 <= diag.span.line <= len(lines):
        text, carets = _excerpt(lines[diag.span.line - 1].rstrip("\r"), diag.span)
        gutter = str(diag.span.line)
        pad = " " * len(gutter)
        out.append(f"{pad} |")
        out.append(f"{gutter} | {text}")
        out.append(f"{pad} | {carets}")
    for note in diag.notes:
        out.append(f"  = note: {note}")
    if diag.help:
        out.append(f"  = help: {diag.help}")
    return "\n".join(out)


def render_all(diags: Iterable[Diagnostic], filename: str, source: str, limit: int | None = MAX_SHOWN) -> str:
    """Every diagnostic rendered, the source split once; past `limit` (None: no limit), the first
    `limit` by position -- errors before warnings -- and a last line counting the rest."""
    diags = list(diags)
    lines = source.split("\n")
    shown = diags
    if limit is not None and len(diags) > limit:
        errors = [d for d in diags if d.is_error]
        keep = set(map(id, (errors + [d for d in diags if not d.is_error])[:limit]))
        shown = [d for d in diags if id(d) in keep]
    text = "\n\n".join(render(d, filename, source, lines) for d in shown)
    if len(shown) < len(diags):
        text += "\n\n" + _more(diags, shown, filename)
    return text


def _more(diags: list[Diagnostic], shown: list[Diagnostic], filename: str) -> str:
    errors = sum(d.is_error for d in diags) - sum(d.is_error for d in shown)
    warnings = len(diags) - len(shown) - errors
    said = [f"{n:,} more {what}{'s' if n != 1 else ''}" for n, what in ((errors, "error"), (warnings, "warning")) if n]
    return (f"{filename}: ... and {' and '.join(said)} not shown ({len(diags):,} in all; "
            f"`nnspec check --format json` lists every one)")


def sort_key(diag: Diagnostic) -> tuple:
    return (diag.span.line, diag.span.col, diag.code)


@dataclass
class Sink:
    """Collects diagnostics from a phase; phases never stop at the first problem.

    Adding is O(1) (indexes, not scans of `items`); change `items` through `add` and `truncate`.
    A direct edit that changes its length is noticed and the indexes are rebuilt."""

    items: list[Diagnostic] = field(default_factory=list)
    _copies: dict = field(default_factory=dict, repr=False, compare=False)  # diagnostic -> copies in items
    _keys: dict = field(default_factory=dict, repr=False, compare=False)  # (code, message, span) -> copies
    _indexed: int = field(default=-1, repr=False, compare=False)  # len(items) the indexes describe

    def _index(self) -> None:
        if self._indexed != len(self.items):
            self._copies.clear()
            self._keys.clear()
            for d in self.items:
                self._count(d, 1)
            self._indexed = len(self.items)

    def _count(self, diag: Diagnostic, n: int) -> None:
        self._copies[diag] = self._copies.get(diag, 0) + n
        key = (diag.code, diag.message, diag.span)
        self._keys[key] = self._keys.get(key, 0) + n

    def add(self, diag: Diagnostic) -> None:
        self._index()
        if self._copies.get(diag):
            return
        self.items.append(diag)
        self._count(diag, 1)
        self._indexed += 1

    def has_like(self, diag: Diagnostic) -> bool:
        """Whether a diagnostic with the same code, message and span (notes aside) is collected."""
        self._index()
        return bool(self._keys.get((diag.code, diag.message, diag.span)))

    def truncate(self, mark: int) -> list[Diagnostic]:
        """Remove and return the diagnostics collected since `len(items)` was `mark`."""
        self._index()
        cut = self.items[mark:]
        del self.items[mark:]
        for d in cut:
            self._count(d, -1)
        self._indexed = len(self.items)
        return cut

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
