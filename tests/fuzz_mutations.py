"""Grammar-aware mutations of nnspec sources, and the invariants every input must keep.

The fuzz tests (tests/test_fuzz.py) and `make fuzz` share this module. A source is split
into tokens with the language's own lexical classes (names, numbers, strings, comments,
operators, newlines, blanks); mutations act on tokens, so most mutants stay close to a valid
spec and reach deep into lowering and checking instead of stopping at the first character.

Every input must satisfy `check_invariants`: no exception escapes the front end, every
diagnostic points at a line and column inside the file, and rendering never fails.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from nnspec.catalog import activations, layers, losses, metrics, optimizers
from nnspec.parse import KEYWORDS, decode, source_lines
from nnspec.pipeline import Result, check_text

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"

TOKEN_RE = re.compile(r"""
    (?P<string>"([^"\\\n]|\\.)*")
  | (?P<comment>\#[^\n]*)
  | (?P<number>([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<arrow>->)
  | (?P<newline>\r?\n)
  | (?P<blank>[ \t\f\r]+)
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)

# Literals that are wrong somewhere: huge, tiny, negative, fractional, of another type.
WRONG_LITERALS = (
    "0", "-1", "-0", "0.0", "0.5", "1e999", "-1e999", "1e-999", "10" * 200, "1" + "0" * 400,
    "9223372036854775808", "4294967296", "2147483648", "1000000000000", "1.", ".5", "1e3",
    "007", "true", "false", "\"\"", "\"x\"", "[]", "[1, 2]", "[[1]]", "?", "-", "--1", "- -1",
    "1e400", "1E+308", "3.5e38", "nan", "inf", "None", "choice()", "choice(1)", "uniform(1, 0)",
    "loguniform(0, 1)", "int_range(1.5, 2)", "relu", "Dense(8)", "x", "in",
)

UNICODE_SAMPLES = (
    "café", "模型", "Δx", "ñ", "\u200b", "\u00a0", "\U0001f600", "\u0301", "Ａ", "𝔇ense", "\ufeff",
    "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x85", "\ud7ff", "ß", "İ",
)

PUNCT = ("(", ")", "[", "]", "{", "}", ",", ":", "=", "+", "*", "-", "->", ".", "?", ";", "\"", "#")


def catalog_names() -> list[str]:
    names: list[str] = []
    for registry in (layers, activations, losses, metrics, optimizers):
        names.extend(registry.spellings)
    return sorted(set(names)) + list(KEYWORDS) + ["in", "x", "h", "concat", "choice", "uniform",
                                                   "loguniform", "int_range", "sklearn", "iris"]


NAMES = catalog_names()


def spec_sources() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(SPECS_DIR.glob("*.nn"))}


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs whose texts concatenate back to `text`."""
    return [(m.lastgroup, m.group()) for m in TOKEN_RE.finditer(text)]


def untokenize(tokens: list[tuple[str, str]]) -> str:
    return "".join(t for _, t in tokens)


def _significant(tokens: list[tuple[str, str]]) -> list[int]:
    return [i for i, (k, _) in enumerate(tokens) if k not in ("blank",)] or [0]


# ---------------------------------------------------------------- token mutations
def m_delete(rng: random.Random, toks: list) -> None:
    if toks:
        del toks[rng.choice(_significant(toks))]


def m_duplicate(rng: random.Random, toks: list) -> None:
    if toks:
        i = rng.choice(_significant(toks))
        toks.insert(i, toks[i])


def m_swap(rng: random.Random, toks: list) -> None:
    sig = _significant(toks)
    if len(sig) >= 2:
        i, j = rng.sample(sig, 2) if rng.random() < 0.5 else (sig[k := rng.randrange(len(sig) - 1)], sig[k + 1])
        toks[i], toks[j] = toks[j], toks[i]


def m_literal(rng: random.Random, toks: list) -> None:
    nums = [i for i, (k, _) in enumerate(toks) if k in ("number", "string")] or _significant(toks)
    toks[rng.choice(nums)] = ("number", rng.choice(WRONG_LITERALS))


def m_name(rng: random.Random, toks: list) -> None:
    idx = [i for i, (k, _) in enumerate(toks) if k == "name"] or _significant(toks)
    toks[rng.choice(idx)] = ("name", rng.choice(NAMES))


def m_punct(rng: random.Random, toks: list) -> None:
    i = rng.choice(_significant(toks))
    if rng.random() < 0.5:
        toks[i] = ("punct", rng.choice(PUNCT))
    else:
        toks.insert(i, ("punct", rng.choice(PUNCT)))


def m_unicode(rng: random.Random, toks: list) -> None:
    i = rng.choice(_significant(toks))
    u = rng.choice(UNICODE_SAMPLES)
    kind, text = toks[i]
    if kind == "string":
        toks[i] = (kind, text[:-1] + u + '"')
    elif kind == "name":
        toks[i] = (kind, text + u if rng.random() < 0.5 else u + text)
    else:
        toks.insert(i, ("name", u))


def m_nesting(rng: random.Random, toks: list) -> None:
    depth = rng.choice((20, 200, 1000, 5000))
    opener, closer = rng.choice((("(", ")"), ("[", "]"), ("{", "}"), ("-(", ")")))
    i = rng.choice(_significant(toks))
    balanced = rng.random() < 0.7
    toks.insert(i + 1, ("punct", closer * depth if balanced else ""))
    toks.insert(i, ("punct", opener * depth))


def m_number_huge(rng: random.Random, toks: list) -> None:
    idx = [i for i, (k, _) in enumerate(toks) if k == "number"] or _significant(toks)
    toks[rng.choice(idx)] = ("number", rng.choice(("1" + "0" * 400, "1e999", "10" * 30, "1" + "0" * 12,
                                                    "1" + "0" * 9, "99999999999999999999e99999")))


def m_blank(rng: random.Random, toks: list) -> None:
    idx = [i for i, (k, _) in enumerate(toks) if k in ("blank", "newline")] or _significant(toks)
    toks[rng.choice(idx)] = ("blank", rng.choice(("\t", "\t\t", "", " \f ", "\r", "\n\n", " \\\n", "\v")))


def m_truncate(rng: random.Random, toks: list) -> None:
    del toks[rng.randrange(len(toks) + 1):]


def m_splice(rng: random.Random, toks: list) -> None:
    """Copy a run of tokens elsewhere (a line, a section, half a call)."""
    if len(toks) < 2:
        return
    a = rng.randrange(len(toks))
    b = min(len(toks), a + rng.randint(1, 40))
    chunk = toks[a:b]
    at = rng.randrange(len(toks))
    toks[at:at] = chunk


TOKEN_MUTATIONS = (m_delete, m_duplicate, m_swap, m_literal, m_name, m_punct, m_unicode, m_nesting,
                   m_number_huge, m_blank, m_truncate, m_splice)


# ---------------------------------------------------------------- whole-file mutations (bytes)
def b_crlf(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n") if rng.random() < 0.7 else data.replace(b"\n", b"\r")


def b_bom(rng: random.Random, data: bytes) -> bytes:
    return b"\xef\xbb\xbf" + data


def b_nul(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + b"\x00" + data[i:]


def b_bad_utf8(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9", b"\xfe\xff")) + data[i:]


def b_tabs(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"    ", b"\t")


def b_no_final_newline(rng: random.Random, data: bytes) -> bytes:
    return data.rstrip(b"\n")


BYTE_MUTATIONS = (b_crlf, b_bom, b_nul, b_bad_utf8, b_tabs, b_no_final_newline)


@dataclass(frozen=True)
class Mutant:
    origin: str
    steps: tuple[str, ...]
    data: bytes


def mutate(rng: random.Random, name: str, source: str) -> Mutant:
    """1 to 3 token mutations, then sometimes one byte-level mutation."""
    toks = tokenize(source)
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not toks:
            break
        m = rng.choice(TOKEN_MUTATIONS)
        m(rng, toks)
        steps.append(m.__name__)
    data = untokenize(toks).encode("utf-8", "surrogatepass")
    if rng.random() < 0.25:
        b = rng.choice(BYTE_MUTATIONS)
        data = b(rng, data)
        steps.append(b.__name__)
    return Mutant(name, tuple(steps), data)


def mutants(seed: int, count: int):
    rng = random.Random(seed)
    sources = list(spec_sources().items())
    for _ in range(count):
        name, text = rng.choice(sources)
        yield mutate(rng, name, text)


# ---------------------------------------------------------------- running and invariants
def check_bytes(data: bytes, filename: str = "fuzz.nn") -> tuple[str, Result]:
    """What `nnspec check` does with a file's bytes, in process."""
    text, diag = decode(data)
    if diag is not None:
        shown = data.decode("utf-8", "replace")
        return shown, Result(filename, shown, None, (diag,))
    return text, check_text(text, filename)


def invariant_problems(text: str, result: Result) -> list[str]:
    """Every diagnostic inside the file; rendering works; a valid spec has a graph."""
    problems = []
    lines = source_lines(text)  # as the lexer and the renderer count lines: at '\n' only
    n = len(lines)
    for d in result.diagnostics:
        sp = d.span
        if not (1 <= sp.line <= n + 1 and sp.col >= 1):
            problems.append(f"{d.code} at {sp.line}:{sp.col} outside the file ({n} lines): {d.message}")
            continue
        width = len(lines[sp.line - 1]) if sp.line <= n else 0
        if sp.col > width + 2:
            problems.append(f"{d.code} at {sp.line}:{sp.col} past the end of its line ({width} chars): {d.message}")
        if d.severity not in ("error", "warning") or not re.fullmatch(r"[EW]\d{3}", d.code):
            problems.append(f"malformed diagnostic {d!r}")
    result.render()
    if result.ok and result.checked is None:
        problems.append("ok result without a checked spec")
    return problems


def run_one(data: bytes) -> list[str]:
    """Problems found for one input; an escaping exception is a problem, not a crash of the test."""
    try:
        text, result = check_bytes(data)
        problems = invariant_problems(text, result)
        if result.ok:
            _exercise_backends(result)
        return problems
    except Exception as exc:  # noqa: BLE001 - the fuzz test reports what escaped
        import traceback

        return [f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-4)}"]


def _exercise_backends(result: Result) -> None:
    """What check/summary/compile --emit json do with a valid spec must not fail either."""
    import json

    from nnspec.backends import json_ir, summary

    json.dumps(json_ir.as_json(result.checked))
    json.dumps(summary.as_json(result.checked))
