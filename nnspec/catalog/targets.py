"""`target input`: which data sources it reads (the checker and training both ask here)."""
from __future__ import annotations

# the data sources whose inputs an autoencoder can train on: a name, or a prefix ending in "."
TARGET_INPUT_SOURCES = ("sklearn.", "synthetic", "csv", "npz")


def reads_inputs(source: str) -> bool:
    """Whether `target input` can train on the data source named `source`."""
    return any(source == s or (s.endswith(".") and source.startswith(s)) for s in TARGET_INPUT_SOURCES)
