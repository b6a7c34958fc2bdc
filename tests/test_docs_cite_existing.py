"""The docs cite only files that exist: every path written in backticks in README.md and docs/*.md
(`nnspec/train/run.py`, `tests/test_check.py`, `bench/README.md`, `specs/iris_mlp.nn`,
`docs/language.md`, `catalog/geometry.py`...) and every relative Markdown link is a file or folder
of this repository. A renamed or deleted module then fails here instead of leaving a stale doc."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("nnspec", "tests", "bench", "specs", "docs", "grammar", "requirements")  # the repository's folders
SOURCE = (".py", ".md", ".lark")  # a bare name with these endings is a file of the repository
PLACEHOLDERS = {"FILE", "NAME", "DIR", "RUN_DIR", "OUT"}  # what a command's user fills in (`FILE.py`)

INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
PATH = re.compile(r"(?<![\w./<>-])((?:[\w.*-]+/)+[\w.*-]*|[\w-]+(?:\.[\w-]+)*\.(?:py|md|lark))(?![\w<>])")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
SKIP = {".venv", ".git", "build", "runs", "__pycache__", ".hypothesis", ".pytest_cache"}


def repository_files() -> list[str]:
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if not SKIP & set(rel.parts):
            found.append(rel.as_posix() + ("/" if path.is_dir() else ""))
    return found


FILES = repository_files()


def cited(doc: Path) -> list[tuple[int, str]]:
    """(line, path) for each path in inline code that names a file of the repository: one starting
    with one of its folders (TOP), or any name ending in .py, .md or .lark."""
    out = []
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        for code in INLINE_CODE.findall(line):
            for token in PATH.findall(code):
                token = token.rstrip(".")
                if token.split("/")[-1].split(".")[0] in PLACEHOLDERS:
                    continue
                if token.split("/")[0] in TOP or token.endswith(SOURCE):
                    out.append((number, token))
    return out


def exists(token: str) -> bool:
    """A path from the root, or the end of one (`catalog/geometry.py`, `run.py`); `*` as a glob."""
    if "*" in token:
        return any(ROOT.glob(token)) or any(ROOT.glob("**/" + token))
    wanted = token.rstrip("/")
    return any(f.rstrip("/") == wanted or f.rstrip("/").endswith("/" + wanted) for f in FILES)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_backticked_path_exists(doc: Path):
    missing = [f"{doc.name}:{line}: `{token}`" for line, token in cited(doc) if not exists(token)]
    assert not missing, "the docs cite files that are not in the repository:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_exists(doc: Path):
    text = doc.read_text(encoding="utf-8")
    links = [target for target in LINK.findall(text) if "://" not in target and not target.startswith("mailto:")]
    missing = [target for target in links if not (doc.parent / target).exists()]
    assert not missing, f"{doc.name} links to files that do not exist: {missing}"


def test_the_scan_finds_the_citations_it_is_for():
    """The patterns are in step with how the docs write paths (else the tests above check nothing)."""
    tokens = {token for doc in DOCS for _, token in cited(doc)}
    assert {"nnspec/train/data.py", "docs/language.md"} <= tokens, sorted(tokens)[:40]
    assert any(t.startswith("tests/") for t in tokens) and any(t.startswith("specs/") for t in tokens)
    assert not exists("nnspec/no_such_module.py") and not exists("shared/LANGUAGE.md")
