"""The checker's result: what the backends and training read (`Checked`, `Task`).

Plain frozen data, made by `check.check_spec` and never changed after. It lives apart from the
checker so that the backends and training read the result without importing the front end
(parse, lower, check, pipeline): data flows one way (docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from . import ir
from .catalog.functions import fused_activation
from .diagnostics import Diagnostic


def output_activation(graph: ir.Graph) -> str | None:
    """The activation node that ends the network ('softmax', ...), or None."""
    node = graph.output_node
    return node.kind if node is not None and node.op == "activation" else None


@dataclass(frozen=True)
class Task:
    """What the network predicts, as the loss and the output layer say."""

    kind: str  # "multiclass" | "binary" | "regression"
    classes: int | None  # number of classes (multiclass) or outputs
    output_activation: str | None  # the activation that ends the network, if any


@dataclass(frozen=True)
class Checked:
    spec: ir.Spec
    graph: ir.Graph
    task: Task | None
    loss: tuple[tuple[float, str, Mapping[str, Any]], ...]  # (weight, canonical loss, args)
    optimizer: tuple[str, Mapping[str, Any]] | None
    metrics: tuple[tuple[str, Mapping[str, Any]], ...]
    train: Mapping[str, Any]  # the train section's settings, every one (defaults filled in)
    search: Mapping[str, Any]
    diagnostics: tuple[Diagnostic, ...]
    # A spec with `network`s (a GAN): each network checked on its own (name -> Checked, its graph
    # with the network's own node names), and the `adversarial { }` settings. `graph` is then both
    # networks side by side (node names prefixed `network.`), for summary, viz and the IR hash.
    networks: Mapping[str, "Checked"] = field(default_factory=dict)
    adversarial: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    @property
    def fused_activation(self) -> str | None:
        """The output activation the loss absorbs ('softmax' | 'sigmoid'), or None: read from the
        loss entries' `fuses_*` traits (catalog/functions.py). The torch model's `forward_train`
        stops before it and the losses work from its logits."""
        return fused_activation(output_activation(self.graph), (name for _, name, _ in self.loss))

    @property
    def output_is(self) -> str:
        """What the network's output holds, as `predict` names its columns and an export's facts
        say: 'probabilities' (it ends in softmax/sigmoid/step), 'logits' (a classifier without
        one: the PyTorch habit with cross_entropy, whose loss applies the softmax) or 'values'."""
        if output_activation(self.graph) in ("softmax", "sigmoid"):
            return "probabilities"
        kind = self.task.kind if self.task else "regression"
        # a binary task ends in sigmoid or step (E400): step's 0 or 1 is a (hard) probability
        return {"binary": "probabilities", "multiclass": "logits"}.get(kind, "values")
