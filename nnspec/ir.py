"""The IR: frozen dataclasses, every node carrying its source Span. No Lark objects here.

Two levels:
- the *spec* IR (`Spec`, `Block`, `Stmt`, expressions) is what `lower.py` makes from the tree:
  sections interpreted, expressions kept as written (a layer call is a `Call`);
- the *graph* IR (`Graph`, `Node`, `TensorType`) is what `check/elaborate.py` elaborates from it: blocks
  and repetitions expanded, every layer instance with a unique readable name and an inferred
  output type. Backends read the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from .diagnostics import Span

# ---------------------------------------------------------------- expressions (spec IR)


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class Ident:
    """A bare name: a tensor, a block parameter, an enum value, an activation, a loss..."""

    name: str
    span: Span


@dataclass(frozen=True)
class Dotted:
    parts: tuple[str, ...]
    span: Span

    @property
    def name(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Arg:
    name: str | None
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span

    @property
    def positional(self) -> tuple["Expr", ...]:
        return tuple(a.value for a in self.args if a.name is None)


SPACE_KINDS = ("choice", "uniform", "loguniform", "int_range")


@dataclass(frozen=True)
class Space:
    """A search space standing where a value may stand: choice/uniform/loguniform/int_range."""

    kind: str
    options: tuple["Expr", ...]
    span: Span
    label: str  # a stable, readable dimension name, e.g. "optimizer.lr"

    @property
    def default(self) -> "Expr":
        """The value `check`, `viz` and `train --defaults` use: the first choice or lower bound."""
        return self.options[0]


@dataclass(frozen=True)
class Chain:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Add:
    terms: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class Mul:
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class Group:
    """A parenthesised expression, kept so that `(a -> b) * 2` repeats the whole chain."""

    inner: "Expr"
    span: Span


Expr = Union[Num, Str, Bool, Ident, Dotted, ListExpr, Call, Space, Chain, Add, Mul, Neg, Group]

# ---------------------------------------------------------------- spec IR


@dataclass(frozen=True)
class Input:
    name: str
    shape: tuple[int | None, ...]
    dtype: str  # "float" | "int"
    span: Span


@dataclass(frozen=True)
class Stmt:
    target: str | None  # `name = chain` names its result
    expr: Expr
    span: Span


@dataclass(frozen=True)
class Block:
    name: str
    params: tuple[str, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class LossTerm:
    weight: float
    loss: Call  # `mse` is lowered as Call("mse", ())
    span: Span


@dataclass(frozen=True)
class Setting:
    name: str
    values: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Spec:
    name: str
    inputs: tuple[Input, ...]
    blocks: tuple[Block, ...]
    layers: tuple[Stmt, ...]
    loss: tuple[LossTerm, ...]
    optimizer: Call | None
    metrics: tuple[Call, ...]
    train: tuple[Setting, ...]
    search: tuple[Setting, ...]
    span: Span
    sections: Mapping[str, Span] = field(default_factory=dict)  # where each section is written
    # `network NAME { ... }`: named sub-networks, each lowered as a Spec of its own (its name the
    # network's); `adversarial { }`: the settings that pair them (a GAN). Both empty in a plain spec.
    networks: tuple["Spec", ...] = ()
    adversarial: tuple[Setting, ...] = ()

    def network(self, name: str) -> "Spec | None":
        return next((n for n in self.networks if n.name == name), None)

    def train_setting(self, name: str) -> Setting | None:
        return next((s for s in self.train if s.name == name), None)


# ---------------------------------------------------------------- graph IR


@dataclass(frozen=True)
class TensorType:
    """A tensor's type without the batch dimension; None is a dimension known at run time."""

    shape: tuple[int | None, ...]
    dtype: str = "float"

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        prefix = "int" if self.dtype == "int" else ""
        return f"{prefix}[{dims}]"

    @property
    def numel(self) -> int | None:
        n = 1
        for d in self.shape:
            if d is None:
                return None
            n *= d
        return n


@dataclass(frozen=True)
class Node:
    """One operation of the elaborated graph.

    op: "input" | "layer" | "activation" | "add" | "concat".
    kind: the catalog's canonical name (e.g. "Conv2D", "relu"), or the op for add/concat.
    args: the validated arguments, defaults filled, search spaces at their default value.
    searched: argument name -> the Space written there (for diagrams and tuning).
    scope: the block instances / repetitions it sits in, outermost first.
    trainable: False for a frozen layer: its weights are not trained and its BatchNorm statistics
    are not updated (every parameter counts as non_trainable).
    """

    name: str
    op: str
    kind: str
    args: Mapping[str, Any]
    inputs: tuple[str, ...]
    out: TensorType | None
    span: Span
    scope: tuple[str, ...] = ()
    searched: Mapping[str, Space] = field(default_factory=dict)
    params: int = 0
    non_trainable: int = 0
    alias: str | None = None  # the tensor name a statement gave this node's result
    trainable: bool = True  # False: `trainable=false` on the layer or on a block use holding it (frozen)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    output: str | None

    def node(self, name: str) -> Node:
        return self._index[name]

    @property
    def _index(self) -> dict[str, Node]:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {n.name: n for n in self.nodes}
            object.__setattr__(self, "_cache", cache)
        return cache

    @property
    def output_node(self) -> Node | None:
        return self._index.get(self.output) if self.output else None

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def non_trainable_params(self) -> int:
        return sum(n.non_trainable for n in self.nodes)
