"""The shape of a catalog entry and the conventions every shape rule shares.

Shapes exclude the batch dimension. Rank 1 is [F]; rank 2 is a sequence [T, F] (features
last, as in Keras); rank 3 is an image [C, H, W] (channels first, as in PyTorch). `None` is a
dimension known only at run time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..ir import TensorType
from .schema import Param


class ShapeError(Exception):
    """Raised by a shape rule; the checker turns it into a Diagnostic at the layer's span."""

    def __init__(self, message: str, help: str | None = None, code: str = "E300"):
        super().__init__(message)
        self.message = message
        self.help = help
        self.code = code


ShapeRule = Callable[[Mapping[str, Any], Sequence[TensorType]], TensorType]
CountRule = Callable[[Mapping[str, Any], Sequence[TensorType]], tuple[int, int]]


def no_params(args: Mapping[str, Any], ins: Sequence[TensorType]) -> tuple[int, int]:
    return 0, 0


@dataclass(frozen=True)
class LayerEntry:
    """One layer kind: its parameters, its shape rule, its parameter count, its torch builder.

    `count` returns (trainable, non_trainable). `build(args, in_types)` returns an
    `nn.Module` taking and returning batch-first tensors in nnspec's layout; it imports torch
    lazily so that the checker never does.
    """

    name: str
    params: tuple[Param, ...]
    shape: ShapeRule
    count: CountRule = no_params
    doc: str = ""
    aliases: tuple[str, ...] = ()
    category: str = "core"
    build: Callable[..., Any] | None = None
    accepts_int: bool = False  # takes integer token ids (Embedding)
    activation_param: bool = False  # has an `activation=` argument applied after it
    example: str = ""  # a call that checks on `example_input`, used by the generated tests
    example_input: tuple = ()


@dataclass(frozen=True)
class FunctionEntry:
    """An activation, loss, metric or optimizer: a name, a schema and documentation."""

    name: str
    params: tuple[Param, ...] = ()
    doc: str = ""
    aliases: tuple[str, ...] = ()
    traits: frozenset[str] = field(default_factory=frozenset)


def rank_name(t: TensorType) -> str:
    return {1: "a vector [F]", 2: "a sequence [T, F]", 3: "an image [C, H, W]"}.get(len(t.shape), f"a rank-{len(t.shape)} tensor")


def feature_axis(rank: int) -> int:
    """Index (without batch) of the feature/channel axis: [F] -> 0, [T, F] -> 1, [C, H, W] -> 0."""
    return 1 if rank == 2 else 0


def require_rank(t: TensorType, ranks: Sequence[int], layer: str, hint: str | None = None) -> None:
    if len(t.shape) not in ranks:
        wanted = " or ".join(rank_name(TensorType((1,) * r)) for r in ranks)
        raise ShapeError(f"{layer} expects {wanted}; received {t}", hint)


def require_float(t: TensorType, layer: str) -> None:
    if t.dtype == "int":
        raise ShapeError(f"{layer} expects float features; received integer token ids {t}",
                         "embed integer tokens first, e.g. Embedding(vocab=..., dim=...)", code="E304")


def require_known(dim: int | None, what: str, layer: str, hint: str | None = None) -> int:
    if dim is None:
        raise ShapeError(f"{layer} needs a known {what}; it is `?` (known only at run time)",
                         hint or "give the input a fixed size, or pool over time first", code="E306")
    return dim
