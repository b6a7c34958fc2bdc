"""Text -> nnspec's syntax tree (syntax.py). The one place where Lark is used, and where its
errors become Diagnostics."""
from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import fastparse
from .diagnostics import Diagnostic, Span, SpecError, error, suggest
from .syntax import ARGUMENT_KEYWORDS, KEYWORDS as SYNTAX_KEYWORDS, MAX_NESTING, SECTIONS, VALUE_KEYWORDS, Node, Tok

GRAMMAR_PATH = Path(__file__).with_name("nnspec.lark")

KEYWORDS = tuple(SYNTAX_KEYWORDS)  # the words; syntax.py holds the one table of keywords

# How each terminal is named to a user: words, never Lark's terminal names.
TERMINAL_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "_NL": "a new line", "SEMICOLON": "';'", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "COLON": "':'", "EQUAL": "'='", "PLUS": "'+'", "STAR": "'*'", "MINUS": "'-'",
    "QMARK": "'?'", "DOT": "'.'", "ARROW": "'->'", "$END": "the end of the file",
    **{terminal: f"'{word}'" for word, terminal in SYNTAX_KEYWORDS.items()},
}



# The hand-written fast path (nnspec/fastparse.py) builds the same syntax tree as Lark's parse
# converted by `_owned`, for a spec that parses; anything else goes to Lark, which also words every syntax error. NNSPEC_LARK_ONLY=1
# (or setting this flag to False) parses everything with Lark, for comparisons and benchmarks.
FAST_PATH = os.environ.get("NNSPEC_LARK_ONLY", "") in ("", "0")


class TooDeep(Exception):
    def __init__(self, token: Token):
        super().__init__("nesting too deep")
        self.token = token


class _NewlinePostLexer:
    """Drops newlines inside () and [], and before a continuing `->`, so chains and
    argument lists may span lines; collapses runs of separators' newlines. Refuses nesting
    deeper than MAX_NESTING, so that no later phase can run out of stack."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        signs = 0
        pending_nl: Token | None = None
        for tok in stream:
            signs = signs + 1 if tok.value == "-" else 0
            if signs > MAX_NESTING or (depth >= MAX_NESTING and tok.value in ("(", "[")):
                raise TooDeep(tok)
            if tok.type == "_NL":
                if depth == 0 and pending_nl is None:
                    pending_nl = tok
                continue
            if pending_nl is not None:
                if tok.value not in ("->", "{"):  # `model M` / `{` on the next line is fine too
                    yield pending_nl
                pending_nl = None
            if tok.value in ("(", "["):
                depth += 1
            elif tok.value in (")", "]") and depth > 0:
                depth -= 1
            yield tok
        if pending_nl is not None:
            yield pending_nl


# Comments are collected by a lexer callback into the list of the parse in progress (one per
# thread). Lark builds its scanner once, with the callbacks it had then, so the callback is
# fixed at construction and only the list it appends to changes.
_comment_sink = threading.local()


def _collect_comment(tok: Token) -> Token:
    sink = getattr(_comment_sink, "comments", None)
    if sink is not None:
        sink.append(_owned_token(tok))
    return tok


@functools.lru_cache(maxsize=1)
def parser() -> Lark:
    """Built on first use, in about 50 ms: a spec that parses takes the fast path and never
    needs it. There is deliberately no on-disk cache of Lark's analysis: Lark's cache is a
    pickle (loading a planted file would run code), and a cached parser did not build the same
    objects as a fresh one, so results depended on the state of the user's cache folder."""
    return Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr",
                lexer="basic", postlex=_NewlinePostLexer(), propagate_positions=True,
                maybe_placeholders=False, lexer_callbacks={"COMMENT": _collect_comment})


def _owned(tree: Tree) -> Node:
    """Lark's parse as nnspec's own syntax tree, read through Lark's public fields only
    (`data`, `children`, `meta`; a token's `type`, `value` and positions). Iterative: a
    10,000-link chain or 256 nested brackets need no deep stack."""
    root = Node(str(tree.data), [], _meta_pos(tree.meta))
    stack = [(tree, root)]
    while stack:
        lark_node, node = stack.pop()
        for child in lark_node.children:
            if isinstance(child, Token):
                node.children.append(_owned_token(child))
            else:
                owned = Node(str(child.data), [], _meta_pos(child.meta))
                node.children.append(owned)
                stack.append((child, owned))
    return root


def _meta_pos(meta) -> tuple:
    if meta.empty:  # a rule that consumed no token (none in this grammar today)
        return (0, 0, 0, 0)
    return (meta.line, meta.column, meta.end_line, meta.end_column)


def _owned_token(tok: Token) -> Tok:
    return Tok(tok.type, tok.value, (tok.line, tok.column, tok.end_line, tok.end_column))


@dataclass(frozen=True)
class Parsed:
    tree: Node
    comments: tuple[Tok, ...]


def decode(data: bytes) -> tuple[str | None, Diagnostic | None]:
    """Bytes -> text, or a diagnostic for binary or non-UTF-8 input."""
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        return None, error("E001", "this file is binary, not an nnspec source (it contains a NUL byte)",
                           Span.point(line, 1), help="pass a .nn text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[line_start:exc.start].decode("utf-8", "replace")) + 1
        return None, error("E001", f"this file is not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                           Span.point(line, col), help="save the spec as UTF-8")
    return text.lstrip("\ufeff"), None


def parse_text(text: str, fast: bool | None = None) -> Parsed:
    """Parse source text; raise SpecError with one syntax diagnostic on failure. `fast=False`
    parses with Lark alone (the reference the fast path is tested against); the default
    follows FAST_PATH."""
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the spec
    if not text.strip() or all(line.strip().startswith("#") or not line.strip()
                               for line in text.splitlines()):
        raise SpecError([error("E002", "the file is empty: expected a `model Name { ... }`",
                               Span.point(1, 1), help="start with: model MyNet { input x: [4] ... }")])
    if FAST_PATH if fast is None else fast:
        parsed = fastparse.parse(text)
        if parsed is not None:
            return Parsed(*parsed)
    comments: list[Tok] = []
    try:
        tree = _owned(_lark_parse(text, comments))
    except UnexpectedInput as exc:
        raise SpecError([_syntax_diagnostic(exc, text)]) from None
    except TooDeep as exc:
        raise SpecError([error("E004", f"the spec nests brackets or signs more than {MAX_NESTING} deep",
                               Span.point(exc.token.line, exc.token.column),
                               help="flatten the nesting of parentheses or lists")]) from None
    except RecursionError:
        raise SpecError([error("E004", "the spec nests too deeply to parse",
                               Span.point(1, 1), help="flatten the nesting of parentheses or lists")]) from None
    return Parsed(tree, tuple(comments))


def _lark_parse(text: str, comments: list) -> Tree:
    # Lark's LALR keeps its state on the heap; comments are caught by a lexer callback.
    _comment_sink.comments = comments
    try:
        return parser().parse(text)
    finally:
        _comment_sink.comments = None


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "_NL":
        return "end of line"
    if tok.type == "NAME" or tok.value in KEYWORDS:
        return f"'{tok.value}'"
    return f"'{tok.value}'"


# Terminals that can start a value or a layer expression, and the keywords that can only
# appear in an argument list as argument names (`GRU(32, layers=2)`).
KEYWORD_TERMINALS = set(SYNTAX_KEYWORDS.values())
VALUE_START = {"NAME", "NUMBER", "STRING", "LSQB", "LPAR", "MINUS", *(SYNTAX_KEYWORDS[w] for w in VALUE_KEYWORDS)}
KEY_KEYWORDS = {SYNTAX_KEYWORDS[w] for w in ARGUMENT_KEYWORDS}
SECTION_KEYWORDS = {SYNTAX_KEYWORDS[w] for w in SECTIONS}
SEPARATORS = {"_NL", "SEMICOLON"}


def _expected_words(expected) -> list[str]:
    """Lark's expected terminals said as a user thinks of them: `a value`, `a section`,
    `a new line or ';'`, `')'`, rather than NAME, LSQB, __ANON_0 and friends."""
    rest = set(expected)
    phrases: list[str] = []
    if {"NAME", "NUMBER", "STRING"} <= rest:
        phrases.append("a value (a name, number, string, list or call)")
        rest -= VALUE_START | KEY_KEYWORDS
    if {"INPUT", "LAYERS", "LOSS"} <= rest:
        phrases.append(f"a section ({', '.join(SECTIONS[:-1])} or {SECTIONS[-1]})")
        rest -= SECTION_KEYWORDS
    closers = [TERMINAL_WORDS[t] for t in ("RPAR", "RSQB", "RBRACE") if t in rest]
    rest -= {"RPAR", "RSQB", "RBRACE"}
    separators = [w for t, w in (("SEMICOLON", "';'"), ("_NL", "a new line")) if t in rest]
    rest -= SEPARATORS
    end = ["the end of the file"] if "$END" in rest else []
    rest.discard("$END")
    phrases += sorted(TERMINAL_WORDS.get(t, f"'{t.lower()}'") for t in rest)
    return phrases + closers + separators + end


def source_lines(text: str) -> list[str]:
    """Lines as the lexer counts them: only '\n' ends a line (a '\r' before it is dropped)."""
    return [line.rstrip("\r") for line in text.split("\n")]


def code_end(line: str) -> int:
    """1-based column just after the last character of code on a line (comments excluded)."""
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_string = not in_string
        elif ch == "#" and not in_string:
            line = line[:i]
            break
    return len(line.rstrip()) + 1


def _end_span(text: str) -> Span:
    """Just after the last code of the file: trailing blank and comment lines are skipped."""
    lines = source_lines(text) or [""]
    last = len(lines)
    while last > 1 and code_end(lines[last - 1]) == 1:
        last -= 1
    col = code_end(lines[last - 1])
    return Span(last, col, last, col + 1)


def _syntax_diagnostic(exc: UnexpectedInput, text: str) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(exc, text)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        return _end_of_file(exc, text)
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    expected = _expected_words(exc.expected)
    span = Span(tok.line, tok.column, tok.end_line or tok.line,
                tok.end_column if tok.end_line == tok.line else tok.column + 1)
    if tok.type == "_NL":  # the line ends (perhaps in a comment) where more was expected
        span = Span.point(tok.line, code_end(source_lines(text)[tok.line - 1]))
    message = f"unexpected {_describe_token(tok)}"
    if expected:
        message += f": expected {_join(expected)}"
    return error("E003", message, span, help=_syntax_hint(tok, set(exc.expected), text))


def _syntax_hint(tok: Token, expected: set[str], text: str) -> str | None:
    """One concrete way out, for the mistakes people make most."""
    if tok.type == "NAME":
        keywords = [TERMINAL_WORDS[t].strip("'") for t in expected if t in KEYWORD_TERMINALS]
        hint = suggest(tok.value, keywords)
        if hint:
            return hint
    if tok.type in KEYWORD_TERMINALS and "NAME" in expected:
        return f"'{tok.value}' is a keyword; choose another name"
    if tok.type == "COMMA" and "RPAR" in expected and (written := _tuple_at(tok, text)):
        return f"nnspec writes a tuple as a list: `[{written}]` instead of `({written})`"
    if tok.type == "COMMA" and SEPARATORS & expected and _line_of(tok, text).lstrip().startswith("metrics"):
        return "write several metrics as a list: `metrics [accuracy, f1]`"
    if tok.type == "EQUAL":
        return "sections and settings take no '=': write `loss mse`, `epochs 10`"
    if tok.type == "MODEL" and "$END" in expected:
        return "a file holds one model; put the second one in its own file"
    if SEPARATORS & expected and tok.type in VALUE_START:
        return "put each statement on its own line, or separate them with ';'"
    if tok.type == "COMMA" and SEPARATORS & expected:
        return "settings and statements are separated by ';' or new lines, not ','"
    if tok.type in ("RPAR", "RSQB", "COMMA") and "NAME" in expected and _after_comma(tok, text):
        return "a trailing or doubled ',' leaves an empty argument or list item"
    return None


def _tuple_at(tok: Token, text: str) -> str | None:
    """The items of a Python-style tuple `(3, 3)` whose ',' is `tok` (an argument's value or a list
    item, not a call's parentheses), or None."""
    line = _line_of(tok, text)
    opened = line.rfind("(", 0, tok.column - 1)
    if opened < 0 or not line[:opened].rstrip().endswith(("=", ",", "(", "[")):
        return None
    closed = line.find(")", tok.column)
    return line[opened + 1:closed if closed > 0 else len(line)].strip() or None


def _line_of(tok: Token, text: str) -> str:
    return source_lines(text)[tok.line - 1]


def _after_comma(tok: Token, text: str) -> bool:
    before = source_lines(text)[tok.line - 1][: tok.column - 1].rstrip()
    return before.endswith(",")


def _bad_character(exc: UnexpectedCharacters, text: str) -> Diagnostic:
    char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
    if char == '"':
        return error("E003", "unterminated string: it needs a closing '\"' on the same line",
                     Span.point(exc.line, exc.column), help='write strings on one line: "data.csv"')
    shown = repr(char)[1:-1] if char.isprintable() else f"\\u{ord(char):04x}"
    hint = "strings use double quotes" if char == "'" else None
    return error("E003", f"unexpected character '{shown}'", Span.point(exc.line, exc.column), help=hint)


def _end_of_file(exc: UnexpectedInput, text: str) -> Diagnostic:
    expected = _expected_words(getattr(exc, "expected", ()) or ())
    unclosed = unclosed_brackets(text)
    message = "unexpected end of file"
    notes = []
    if unclosed:
        char, line, col = unclosed[-1]
        message += f": the '{char}' at line {line} is never closed"
        notes = [f"'{c}' opened at {ln}:{co} is not closed" for c, ln, co in reversed(unclosed)]
    elif expected:
        message += f": expected {_join(expected)}"
    closers = "".join(CLOSER[c] for c, _, _ in reversed(unclosed))
    return error("E005", message, _end_span(text), notes=notes,
                 help=f"add {closers!r} at the end" if closers else None)


CLOSER = {"(": ")", "[": "]", "{": "}"}


def unclosed_brackets(text: str) -> list[tuple[str, int, int]]:
    """Brackets opened and never closed, outermost first, as (char, line, column);
    comments and strings are skipped."""
    stack: list[tuple[str, int, int]] = []
    line, col, i, n = 1, 1, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            j += 1 if j < n and text[j] == '"' else 0
            col += j - i
            i = j
            continue
        if ch in CLOSER:
            stack.append((ch, line, col))
        elif ch in ")]}" and stack and CLOSER[stack[-1][0]] == ch:
            stack.pop()
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    return stack


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words[:-1]) + " or " + words[-1]
