"""docs/language.md documents the catalog nnspec has, and its examples are valid specs."""
from __future__ import annotations

import re
from pathlib import Path

from nnspec import catalog, docgen
from nnspec.catalog.settings import DATA_SOURCES, SCHEDULES, SEARCH_SETTINGS, TRAIN_SETTINGS
from nnspec.pipeline import check_text

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_language_reference_is_up_to_date_with_the_catalog():
    document = (DOCS / "language.md").read_text(encoding="utf-8")
    assert docgen.regenerate(document) == document, "run `python -m nnspec.docgen`"
    assert docgen.main(["--check"]) == 0


def test_every_catalog_entry_and_parameter_is_documented():
    document = (DOCS / "language.md").read_text(encoding="utf-8")
    for registry in (catalog.layers, catalog.activations, catalog.losses, catalog.metrics, catalog.optimizers):
        for entry in registry:
            assert f"`{entry.name}`" in document, entry.name
            for alias in entry.aliases:
                assert f"`{alias}`" in document, alias
            for param in entry.params:
                assert f"`{param.name}`" in document, (entry.name, param.name)
    for setting in TRAIN_SETTINGS + SEARCH_SETTINGS:
        assert f"| `{setting.name}` |" in document
    for entry in SCHEDULES + DATA_SOURCES:
        assert f"| `{entry.name}` |" in document


def test_dense_parameters_row_states_type_default_and_bounds():
    rows = docgen.param_table(catalog.layers.get("Dense").params)
    assert rows[2] == "| 1 | `units` | int | **required** | ≥ 1 | output features |"
    assert "| 3 | `bias` | bool | `true` |" in rows[4]


def test_complete_examples_in_the_reference_check():
    document = (DOCS / "language.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", document, re.S)
    models = [b for b in blocks if re.match(r"(#[^\n]*\n)*model [A-Za-z_]\w* \{\n", b) and "..." not in b]
    assert models
    for text in models:
        result = check_text(text)
        assert result.ok, result.render()
