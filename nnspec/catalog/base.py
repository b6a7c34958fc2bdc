"""The shape of a catalog entry and the conventions every shape rule shares.

Shapes exclude the batch dimension. Rank 1 is [F]; rank 2 is a sequence [T, F] (features
last, as in Keras); rank 3 is an image [C, H, W] and rank 4 a volume [C, D, H, W] (channels
first, as in PyTorch). `None` is a dimension known only at run time. `RANKS` says so once, for
the messages, the docs and the layout helpers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from ..ir import TensorType
from .schema import Param


class ShapeError(Exception):
    """Raised by a shape rule; the checker turns it into a Diagnostic at the layer's span."""

    def __init__(self, message: str, help: str | None = None, code: str = "E300"):
        super().__init__(message)
        self.message = message
        self.help = help
        self.code = code


class RankError(ShapeError):
    """A layer given a tensor of a rank it does not take (`require_rank`); docgen finds each layer's
    ranks by it."""


ShapeRule = Callable[[Mapping[str, Any], Sequence[TensorType]], TensorType]
CountRule = Callable[[Mapping[str, Any], Sequence[TensorType]], tuple[int, int]]


def no_params(args: Mapping[str, Any], ins: Sequence[TensorType]) -> tuple[int, int]:
    return 0, 0


class TorchModule(NamedTuple):
    """Which torch module implements a layer, and with which arguments: `cls` is a class of
    `nnspec/backends/torch_layers.py` (`"Conv"`) or of torch.nn (`"nn.Linear"`); an argument may
    itself be a TorchModule. The torch backend makes the module from it and
    `compile --emit python` writes the same call, so both come from this one description; it is
    plain data, so the catalog never imports torch."""

    cls: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = {}


def torch_module(cls: str, *args: Any, **kwargs: Any) -> TorchModule:
    return TorchModule(cls, args, kwargs)


BuildRule = Callable[[Mapping[str, Any], Sequence[TensorType]], TorchModule]
Example = tuple[str, tuple]  # a call and the input it checks on: ("Dense(8)", (5,)), ("Embedding(...)", ("int", None))


@dataclass(frozen=True)
class LayerEntry:
    """One layer kind: its parameters, its shape rule, its parameter count, its torch module.

    `count` returns (trainable, non_trainable). `build(args, in_types)` returns the TorchModule
    (class and arguments) of an `nn.Module` that takes and returns batch-first tensors in
    nnspec's layout; None only where the checker elaborates the layer into another kind
    (Bidirectional). `example` (a call that checks on `example_input`) and `variants` (more
    calls and inputs) are what the generated tests run through every backend.
    """

    name: str
    params: tuple[Param, ...]
    shape: ShapeRule
    count: CountRule = no_params
    doc: str = ""
    aliases: tuple[str, ...] = ()
    category: str = "core"
    build: BuildRule | None = None
    accepts_int: bool = False  # takes integer token ids (Embedding)
    activation_param: bool = False  # has an `activation=` argument applied after it
    example: str = ""
    example_input: tuple = ()
    variants: tuple[Example, ...] = ()

    @property
    def examples(self) -> tuple[Example, ...]:
        """The documented example first, then the variants."""
        first = ((self.example, self.example_input[0]),) if self.example and self.example_input else ()
        return first + self.variants


@dataclass(frozen=True)
class FunctionEntry:
    """An activation, loss, metric or optimizer: a name, a schema and documentation."""

    name: str
    params: tuple[Param, ...] = ()
    doc: str = ""
    aliases: tuple[str, ...] = ()
    traits: frozenset[str] = field(default_factory=frozenset)


class Rank(NamedTuple):
    name: str  # "an image [C, H, W]"
    plural: str  # "images"
    layout: str  # "[C, H, W]"


RANKS: dict[int, Rank] = {
    1: Rank("a vector [F]", "vectors", "[F]"),
    2: Rank("a sequence [T, F]", "sequences", "[T, F]"),
    3: Rank("an image [C, H, W]", "images", "[C, H, W]"),
    4: Rank("a volume [C, D, H, W]", "volumes", "[C, D, H, W]"),
}


def rank_name(t: TensorType) -> str:
    r = RANKS.get(len(t.shape))
    return r.name if r is not None else f"a rank-{len(t.shape)} tensor"


def feature_axis(rank: int) -> int:
    """Index (without batch) of the feature/channel axis: [F] -> 0, [T, F] -> 1, [C, H, W] -> 0."""
    return 1 if rank == 2 else 0


def split_channels(shape: tuple) -> tuple[Any, tuple]:
    """(channels, spatial sizes): [T, F] -> (F, (T,)), [C, H, W] -> (C, (H, W)), [C, D, H, W] -> (C, (D, H, W))."""
    axis = feature_axis(len(shape))
    return shape[axis], shape[:axis] + shape[axis + 1:]


def join_channels(channels: Any, sizes: tuple) -> tuple:
    """split_channels' inverse: the shape with `channels` on the feature/channel axis."""
    return tuple(sizes) + (channels,) if len(sizes) == 1 else (channels,) + tuple(sizes)


def require_rank(t: TensorType, ranks: Sequence[int], layer: str, hint: str | None = None) -> None:
    if len(t.shape) not in ranks:
        wanted = " or ".join(rank_name(TensorType((1,) * r)) for r in ranks)
        raise RankError(f"{layer} expects {wanted}; received {t}", hint)


def require_float(t: TensorType, layer: str) -> None:
    if t.dtype == "int":
        raise ShapeError(f"{layer} expects float features; received integer token ids {t}",
                         "embed integer tokens first, e.g. Embedding(vocab=..., dim=...)", code="E304")


def require_known(dim: int | None, what: str, layer: str, hint: str | None = None) -> int:
    if dim is None:
        raise ShapeError(f"{layer} needs a known {what}; it is `?` (known only at run time)",
                         hint or "give the input a fixed size, or pool over time first", code="E306")
    return dim
