"""The front door: source text -> parse -> lower -> check, with every diagnostic collected; and a
run's settings resolved once (`run_config`) for training, which never comes back here."""
from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runconfig
from .check import Checked, check_spec, data_source
from .diagnostics import Diagnostic, Sink, Span, SpecError, UserError, error, render_all, suggestion_budget
from .lower import lower
from .parse import decode, parse_text, unclosed_brackets
from .runconfig import RunConfig


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

    def run_config(self, **overrides: Any) -> RunConfig:
        """`run_config(self, **overrides)`: so that training, handed a Result, resolves it without
        importing the front end."""
        return run_config(self, **overrides)


def check_text(text: str, filename: str = "<spec>") -> Result:
    with _gc_paused(), suggestion_budget():  # `did you mean` costs at most a fixed number of comparisons
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
        with deep_stack():
            spec = lower(parsed.tree, sink)
            checked = check_spec(spec, sink)
    except RecursionError:  # nesting (brackets, blocks calling blocks) deeper than even the raised limit
        return Result(filename, text, None, (error(
            "E004", "the spec nests too deeply to check (brackets, or blocks that use blocks)",
            Span.point(1, 1), help="flatten the nesting"),))
    return Result(filename, text, checked, checked.diagnostics)


@contextmanager
def deep_stack(limit: int = 20_000):
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


# `--data` is read as the value of a spec's `data` setting: parsed by the spec's grammar and
# bound against the data-source catalog, so the same text means the same thing on the command
# line and in a spec, with the same quoting and the same bounds on every argument.
_DATA_SETTING = "model M { train { data "


def data_option(text: str, option: str = "--data") -> tuple[str, dict]:
    """The (source name, bound arguments) that `text` names, or a UserError located in it.
    A bare `.csv`/`.npz` path may be given unquoted (as a shell user types it); anything else
    is written as in a spec: `sklearn.wine`, `logic.and`, `csv("f.csv", target="y")`."""
    value = text.strip()
    if not value or "\n" in value or "\r" in value:
        raise UserError("expected one data source on one line", where=f"{option} {text!r}", code="E112",
                        help='e.g. --data sklearn.wine, or --data \'csv("data.csv", target="y")\'')
    lowered = value.lower()
    if not any(c in value for c in '("') and lowered.endswith((".csv", ".npz")):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    source = f"{_DATA_SETTING}{value}\n}} }}\n"
    sink = Sink()
    try:
        spec = lower(parse_text(source).tree, sink)
    except SpecError as err:
        diag = err.diagnostics[0]
        if diag.span.line > 1 or diag.span.col > len(_DATA_SETTING) + len(value):  # past the text typed
            unclosed = unclosed_brackets(value)
            diag = error("E005", "the value ends too early" + (
                f": the '{unclosed[-1][0]}' at column {unclosed[-1][2]} is never closed" if unclosed else ""),
                help="write the whole source, e.g. csv(\"f.csv\", target=\"y\")")
        raise _option_error(option, text, diag) from None
    setting = next((st for st in spec.train if st.name == "data"), None)
    if not sink.has_errors and setting is not None and len(setting.values) == 1:
        bound = data_source(setting.values[0], sink)
        if bound is not None and not sink.has_errors:
            return bound
    problem = next((d for d in sink.items if d.is_error), None)
    if problem is None:  # the value is not one expression: `--data "sklearn.iris 5"`
        problem = error("E112", "expected one data source", Span.point(1, len(_DATA_SETTING) + 1),
                        help="give one source, e.g. sklearn.wine or csv(\"f.csv\")")
    raise _option_error(option, text, problem)


def data_override(text: str) -> tuple[tuple[str, dict], str]:
    """`--data` text as the source a run trains on, and where it was written: a path typed there
    is relative to the current folder, not to the spec."""
    name, args = data_option(text)
    if "path" in args:
        args["path"] = str(Path(args["path"]).absolute())
    return (name, args), f"--data {text!r}"


def _option_error(option: str, text: str, diag: Diagnostic) -> UserError:
    """A diagnostic about the wrapped setting, said about the option the user typed."""
    col = diag.span.col - len(_DATA_SETTING) if diag.span.line == 1 else 0
    where = f"{option} {text!r}" + (f", column {col}" if 1 <= col <= len(text) + 1 else "")
    return UserError(diag.message, where=where, help=diag.help, code=diag.code)


# ---------------------------------------------------------------- a run's settings, resolved once
def concrete(result: Result, defaults: bool) -> tuple[Result, list[str]]:
    """The Result to train: refused while it has search spaces, unless `defaults` (then each space's
    default, checked again as text), with the note that says so."""
    from .search import concretize, defaults as default_values, describe, dimensions

    dims = dimensions(result.checked.spec, result.source) if result.checked is not None else []
    if not dims:
        return result, []
    if not defaults:
        raise UserError(f"{result.filename} has {len(dims)} search space(s), so there is no single model to train:\n"
                        + describe(dims),
                        help=f"run `nnspec tune {result.filename}` to search them, or `nnspec train --defaults` "
                             "to train with each space's first choice / lower bound")
    fixed = check_text(concretize(result.source, dims, default_values(dims)), result.filename)
    if not fixed.ok:
        raise UserError(f"the defaults of the search spaces of {result.filename} make an invalid spec:\n{fixed.render()}")
    chosen = ", ".join(f"{d.name}={d.text(d.default)}" for d in dims)
    return fixed, [f"--defaults: training with each search space's default ({chosen})"]


def run_config(result: Result, *, defaults: bool = False, epochs: int | None = None,
               batch_size: int | str | None = None, seed: int | None = None, lr: float | None = None,
               data: str | tuple | None = None, folds: int | None = None) -> RunConfig:
    """A checked spec's run settings with the command line's overrides, resolved once: search spaces
    at their defaults (`defaults`; refused otherwise), `--data` text read by the spec's grammar (a
    path typed there is relative to the current folder, not to the spec), every train setting."""
    result, notes = concrete(result, defaults)
    where = None
    if isinstance(data, str):
        data, where = data_override(data)
    return runconfig.resolve(result.checked, result.source, result.filename, data=data, data_where=where,
                             epochs=epochs, batch_size=batch_size, seed=seed, lr=lr, folds=folds, notes=tuple(notes),
                             check_source=check_text)
