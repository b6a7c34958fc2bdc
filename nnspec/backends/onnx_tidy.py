"""Make an exported ONNX graph read like the spec in Netron (and any other viewer).

What the TorchScript exporter leaves, and what is done about it:
- Equal initializers (the ones and zeros of fresh BatchNorms, layers that start as copies) are
  stored once and fanned out through `Identity` nodes: each copy becomes its own initializer
  again, named as the state_dict names it, and the Identity nodes go.
- The exporter spells a constant padding as a chain of Constant/Concat/Reshape/Slice/Cast
  nodes: each chain is computed once and becomes one initializer (`conv2d_1.pads`).
- Node names are scope paths (`/residual_1.conv2d_1/Conv`): the node that gives a layer its
  output is named as the spec's layer (`residual_1.conv2d_1`), the others of that layer
  `residual_1.conv2d_1/Pad`. Activations, `add` and `concat` run outside any module, so they
  are found by what they read: the node reading exactly the inputs of the spec's `relu_1` is
  named `relu_1` (an activation of several nodes: the last `scaled_tanh_1`, the others
  `scaled_tanh_1/Mul`).
- Edge shapes: ONNX shape inference fills `value_info`, so every edge shows its shape, with the
  batch axis named `batch` as on the inputs.
"""
from __future__ import annotations

from collections import defaultdict

from ..extras import require


def tidy(proto, checked=None) -> None:
    """All of the above, in place."""
    inline_shared_initializers(proto)
    fold_constant_chains(proto)
    name_nodes(proto)
    if checked is not None:
        name_graph_ops(proto, checked)
    infer_edge_shapes(proto)


def inline_shared_initializers(proto) -> None:
    """Identity(initializer) -> a copy of the initializer under the Identity's output name."""
    inits = {i.name: i for i in proto.graph.initializer}
    graph_outputs = {o.name for o in proto.graph.output}
    keep = []
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in graph_outputs:
            copy = proto.graph.initializer.add()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            continue
        keep.append(node)
    if len(keep) != len(proto.graph.node):
        del proto.graph.node[:]
        proto.graph.node.extend(keep)


def fold_constant_chains(proto) -> None:
    """Nodes computed from Constant nodes only are computed here (onnx's reference evaluator);
    the values that nodes outside the chain read become initializers named `<layer>.<input>`."""
    onnx = require("onnx")
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    values: dict[str, object] = {}
    folded: set[int] = set()
    for i, node in enumerate(proto.graph.node):
        inputs = [n for n in node.input if n]
        if node.op_type != "Constant" and (not inputs or any(n not in values for n in inputs)):
            continue
        if node.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"):
            continue
        try:
            single = onnx.helper.make_graph([node], "fold", [], [onnx.helper.make_tensor_value_info(o, 0, None)
                                                                  for o in node.output])
            model = onnx.helper.make_model(single, opset_imports=proto.opset_import)
            results = ReferenceEvaluator(model).run(None, {n: values[n] for n in inputs})
        except Exception:  # an op the reference evaluator lacks: keep the node
            continue
        values.update(zip(node.output, results))
        folded.add(i)
    if not folded:
        return
    kept = [n for i, n in enumerate(proto.graph.node) if i not in folded]
    read = {name for n in kept for name in n.input} | {o.name for o in proto.graph.output}
    renames: dict[str, str] = {}
    taken = {i.name for i in proto.graph.initializer}
    for n in kept:
        for pos, name in enumerate(n.input):
            if name in values and name in read and name not in renames:
                base = f"{_layer_path(n.name) or n.op_type}.{_INPUT_NAMES.get((n.op_type, pos), f'input{pos}')}"
                new, k = base, 1
                while new in taken:
                    k += 1
                    new = f"{base}_{k}"
                taken.add(new)
                renames[name] = new
                proto.graph.initializer.append(numpy_helper.from_array(values[name], new))
    for n in kept:
        for pos, name in enumerate(n.input):
            n.input[pos] = renames.get(name, name)
    del proto.graph.node[:]
    proto.graph.node.extend(kept)


_INPUT_NAMES = {("Pad", 1): "pads", ("Pad", 2): "pad_value", ("Reshape", 1): "shape", ("Expand", 1): "shape",
                ("Slice", 1): "starts", ("Slice", 2): "ends", ("Slice", 3): "axes", ("Slice", 4): "steps",
                ("Unsqueeze", 1): "axes", ("Squeeze", 1): "axes", ("Gather", 1): "indices"}


def _layer_path(name: str) -> str:
    """`/residual_1.conv2d_1/Conv` -> `residual_1.conv2d_1`; `/Relu` -> ``."""
    parts = [p for p in name.split("/") if p]
    return "/".join(parts[:-1]) if len(parts) > 1 else ""


def name_nodes(proto) -> None:
    """Each layer's output node named as the layer; its other nodes `layer/Op`; unique names."""
    nodes = list(proto.graph.node)
    by_scope: dict[str, list] = defaultdict(list)
    for node in nodes:
        by_scope[_top_scope(node.name)].append(node)
    names: dict[int, str] = {}
    for scope, members in by_scope.items():
        if not scope:
            for node in members:
                names[id(node)] = node.name.lstrip("/") or node.op_type
            continue
        used_outside = {i for n in nodes if _top_scope(n.name) != scope for i in n.input}
        used_outside |= {o.name for o in proto.graph.output}
        outputs = [n for n in members if any(o in used_outside for o in n.output)]
        main = outputs[-1] if outputs else members[-1]
        for node in members:
            inner = node.name.strip("/").split("/", 1)[-1]  # the path inside the layer: layers.0/self_attn/MatMul
            names[id(node)] = scope if node is main else f"{scope}/{inner}"
    used: set[str] = set()
    for node in nodes:
        name, k = names[id(node)], 1
        while name in used:
            k += 1
            name = f"{names[id(node)]}_{k}"
        used.add(name)
        node.name = name


def _top_scope(name: str) -> str:
    """The layer a node belongs to: its scope path without the inner modules of a layer that
    holds several (`/transformer_encoder_1/layers.0/self_attn/MatMul` -> `transformer_encoder_1`)."""
    parts = [p for p in name.split("/") if p]
    return parts[0] if len(parts) > 1 else ""


def infer_edge_shapes(proto) -> None:
    """ONNX shape inference into value_info; axes the inference could not name that follow from
    the batch axis are left as it found them (`unk__N`)."""
    onnx = require("onnx")
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=False, data_prop=True)
    del proto.graph.value_info[:]
    known = {v.name for v in list(proto.graph.input) + list(proto.graph.output)}
    proto.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in known)


def name_graph_ops(proto, checked) -> None:
    """Name the nodes of the spec's activations, `add`s and `concat`s (unscoped in the export)
    after the IR nodes they compute, by what they read; see the module's docstring."""
    layers = {n.name for n in checked.graph.nodes if n.op == "layer"}
    pending = [n for n in checked.graph.nodes if n.op in ("activation", "add", "concat")]
    owner: dict[str, str] = {name: name for name in checked.graph.inputs}  # ONNX value -> IR node
    chains: dict[str, list] = defaultdict(list)
    for node in proto.graph.node:
        scope = _top_scope_of_named(node.name, layers)
        if scope:
            for o in node.output:
                owner[o] = scope
            continue
        if node.op_type == "Constant":
            continue
        read = {owner[i] for i in node.input if i in owner}
        match = next((n for n in pending if set(n.inputs) == read), None)
        if match is not None:
            pending.remove(match)
            target = match.name
        elif len(read) == 1 and next(iter(read)) in chains:  # a later node of a multi-node activation
            target = next(iter(read))
        else:
            continue
        chains[target].append(node)
        for o in node.output:
            owner[o] = target
    taken = {n.name for n in proto.graph.node}
    for target, nodes in chains.items():
        for k, node in enumerate(nodes):
            name = target if k == len(nodes) - 1 else f"{target}/{node.op_type}"
            if name not in taken or name == node.name:
                taken.discard(node.name)
                node.name = name
                taken.add(name)


def _top_scope_of_named(name: str, layers: set[str]) -> str:
    """The layer a node was named after by name_nodes (`conv2d_1`, `conv2d_1/Pad`), or ``."""
    head = name.split("/", 1)[0]
    return head if head in layers else ""
