"""The corpus of bad specs in tests/diagnostics/: every diagnostic, at its exact place.

Convention (also in tests/diagnostics/README.md). A spec states what the checker must say
about it in comments on the offending line:

    Dense(units=-3)        # error[E108]@15
    Cnov2D(8, 3)           # error[E100]@9 "did you mean 'Conv2D'?"
    h = x -> Dense(3)      # warning[W201]@9

`error[CODE]@COL` (or `warning[...]`) expects a diagnostic with that severity and code on
this line whose span starts at 1-based column COL; an optional "text" right after it must
occur in the diagnostic's message, notes or help. Several expectations may share a line.
Where no comment can stand (end of file, empty or binary files) a sidecar NAME.expect holds
lines `LINE:COL error[CODE] "optional text"`. Every diagnostic must be expected: an
unexpected error or warning fails the test, and so does a missing one.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.cli import main
from nnspec.diagnostics import MAX_LINE_SHOWN
from nnspec.pipeline import check_file, check_text

HERE = Path(__file__).parent
CORPUS = HERE / "diagnostics"
SPECS = HERE.parent / "specs"
BAD = sorted(CORPUS.glob("*.nn"))

EXPECT = re.compile(r'(error|warning)\[([EW]\d{3})\]@(\d+)(?:\s+"([^"]*)")?')
SIDECAR = re.compile(r'^(\d+):(\d+)\s+' + EXPECT.pattern[:EXPECT.pattern.index("@")] + r'(?:\s+"([^"]*)")?\s*$')


def expectations(path: Path) -> list[tuple[str, str, int, int, str | None]]:
    """(severity, code, line, col, text) for every expectation of a corpus file."""
    found = []
    text = path.read_bytes().decode("utf-8", "replace")
    for lineno, line in enumerate(text.splitlines(), 1):
        if "#" not in line:
            continue
        comment = line[line.index("#"):]
        for m in EXPECT.finditer(comment):
            found.append((m[1], m[2], lineno, int(m[3]), m[4]))
    sidecar = path.with_suffix(".expect")
    if sidecar.exists():
        for raw in sidecar.read_text(encoding="utf-8").splitlines():
            if not raw.strip() or raw.startswith("#"):
                continue
            m = SIDECAR.match(raw)
            assert m, f"{sidecar.name}: cannot read expectation {raw!r}"
            found.append((m[3], m[4], int(m[1]), int(m[2]), m[5]))
    return found


def test_corpus_is_large_enough():
    assert len(BAD) >= 45
    assert all(expectations(p) for p in BAD), [p.name for p in BAD if not expectations(p)]


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_diagnostics_match_expectations(path: Path):
    result = check_file(path)
    got = [(d.severity, d.code, d.span.line, d.span.col) for d in result.diagnostics]
    wanted = expectations(path)
    shown = "\n" + result.render()
    assert sorted(got) == sorted(w[:4] for w in wanted), shown
    for severity, code, line, col, text in wanted:
        if text is None:
            continue
        said = [" ".join([d.message, d.help or "", *d.notes]) for d in result.diagnostics
                if (d.severity, d.code, d.span.line, d.span.col) == (severity, code, line, col)]
        assert any(text in s for s in said), f"{code}@{line}:{col} should say {text!r}; it says: {said}"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_rendering_shows_location_source_line_and_carets(path: Path):
    result = check_file(path)
    rendered = result.render()
    lines = result.source.splitlines()
    for diag in result.diagnostics:
        head = f"{path}:{diag.span.line}:{diag.span.col}: {diag.severity}[{diag.code}]: {diag.message}"
        assert head in rendered
        if 1 <= diag.span.line <= len(lines) and lines[diag.span.line - 1].strip():
            source_line = lines[diag.span.line - 1]
            block = rendered[rendered.index(head):].splitlines()
            carets = block[3].split("| ", 1)[1]
            assert set(carets.strip()) == {"^"}
            if len(source_line) <= MAX_LINE_SHOWN:
                assert block[2] == f"{diag.span.line} | {source_line}"
                assert carets.index("^") == diag.span.col - 1  # no tabs in the corpus
            else:  # an excerpt around the span, the carets under the same characters
                shown = block[2].split("| ", 1)[1]
                assert len(shown) <= MAX_LINE_SHOWN + 6 and "..." in shown
                at = carets.index("^")
                assert shown[at:at + 10] == source_line[diag.span.col - 1:diag.span.col + 9]


def _invoke(args: list[str]):
    return CliRunner().invoke(main, args)  # .output holds stdout and stderr together


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_cli_exit_code_and_no_traceback(path: Path):
    has_error = any(e[0] == "error" for e in expectations(path))
    result = _invoke(["check", str(path)])
    assert result.exit_code == (1 if has_error else 0), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    out = result.output
    assert "Traceback" not in out and "internal error" not in out
    first = expectations(path)[0]
    assert f"{first[0]}[{first[1]}]" in out


def test_cli_on_the_whole_corpus_and_on_the_examples_as_a_process():
    """One real process each: exit 1 on the corpus (never 70), 0 on every example spec."""
    cmd = [sys.executable, "-m", "nnspec.cli", "check", "-q"]
    bad = subprocess.run(cmd + [str(p) for p in BAD], capture_output=True, text=True)
    assert bad.returncode == 1, bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr and "internal error" not in bad.stderr
    assert bad.stderr.count("error[") >= len(BAD) - 3
    good = subprocess.run(cmd + [str(p) for p in sorted(SPECS.glob("*.nn"))], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "error[" not in good.stderr


CODE = re.compile(r"""["']([EW]\d{3})["']""")
PACKAGE = HERE.parent / "nnspec"
FRONT_END = ("parse.py", "lower.py", "check", "diagnostics.py", "catalog")


def emitted_codes(*parts: str) -> set[str]:
    """Every diagnostic code written in the package's source (all of it, or some modules)."""
    # parts of the path inside the package only: a checkout under a folder named like a
    # module (CI's /check/...) must not pull every file in
    files = [p for p in PACKAGE.rglob("*.py")
             if not parts or any(part in p.relative_to(PACKAGE).parts for part in parts)]
    return {code for f in files for code in CODE.findall(f.read_text(encoding="utf-8"))}


def test_every_code_in_the_source_is_documented():
    documented = set(re.findall(r"^### ([EW]\d{3})$", (HERE.parent / "docs" / "errors.md").read_text(), re.M))
    emitted = emitted_codes()
    assert emitted, "no codes found: the pattern is out of step with the source"
    assert emitted - documented == set(), "document these codes in docs/errors.md"
    assert documented - emitted == set(), "docs/errors.md documents codes nothing emits"


def test_every_spec_diagnostic_code_has_a_bad_spec_in_the_corpus():
    exercised = {e[1] for p in BAD for e in expectations(p)}
    missing = emitted_codes(*FRONT_END) - {"E900"} - exercised
    assert missing == set(), f"add a spec to tests/diagnostics/ for {sorted(missing)}"


LARK_JARGON = re.compile(r"__ANON|\$END|\b_NL\b|\b(?:LSQB|RSQB|LPAR|RPAR|LBRACE|RBRACE|NAME|NUMBER|STRING|COMMA|"
                         r"SEMICOLON|COLON|EQUAL|INT_KW|MINUS|PLUS|STAR)\b")


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.nn")), ids=lambda p: p.name)
def test_every_truncation_of_an_example_is_a_clean_syntax_error(path: Path):
    """Cut an example anywhere inside its model: the error is a syntax error said in words;
    when the file simply stops, E005 points just after its last code and names what is open."""
    from nnspec.parse import code_end, source_lines

    text = path.read_text()
    start = text.index("model")
    for cut in range(start + 1, len(text.rstrip()) - 1, 5):
        src = text[:cut]
        result = check_text(src, "cut.nn")
        assert not result.ok, src
        syntax = [d for d in result.diagnostics if d.code in ("E003", "E005")]
        if not syntax:
            continue  # the cut left a complete, but wrong, model (no `}` missing): checked normally
        (diag,) = result.diagnostics
        said = " ".join([diag.message, diag.help or "", *diag.notes])
        assert not LARK_JARGON.search(said), said
        if diag.code == "E005":
            lines = source_lines(src)
            last = max(i for i, line in enumerate(lines, 1) if code_end(line) > 1)
            assert (diag.span.line, diag.span.col) == (last, code_end(lines[last - 1])), src
            assert ("never closed" in diag.message) == ("{" in src[start:]), diag.message


def test_corpus_syntax_messages_use_words_not_parser_jargon():
    for path in BAD:
        for diag in check_file(path).diagnostics:
            said = " ".join([diag.message, diag.help or "", *diag.notes])
            assert not LARK_JARGON.search(said), f"{path.name}: {said}"
