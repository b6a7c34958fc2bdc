"""Document formatting through `nnspec fmt`: one edit replacing the whole text, or none when the
text is already formatted. A spec with errors is not formatted (as `nnspec fmt` refuses it);
the server answers with no edits and the diagnostics already say why."""
from __future__ import annotations

from lsprotocol import types

from ..diagnostics import SpecError
from ..fmt import format_checked
from ..pipeline import Result


def formatting(text: str, filename: str, result: Result | None = None) -> list[types.TextEdit]:
    """`result`: the check of `text` the server holds (checked again when None)."""
    try:
        formatted = format_checked(text, filename, result)
    except SpecError:
        return []
    if formatted == text:
        return []
    lines = text.split("\n")
    end = types.Position(line=len(lines) - 1, character=len(lines[-1]))
    return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end), new_text=formatted)]
