"""The catalog: every layer, activation, loss, metric and optimizer nnspec knows, by name.

Lookups accept aliases; `canonical` maps any accepted spelling to the entry's name.
"""
from __future__ import annotations

from typing import Generic, Iterable, TypeVar

from .base import FunctionEntry, LayerEntry, ShapeError, feature_axis
from .functions import ACTIVATIONS, LOSSES, METRICS, OPTIMIZERS
from .layers import LAYERS
from .schema import REQUIRED, Param, bind

E = TypeVar("E", LayerEntry, FunctionEntry)


class Registry(Generic[E]):
    def __init__(self, what: str, entries: Iterable[E]):
        self.what = what
        self.entries: dict[str, E] = {}
        self._lookup: dict[str, E] = {}
        for e in entries:
            self.entries[e.name] = e
            for spelling in (e.name, *e.aliases):
                assert spelling not in self._lookup, f"duplicate {what} name {spelling}"
                self._lookup[spelling] = e

    def get(self, name: str) -> E | None:
        return self._lookup.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._lookup

    @property
    def spellings(self) -> list[str]:
        return list(self._lookup)

    def __iter__(self):
        return iter(self.entries.values())


layers: Registry[LayerEntry] = Registry("layer", LAYERS)
activations: Registry[FunctionEntry] = Registry("activation", ACTIVATIONS)
losses: Registry[FunctionEntry] = Registry("loss", LOSSES)
metrics: Registry[FunctionEntry] = Registry("metric", METRICS)
optimizers: Registry[FunctionEntry] = Registry("optimizer", OPTIMIZERS)

__all__ = ["layers", "activations", "losses", "metrics", "optimizers", "Registry", "LayerEntry",
           "FunctionEntry", "Param", "REQUIRED", "ShapeError", "bind", "feature_axis"]
