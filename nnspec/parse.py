"""Text -> Lark tree. The one place where Lark's errors become Diagnostics."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .diagnostics import Diagnostic, Span, SpecError, error, suggest

GRAMMAR_PATH = Path(__file__).with_name("nnspec.lark")

KEYWORDS = ("model", "input", "block", "layers", "loss", "optimizer", "metrics", "train",
            "search", "true", "false", "int")

# How each terminal is named to a user: words, never Lark's terminal names.
TERMINAL_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "_NL": "a new line", "SEMICOLON": "';'", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "COLON": "':'", "EQUAL": "'='", "PLUS": "'+'", "STAR": "'*'", "MINUS": "'-'",
    "QMARK": "'?'", "DOT": "'.'", "__ANON_0": "'->'", "$END": "the end of the file",
    "INT_KW": "'int'", "LOSS": "'loss'", "OPTIMIZER": "'optimizer'", "METRICS": "'metrics'",
    "TRAIN": "'train'", "SEARCH": "'search'", "MODEL": "'model'", "INPUT": "'input'",
    "BLOCK": "'block'", "LAYERS": "'layers'", "TRUE": "'true'", "FALSE": "'false'",
}


class _NewlinePostLexer:
    """Drops newlines inside () and [], and before a continuing `->`, so chains and
    argument lists may span lines; collapses runs of separators' newlines."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        pending_nl: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                if depth == 0 and pending_nl is None:
                    pending_nl = tok
                continue
            if pending_nl is not None:
                if tok.value != "->":
                    yield pending_nl
                pending_nl = None
            if tok.value in ("(", "["):
                depth += 1
            elif tok.value in (")", "]") and depth > 0:
                depth -= 1
            yield tok
        if pending_nl is not None:
            yield pending_nl


@functools.lru_cache(maxsize=1)
def parser() -> Lark:
    return Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr",
                lexer="basic", postlex=_NewlinePostLexer(), propagate_positions=True,
                maybe_placeholders=False)


@dataclass(frozen=True)
class Parsed:
    tree: Tree
    comments: tuple[Token, ...]


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
        return None, error("E001", f"this file is not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                           Span.point(line, 1), help="save the spec as UTF-8")
    return text.lstrip("\ufeff"), None


def parse_text(text: str) -> Parsed:
    """Parse source text; raise SpecError with one syntax diagnostic on failure."""
    if not text.strip() or all(line.strip().startswith("#") or not line.strip()
                               for line in text.splitlines()):
        raise SpecError([error("E002", "the file is empty: expected a `model NAME { ... }`",
                               Span.point(1, 1), help="start with: model MyNet { input x: [4] ... }")])
    comments: list[Token] = []
    try:
        tree = _lark_parse(text, comments)
    except UnexpectedInput as exc:
        raise SpecError([_syntax_diagnostic(exc, text)]) from None
    except RecursionError:
        raise SpecError([error("E004", "the spec nests too deeply to parse",
                               Span.point(1, 1), help="flatten the nesting of parentheses or lists")]) from None
    return Parsed(tree, tuple(comments))


def _lark_parse(text: str, comments: list) -> Tree:
    # Lark's LALR keeps its state on the heap; comments are caught by a lexer callback.
    p = parser()
    lex_conf = p.parser.lexer_conf
    previous = lex_conf.callbacks.get("COMMENT")
    lex_conf.callbacks["COMMENT"] = lambda tok: (comments.append(tok), tok)[1]
    try:
        return p.parse(text)
    finally:
        if previous is None:
            lex_conf.callbacks.pop("COMMENT", None)
        else:
            lex_conf.callbacks["COMMENT"] = previous


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the file"
    if tok.type == "_NL":
        return "a new line"
    if tok.type == "NAME" or tok.value in KEYWORDS:
        return f"'{tok.value}'"
    return f"'{tok.value}'"


def _expected_words(expected) -> list[str]:
    words = {TERMINAL_WORDS.get(t, f"'{t.lower()}'") for t in expected}
    return sorted(words)


def _end_span(text: str) -> Span:
    lines = text.splitlines() or [""]
    last = len(lines)
    while last > 1 and not lines[last - 1].strip():
        last -= 1
    col = len(lines[last - 1]) + 1
    return Span(last, col, last, col + 1)


def _syntax_diagnostic(exc: UnexpectedInput, text: str) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        shown = repr(char)[1:-1] if char.isprintable() else f"\\u{ord(char):04x}"
        hint = "strings use double quotes" if char == "'" else None
        return error("E003", f"unexpected character '{shown}'",
                     Span.point(exc.line, exc.column), help=hint)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        expected = _expected_words(getattr(exc, "expected", ()) or ())
        msg = "unexpected end of file"
        if "'}'" in expected:
            msg += ": a '{' block is not closed"
        return error("E005", msg, _end_span(text),
                     help=f"expected {_join(expected)}" if expected else None)
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    expected = _expected_words(exc.expected)
    span = Span(tok.line, tok.column, tok.end_line or tok.line,
                tok.end_column if tok.end_line == tok.line else tok.column + 1)
    if tok.type == "_NL":
        span = Span.point(tok.line, tok.column)
    hint = None
    if tok.type == "NAME":
        kw = [w.strip("'") for w in expected if w.startswith("'") and w.strip("'").isalpha()]
        hint = suggest(tok.value, kw)
    if hint is None and expected:
        hint = f"expected {_join(expected)}"
    return error("E003", f"unexpected {_describe_token(tok)}", span, help=hint)


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words[:-1]) + " or " + words[-1]
