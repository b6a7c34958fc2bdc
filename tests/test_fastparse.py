"""The parser's fast path (nnspec/fastparse.py) against Lark, the reference it must equal.

Both produce nnspec's own syntax tree (nnspec/syntax.py); the tests compare those trees and
never look at a Lark object. For every input, either both accept and the syntax trees are
identical -- rule kinds, children, every token's kind, text and position, every node's
position -- and so are the comments, or Lark rejects and the fast path does too (then Lark's
diagnostics are what the user sees, checked equal with and without the fast path). Inputs: the
example specs, every diagnostics case, hypothesis-generated valid specs, random sentences of
the grammar in random layouts, random mutations of both, the benchmark's generated specs, and
nesting at and past the limits. The lexer is compared with Lark's through `Lark.lex`.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import test_properties as props
from fuzz_mutations import mutants, mutate
from nnspec import fastparse, parse
from nnspec.diagnostics import SpecError
from nnspec.parse import decode
from nnspec.pipeline import check_text
from nnspec.syntax import Node, Tok, first_difference

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
DIAGNOSTIC_CASES = sorted((ROOT / "tests" / "diagnostics").glob("*.nn"))


def lark_parse(text: str):
    """The syntax tree and comments through Lark alone, or None where Lark refuses the text."""
    try:
        parsed = parse.parse_text(text, fast=False)
    except SpecError:
        return None
    return parsed.tree, parsed.comments


def assert_same_as_lark(text: str) -> bool:
    """Both reject, or both accept with identical trees and comments. True if accepted."""
    reference = lark_parse(text)
    fast = fastparse.parse(text)
    if reference is None:
        assert fast is None, f"the fast path accepts what Lark rejects:\n{text}"
        return False
    assert fast is not None, f"the fast path refuses what Lark accepts:\n{text}"
    (tree, comments), (lark_tree, lark_comments) = fast, reference
    assert isinstance(tree, Node) and isinstance(lark_tree, Node)
    found = first_difference(tree, lark_tree)
    assert found is None, f"{found}\n{text}"
    assert list(comments) == list(lark_comments), text
    assert all(type(c) is Tok and c.kind == "COMMENT" for c in comments)
    return True


def source_text(data: bytes) -> str | None:
    text, _ = decode(data)
    return None if text is None else text.removeprefix("\ufeff")


# ---------------------------------------------------------------- the lexer is Lark's lexer

def lark_tokens(text: str) -> list[tuple] | None:
    """Lark's token stream after the newline post-lexer, through its public `Lark.lex`."""
    try:
        return [(t.type, t.value, t.line, t.column, t.end_line, t.end_column) for t in parse.parser().lex(text)]
    except Exception:  # any refusal: the fast lexer must refuse too
        return None


def fast_tokens(text: str) -> list[tuple] | None:
    try:
        toks, _ = fastparse.lex(text)
    except fastparse.Reject:
        return None
    return [(fastparse.TYPE_OF[k], v, line, col, end_line, end_col)
            for k, v, _, _, line, col, end_line, end_col in toks[:-1]]  # the END marker is the parser's


LEX_CASES = [p.read_text(encoding="utf-8") for p in SPECS] + [
    "model M { layers { Dense(1) -> relu } }  \t",
    "model M {\r\n  input x: int[?, 3]\r\r\n# c\n  train { lr .5e-3; x 1. -2 a.b } }\n# end",
    "model M { layers { GRU(32, layers=2, int=1, model=true, search=false) } }",
    'model M { train { data "a \\"b\\" c" } } @',
]


@pytest.mark.parametrize("text", LEX_CASES, ids=lambda t: t[:30])
def test_the_fast_lexer_gives_larks_tokens(text):
    assert fast_tokens(text) == lark_tokens(text)


def test_keywords_are_the_grammars_word_terminals():
    """Every terminal of the grammar whose pattern is a plain word is a keyword of the fast
    lexer, with the same name (read from the grammar through Lark's public `get_terminal`)."""
    grammar = parse.GRAMMAR_PATH.read_text(encoding="utf-8")
    words = {}
    for line in grammar.splitlines():
        name, _, rest = line.partition(":")
        if name.isupper() and rest.strip().startswith('"') and rest.strip().strip('"').isalpha():
            words[rest.strip().strip('"')] = name
    assert words == fastparse.KEYWORDS
    for word, name in words.items():
        assert parse.parser().get_terminal(name).pattern.value == word


# ---------------------------------------------------------------- files in the repository

@pytest.mark.parametrize("path", SPECS + DIAGNOSTIC_CASES, ids=lambda p: p.name)
def test_repository_specs_parse_as_with_lark(path):
    text = source_text(path.read_bytes())
    if text is not None:
        assert_same_as_lark(text)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_specs_take_the_fast_path(path):
    assert fastparse.parse(path.read_text(encoding="utf-8")) is not None


TEXT_CASES = [p for p in DIAGNOSTIC_CASES + sorted((ROOT / "tests" / "diagnostics").glob("*.expect"))
              if source_text(p.read_bytes()) is not None]  # binary files: decode() answers before any parser


@pytest.mark.parametrize("path", TEXT_CASES, ids=lambda p: p.name)
def test_diagnostics_are_the_same_without_the_fast_path(path, monkeypatch):
    text = source_text(path.read_bytes())
    with_fast = check_text(text, path.name)
    monkeypatch.setattr(parse, "FAST_PATH", False)
    with_lark = check_text(text, path.name)
    assert with_fast.diagnostics == with_lark.diagnostics
    assert with_fast.render() == with_lark.render()
    assert (with_fast.checked is None) == (with_lark.checked is None)


def test_the_switch_sends_every_parse_to_lark(monkeypatch):
    calls = []
    monkeypatch.setattr(fastparse, "parse", lambda text: calls.append(text))
    monkeypatch.setattr(parse, "FAST_PATH", False)
    assert parse.parse_text(SPECS[0].read_text(encoding="utf-8")).tree.kind == "start"
    assert calls == []


# ---------------------------------------------------------------- generated inputs

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(props.valid_spec())
def test_random_valid_specs_parse_as_with_lark(text):
    assert assert_same_as_lark(text)


EDGES = {
    "settings of several values": "model M { train { lr a.b .5 -2 (1) x(1) 1..5 } }",
    "keywords as argument names": "model M { layers { GRU(32, layers=2, int=1, model=true, search=false) } }",
    "newline before { and ->": "model M\n{\n layers\n {\n  Dense(1)\n  # why\n  -> relu\n }\n}",
    "comment at the end, no newline": "model M {}\n# last",
    "blanks after the last token": "model M {}  \t ",
    "carriage returns": "model M {\r\n  input x: [4]\r\r\n\r\n  layers { Dense(2) }\r\n}\r\n",
    "separators everywhere": ";\n;model M {;; input x: int[?, 3];\n\n; loss mse;};\n",
    "lines inside brackets": "model M { layers { Dense(\n 4,\n\n activation=\n relu\n ) -> [\n1\n] } }",
    "empty calls, lists, blocks": "model M { block B() { }; layers { B() -> [] -> f() } }",
    "a keyword where a name must be": "model M { layers { loss = Dense(2) } }",
    "a dotted name called": "model M { layers { a.b(2) } }",
    "a character no terminal matches": "model M { layers { Dense(2) @ } }",
    "an unterminated string": 'model M { train { data "x } }',
    "a stray closer": "model M { layers { Dense(2)) } }",
}


@pytest.mark.parametrize("text", EDGES.values(), ids=EDGES.keys())
def test_edge_cases_parse_as_with_lark(text):
    assert_same_as_lark(text)


class Sentences:
    """Random sentences of grammar/nnspec.lark (every rule and alternative), laid out at random:
    newlines inside brackets and before `->` or `{`, comments, `;`, CRLF, tabs and runs of
    blank lines. They are syntactically valid; whether they check does not matter here."""

    KEYS = ("units", "rate", "layers", "int", "model", "search", "loss", "train", "input", "block")
    NUMBERS = ("0", "1", "32", "1.", ".5", "2.5", "1e3", "1E-3", "5e+2", "007")
    STRINGS = ('"data.csv"', '""', '"a \\"b\\" c"', '"tab\\t"')
    NAMES = ("x", "h", "Dense", "relu", "Conv2D", "a_1", "_b", "modelx", "trainer", "inty")

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def pick(self, options):
        return self.rng.choice(options)

    def spec(self) -> str:
        toks = self.seps(0) + ["model", self.pick(self.NAMES), "{"]
        for _ in range(self.rng.randint(0, 6)):
            toks += self.seps(0) + self.item() + self.seps(1)
        toks += self.seps(0) + ["}"] + self.seps(0)
        return self.layout(toks)

    def seps(self, least: int) -> list[str]:
        return [self.pick(("\n", ";", "\n\n")) for _ in range(self.rng.randint(least, 2))]

    def item(self) -> list[str]:
        kind = self.pick(("input", "block", "layers", "loss", "optimizer", "metrics", "train", "search"))
        if kind == "input":
            dims = [self.pick(("4", "?", "28")) for _ in range(self.rng.randint(0, 3))]
            return ["input", self.pick(self.NAMES), ":"] + (["int"] if self.rng.random() < 0.3 else []) + \
                ["["] + self.joined(dims) + ["]"]
        if kind == "block":
            params = [[self.pick(self.NAMES)] for _ in range(self.rng.randint(0, 3))]
            return ["block", self.pick(self.NAMES), "("] + self.joined(params) + [")", "{"] + self.body(self.stmt) + ["}"]
        if kind in ("layers", "train", "search"):
            return [kind, "{"] + self.body(self.stmt if kind == "layers" else self.setting) + ["}"]
        return [kind] + self.expr(3)

    def joined(self, parts: list) -> list[str]:
        out: list[str] = []
        for i, part in enumerate(parts):
            out += ([","] if i else []) + (part if isinstance(part, list) else [part])
        return out

    def body(self, rule) -> list[str]:
        toks: list[str] = []
        for _ in range(self.rng.randint(0, 4)):
            toks += self.seps(0) + rule() + self.seps(1)
        return toks + (rule() if self.rng.random() < 0.3 else [])

    def stmt(self) -> list[str]:
        prefix = [self.pick(self.NAMES), "="] if self.rng.random() < 0.4 else []
        return prefix + self.expr(3)

    def setting(self) -> list[str]:
        toks = [self.pick(self.NAMES)]
        for _ in range(self.rng.randint(0, 3)):
            toks += self.expr(2)
        return toks

    def expr(self, depth: int) -> list[str]:
        """chain of sums of products of signed atoms."""
        links = [self.sum_(depth) for _ in range(self.rng.choice((1, 1, 2, 3)))]
        return self.between(links, "->")

    def sum_(self, depth: int) -> list[str]:
        return self.between([self.product(depth) for _ in range(self.rng.choice((1, 1, 1, 2)))], "+")

    def product(self, depth: int) -> list[str]:
        factors = [["-"] * self.rng.choice((0, 0, 0, 1, 2)) + self.atom(depth)
                   for _ in range(self.rng.choice((1, 1, 1, 2)))]
        return self.between(factors, "*")

    @staticmethod
    def between(parts: list[list[str]], op: str) -> list[str]:
        out: list[str] = []
        for i, part in enumerate(parts):
            out += ([op] if i else []) + part
        return out

    def atom(self, depth: int) -> list[str]:
        kinds = ["number", "string", "true", "false", "name", "dotted"]
        if depth > 0:
            kinds += ["call", "call", "list", "group"]
        kind = self.pick(kinds)
        if kind == "number":
            return [self.pick(self.NUMBERS)]
        if kind == "string":
            return [self.pick(self.STRINGS)]
        if kind in ("true", "false"):
            return [kind]
        if kind == "name":
            return [self.pick(self.NAMES)]
        if kind == "dotted":
            return self.between([[self.pick(self.NAMES)] for _ in range(self.rng.randint(2, 3))], ".")
        if kind == "call":
            args = [[self.pick(self.KEYS + self.NAMES), "="] + self.expr(depth - 1) if self.rng.random() < 0.4
                    else self.expr(depth - 1) for _ in range(self.rng.randint(0, 3))]
            return [self.pick(self.NAMES), "("] + self.joined(args) + [")"]
        if kind == "list":
            return ["["] + self.joined([self.expr(depth - 1) for _ in range(self.rng.randint(0, 3))]) + ["]"]
        return ["("] + self.expr(depth - 1) + [")"]

    def layout(self, toks: list[str]) -> str:
        """Join tokens with blanks; newlines only where the language ignores them."""
        out: list[str] = []
        depth = 0
        previous = ""
        for tok in toks:
            if tok in ("\n", "\n\n", ";"):
                out.append(tok if tok == ";" else self.pick((tok, "\r" + tok, "  # note" + tok)))
                previous = tok
                continue
            may_break = depth > 0 or tok in ("->", "{")
            word = previous[-1:].isalnum() or previous[-1:] in ('_', '"', ".")
            blank = self.pick((" ", "\t", "  ") + (("",) if not word else ()))
            if may_break and self.rng.random() < 0.2:
                blank = self.pick(("\n", "\n  ", " # why\n\t", "\r\n\r\n"))
            out.append(("" if not out else blank) + tok)
            depth += tok in ("(", "[")
            depth -= tok in (")", "]")
            previous = tok
        return "".join(out) + self.pick(("", "\n", "\n# end"))


def test_random_sentences_of_the_grammar_parse_as_with_lark():
    accepted = 0
    for seed in range(250):
        accepted += assert_same_as_lark(Sentences(seed).spec())
    assert accepted >= 240  # the generator writes valid sentences (a few merge tokens, e.g. `1` `.5`)


def test_mutated_sentences_parse_as_with_lark():
    rng = random.Random(7)
    for seed in range(400):
        text = source_text(mutate(rng, "sentence", Sentences(1000 + seed).spec()).data)
        if text is not None:
            assert_same_as_lark(text)


def test_mutated_example_specs_parse_as_with_lark():
    for mutant in mutants(seed=11, count=1500):
        text = source_text(mutant.data)
        if text is not None:
            assert_same_as_lark(text)


# ---------------------------------------------------------------- size and nesting

def test_benchmark_specs_parse_as_with_lark():
    from bench.check_speed import layered_spec

    assert assert_same_as_lark(layered_spec(1000))
    assert assert_same_as_lark(layered_spec(10_000))  # 6,000 lines


def test_ten_thousand_layers_in_one_chain():
    chain = "\n".join(["        Dense(16)" if i % 2 == 0 else "        -> relu" for i in range(10_000)])
    text = f"model Deep {{\n    input x: [8]\n    layers {{\n{chain}\n    }}\n}}\n"
    assert assert_same_as_lark(text)


def nested(depth: int, opener: str = "(", closer: str = ")") -> str:
    value = opener * depth + "Dense(4)" + closer * depth
    return f"model M {{\n  input x: [4]\n  layers {{\n    {value}\n  }}\n}}\n"


@pytest.mark.parametrize("depth, accepted", [(200, True), (255, True), (256, False), (400, False)])
def test_nested_brackets_at_and_past_the_limit(depth, accepted):
    # A call's own '(' counts too: 255 groups around Dense(4) are 256 brackets deep.
    assert assert_same_as_lark(nested(depth)) is accepted
    assert assert_same_as_lark(nested(depth, "[", "]")) is accepted


@pytest.mark.parametrize("signs, accepted", [(200, True), (256, True), (257, False)])
def test_signs_at_and_past_the_limit(signs, accepted):
    text = f"model M {{\n  train {{\n    lr {'-' * signs}1\n  }}\n}}\n"
    assert assert_same_as_lark(text) is accepted


def test_deep_nesting_parses_with_little_stack_left():
    """The fast path raises the recursion limit it needs; called with the stack already deep,
    it still parses 255 brackets (or, if it could not, Lark would: never a RecursionError)."""
    def deep(n: int):
        return fastparse.parse(nested(255)) if n == 0 else deep(n - 1)

    assert deep(800) is not None


# ---------------------------------------------------------------- no state outside the process

PARSE_EVERYTHING = """
import json, sys
from pathlib import Path
from nnspec import parse
from nnspec.diagnostics import SpecError
out = {}
for path in sys.argv[1:]:
    text = Path(path).read_text(encoding="utf-8")
    for fast in (True, False):
        try:
            parsed = parse.parse_text(text, fast=fast)
            out[f"{path}:{fast}"] = repr((parsed.tree, parsed.comments))
        except SpecError as exc:
            out[f"{path}:{fast}"] = repr(exc.diagnostics)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def user_folders(tmp_path_factory):
    """A HOME and an XDG_CACHE_HOME as on a fresh machine, shared by the runs below in order."""
    home, cache = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("cache")
    return {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(cache)}


@pytest.mark.parametrize("run", ["fresh folders", "folders a first run used"])
def test_parsing_depends_on_no_cache_or_home_folder(run, user_folders, tmp_path):
    """The parse of every spec (and a syntax error, which builds Lark's parser) is the same in a
    new process with empty user folders, in a second process after it, and in this one; and
    parsing writes nothing there: there is no grammar cache whose state could change a result."""
    broken = tmp_path / "broken.nn"
    broken.write_text("model M {\n  layers { Dense(4 }\n}\n", encoding="utf-8")
    paths = [str(p) for p in SPECS[:6]] + [str(broken)]
    done = subprocess.run([sys.executable, "-c", PARSE_EVERYTHING, *paths], env=user_folders, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        for fast in (True, False):
            try:
                parsed = parse.parse_text(text, fast=fast)
                mine = repr((parsed.tree, parsed.comments))
            except SpecError as exc:
                mine = repr(exc.diagnostics)
            assert theirs[f"{path}:{fast}"] == mine
    for folder in ("HOME", "XDG_CACHE_HOME"):
        assert list(Path(user_folders[folder]).rglob("*")) == [], f"parsing wrote into {folder}"
