"""`nnspec fmt`: the canonical layout of a spec, comments kept where they were written.

The formatter works from the parse tree (never from regexes over the text), so every value
is printed exactly as it was spelled: `1e-3` stays `1e-3`, `0.0005` stays `0.0005`, strings
keep their escapes. The canonical style (documented in docs/language.md, "Formatting"):

- 4-space indentation; one item, statement or setting per line; `key=value` without spaces;
  spaces around `->`, `+` and `*`; `input x: [2]`; one space between a section keyword and
  its value (`loss mse`), never column alignment; sections stay in the order written.
- A `train { }` or `search { }` section written on one line stays on one line, its settings
  joined by `; `, as long as the line fits in MAX_WIDTH columns; otherwise one setting a line.
- A statement longer than MAX_WIDTH is broken before each top-level `->`, continuation lines
  indented one more level. Everything else is joined onto one line.
- Runs of blank lines become one blank line; blank lines at the start or end of a body go.
- A full-line comment stays on its own line before the item that followed it, indented like
  that item. A trailing comment stays at the end of the line of the item it followed. A
  comment written inside a multi-line item that is joined onto one line moves just above it.

The output is checked before it is returned: it must parse to the same spec IR as the input
(positions aside), otherwise formatting is an internal error and no file is touched.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from .diagnostics import Sink, SpecError
from .parse import parse_text, source_lines
from .syntax import Node, Tok

if TYPE_CHECKING:
    from .pipeline import Result

INDENT = "    "
MAX_WIDTH = 100


@dataclass
class Piece:
    """One formatted item: its output lines (continuations carry their extra indent), its depth,
    and the source lines it came from (for placing comments and blank lines)."""

    lines: list[str]
    depth: int
    first: int
    last: int
    opens: bool = False  # ends with '{': the next item starts a body
    closes: bool = False  # a closing '}': comments just before it belong to the body
    comment: str | None = field(default=None)  # a trailing comment


# ---------------------------------------------------------------- expressions


def expr(node: Node | Tok) -> str:
    """One expression on one line, exactly as it parses (the tree holds the grouping)."""
    if isinstance(node, Tok):
        return str(node)
    kind = node.kind
    kids = node.children
    if kind in ("number", "string", "name"):
        return str(kids[0])
    if kind in ("true", "false"):
        return kind
    if kind == "dotted":
        return ".".join(str(k) for k in kids)
    if kind == "list":
        return "[" + ", ".join(expr(k) for k in kids) + "]"
    if kind == "group":
        return "(" + expr(kids[0]) + ")"
    if kind == "neg":
        return "-" + expr(kids[0])
    if kind in JOINERS:
        return JOINERS[kind].join(expr(k) for k in kids)
    if kind == "call":
        return f"{kids[0]}(" + ", ".join(expr(k) for k in kids[1:]) + ")"
    if kind == "kwarg":
        return f"{kids[0]}={expr(kids[1])}"
    raise AssertionError(f"fmt: unhandled tree node {kind}")  # grammar and formatter out of step


JOINERS = {"chain": " -> ", "sum": " + ", "product": " * "}


def _line(tree: Node) -> int:
    return tree.line


def _end_line(tree: Node) -> int:
    return tree.end_line


# ---------------------------------------------------------------- items -> pieces


class Layout:
    def __init__(self) -> None:
        self.pieces: list[Piece] = []

    def add(self, lines: list[str], depth: int, first: int, last: int, **flags) -> None:
        self.pieces.append(Piece(lines, depth, first, last, **flags))

    def model(self, model: Node) -> None:
        keyword, name = model.children[0], model.children[1]
        self.add([f"model {name} {{"], 0, keyword.line, name.line, opens=True)
        for item in model.children[2:]:
            if isinstance(item, Node):
                self.item(item, 1)
        self.add(["}"], 0, _end_line(model), _end_line(model), closes=True)

    def item(self, item: Node, depth: int) -> None:
        kind = item.kind
        kids = item.children
        if kind == "input_decl":
            self.add([f"input {kids[1]}: {tensor_type(kids[2])}"], depth, _line(item), _end_line(item))
        elif kind == "block_def":
            params = [str(k) for k in kids[2:] if isinstance(k, Tok)]
            head = f"block {kids[1]}({', '.join(params)})"
            self.body(head, [k for k in kids[2:] if isinstance(k, Node)], item, depth, self.stmt)
        elif kind == "layers_sec":
            self.body("layers", [k for k in kids[1:] if isinstance(k, Node)], item, depth, self.stmt)
        elif kind == "section":
            self.add([f"{kids[0]} {expr(kids[1])}"], depth, _line(item), _end_line(item))
        elif kind == "setting_sec":
            self.settings(item, depth)
        elif kind == "network_def":
            self.body(f"network {kids[1]}", [k for k in kids[2:] if isinstance(k, Node)], item, depth, self.item)
        else:
            raise AssertionError(f"fmt: unhandled section {kind}")

    def body(self, head: str, children: list[Node], item: Node, depth: int, each) -> None:
        self.add([f"{head} {{"], depth, _line(item), _line(item), opens=True)
        for child in children:
            each(child, depth + 1)
        self.add(["}"], depth, _end_line(item), _end_line(item), closes=True)

    def stmt(self, st: Node, depth: int) -> None:
        if st.kind == "assign":
            prefix, chain = f"{st.children[0]} = ", st.children[1]
        else:
            prefix, chain = "", st.children[0]
        self.add(broken(prefix, chain, depth), depth, _line(st), _end_line(st))

    def setting(self, st: Node, depth: int) -> None:
        self.add([setting_text(st)], depth, _line(st), _end_line(st))

    def settings(self, item: Node, depth: int) -> None:
        keyword = item.children[0]
        settings = [k for k in item.children[1:] if isinstance(k, Node)]
        one_line = f"{keyword} {{ " + "; ".join(setting_text(s) for s in settings) + " }" if settings else f"{keyword} {{ }}"
        if _line(item) == _end_line(item) and len(INDENT * depth + one_line) <= MAX_WIDTH:
            self.add([one_line], depth, _line(item), _end_line(item))
        else:
            self.body(str(keyword), settings, item, depth, self.setting)


def setting_text(st: Node) -> str:
    return " ".join([str(st.children[0])] + [expr(v) for v in st.children[1:]])


def tensor_type(tt: Node) -> str:
    prefix = ""
    dims = []
    for child in tt.children:
        if isinstance(child, Tok) and child.kind == "INT_KW":
            prefix = "int"
        elif isinstance(child, Node):
            dims.append("?" if child.kind == "dim_any" else str(child.children[0]))
    return f"{prefix}[{', '.join(dims)}]"


def broken(prefix: str, chain: Node | Tok, depth: int) -> list[str]:
    """A statement on one line, or broken before each top-level `->` when it is too long."""
    whole = prefix + expr(chain)
    if len(INDENT * depth + whole) <= MAX_WIDTH or not (isinstance(chain, Node) and chain.kind == "chain"):
        return [whole]
    head, *rest = chain.children
    return [prefix + expr(head)] + [INDENT + "-> " + expr(link) for link in rest]


# ---------------------------------------------------------------- comments and blank lines


def _is_trailing(comment: Tok, lines: list[str]) -> bool:
    return lines[comment.line - 1][: comment.col - 1].strip() != ""


def place_comments(pieces: list[Piece], comments: tuple[Tok, ...], lines: list[str]) -> dict[int, list[Tok]]:
    """Give each trailing comment to the piece whose last source line it ends; return the
    others keyed by the index of the piece they go before (len(pieces) = end of file)."""
    before: dict[int, list[Tok]] = {}
    by_last_line: dict[int, int] = {}
    for i, p in enumerate(pieces):
        by_last_line[p.last] = i  # the last piece ending on a line owns its trailing comment
    for c in comments:
        owner = by_last_line.get(c.line)
        if owner is not None and _is_trailing(c, lines) and pieces[owner].comment is None:
            pieces[owner].comment = str(c).rstrip()
            continue
        index = next((i for i, p in enumerate(pieces) if p.last >= c.line), len(pieces))
        before.setdefault(index, []).append(c)
    return before


def render(pieces: list[Piece], comments: tuple[Tok, ...], lines: list[str]) -> str:
    before = place_comments(pieces, comments, lines)
    out: list[str] = []
    state = {"prev": None, "body_start": True}

    def blank_gap(first: int) -> bool:
        prev = state["prev"]
        return (prev is not None and not state["body_start"]
                and any(not lines[k - 1].strip() for k in range(prev + 1, first)))

    def emit_comment(c: Tok, depth: int) -> None:
        if blank_gap(c.line):
            out.append("")
        out.append(INDENT * depth + str(c).rstrip())
        state["prev"], state["body_start"] = c.line, False

    for i, p in enumerate(pieces):
        for c in before.get(i, ()):
            emit_comment(c, p.depth + 1 if p.closes else p.depth)
        if blank_gap(p.first) and not p.closes:
            out.append("")
        text = [INDENT * p.depth + line for line in p.lines]
        if p.comment:
            text[-1] += "  " + p.comment
        out.extend(text)
        state["prev"] = max(p.last, state["prev"] or 0)
        state["body_start"] = p.opens
    for c in before.get(len(pieces), ()):
        emit_comment(c, 0)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the spec IR, positions aside


def strip_spans(value: Any) -> Any:
    """A comparable view of an IR value without source positions."""
    names = _FIELDS.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value)
                                             if f.name not in ("span", "name_span"))
    if names is not None:
        return (type(value).__name__,) + tuple((n, strip_spans(getattr(value, n))) for n in names)
    if isinstance(value, (list, tuple)):
        return tuple(strip_spans(v) for v in value)
    if hasattr(value, "items"):  # Spec.sections: where each section is written; keep which ones
        return tuple(sorted(value))
    return (type(value).__name__, value)


_FIELDS: dict[type, tuple[str, ...]] = {}


def spec_ir(text: str):
    """The lowered spec IR of a source, positions stripped (raises SpecError on a syntax error)."""
    from .lower import lower
    from .pipeline import deep_stack

    tree = parse_text(text).tree
    with deep_stack():  # lowering recurses once per nesting level, as in check_text
        return strip_spans(lower(tree, Sink()))


# ---------------------------------------------------------------- entry points


def format_text(text: str) -> str:
    """The canonical text of a source that parses (raises SpecError otherwise)."""
    text = text.removeprefix("\ufeff")
    parsed = parse_text(text)
    layout = Layout()
    layout.model(parsed.tree.children[0])
    return render(layout.pieces, parsed.comments, source_lines(text))


def format_checked(text: str, filename: str, result: Result | None = None) -> str:
    """Format a valid spec: errors of the spec are raised as SpecError (with file and source);
    output that would not mean the same spec is an internal error. `result`: check_text(text,
    filename) when the caller holds it already (the language server), else it is checked here."""
    from .pipeline import check_text

    if result is None:
        result = check_text(text, filename)
    if not result.ok:
        err = SpecError([d for d in result.diagnostics if d.is_error])
        err.filename, err.source = filename, text
        raise err
    formatted = format_text(text)
    if spec_ir(formatted) != strip_spans(result.checked.spec):
        raise AssertionError("fmt produced text that means a different spec")
    return formatted


def unified_diff(old: str, new: str, path: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=path, tofile=f"{path} (formatted)"))


def write_atomically(path: Path, text: str) -> None:
    """Replace a file's contents in one step (a crash leaves the old or the new file, never half);
    its permissions are kept. A full disk or an unwritable folder is a UserError naming the file."""
    from .fsutil import atomic_write_text

    atomic_write_text(path, text)


def run(path: str, *, check_only: bool = False, write: bool = False) -> int:
    """The `nnspec fmt` command: print, check or rewrite one file; returns the exit code."""
    import click

    from .pipeline import read_source

    text, failed = read_source(path)
    if failed is not None:
        err = SpecError(failed.diagnostics)
        err.filename, err.source = failed.filename, failed.source
        raise err
    formatted = format_checked(text, path)
    if check_only:
        if formatted == text:
            return 0
        click.echo(unified_diff(text, formatted, path), nl=False)
        click.echo(f"{path}: would be reformatted (run `nnspec fmt --write {path}`)", err=True)
        return 1
    if write:
        if formatted != text:
            write_atomically(Path(path), formatted)
            click.echo(f"reformatted {path}", err=True)
        return 0
    click.echo(formatted, nl=False)
    return 0
