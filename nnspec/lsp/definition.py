"""Go to definition: a block's name goes to its `block NAME(...)` line; a tensor name goes to the
statement that names it (`h = ...`, the latest one before the cursor in the same body), a block
parameter or `in` to the block's header, an input's name to its `input` line."""
from __future__ import annotations

from lsprotocol import types

from .. import ir
from .analysis import Analysis, specs_of, word_at
from .convert import word_range


def definition(a: Analysis, uri: str, line: int, character: int) -> types.Location | None:
    found = word_at(a.lines, line, character)
    if found is None or a.spec is None:
        return None
    word = found[0]
    spec = _enclosing_spec(a.spec, line + 1)
    target = _block(spec, a.spec, word) or _tensor(spec, word, line + 1)
    if target is None:
        return None
    tline, tcol = target  # 1-based line, 0-based column of the name
    return types.Location(uri=uri, range=word_range(tline - 1, *_name_at(a.lines, tline, tcol, word)))


def _enclosing_spec(spec: ir.Spec, line: int) -> ir.Spec:
    """The `network` the line lies in (a GAN), else the model."""
    return next((n for n in spec.networks if n.span.line <= line <= n.span.end_line), spec)


def _block(spec: ir.Spec, model: ir.Spec, word: str) -> tuple[int, int] | None:
    block = next((b for s in (spec, *specs_of(model)) for b in s.blocks if b.name == word), None)
    return (block.span.line, block.span.col - 1) if block else None


def _tensor(spec: ir.Spec, word: str, line: int) -> tuple[int, int] | None:
    block = next((b for b in spec.blocks if b.span.line <= line <= b.span.end_line), None)
    if block is not None:
        named = [st.span for st in block.body if st.target == word and st.span.line <= line]
        if named:
            return named[-1].line, named[-1].col - 1
        if word == "in" or word in block.params:
            return block.span.line, block.span.col - 1
        return None
    named = [st.span for st in spec.layers if st.target == word and st.span.line <= line]
    if named:
        return named[-1].line, named[-1].col - 1
    inp = next((i for i in spec.inputs if i.name == word), None)
    return (inp.span.line, inp.span.col - 1) if inp else None


def _name_at(lines: list[str], line: int, col: int, word: str) -> tuple[int, int]:
    """The columns of `word` on the definition's line, from `col` on (the header's name, the
    statement's target), else the whole line from `col`."""
    text = lines[line - 1] if line - 1 < len(lines) else ""
    at = text.find(word, col)
    return (at, at + len(word)) if at >= 0 else (col, len(text))

