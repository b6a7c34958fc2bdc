"""A fast path for the parser: the syntax tree of a spec that parses, built by hand-written code.

grammar/nnspec.lark stays the definition of the language and Lark stays the reporter of every
syntax error. This module is an optimisation for the common case, a spec that parses: one
compiled regular expression lexes with the grammar's terminals; the newline rules of
`parse._NewlinePostLexer` are applied in the same pass; a recursive-descent parser for the
grammar builds nnspec's own syntax tree (syntax.py), the same tree `parse` converts Lark's
parse into. Anything it does not accept -- a syntax error, nesting past MAX_NESTING, anything
unexpected -- makes `parse()` return None, and the caller parses with Lark, so error messages
are Lark's.

Why it accepts what the grammar accepts (tests/test_fastparse.py compares the two syntax trees
on every spec, every diagnostics case, random valid specs and random mutations):
- Lexing. The terminals are tried as one alternation, longest-first where two could match at
  the same place (`->` before `-`, a NUMBER like `.5` before `.`), and a NAME that spells a
  keyword becomes that keyword. Blanks (WS) are skipped before each token; no other terminal
  starts with a blank.
- Parsing. The grammar is LALR(1) with one conflict, resolved by shifting: `NAME (` is always a
  call. Every other choice is made on the next token, as below, so recursive descent with one
  token of lookahead accepts the same language and builds the same tree.
- Positions. A node's position spans every token its rule consumed, punctuation included
  (`(`, `)`, `->`, separators).
"""
from __future__ import annotations

import gc
import re
import sys

from .syntax import ARGUMENT_KEYWORDS, KEYWORDS as SYNTAX_KEYWORDS, MAX_NESTING, VALUE_KEYWORDS, Node, Tok

# The grammar's terminals (WS left out: skipped before each token), tried in this order.
TERMINALS = (
    ("NUMBER", "([0-9]+\\.[0-9]*|\\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?"),
    ("NAME", "[A-Za-z_][A-Za-z_0-9]*"),
    ("STRING", '"([^"\\\\\n]|\\\\.)*"'),
    ("COMMENT", "#[^\n]*"),
    ("_NL", "(\r?\n)+"),
    ("ARROW", "\\->"),
    ("COLON", ":"), ("COMMA", ","), ("DOT", "\\."), ("EQUAL", "="), ("LBRACE", "\\{"),
    ("LPAR", "\\("), ("LSQB", "\\["), ("MINUS", "\\-"), ("PLUS", "\\+"), ("QMARK", "\\?"),
    ("RBRACE", "\\}"), ("RPAR", "\\)"), ("RSQB", "\\]"), ("SEMICOLON", ";"), ("STAR", "\\*"),
)
WS_PATTERN = "[ \t\f\r]+"


def _master() -> re.Pattern:
    """Three groups a match: the blanks before a token; the token (any of the terminals, in
    TERMINALS' order, their own groups made non-capturing); or else the one character
    where no terminal matches. So findall() skips nothing but blanks at the very end."""
    plain = re.compile(r"(?<!\\)[(](?![?])")  # an unescaped '(' that opens a capturing group
    tokens = "|".join(plain.sub("(?:", pattern) for _, pattern in TERMINALS)
    blanks = WS_PATTERN.removesuffix("+") + "*+"  # possessive: blanks are never given back
    return re.compile(f"({blanks})(?:({tokens})|([\\s\\S]))")


_MASTER = _master()

# Token kinds: one per terminal (in TERMINALS' order), then the keywords.
(NUMBER, NAME, STRING, COMMENT, NL, ARROW, COLON, COMMA, DOT, EQUAL, LBRACE, LPAR, LSQB, MINUS,
 PLUS, QMARK, RBRACE, RPAR, RSQB, SEMICOLON, STAR) = range(1, len(TERMINALS) + 1)
KEYWORDS = SYNTAX_KEYWORDS  # word -> the grammar's terminal (syntax.py: the one table of them)
_KIND_OF_KEYWORD = {word: 100 + i for i, word in enumerate(KEYWORDS)}
INT_KW, MODEL, INPUT, BLOCK, LAYERS, LOSS, OPTIMIZER, METRICS, TRAIN, SEARCH, TRUE, FALSE = (
    _KIND_OF_KEYWORD[word] for word in ("int", "model", "input", "block", "layers", "loss", "optimizer", "metrics",
                                        "train", "search", "true", "false"))
NETWORK, ADVERSARIAL = _KIND_OF_KEYWORD["network"], _KIND_OF_KEYWORD["adversarial"]
END = 0
TYPE_OF = {i + 1: name for i, (name, _) in enumerate(TERMINALS)}
TYPE_OF.update({kind: KEYWORDS[word] for word, kind in _KIND_OF_KEYWORD.items()})

# A token's first character tells its terminal, but for '.' (DOT or a NUMBER like .5) and
# '-' (MINUS or ->), which the token's length settles.
_KIND_OF_CHAR = {c: NAME for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"}
_KIND_OF_CHAR.update({c: NUMBER for c in "0123456789"})
_KIND_OF_CHAR.update({'"': STRING, "#": COMMENT, "\n": NL, "\r": NL, ":": COLON, ",": COMMA, ".": DOT,
                      "=": EQUAL, "{": LBRACE, "(": LPAR, "[": LSQB, "-": MINUS, "+": PLUS, "?": QMARK,
                      "}": RBRACE, ")": RPAR, "]": RSQB, ";": SEMICOLON, "*": STAR})

SEPARATORS = frozenset((NL, SEMICOLON))
EXPR_START = frozenset((NAME, NUMBER, STRING, LSQB, LPAR, MINUS, *(_KIND_OF_KEYWORD[w] for w in VALUE_KEYWORDS)))
SETTING_VALUE_START = EXPR_START | {INPUT}  # a setting's value may be the word `input` (`target input`)
KEY_KINDS = frozenset((NAME, *(_KIND_OF_KEYWORD[w] for w in ARGUMENT_KEYWORDS)))  # may name an argument


class Reject(Exception):
    """The fast path does not accept this input; Lark decides (and explains) instead."""


# ---------------------------------------------------------------- lexer and newline rules
# A lexed token is a tuple (kind, value, start_pos, end_pos, line, column, end_line, end_column).

def lex(text: str) -> tuple[list[tuple], list[Tok]]:
    """Tokens as `_NewlinePostLexer` passes them to the parser, ending with an END token,
    and the comments. Raises Reject where Lark would fail to lex
    or the post-lexer would refuse the nesting."""
    toks: list[tuple] = []
    comments: list[Tok] = []
    append = toks.append
    kind_of_char, kind_of_keyword = _KIND_OF_CHAR, _KIND_OF_KEYWORD
    line, line_start = 1, 0
    depth = signs = 0
    pending = None
    end = 0
    for blanks, value, stray in _MASTER.findall(text):
        if stray:
            raise Reject("a character no terminal matches")
        start = end + len(blanks)
        end = start + len(value)
        kind = kind_of_char[value[0]]
        if kind == NAME:
            kind = kind_of_keyword.get(value, NAME)
        elif kind == COMMENT:
            col = start - line_start + 1
            comments.append(Tok("COMMENT", value, (line, col, line, col + end - start)))
            continue
        elif kind == NL:
            signs = 0
            first_line, col = line, start - line_start + 1
            line += value.count("\n")
            line_start = start + value.rindex("\n") + 1
            if depth == 0 and pending is None:
                pending = (NL, value, start, end, first_line, col, line, end - line_start + 1)
            continue
        elif kind == DOT and len(value) > 1:
            kind = NUMBER
        elif kind == MINUS and len(value) > 1:
            kind = ARROW
        if kind == MINUS:
            signs += 1
            if signs > MAX_NESTING:
                raise Reject("signs nested too deep")
        else:
            signs = 0
        if pending is not None:
            if kind != ARROW and kind != LBRACE:  # `->` or `{` on the next line continue the line
                append(pending)
            pending = None
        if kind == LPAR or kind == LSQB:
            if depth >= MAX_NESTING:
                raise Reject("brackets nested too deep")
            depth += 1
        elif (kind == RPAR or kind == RSQB) and depth > 0:
            depth -= 1
        col = start - line_start + 1
        append((kind, value, start, end, line, col, line, col + end - start))
    assert not text[end:].strip(" \t\f\r")  # only blanks after the last token
    if pending is not None:
        append(pending)
    col = len(text) - line_start + 1
    append((END, "", len(text), len(text), line, col, line, col))
    return toks, comments


# ---------------------------------------------------------------- tree building

def _tree(kind: str, children: list, first: tuple, last: tuple) -> Node:
    """The node of a rule that consumed the lexed tokens first..last."""
    return Node(kind, children, (first[4], first[5], last[6], last[7]))


def _token(t: tuple) -> Tok:
    return Tok(TYPE_OF[t[0]], t[1], (t[4], t[5], t[6], t[7]))


# ---------------------------------------------------------------- recursive descent
class _Parser:
    """One method per rule of grammar/nnspec.lark; each takes the index of its first token and
    returns (tree, index after its last token)."""

    def __init__(self, toks: list[tuple]):
        self.toks = toks
        self.kinds = [t[0] for t in toks]

    def expect(self, i: int, kind: int) -> int:
        if self.kinds[i] != kind:
            raise Reject(f"expected {TYPE_OF.get(kind)} at token {i}")
        return i + 1

    # start: _sep* model _sep*
    def start(self) -> Node:
        kinds, i = self.kinds, 0
        while kinds[i] in SEPARATORS:
            i += 1
        model, i = self.model(i)
        while kinds[i] in SEPARATORS:
            i += 1
        self.expect(i, END)
        return _tree("start", [model], self.toks[0], self.toks[i - 1])

    # model: MODEL NAME "{" _lines{_item} "}"
    def model(self, i0: int):
        self.expect(i0, MODEL)
        self.expect(i0 + 1, NAME)
        i = self.expect(i0 + 2, LBRACE)
        children = [_token(self.toks[i0]), _token(self.toks[i0 + 1])]
        i = self.lines(i, self.item, ITEM_START, children)
        return _tree("model", children, self.toks[i0], self.toks[i]), i + 1

    def lines(self, i: int, rule, starts: frozenset, out: list) -> int:
        """_lines{item}: (_sep | item _sep)* item?, then the closing '}' (its index is returned)."""
        kinds = self.kinds
        while True:
            kind = kinds[i]
            if kind in SEPARATORS:
                i += 1
            elif kind == RBRACE:
                return i
            elif kind in starts:
                node, i = rule(i)
                out.append(node)
                if kinds[i] in SEPARATORS:
                    i += 1
                elif kinds[i] != RBRACE:
                    raise Reject(f"expected a separator at token {i}")
            else:
                raise Reject(f"unexpected token {i}")

    def item(self, i: int):
        kind = self.kinds[i]
        if kind == INPUT:
            return self.input_decl(i)
        if kind == BLOCK:
            return self.block_def(i)
        if kind == LAYERS:
            return self.braced("layers_sec", i, self.stmt, EXPR_START)
        if kind == TRAIN or kind == SEARCH or kind == ADVERSARIAL:
            return self.braced("setting_sec", i, self.setting, NAME_ONLY)
        if kind == NETWORK:
            return self.network_def(i)
        node, j = self.expr(i + 1)  # section: (LOSS | OPTIMIZER | METRICS) expr
        return _tree("section", [_token(self.toks[i]), node], self.toks[i], self.toks[j - 1]), j

    # network_def: NETWORK NAME "{" _lines{_item} "}"
    def network_def(self, i0: int):
        self.expect(i0 + 1, NAME)
        i = self.expect(i0 + 2, LBRACE)
        children = [_token(self.toks[i0]), _token(self.toks[i0 + 1])]
        i = self.lines(i, self.item, ITEM_START, children)
        return _tree("network_def", children, self.toks[i0], self.toks[i]), i + 1

    # input_decl: INPUT NAME ":" tensor_type
    def input_decl(self, i0: int):
        self.expect(i0 + 1, NAME)
        i = self.expect(i0 + 2, COLON)
        ttype, i = self.tensor_type(i)
        toks = self.toks
        return _tree("input_decl", [_token(toks[i0]), _token(toks[i0 + 1]), ttype], toks[i0], toks[i - 1]), i

    # tensor_type: INT_KW? "[" [dim ("," dim)*] "]" ; ?dim: NUMBER -> dim_int | "?" -> dim_any
    def tensor_type(self, i0: int):
        kinds, toks = self.kinds, self.toks
        children: list = []
        i = i0
        if kinds[i] == INT_KW:
            children.append(_token(toks[i]))
            i += 1
        i = self.expect(i, LSQB)
        if kinds[i] != RSQB:
            while True:
                if kinds[i] == NUMBER:
                    children.append(_tree("dim_int", [_token(toks[i])], toks[i], toks[i]))
                elif kinds[i] == QMARK:
                    children.append(_tree("dim_any", [], toks[i], toks[i]))
                else:
                    raise Reject(f"expected a dimension at token {i}")
                i += 1
                if kinds[i] != COMMA:
                    break
                i += 1
        i = self.expect(i, RSQB)
        return _tree("tensor_type", children, toks[i0], toks[i - 1]), i

    # block_def: BLOCK NAME "(" [NAME ("," NAME)*] ")" "{" _lines{stmt} "}"
    def block_def(self, i0: int):
        kinds, toks = self.kinds, self.toks
        self.expect(i0 + 1, NAME)
        i = self.expect(i0 + 2, LPAR)
        children = [_token(toks[i0]), _token(toks[i0 + 1])]
        if kinds[i] != RPAR:
            while True:
                self.expect(i, NAME)
                children.append(_token(toks[i]))
                i += 1
                if kinds[i] != COMMA:
                    break
                i += 1
        i = self.expect(i, RPAR)
        i = self.expect(i, LBRACE)
        i = self.lines(i, self.stmt, EXPR_START, children)
        return _tree("block_def", children, toks[i0], toks[i]), i + 1

    # layers_sec: LAYERS "{" _lines{stmt} "}" ; setting_sec: (TRAIN | SEARCH) "{" _lines{setting} "}"
    def braced(self, data: str, i0: int, rule, starts: frozenset):
        i = self.expect(i0 + 1, LBRACE)
        children = [_token(self.toks[i0])]
        i = self.lines(i, rule, starts, children)
        return _tree(data, children, self.toks[i0], self.toks[i]), i + 1

    # ?stmt: NAME "=" chain -> assign | chain -> expr_stmt
    def stmt(self, i0: int):
        toks = self.toks
        if self.kinds[i0] == NAME and self.kinds[i0 + 1] == EQUAL:
            node, i = self.expr(i0 + 2)
            return _tree("assign", [_token(toks[i0]), node], toks[i0], toks[i - 1]), i
        node, i = self.expr(i0)
        return _tree("expr_stmt", [node], toks[i0], toks[i - 1]), i

    # setting: NAME (expr | keyword_value)* ; keyword_value: INPUT -> name
    def setting(self, i0: int):
        kinds = self.kinds
        children = [_token(self.toks[i0])]
        i = i0 + 1
        while kinds[i] in SETTING_VALUE_START:
            if kinds[i] == INPUT:  # `target input`: the keyword read as a name
                tok = self.toks[i]
                children.append(_tree("name", [_token(tok)], tok, tok))
                i += 1
                continue
            node, i = self.expr(i)
            children.append(node)
        return _tree("setting", children, self.toks[i0], self.toks[i - 1]), i

    # ?expr: chain ; ?chain: sum ("->" sum)* ; ?sum: product ("+" product)* ; ?product: unary ("*" unary)*
    def expr(self, i0: int):
        """A chain, with its sums, products and signs parsed in loops here: only brackets
        recurse, so the depth of Python's stack follows the nesting of brackets alone."""
        kinds, toks = self.kinds, self.toks
        links: list = []
        i = i0
        while True:
            terms: list = []
            term_start = i
            while True:
                factors: list = []
                factor_start = i
                while True:
                    node, i = self.atom(i) if kinds[i] != MINUS else self.unary(i)
                    factors.append(node)
                    if kinds[i] != STAR:
                        break
                    i += 1
                terms.append(factors[0] if len(factors) == 1
                             else _tree("product", factors, toks[factor_start], toks[i - 1]))
                if kinds[i] != PLUS:
                    break
                i += 1
            links.append(terms[0] if len(terms) == 1 else _tree("sum", terms, toks[term_start], toks[i - 1]))
            if kinds[i] != ARROW:
                break
            i += 1
        if len(links) == 1:
            return links[0], i
        return _tree("chain", links, toks[i0], toks[i - 1]), i

    # ?unary: "-" unary -> neg | atom
    def unary(self, i0: int):
        kinds, toks = self.kinds, self.toks
        i = i0
        while kinds[i] == MINUS:
            i += 1
        node, end = self.atom(i)
        last = toks[end - 1]
        for sign in range(i - 1, i0 - 1, -1):  # innermost sign first
            node = _tree("neg", [node], toks[sign], last)
        return node, end

    def atom(self, i: int):
        kind = self.kinds[i]
        tok = self.toks[i]
        if kind == NAME:
            following = self.kinds[i + 1]
            if following == LPAR:
                return self.call(i)
            if following == DOT:
                return self.dotted(i)
            return _tree("name", [_token(tok)], tok, tok), i + 1
        if kind == NUMBER:
            return _tree("number", [_token(tok)], tok, tok), i + 1
        if kind == LSQB:
            return self.list_(i)
        if kind == LPAR:  # "(" chain ")" -> group
            node, j = self.expr(i + 1)
            j = self.expect(j, RPAR)
            return _tree("group", [node], tok, self.toks[j - 1]), j
        if kind == STRING:
            return _tree("string", [_token(tok)], tok, tok), i + 1
        if kind == TRUE:
            return _tree("true", [], tok, tok), i + 1
        if kind == FALSE:
            return _tree("false", [], tok, tok), i + 1
        raise Reject(f"expected a value at token {i}")

    # NAME ("." NAME)+ -> dotted
    def dotted(self, i0: int):
        kinds, toks = self.kinds, self.toks
        children = [_token(toks[i0])]
        i = i0 + 1
        while kinds[i] == DOT:
            self.expect(i + 1, NAME)
            children.append(_token(toks[i + 1]))
            i += 2
        return _tree("dotted", children, toks[i0], toks[i - 1]), i

    # NAME "(" [arg ("," arg)*] ")" -> call ; ?arg: _key "=" expr -> kwarg | expr
    def call(self, i0: int):
        kinds, toks = self.kinds, self.toks
        children = [_token(toks[i0])]
        i = i0 + 2
        if kinds[i] != RPAR:
            while True:
                if kinds[i] in KEY_KINDS and kinds[i + 1] == EQUAL:
                    node, j = self.expr(i + 2)
                    children.append(_tree("kwarg", [_token(toks[i]), node], toks[i], toks[j - 1]))
                else:
                    node, j = self.expr(i)
                    children.append(node)
                i = j
                if kinds[i] != COMMA:
                    break
                i += 1
        i = self.expect(i, RPAR)
        return _tree("call", children, toks[i0], toks[i - 1]), i

    # "[" [expr ("," expr)*] "]" -> list
    def list_(self, i0: int):
        kinds = self.kinds
        children: list = []
        i = i0 + 1
        if kinds[i] != RSQB:
            while True:
                node, i = self.expr(i)
                children.append(node)
                if kinds[i] != COMMA:
                    break
                i += 1
        i = self.expect(i, RSQB)
        return _tree("list", children, self.toks[i0], self.toks[i - 1]), i


ITEM_START = frozenset((INPUT, BLOCK, LAYERS, LOSS, OPTIMIZER, METRICS, TRAIN, SEARCH, NETWORK, ADVERSARIAL))
NAME_ONLY = frozenset((NAME,))

# Brackets nest at most MAX_NESTING deep (the lexer refuses more), two frames a level; pure
# Python calls do not use the C stack in Python 3.11, so a higher limit is safe.
_STACK_LIMIT = 20_000


def parse(text: str) -> tuple[Node, tuple[Tok, ...]] | None:
    """The syntax tree and comments of `text`, or None where the fast path does
    not accept the text (then Lark must parse it, to accept it or to explain why not)."""
    old_limit, collecting = sys.getrecursionlimit(), gc.isenabled()
    gc.disable()  # a tree only grows while it is built: the collector's passes over it would be waste
    try:
        toks, comments = lex(text)
        sys.setrecursionlimit(max(old_limit, _STACK_LIMIT))
        return _Parser(toks).start(), tuple(comments)
    except (Reject, IndexError, RecursionError):
        return None
    finally:
        sys.setrecursionlimit(old_limit)
        if collecting:
            gc.enable()

