"""Completion from the catalog, chosen by where the cursor is: argument names inside a call's
parentheses; losses after `loss`, optimizers after `optimizer`, metrics after `metrics`, data
sources after `data`; train settings in `train { }`; layers, activations and the spec's blocks in
`layers { }` and block bodies; section keywords elsewhere in a model."""
from __future__ import annotations

import re

from lsprotocol import types

from .. import ir
from ..syntax import SECTIONS
from . import catalog_text as cat
from .analysis import Analysis, specs_of

_KIND = {"layer": types.CompletionItemKind.Class, "activation": types.CompletionItemKind.Function,
         "loss": types.CompletionItemKind.Function, "metric": types.CompletionItemKind.Function,
         "optimizer": types.CompletionItemKind.Constructor, "data source": types.CompletionItemKind.Module,
         "train setting": types.CompletionItemKind.Property}
_OPEN_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(([^()]*)$")
_SETTING_LEAD = re.compile(r"(?:^|[;{])\s*(\w+)\s+[\w.]*$")
_BRACE_WORD = re.compile(r"(\w+)(?:\s+\w+)?(?:\s*\([^()]*\))?\s*\{")


def complete(a: Analysis, line: int, character: int) -> types.CompletionList:
    before = a.lines[line][:character] if line < len(a.lines) else ""
    return types.CompletionList(is_incomplete=False, items=_items(a, before, _section(a.lines, line, before)))


def _items(a: Analysis, before: str, section: str | None) -> list[types.CompletionItem]:
    call = _OPEN_CALL.search(before)
    if call is not None:
        return _arguments(a.spec, call.group(1))
    lead = _SETTING_LEAD.search(before)
    word = lead.group(1) if lead else None
    if word in ("loss", "optimizer", "metrics", "data"):
        return _entries({"loss": cat.LOSSES, "optimizer": cat.OPTIMIZERS, "metrics": cat.METRICS, "data": cat.DATA}[word])
    if "metrics" in before and "[" in before.split("metrics", 1)[1]:
        return _entries(cat.METRICS)
    if section == "train":
        return [_item(e.name, e.kind, e.doc, insert=e.name + " ") for e in cat.SETTINGS]
    if section in ("layers", "block"):
        return _entries(cat.LAYERS) + _entries(cat.ACTIVATIONS) + _blocks(a.spec)
    if section in ("model", "network"):
        return [_item(w, "keyword", f"the `{w}` section") for w in SECTIONS]
    return [_item("model", "keyword", "a spec: model Name { ... }")]


def _section(lines: list[str], line: int, before: str) -> str | None:
    """The innermost `word {` still open at the cursor (comments and strings ignored)."""
    stack: list[str] = []
    for text in [*lines[:line], before]:
        text = re.sub(r'"(?:\\.|[^"\\])*"|#.*', "", text)
        pos = 0
        while pos < len(text):
            m = _BRACE_WORD.match(text, pos)
            if m:
                stack.append(m.group(1))
                pos = m.end()
            elif text[pos] == "{":
                stack.append("")
                pos += 1
            elif text[pos] == "}":
                stack = stack[:-1]
                pos += 1
            else:
                pos += 1
    return stack[-1] if stack else None


def _arguments(spec: ir.Spec | None, name: str) -> list[types.CompletionItem]:
    entry = cat.lookup(name)
    if entry is not None:
        return [_item(f"{p.name}=", "argument", cat.param_doc(p), detail=entry.signature) for p in entry.params]
    block = _find_block(spec, name)
    if block is not None:
        sig = f"{block.name}({', '.join(block.params)})"
        return [_item(f"{p}=", "argument", f"parameter of block {block.name}", detail=sig) for p in block.params]
    return []


def _find_block(spec: ir.Spec | None, name: str) -> ir.Block | None:
    if spec is None:
        return None
    return next((b for s in specs_of(spec) for b in s.blocks if b.name == name), None)


def _blocks(spec: ir.Spec | None) -> list[types.CompletionItem]:
    if spec is None:
        return []
    return [_item(b.name, "block", f"block defined at line {b.span.line}",
                  detail=f"{b.name}({', '.join(b.params)})") for s in specs_of(spec) for b in s.blocks]


def _entries(entries: list[cat.Entry]) -> list[types.CompletionItem]:
    return [_item(e.name, e.kind, cat.markdown(e), detail=e.signature) for e in entries]


def _item(label: str, kind: str, doc: str, detail: str | None = None, insert: str | None = None) -> types.CompletionItem:
    lsp_kind = {"keyword": types.CompletionItemKind.Keyword, "argument": types.CompletionItemKind.Field,
                "block": types.CompletionItemKind.Module}.get(kind, _KIND.get(kind))
    return types.CompletionItem(label=label, kind=lsp_kind, detail=detail or kind, insert_text=insert,
                                documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=doc))
