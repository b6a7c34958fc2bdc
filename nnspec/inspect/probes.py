"""The trained network with probes: one `nn.Identity` after each convolutional layer, so hooks
(feature maps) and Captum's layer attributions (Grad-CAM) see what the next layer reads.

A spec writes `Conv2D(32, 3) -> relu`: the convolution is a module, the relu a function call in
the generated forward (backends/torch_model.py). A hook on the convolution would see the maps
before the relu; the probe sits after the activations that directly follow it (`conv2d_1`,
then `relu_1`), so a feature map is the layer's output as the spec writes the layer. The probed
forward is a copy of the model's torch.fx graph calling the model's own submodules (same weights).

What is attributed (`Scorer`): one score per class, the class's logit when the network ends in a
softmax or sigmoid that the loss fuses (Grad-CAM's y^c is the score before softmax), else the
output as the network gives it. A single sigmoid output z scores class 1 as z and class 0 as -z
(sigmoid(-z) is the probability of class 0), so both classes can be targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from .. import catalog
from ..backends.torch_model import _fx_name
from ..catalog.layers import Conv

PROBES = "nnspec_probes"  # the container of the probe modules in the probed forward


@dataclass(frozen=True)
class ConvLayer:
    name: str  # the layer as the checker names it: conv2d_1, residual_1.conv2d_1
    kind: str  # Conv2D
    shown: str  # the graph node whose value the probe records (the conv, or its activation)
    shape: tuple[int, ...]  # that value's shape per row: [C, H, W]

    @property
    def label(self) -> str:
        """conv2d_1 -> relu_1: the layer and the activation its maps include."""
        return self.name if self.shown == self.name else f"{self.name} -> {self.shown}"


def conv_dims(kind: str) -> int | None:
    """The spatial axes of a convolution kind (the catalog's Conv family: ConvND, ConvTransposeND),
    else None. A family's instance is its entry: the entry's shape rule is a method of it."""
    entry = catalog.layers.get(kind)
    family = getattr(entry.shape, "__self__", None) if entry is not None else None
    return family.dims if isinstance(family, Conv) else None


def conv_layers(graph) -> tuple[list[ConvLayer], list[str]]:
    """The 2-D convolutional layers in graph order, and notes on the convolutions that are not
    drawn (Conv1D and Conv3D maps are not images)."""
    layers, notes = [], []
    for node in graph.nodes:
        dims = conv_dims(node.kind) if node.op == "layer" else None
        if dims is None:
            continue
        if dims != 2 or len(node.out.shape) != 3:  # drawn: 2-D maps, output [C, H, W]
            notes.append(f"{node.name} ({node.kind}): feature maps are drawn for 2-D convolutions only; skipped")
            continue
        shown = _after_activations(graph, node.name)
        layers.append(ConvLayer(node.name, node.kind, shown, tuple(graph.node(shown).out.shape)))
    return layers, notes


def _after_activations(graph, name: str) -> str:
    """`name`, or the last of the activations that alone read it in a chain (conv -> relu)."""
    while True:
        readers = [n for n in graph.nodes if name in n.inputs]
        if len(readers) != 1 or readers[0].op != "activation":
            return name
        name = readers[0].name


def probed_forward(model, checked, layers: list[ConvLayer], logits: bool) -> tuple[fx.GraphModule, dict]:
    """A forward of `model` (its submodules, its weights) with an Identity probe after each layer's
    shown node; returns it and {layer name: its probe module}. `logits`: the forward the loss
    reads (model.fx_logits: before a fused softmax/sigmoid) instead of the spec's output."""
    source = model.fx_logits if logits else model.fx_forward
    graph = fx.Graph()
    out = graph.graph_copy(source.graph, {})
    graph.output(out)
    root, probes = nn.Module(), nn.Module()
    for name, child in model.named_children():
        root.add_module(name, child)
    root.add_module(PROBES, probes)
    by_layer = {}
    for i, layer in enumerate(layers):
        target = _fx_node(graph, checked.graph.node(layer.shown))
        probe = nn.Identity()
        probes.add_module(f"p{i}", probe)
        by_layer[layer.name] = probe
        with graph.inserting_after(target):
            call = graph.call_module(f"{PROBES}.p{i}", (target,))
        target.replace_all_uses_with(call, delete_user_cb=lambda user, call=call: user is not call)
    graph.lint()
    module = fx.GraphModule(root, graph, "NnspecProbed")
    return module, {name: module.get_submodule(_probe_path(module, probe)) for name, probe in by_layer.items()}


def _probe_path(module: fx.GraphModule, probe: nn.Module) -> str:
    return next(path for path, m in module.named_modules() if m is probe)


def _fx_node(graph: fx.Graph, ir_node) -> fx.Node:
    """The fx node computing an IR node: a layer is a call of its module; an activation a call
    named after it (torch_model._fx_name); a linear activation is its input's node."""
    if ir_node.op == "layer":
        found = [n for n in graph.nodes if n.op == "call_module" and n.target == ir_node.name]
    else:
        found = [n for n in graph.nodes if n.op == "call_function" and n.name == _fx_name(ir_node.name)]
    if len(found) == 1:
        return found[0]
    raise AssertionError(f"inspect: no single node of the generated forward computes {ir_node.name}")


class Scorer(nn.Module):
    """forward(x) -> [N, classes] scores to attribute (see the module's docstring)."""

    def __init__(self, forward: nn.Module, binary: bool):
        super().__init__()
        self.forward_fn = forward
        self.binary = binary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.forward_fn(x).reshape(len(x), -1)
        return torch.cat([-z, z], dim=1) if self.binary else z


def score_kind(model, checked) -> str:
    """What the scores are, for the report: logit, probability or output."""
    if model.fused_activation is not None:
        return "logit"
    return {"probabilities": "probability", "logits": "logit"}.get(checked.output_is, "output")
