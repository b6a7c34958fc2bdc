"""The VS Code extension's TextMate grammar: it is what nnspec/lsp/textmate.py makes from the
keyword table and the catalog, and, run over every example spec by a TextMate tokenizer
(tests/textmate.py), it gives each token the scope nnspec's own parser says it has: keywords,
numbers, strings, comments, catalog names, argument names, defined names."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from textmate import tokenize

from nnspec import catalog
from nnspec.lsp.textmate import grammar
from nnspec.parse import parse_text
from nnspec.syntax import KEYWORDS, Node, Tok

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR_FILE = ROOT / "editors" / "vscode" / "syntaxes" / "nnspec.tmLanguage.json"
SPECS = sorted((ROOT / "specs").glob("*.nn"))
KEYWORD_TERMINALS = set(KEYWORDS.values())
CATALOG = [("layer", catalog.layers, "support.class.layer.nnspec"),
           ("activation", catalog.activations, "support.function.activation.nnspec"),
           ("loss", catalog.losses, "support.function.loss.nnspec"),
           ("metric", catalog.metrics, "support.function.metric.nnspec"),
           ("optimizer", catalog.optimizers, "support.class.optimizer.nnspec")]


def test_the_committed_grammar_is_the_generated_one():
    assert json.loads(GRAMMAR_FILE.read_text()) == grammar(), (
        "regenerate: .venv/bin/python -m nnspec.lsp.textmate > editors/vscode/syntaxes/nnspec.tmLanguage.json")


def expected_scopes(tree, lines: list[str]):
    """(token, scope it must have, or None: no keyword/support scope) for each token the parser made."""
    out = []

    def visit(node, parent=None, index=0):
        if isinstance(node, Tok):
            out.append((node, _expected(node, parent, index, lines)))
            return
        if node.kind in ("true", "false"):
            out.append((Tok(node.kind, node.kind, node.pos), "constant.language.nnspec"))
        for i, child in enumerate(node.children):
            visit(child, node, i)

    visit(tree)
    return out


def _expected(tok: Tok, parent: Node, index: int, lines: list[str]) -> str | None:
    if tok.kind == "NUMBER":
        return "constant.numeric.nnspec"
    if tok.kind == "STRING":
        return "string.quoted.double.nnspec"
    if parent.kind == "kwarg" and index == 0:  # an argument's name, keyword or not
        before = lines[tok.line - 1][:tok.col - 1].rstrip()
        return "variable.parameter.nnspec" if before.endswith(("(", ",")) else "skip"
    if tok.kind == "INT_KW":
        return "storage.type.nnspec"
    if tok.kind in KEYWORD_TERMINALS:
        return "keyword.control.nnspec"
    if parent.kind in ("model", "network_def", "block_def") and index == 1:
        return "entity.name.type.nnspec"
    if parent.kind in ("call", "name") and index == 0:
        return next((scope for _, registry, scope in CATALOG if tok.text in registry), None)
    return None


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_token_of_an_example_spec_gets_its_scope(path):
    text = path.read_text()
    lines = text.split("\n")
    scopes = tokenize(grammar(), text)
    parsed = parse_text(text)
    checked = 0
    for tok, want in [*expected_scopes(parsed.tree, lines), *((c, "comment.line.number-sign.nnspec") for c in parsed.comments)]:
        if want == "skip":
            continue
        line, start, end = tok.line - 1, tok.col - 1, tok.pos[3] - 1
        got = [scopes[line][i] for i in range(start, end)]
        where = f"{path.name}:{tok.line}:{tok.col} {tok.text!r}"
        if want is None:  # an ordinary name: no keyword or catalog colour
            assert not any(s.startswith(("keyword", "support")) for c in got for s in c), (where, got)
        else:
            assert all(want in c for c in got), (where, want, got)
            checked += 1
    assert checked > 10


def test_keywords_naming_arguments_and_shapes():
    text = 'model M {\n    input x: int[?, 8]  # "not a string"\n    layers { GRU(32, layers=2) -> relu }\n}\n'
    scopes = tokenize(grammar(), text)
    line1, line2 = text.split("\n")[1:3]
    assert "storage.type.nnspec" in scopes[1][line1.index("int")]
    assert "constant.language.unknown-dimension.nnspec" in scopes[1][line1.index("?")]
    assert "constant.numeric.nnspec" in scopes[1][line1.index("8")]
    assert scopes[1][line1.index('"')] == {"comment.line.number-sign.nnspec"}  # a quote in a comment is comment
    at = line2.index("layers=")
    assert scopes[2][at] == {"variable.parameter.nnspec"}  # `layers` names an argument here
    assert "keyword.control.nnspec" in scopes[2][line2.index("layers {")]
    assert "support.class.layer.nnspec" in scopes[2][line2.index("GRU")]
    assert "support.function.activation.nnspec" in scopes[2][line2.index("relu")]


# ---------------------------------------------------------------- VS Code's own engine, where node is
VSCODE = ROOT / "editors" / "vscode"


def _vscode_tokens(paths: list[Path]) -> dict | None:
    """vscode-textmate's tokens for each file, or None where node or its modules are missing."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None or not (VSCODE / "node_modules" / "vscode-textmate").is_dir():
        return None
    proc = subprocess.run([node, "test/tokenize.js", *map(str, paths)], cwd=VSCODE, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_vscode_textmate_scopes_every_example_spec_as_the_python_tokenizer_does():
    tokens = _vscode_tokens(SPECS)
    if tokens is None:
        pytest.skip("needs node and, in editors/vscode: npm install --no-save vscode-textmate vscode-oniguruma")
    for path in SPECS:
        text = path.read_text()
        ours = tokenize(grammar(), text)
        for n, line_tokens in enumerate(tokens[str(path)]):
            for start, end, scopes in line_tokens:
                theirs = {s for s in scopes if s != "source.nnspec" and not s.startswith("meta.")}
                for i in range(start, end):
                    mine = {s for s in ours[n][i] if not s.startswith("meta.")}
                    assert mine == theirs, (f"{path.name}:{n + 1}:{i + 1}", mine, theirs)


def test_the_extension_contributes_the_language_grammar_and_server_command():
    package = json.loads((VSCODE / "package.json").read_text())
    (language,) = package["contributes"]["languages"]
    (contributed,) = package["contributes"]["grammars"]
    assert language["extensions"] == [".nn"] and contributed["language"] == language["id"]
    assert (VSCODE / contributed["path"]).resolve() == GRAMMAR_FILE
    assert contributed["scopeName"] == grammar()["scopeName"]
    assert package["contributes"]["configuration"]["properties"]["nnspec.server.command"]["default"] == ["nnspec", "lsp"]
    assert "vscode-languageclient" in package["dependencies"]
    config = json.loads((VSCODE / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
    assert ["(", ")"] in config["brackets"] and ["[", "]"] in config["brackets"]
