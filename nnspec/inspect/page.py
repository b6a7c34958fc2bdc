"""index.html of an inspect folder: every picture under its heading and layer name, one page,
no scripts and nothing fetched from elsewhere (the PNGs are beside it)."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .. import fsutil

STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
figcaption{font-size:90%;color:#333}img{max-width:100%;border:1px solid #ddd}
.notes{color:#805000}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}"""


@dataclass
class Section:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)  # (what, value) lines of a small table
    pictures: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name relative to the page)


def write_page(path: Path, title: str, intro: list[tuple[str, str]], sections: list[Section], notes: list[str]) -> None:
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>", _table(intro)]
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f"<ul class='notes'>{items}</ul>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.append(_table(section.facts))
        for caption, file in section.pictures:
            parts.append(f"<figure><img src='{quote(file)}' alt='{html.escape(caption, quote=True)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    fsutil.atomic_write_text(path, "\n".join(parts))


def _table(facts: list[tuple[str, str]]) -> str:
    if not facts:
        return ""
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return f"<table>{rows}</table>"
