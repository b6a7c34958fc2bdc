"""The graph IR as a `torch.nn.Module`.

`build_model(checked)` creates one torch module per layer node (named as the node, so the
state_dict reads `conv2d_1.weight`, `residual_1.conv2d_1.weight`) in the graph's order, then
writes the graph as torch.fx graphs: `forward` (the output as the spec writes it), `fx_logits`
(the same, stopping before a final softmax/sigmoid that the loss absorbs) and `forward_train`
(fx_logits' values computed the fastest exact way: a relu that only a max pool reads is applied
after it, `commuted_activations`). All call the same submodules; none interprets the graph at
run time.

Padding masks of variable-length sequences are part of the generated code: an Embedding
with padding_idx starts one (`ids != padding_idx`), layers that need it receive it.
"""
from __future__ import annotations

import keyword
import operator

import torch
import torch.fx as fx
from torch import Tensor, nn

from .. import catalog
from ..checked import Checked
from ..diagnostics import UserError
from ..catalog.base import TorchModule, feature_axis
from ..ir import Graph, Node
from . import torch_layers as tl


class NnspecModel(nn.Module):
    """A spec's network. forward(*inputs) follows the spec; forward_train(*inputs) returns what
    the loss consumes. Inputs are batch-first, in `input_names` order."""

    def __init__(self, checked, layers: dict[str, nn.Module], made_from: dict[str, TorchModule] | None = None):
        super().__init__()
        # what each layer module was made from (its catalog entry's build): the ejected source writes the same calls
        self.made_from: dict[str, TorchModule] = dict(made_from or {})
        self.input_names: list[str] = list(checked.graph.inputs)
        self.fused_activation: str | None = checked.fused_activation  # the catalog loss traits `fuses_*`
        out = checked.graph.output_node
        self.output_rank = len(out.out.shape) if out is not None and out.out is not None else 1
        for name, module in layers.items():
            _install(self, name, module)
        # trainable=false: no gradients, and a frozen BatchNorm stays in eval mode (its statistics
        # fixed, as Keras does); other frozen layers keep their training behaviour (Dropout drops)
        frozen = [n.name for n in checked.graph.nodes if n.op == "layer" and not n.trainable]
        for name in frozen:
            layers[name].requires_grad_(False)
        self.frozen_statistics: list[str] = [n for n in frozen if tl.keeps_statistics(layers[n])]
        for name in self.frozen_statistics:
            layers[name].train(False)
        # a layer with `l1`/`l2` arguments penalizes its `weight`
        self._penalties = [(n.name, float(n.args.get("l1", 0.0)), float(n.args.get("l2", 0.0)))
                           for n in checked.graph.nodes
                           if n.op == "layer" and (n.args.get("l1", 0.0) or n.args.get("l2", 0.0))]
        # The generated code lives in GraphModules that share this model's submodules; they are
        # kept out of the module tree (object.__setattr__) so parameters are listed once.
        fwd = fx.GraphModule(self, _fx_graph(checked.graph, layers, stop_before_output=False), "NnspecForward")
        object.__setattr__(self, "fx_forward", fwd)
        fused = self.fused_activation is not None
        logits = fwd  # every IR node computed as the spec writes it (what inspect probes)
        if fused:
            logits = fx.GraphModule(self, _fx_graph(checked.graph, layers, stop_before_output=True), "NnspecLogits")
        object.__setattr__(self, "fx_logits", logits)
        train = logits  # the same values, computed the fastest exact way (commuted_activations)
        commuted = commuted_activations(checked.graph, layers)
        if commuted:
            train = fx.GraphModule(self, _fx_graph(checked.graph, layers, stop_before_output=fused, commute=commuted),
                                   "NnspecTrain")
        object.__setattr__(self, "fx_train", train)
        # Bind the generated functions directly: calling the model costs what calling a
        # hand-written module costs, with no extra Python frame in between.
        object.__setattr__(self, "forward", fwd.forward)
        object.__setattr__(self, "forward_train", train.forward)

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.fx_forward.forward(*inputs)

    def train(self, mode: bool = True) -> "NnspecModel":
        """nn.Module.train, except that frozen layers keeping running statistics stay in eval mode."""
        super().train(mode)
        for name in self.frozen_statistics:
            self.get_submodule(name).train(False)
        return self

    def forward_train(self, *inputs: Tensor) -> Tensor:
        return self.fx_train.forward(*inputs)

    def output_from_train(self, pred: Tensor) -> Tensor:
        """forward's output from forward_train's (applies the fused softmax/sigmoid)."""
        if self.fused_activation == "softmax":
            return torch.softmax(pred, dim=1 + feature_axis(self.output_rank))
        if self.fused_activation == "sigmoid":
            return torch.sigmoid(pred)
        return pred

    def regularization(self) -> Tensor:
        """sum over layers of l1 * |W|_1 + l2 * |W|_2^2 (weights only, not biases)."""
        total = None
        for name, l1, l2 in self._penalties:
            w = self.get_submodule(name).weight
            term = 0.0
            if l1:
                term = term + l1 * w.abs().sum()
            if l2:
                term = term + l2 * w.pow(2).sum()
            total = term if total is None else total + term
        if total is None:
            p = next(self.parameters(), None)
            return torch.zeros((), device=p.device if p is not None else None)
        return total

    @property
    def code(self) -> str:
        """The generated forward, as Python source (for reading; it is not exec'd by nnspec)."""
        return self.fx_forward.code


def _install(root: nn.Module, dotted: str, module: nn.Module) -> None:
    """Register `module` at a dotted path, creating plain container modules for block instances."""
    *prefix, leaf = dotted.split(".")
    parent = root
    for part in prefix:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    parent.add_module(leaf, module)


# Names the generated forward's code refers to as globals (torch.fx's builtins, and the functions
# it calls, named after their module: nnspec_backends_torch_layers_step): an input may not shadow them.
FX_GLOBALS = {"torch", "inf", "nan", "NoneType", "device", "fx_pytree", "pytree"}


def _placeholder_name(name: str) -> str:
    """An input's argument name in the generated forward: not a keyword, not `self` (`input self: [4]`),
    not a global the generated code uses (`input torch: [4]`)."""
    taken = keyword.iskeyword(name) or name == "self" or name in FX_GLOBALS or name.startswith("nnspec_")
    return name + "_" if taken else name


def _fx_graph(graph: Graph, layers: dict[str, nn.Module], stop_before_output: bool,
              output: str | None = None, commute: frozenset[str] = frozenset()) -> fx.Graph:
    """The forward as an fx graph; `output`: a node whose value it returns instead (tensor_forward);
    `commute`: activations applied after the max pool that reads them (commuted_activations)."""
    g = fx.Graph()
    values: dict[str, fx.Node] = {}
    masks: dict[str, fx.Node | None] = {}
    deferred: dict[str, Node] = {}  # pool input -> the activation it still owes
    for name in graph.inputs:
        values[name] = g.placeholder(_placeholder_name(name))
        masks[name] = None
    out_node = graph.output_node
    for node in graph.nodes:
        if node.op == "input":
            continue
        if stop_before_output and node is out_node:
            continue  # the fused activation is the loss's business
        x = values[node.inputs[0]] if node.inputs else None
        if node.name in commute and masks[node.inputs[0]] is None:
            values[node.name], masks[node.name] = x, None
            deferred[node.name] = node
        elif node.op == "layer" and node.inputs and node.inputs[0] in deferred:
            pooled, masks[node.name] = _layer(g, node, layers[node.name], x, None)
            values[node.name] = _activation(g, deferred.pop(node.inputs[0]), pooled)
        elif node.op == "layer":
            values[node.name], masks[node.name] = _layer(g, node, layers[node.name], x, masks[node.inputs[0]])
        elif node.op == "activation":
            values[node.name], masks[node.name] = _activation(g, node, x), masks[node.inputs[0]]
        elif node.op == "add":
            total = x
            for other in node.inputs[1:]:
                total = g.create_node("call_function", operator.add, (total, values[other]), name=_fx_name(node.name))
            values[node.name], masks[node.name] = total, _first_mask(node, masks)
        elif node.op == "concat":
            axis = 1 + feature_axis(len(node.out.shape))
            values[node.name] = g.create_node("call_function", torch.cat, ([values[i] for i in node.inputs],),
                                              {"dim": axis}, name=_fx_name(node.name))
            masks[node.name] = _first_mask(node, masks)
        else:
            raise AssertionError(f"unknown graph op {node.op}")
    result = values[out_node.inputs[0]] if stop_before_output else values[output or graph.output]
    g.output(result)
    g.lint()
    return g


def commuted_activations(graph: Graph, layers: dict[str, nn.Module]) -> frozenset[str]:
    """Activations with the catalog trait `commutes_with_max` (relu) whose one reader is a max pool:
    training applies them after the pool, to a quarter of the values behind a 2x2 pool, in both
    passes, with every number the same to the bit (the checker keeps a pool's padding under half
    its size, so no window is all padding). The spec's order stays in `forward`, exports and code."""
    readers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    found = set()
    for node in graph.nodes:
        entry = catalog.activations.get(node.kind) if node.op == "activation" else None
        if entry is None or "commutes_with_max" not in entry.traits or node.name == graph.output:
            continue
        users = readers.get(node.name, [])
        pool = layers.get(users[0].name) if len(users) == 1 and users[0].op == "layer" else None
        if isinstance(pool, tl.Pool) and pool.kind == "max" and tuple(users[0].inputs) == (node.name,):
            found.add(node.name)
    return frozenset(found)


def _fx_name(ir_name: str) -> str:
    return ir_name.replace(".", "_")


def _first_mask(node: Node, masks: dict[str, fx.Node | None]) -> fx.Node | None:
    return next((masks[i] for i in node.inputs if masks[i] is not None), None)


def _layer(g: fx.Graph, node: Node, module: nn.Module, x: fx.Node, mask: fx.Node | None):
    mode = tl.mask_mode(module)
    if mode == "start":  # Embedding: the padding mask starts at the token ids
        out = g.call_module(node.name, (x,))
        if module.padding_idx is None:
            return out, None
        return out, g.create_node("call_function", operator.ne, (x, module.padding_idx),
                                  name=_fx_name(node.name) + "_mask")
    if mask is None:
        return g.call_module(node.name, (x,)), None
    if mode in ("use", "consume"):
        out = g.call_module(node.name, (x, mask))
        return out, (mask if mode == "use" else None)
    out = g.call_module(node.name, (x, mask) if getattr(module, "takes_mask", False) else (x,))
    if mode == "resize":
        return out, g.call_method("resize_mask", (g.get_attr(node.name), mask))
    if mode == "drop":
        return out, None
    return out, mask


def _activation(g: fx.Graph, node: Node, x: fx.Node) -> fx.Node:
    rank = len(node.out.shape) if node.out is not None else 1
    call = tl.activation_call(node.kind, node.args, rank)
    if call is None:  # linear: the identity
        return x
    fn, kwargs = call
    return g.create_node("call_function", fn, (x,), kwargs, name=_fx_name(node.name))


def tensor_forward(model: NnspecModel, graph: Graph, node_name: str) -> fx.GraphModule:
    """A forward of `model` (its own submodules and weights) that returns the value of the graph
    node `node_name`, e.g. the `code = ...` tensor of an autoencoder (`nnspec predict --tensor`)."""
    layers = {n.name: model.get_submodule(n.name) for n in graph.nodes if n.op == "layer"}
    module = fx.GraphModule(model, _fx_graph(graph, layers, stop_before_output=False, output=node_name), "NnspecTensor")
    module.graph.eliminate_dead_code()  # what comes after the tensor is not computed
    module.recompile()
    return module


def build_model(checked) -> NnspecModel:
    """The checked spec as an NnspecModel (CPU, float32, training mode, PyTorch's default init).
    Refuses anything but the checker's result for a spec without errors (see `checked_for_model`)."""
    checked = checked_for_model(checked)
    layers: dict[str, nn.Module] = {}
    made_from: dict[str, TorchModule] = {}
    graph = checked.graph
    for node in graph.nodes:
        if node.op != "layer":
            continue
        entry = catalog.layers.get(node.kind)
        if entry is None or entry.build is None:
            raise AssertionError(f"layer kind {node.kind} has no torch module: its catalog entry has no `build`")
        made_from[node.name] = entry.build(node.args, [graph.node(i).out for i in node.inputs])
        layers[node.name] = tl.instantiate(made_from[node.name])
    return NnspecModel(checked, layers, made_from)


def checked_for_model(checked) -> Checked:
    """`checked` when it is the checker's result (a Checked, or a pipeline Result holding one) for a
    spec without errors. A spec with errors, or one never checked (a parse tree, an ir.Spec, text),
    has no shapes to build from: refused, never half-built."""
    holder = checked
    if not isinstance(checked, Checked) and isinstance(getattr(checked, "checked", None), Checked):
        checked = checked.checked  # a pipeline Result (or nnspec.Spec) that checked
    if not isinstance(checked, Checked):
        got = "None (the spec did not parse)" if checked is None else type(holder).__name__
        raise UserError(f"build_model needs a checked spec; got {got}",
                        help="check the spec first: nnspec.Spec.load(path).module(), or "
                             "build_model(pipeline.check_file(path).checked)")
    if checked.networks:  # a GAN: the networks side by side are no one network
        raise UserError(f"{checked.spec.name} declares networks ({', '.join(checked.networks)}): build each one",
                        help="build_model(checked.networks[name]), or nnspec.Spec.load(path).module(network=name)")
    errors = [d for d in checked.diagnostics if d.is_error]
    if errors:
        first = errors[0]
        raise UserError(f"build_model refuses {checked.spec.name}: the spec has {len(errors)} error(s), first "
                        f"{first.code} at line {first.span.line}: {first.message}",
                        help="fix the errors `nnspec check` reports; a spec with errors has no network to build")
    return checked


def parameter_counts(module: nn.Module) -> tuple[int, int]:
    """(trainable parameters, saved floating-point buffers such as BatchNorm's running stats)."""
    trainable = sum(p.numel() for p in module.parameters())
    params = {id(p) for p in module.parameters()}
    buffers = sum(t.numel() for t in module.state_dict(keep_vars=True).values()
                  if t.is_floating_point() and id(t) not in params)
    return trainable, buffers
