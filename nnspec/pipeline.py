"""The front door: source text -> parse -> lower -> check, with every diagnostic collected."""
from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .check import Checked, check_spec
from .diagnostics import Diagnostic, Sink, Span, SpecError, UserError, error, render_all
from .lower import lower
from .parse import decode, parse_text


@dataclass(frozen=True)
class Result:
    filename: str
    source: str
    checked: Checked | None  # None when the spec did not parse
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    def render(self) -> str:
        return render_all(self.diagnostics, self.filename, self.source)


def check_text(text: str, filename: str = "<spec>") -> Result:
    with _gc_paused():
        return _check_text(text, filename)


@contextmanager
def _gc_paused():
    """The front end allocates many small objects (tree, IR, graph) and frees none of them
    midway; the collector's full passes over them made big specs superlinear (a 10,000-node
    spec: +30 % CPU). Collect after the work, not during it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_text(text: str, filename: str) -> Result:
    try:
        parsed = parse_text(text)
    except SpecError as err:
        return Result(filename, text, None, err.diagnostics)
    sink = Sink()
    try:
        with _deep_stack():
            spec = lower(parsed.tree, sink)
            checked = check_spec(spec, sink)
    except RecursionError:  # nesting (brackets, blocks calling blocks) deeper than even the raised limit
        return Result(filename, text, None, (error(
            "E004", "the spec nests too deeply to check (brackets, or blocks that use blocks)",
            Span.point(1, 1), help="flatten the nesting"),))
    return Result(filename, text, checked, checked.diagnostics)


@contextmanager
def _deep_stack(limit: int = 20_000):
    """Lowering and checking recurse once per nesting level (a few frames per bracket or block
    use); 200-deep nesting needs more than Python's default 1000 frames. Python 3.11 frames of
    pure-Python calls live on the heap, so a higher limit is safe."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def read_source(path: str | Path) -> tuple[str | None, Result | None]:
    """Read a spec file; a binary or non-UTF-8 file is a Result with its diagnostic."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such file: {p}", help="check the path") from None
    except IsADirectoryError:
        raise UserError(f"{p} is a directory, not a spec file") from None
    except PermissionError:
        raise UserError(f"cannot read {p}: permission denied") from None
    text, diag = decode(data)
    if diag is not None:
        shown = "" if b"\x00" in data else data.decode("utf-8", "replace")  # never echo binary to a terminal
        return None, Result(str(path), shown, None, (diag,))
    return text, None


def check_file(path: str | Path) -> Result:
    text, failed = read_source(path)
    if failed is not None:
        return failed
    return check_text(text, str(path))


def load_checked(path: str | Path) -> Result:
    """Check a file and raise SpecError (with the rendered diagnostics) unless it is valid."""
    result = check_file(path)
    if not result.ok:
        raise SpecError(result.diagnostics)
    return result
