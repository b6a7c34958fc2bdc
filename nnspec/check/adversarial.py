"""A spec of named networks (`network G { ... }`) paired by `adversarial { }`: a GAN.

Each network is checked as a model of its own (its layers, its optimizer, or the model's when it
has none); then the pair: the generator's output shape must equal the discriminator's input shape
(E210), the discriminator ends in one raw score per sample (E211, E212), each network reads one
input (E213). The result is one `Checked` whose `networks` hold each network's, and whose graph
is both networks side by side (names prefixed `generator.`), for summary, viz and the IR hash.
Codes: E021-E024 (structure), E210-E213 (shapes), W210.
"""
from __future__ import annotations

import dataclasses

from .. import ir
from ..catalog.settings import ADVERSARIAL_SETTINGS, TRAIN_SETTINGS
from ..checked import Checked, output_activation
from ..diagnostics import Sink, suggest
from .common import header_span
from .elaborate import Elaborator
from .sections import check_optimizer, check_settings

# Train settings a GAN run reads; the others (validation, monitor, ...) belong to supervised training.
GAN_TRAIN_SETTINGS = ("data", "epochs", "batch_size", "seed", "shuffle")
# An output activation with a known range: the data is scaled into it (train/gan.py).
BOUNDED = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
_SHAPE_OPS = ("Reshape", "Flatten")  # change no value: the activation before one still bounds the output


def is_adversarial(spec: ir.Spec) -> bool:
    return bool(spec.networks or spec.adversarial or "adversarial" in spec.sections)


def check_adversarial(spec: ir.Spec, sink: Sink, max_nodes: int) -> Checked:
    _model_level_items(spec, sink)
    settings = check_settings(spec.adversarial, ADVERSARIAL_SETTINGS, "adversarial", sink)
    train = check_settings(spec.train, TRAIN_SETTINGS, "train", sink)
    _unused_train_settings(spec, sink)
    networks = {net.name: _network(spec, net, sink, max_nodes) for net in spec.networks}
    roles = _roles(spec, settings, networks, sink)
    if roles is not None:
        _check_pair(*roles, sink)
    graph = _side_by_side(networks, roles)
    adversarial = dict(settings)
    adversarial["optimizers"] = {name: c.optimizer for name, c in networks.items()}
    if roles is not None:
        adversarial["output_range"] = list(output_range(roles[0][1].graph))
    return Checked(spec, graph, None, (), None, (), train, {}, tuple(sink.sorted()), networks, adversarial)


def _model_level_items(spec: ir.Spec, sink: Sink) -> None:
    if not spec.networks:
        sink.error("E022", "an `adversarial` section pairs two networks; this model declares none",
                   spec.sections.get("adversarial", header_span(spec)),
                   help="declare them: network generator { input noise: [32]; layers { ... } } and "
                        "network discriminator { ... }")
        return
    if "adversarial" not in spec.sections:
        sink.error("E022", "a model with `network`s needs an `adversarial { }` section that says how they train",
                   header_span(spec), help="add adversarial { generator G; discriminator D }")
    for key in ("input", "layers", "loss", "metrics", "search"):
        if key in spec.sections:
            sink.error("E022", f"a model with networks has no model-level `{key}`: each network has its own "
                       "input and layers, and the adversarial objective is the loss", spec.sections[key],
                       help=f"move it into a `network {{ }}`" if key in ("input", "layers") else f"remove `{key}`")


def _unused_train_settings(spec: ir.Spec, sink: Sink) -> None:
    for st in spec.train:
        if st.name not in GAN_TRAIN_SETTINGS and st.name in {p.name for p in TRAIN_SETTINGS}:
            sink.error("E022", f"train setting '{st.name}' does not apply to adversarial training", st.span,
                       help=f"a GAN run reads {', '.join(GAN_TRAIN_SETTINGS)}")


def _network(spec: ir.Spec, net: ir.Spec, sink: Sink, max_nodes: int) -> Checked:
    for key in ("loss", "metrics", "train", "search", "adversarial"):
        if key in net.sections:
            sink.error("E024", f"network '{net.name}' has a `{key}` section; in a GAN it belongs to the model",
                       net.sections[key], help="the adversarial section sets the objective; train { } the data"
                       if key in ("loss", "metrics") else f"move `{key}` to the model")
    # the model's blocks serve every network; the model's optimizer is each network's default
    net = dataclasses.replace(net, blocks=spec.blocks + net.blocks, optimizer=net.optimizer or spec.optimizer)
    graph = Elaborator(net, sink, max_nodes).run()
    optimizer = check_optimizer(net, graph, sink)
    if optimizer is None and net.optimizer is None:
        sink.error("E024", f"network '{net.name}' has no optimizer", header_span(net, "network"),
                   help="write `optimizer Adam(lr=0.0002, beta1=0.5)` in the network, or once in the model for both")
    return Checked(net, graph, None, (), optimizer, (), {}, {}, ())


def _roles(spec, settings, networks, sink):
    """((generator name, Checked), (discriminator name, Checked)), or None when one is missing."""
    found = []
    for role in ("generator", "discriminator"):
        name = settings.get(role)
        setting = next((s for s in spec.adversarial if s.name == role), None)
        if name is None:
            if "adversarial" in spec.sections and spec.networks:
                sink.error("E023", f"the adversarial section names no {role}", spec.sections["adversarial"],
                           help=f"add `{role} NAME`, one of: {', '.join(networks)}")
            return None
        if name not in networks:
            sink.error("E023", f"the {role} '{name}' is not a network of this model", setting.span,
                       help=suggest(name, networks) or f"networks: {', '.join(networks) or 'none'}")
            return None
        found.append((name, networks[name]))
    if found[0][0] == found[1][0]:
        sink.error("E023", f"'{found[0][0]}' is both the generator and the discriminator", spec.sections["adversarial"],
                   help="name two different networks")
        return None
    return found[0], found[1]


def _check_pair(gen, disc, sink: Sink) -> None:
    (g_name, g), (d_name, d) = gen, disc
    for name, c in (gen, disc):
        if len(c.graph.inputs) != 1:
            sink.error("E213", f"network '{name}' has {len(c.graph.inputs)} inputs; a {_role(c, gen)} reads one",
                       header_span(c.spec, "network"), help="declare one `input` in the network")
    g_out = g.graph.output_node
    if g_out is None or g_out.out is None or len(d.graph.inputs) != 1:
        return  # reported already (no layers, a shape error, or not one input)
    d_in = d.graph.node(d.graph.inputs[0])
    if g_out.out != d_in.out:
        sink.error("E210", f"the generator '{g_name}' makes samples of shape {g_out.out}, but the discriminator "
                   f"'{d_name}' reads {d_in.out}", g_out.span,
                   notes=[f"the discriminator's input '{d_in.name}' {d_in.out} is declared at line "
                          f"{d_in.span.line}, column {d_in.span.col}"],
                   help=f"end the generator with Reshape({list(d_in.out.shape)}), or declare the discriminator's "
                        f"input as {g_out.out}")
    d_out = d.graph.output_node
    if d_out is None or d_out.out is None:
        return
    if d_out.out.numel != 1:
        sink.error("E211", f"the discriminator '{d_name}' must end in one score per sample; its output is {d_out.out}",
                   d_out.span, help="end it with Dense(1)")
    act = output_activation(d.graph)
    if act in ("sigmoid", "softmax"):
        sink.error("E212", f"the discriminator '{d_name}' ends in {act}; the adversarial losses take its raw score "
                   "(a logit) and apply the sigmoid themselves, which is numerically stable", d_out.span,
                   help=f"remove `-> {act}`: end with Dense(1)")
    if _bounded_activation(g.graph) is None:
        sink.warning("W210", f"the generator '{g_name}' ends in no sigmoid or tanh: its samples are unbounded; "
                     "the data is scaled to [-1, 1] for training", g_out.span,
                     help="end it with `-> sigmoid` (data scaled to [0, 1]) or `-> tanh` ([-1, 1])")


def _role(c: Checked, gen) -> str:
    return "generator" if c is gen[1] else "discriminator"


def _bounded_activation(graph: ir.Graph) -> str | None:
    """The sigmoid or tanh that bounds the output, looking through Reshape/Flatten after it."""
    node = graph.output_node
    while node is not None and node.op == "layer" and node.kind in _SHAPE_OPS and len(node.inputs) == 1:
        node = graph.node(node.inputs[0])
    return node.kind if node is not None and node.op == "activation" and node.kind in BOUNDED else None


def output_range(graph: ir.Graph) -> tuple[float, float]:
    """The range of the generator's samples: its bounding activation's, else [-1, 1] (W210)."""
    return BOUNDED.get(_bounded_activation(graph) or "tanh")


def _side_by_side(networks: dict[str, Checked], roles) -> ir.Graph:
    """Both networks in one graph, node names prefixed with the network's, each network a scope
    (viz draws it as a cluster); the discriminator's input is drawn fed by the generator's output."""
    nodes, inputs = [], []
    feeds = {}
    if roles is not None:
        (g_name, g), (d_name, d) = roles
        if g.graph.output and len(d.graph.inputs) == 1:
            feeds[f"{d_name}.{d.graph.inputs[0]}"] = (f"{g_name}.{g.graph.output}",)
    output = None
    for name, c in networks.items():
        for n in c.graph.nodes:
            full = f"{name}.{n.name}"
            nodes.append(dataclasses.replace(n, name=full, inputs=feeds.get(full, tuple(f"{name}.{i}" for i in n.inputs)),
                                             scope=(name, *n.scope)))
        inputs.extend(f"{name}.{i}" for i in c.graph.inputs)
        if c.graph.output:
            output = f"{name}.{c.graph.output}"
    if roles is not None and roles[1][1].graph.output:
        output = f"{roles[1][0]}.{roles[1][1].graph.output}"
    return ir.Graph(tuple(nodes), tuple(inputs), output)
