"""nnspec's own syntax tree: what the parser produces and lowering and `fmt` consume.

Both parsers -- the hand-written fast path (fastparse.py) and Lark, which words syntax errors --
produce these classes, so nothing after parsing depends on a Lark class or on anything that
differs between Lark versions or between a cached and an uncached Lark parser.

- `Node(kind, children, pos)`: `kind` is the grammar's rule name after `?rule` inlining and
  aliases (`call`, `chain`, `kwarg`, ...); `children` are Nodes and Toks, punctuation left out.
- `Tok(kind, text, pos)`: `kind` is the name of the grammar's terminal (`NAME`, `NUMBER`,
  `STRING`, `COMMENT`, or a keyword's terminal such as `MODEL` or `INT_KW`); `text` as written.
- `pos` is `(line, col, end_line, end_col)`, 1-based, `end_col` exclusive; a Node's covers
  every token its rule consumed, punctuation included. `span` gives it as a diagnostics Span.

Plain slotted classes with positions as a tuple: the fast path builds one per node of every
spec it parses, and a 1,000-layer spec has tens of thousands of them.
"""
from __future__ import annotations

from .diagnostics import Span

Pos = tuple  # (line, col, end_line, end_col)

MAX_NESTING = 256  # brackets or signs nested deeper than this are refused (E004), not a RecursionError

# The language's keywords, the one table of them: (word, the grammar's terminal, role). They are the
# grammar's word terminals (tests/test_fastparse.py checks this table against grammar/nnspec.lark);
# the parsers, the error wording and lowering read them from here. Roles: `header` starts the model;
# a `section` starts an item of the model's body (in the order lowering lists them); a `value` is a
# literal; a `type` marks an input's dtype. Every keyword but a value may still name an argument
# (`GRU(32, layers=2)`).
_KEYWORD_TABLE = (
    ("model", "MODEL", "header"),
    ("input", "INPUT", "section"), ("block", "BLOCK", "section"), ("layers", "LAYERS", "section"),
    ("loss", "LOSS", "section"), ("optimizer", "OPTIMIZER", "section"), ("metrics", "METRICS", "section"),
    ("train", "TRAIN", "section"), ("search", "SEARCH", "section"),
    ("network", "NETWORK", "section"), ("adversarial", "ADVERSARIAL", "section"),
    ("true", "TRUE", "value"), ("false", "FALSE", "value"),
    ("int", "INT_KW", "type"),
)
KEYWORDS: dict[str, str] = {word: terminal for word, terminal, _ in _KEYWORD_TABLE}  # word -> terminal
SECTIONS: tuple[str, ...] = tuple(word for word, _, role in _KEYWORD_TABLE if role == "section")
VALUE_KEYWORDS: tuple[str, ...] = tuple(word for word, _, role in _KEYWORD_TABLE if role == "value")
ARGUMENT_KEYWORDS: tuple[str, ...] = tuple(word for word, _, role in _KEYWORD_TABLE if role != "value")


class _Positioned:
    """What tokens and nodes share: a position tuple, read as a Span or by its parts."""

    __slots__ = ()
    pos: Pos

    @property
    def span(self) -> Span:
        return Span(*self.pos)

    @property
    def line(self) -> int:
        return self.pos[0]

    @property
    def col(self) -> int:
        return self.pos[1]

    @property
    def end_line(self) -> int:
        return self.pos[2]

    __hash__ = None  # compared by value: not a dict key


class Tok(_Positioned):
    __slots__ = ("kind", "text", "pos")

    def __init__(self, kind: str, text: str, pos: Pos):
        self.kind = kind
        self.text = text
        self.pos = pos

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other) -> bool:
        return type(other) is Tok and (self.kind, self.text, self.pos) == (other.kind, other.text, other.pos)

    def __repr__(self) -> str:
        return f"Tok({self.kind!r}, {self.text!r}, {self.pos!r})"


class Node(_Positioned):
    __slots__ = ("kind", "children", "pos")

    def __init__(self, kind: str, children: list, pos: Pos):
        self.kind = kind
        self.children = children
        self.pos = pos

    def __eq__(self, other) -> bool:
        return (type(other) is Node and self.kind == other.kind and self.pos == other.pos
                and self.children == other.children)

    def __repr__(self) -> str:
        return f"Node({self.kind!r}, {self.children!r}, {self.pos!r})"


def first_difference(a, b, path: str = "start") -> str | None:
    """Where two syntax trees first differ (None if they are equal), for tests and tools.
    Iterative, so that 10,000-link chains and 256-deep nesting need no deep Python stack."""
    stack = [(a, b, path)]
    while stack:
        x, y, where = stack.pop()
        if type(x) is not type(y):
            return f"{where}: {type(x).__name__} vs {type(y).__name__}"
        if isinstance(x, Tok):
            if x != y:
                return f"{where}: {x!r} vs {y!r}"
            continue
        if x.kind != y.kind or x.pos != y.pos:
            return f"{where}: {x.kind} at {x.pos} vs {y.kind} at {y.pos}"
        if len(x.children) != len(y.children):
            return f"{where}/{x.kind}: {len(x.children)} vs {len(y.children)} children"
        stack.extend((c, d, f"{where}/{x.kind}[{i}]") for i, (c, d) in
                     reversed(list(enumerate(zip(x.children, y.children)))))
    return None
