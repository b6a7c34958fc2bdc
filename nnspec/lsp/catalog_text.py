"""The catalog as an editor shows it: each name's kind, signature and documentation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .. import catalog
from ..catalog.schema import Param
from ..catalog.settings import DATA_SOURCES, TRAIN_SETTINGS


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # layer | activation | loss | metric | optimizer | data source | train setting
    params: tuple[Param, ...]
    doc: str

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(param_text(p) for p in self.params)})"


def param_text(p: Param) -> str:
    return p.name if p.required else f"{p.name}={_value(p.default)}"


def param_doc(p: Param) -> str:
    return f"{p.describe()}" + (f": {p.doc}" if p.doc else "")


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _entries(kind: str, registry: Iterable) -> list[Entry]:
    return [Entry(e.name, kind, tuple(e.params), e.doc) for e in registry]


LAYERS = _entries("layer", catalog.layers)
ACTIVATIONS = _entries("activation", catalog.activations)
LOSSES = _entries("loss", catalog.losses)
METRICS = _entries("metric", catalog.metrics)
OPTIMIZERS = _entries("optimizer", catalog.optimizers)
DATA = _entries("data source", DATA_SOURCES)
SETTINGS = [Entry(p.name, "train setting", (), param_doc(p)) for p in TRAIN_SETTINGS]

_REGISTRIES = {"layer": catalog.layers, "activation": catalog.activations, "loss": catalog.losses,
               "metric": catalog.metrics, "optimizer": catalog.optimizers}


def lookup(name: str, kinds: Iterable[str] = tuple(_REGISTRIES)) -> Entry | None:
    """A name as written (aliases too) -> its entry, searching `kinds` in order."""
    for kind in kinds:
        e = _REGISTRIES[kind].get(name)
        if e is not None:
            return Entry(e.name, kind, tuple(e.params), e.doc)
    data = next((d for d in DATA if d.name == name), None)
    return data


def markdown(entry: Entry) -> str:
    lines = [f"```nnspec\n{entry.signature}\n```", f"*{entry.kind}*" + (f" — {entry.doc}" if entry.doc else "")]
    args = [f"- `{p.name}`: {param_doc(p)}" for p in entry.params]
    return "\n\n".join(lines + (["\n".join(args)] if args else []))
