"""A TextMate tokenizer in Python, enough for nnspec's grammar: `match` rules with `name` and
`captures`, `begin`/`end` rules with nested `patterns`, `include` of the repository; at each
position the rule whose match starts first wins (ties: the earlier rule; an open rule's `end`
before its patterns), as vscode-textmate does. Python's `re` reads the grammar's simple
Oniguruma patterns the same way."""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=None)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _resolve(grammar: dict, rules: list[dict]) -> list[dict]:
    out = []
    for rule in rules:
        if "include" in rule:
            out.extend(_resolve(grammar, [grammar["repository"][rule["include"].lstrip("#")]]))
        else:
            out.append(rule)
    return out


def tokenize(grammar: dict, text: str) -> list[list[set[str]]]:
    """For each line, for each character, the set of scopes that cover it."""
    lines = text.split("\n")
    scopes = [[set() for _ in line] for line in lines]

    def mark(n: int, start: int, end: int, name: str | None) -> None:
        for i in range(start, end):
            if name:
                scopes[n][i].add(name)

    def captures(n: int, m: re.Match, caps: dict | None) -> None:
        for group, spec in (caps or {}).items():
            if m.group(int(group)) is not None:
                mark(n, m.start(int(group)), m.end(int(group)), spec.get("name"))

    top = _resolve(grammar, grammar["patterns"])
    stack: list[dict] = []  # open begin/end rules
    for n, line in enumerate(lines):
        pos = 0
        while pos <= len(line):
            rule = stack[-1] if stack else None
            best = None  # (start, order, kind, rule, match)
            if rule is not None:
                m = _compiled(rule["end"]).search(line, pos)
                if m:
                    best = (m.start(), -1, "end", rule, m)
            for order, candidate in enumerate(_resolve(grammar, rule.get("patterns", [])) if rule else top):
                m = _compiled(candidate.get("match") or candidate["begin"]).search(line, pos)
                if m and (best is None or m.start() < best[0]):
                    best = (m.start(), order, "begin" if "begin" in candidate else "match", candidate, m)
            if best is None:
                break
            _, _, kind, found, m = best
            if kind == "match":
                mark(n, m.start(), m.end(), found.get("name"))
                captures(n, m, found.get("captures"))
            elif kind == "begin":
                mark(n, m.start(), m.end(), found.get("name"))
                captures(n, m, found.get("beginCaptures"))
                stack.append(found)
            else:
                mark(n, m.start(), m.end(), found.get("name"))
                captures(n, m, found.get("endCaptures"))
                stack.pop()
            pos = m.end() if m.end() > pos else pos + 1
        if stack:  # a region open across lines: everything after its begin is inside it
            for rule in stack:
                mark(n, 0, len(line), rule.get("name"))
    return scopes
