"""The TextMate grammar of `.nn` files (editors/vscode/syntaxes/nnspec.tmLanguage.json), made
from the sources of truth: the keyword table (nnspec/syntax.py) and the catalog's names and
aliases. tests/test_textmate.py checks the committed file against this and tokenizes every
example spec with it. Regenerate after a catalog change:

    .venv/bin/python -m nnspec.lsp.textmate > editors/vscode/syntaxes/nnspec.tmLanguage.json

The patterns stay within what Oniguruma (VS Code) and Python's `re` read alike: no possessive
quantifiers, no variable-length look-behind, no \\h or \\G.
"""
from __future__ import annotations

import json
import re
import sys

from .. import catalog
from ..syntax import _KEYWORD_TABLE

SCOPE = "source.nnspec"


def _words(names) -> str:
    """An alternation of whole words, longest first, not followed by `=` (a keyword or catalog
    name may also name an argument: `GRU(32, layers=2)`)."""
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=lambda n: (-len(n), n)))
    return rf"(?<![\w.])(?:{alternatives})\b(?!\s*=(?!=))"


def _keywords(role: str) -> list[str]:
    return [word for word, _, r in _KEYWORD_TABLE if r == role]


def grammar() -> dict:
    header = "|".join(_keywords("header") + ["network"])
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "nnspec", "scopeName": SCOPE, "fileTypes": ["nn"],
        "patterns": [{"include": f"#{name}"} for name in _REPOSITORY_ORDER],
        "repository": {
            "comment": {"name": "comment.line.number-sign.nnspec", "match": "#.*$"},
            "string": {"name": "string.quoted.double.nnspec", "match": r'"(?:[^"\\]|\\.)*"'},
            "shape": {"name": "meta.shape.nnspec", "begin": r"(?<=:)\s*(int\b)?\s*(\[)",
                      "beginCaptures": {"1": {"name": "storage.type.nnspec"},
                                        "2": {"name": "punctuation.section.brackets.begin.nnspec"}},
                      "end": r"\]", "endCaptures": {"0": {"name": "punctuation.section.brackets.end.nnspec"}},
                      "patterns": [{"include": "#number"},
                                   {"name": "constant.language.unknown-dimension.nnspec", "match": r"\?"}]},
            "definition": {"match": rf"\b({header}|block)\s+([A-Za-z_][A-Za-z_0-9]*)",
                           "captures": {"1": {"name": "keyword.control.nnspec"},
                                        "2": {"name": "entity.name.type.nnspec"}}},
            "argument": {"match": r"(?<=[(,])\s*([A-Za-z_][A-Za-z_0-9]*)\s*(?==(?!=))",
                         "captures": {"1": {"name": "variable.parameter.nnspec"}}},
            "keyword": {"name": "keyword.control.nnspec", "match": _words(_keywords("header") + _keywords("section"))},
            "constant": {"name": "constant.language.nnspec", "match": _words(_keywords("value"))},
            "type": {"name": "storage.type.nnspec", "match": _words(_keywords("type"))},
            "number": {"name": "constant.numeric.nnspec",
                       "match": r"(?<![\w.])(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?\b"},
            "layer": {"name": "support.class.layer.nnspec", "match": _words(catalog.layers.spellings)},
            "activation": {"name": "support.function.activation.nnspec", "match": _words(catalog.activations.spellings)},
            "loss": {"name": "support.function.loss.nnspec", "match": _words(catalog.losses.spellings)},
            "metric": {"name": "support.function.metric.nnspec", "match": _words(catalog.metrics.spellings)},
            "optimizer": {"name": "support.class.optimizer.nnspec", "match": _words(catalog.optimizers.spellings)},
            "operator": {"name": "keyword.operator.nnspec", "match": r"->|[=+*\-]"},
        },
    }


# the order patterns are tried in at one position (the first that matches earliest wins)
_REPOSITORY_ORDER = ("comment", "string", "shape", "definition", "argument", "keyword", "constant", "type",
                     "number", "layer", "activation", "loss", "metric", "optimizer", "operator")


def text() -> str:
    return json.dumps(grammar(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(text())
