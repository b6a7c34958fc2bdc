"""Graphviz diagrams of the checked graph (`nnspec viz`), without torch.

One box per layer: name, type, key arguments, the activation that follows it, output shape and
parameter count. An activation node is folded into the layer before it when it is that layer's
only consumer (as it was written: `Dense(16) -> relu`). Edges carry the tensor shape. Inputs and
the output are distinct terminals; block instances are clusters (or, collapsed, one box each);
an argument that is a search space is written as the space and the box is dashed.

The DOT text depends only on the spec, so it is compared byte for byte in golden tests.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import catalog
from ..checked import Checked
from ..diagnostics import UserError
from ..ir import Node, Space, TensorType
from .json_ir import expr_json

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = ("apt-get install -y graphviz   (Debian/Ubuntu)\n"
                "brew install graphviz         (macOS)")

FONT = "Helvetica"
COLORS = {"input": "#d8f0d2", "output": "#fde2c8", "layer": "#e4ecf7", "merge": "#f2f2f2",
          "activation": "#f7f2dc", "block": "#eee6f6", "searched": "#fff4c2"}
HIDDEN_ARGS = {"activation", "l1", "l2"}  # `activation=` is its own node; zero penalties are noise


@dataclass
class Box:
    """What the diagram draws for one or more graph nodes (a layer and its folded activation)."""

    key: str  # the graph node whose name identifies the box
    members: list[Node] = field(default_factory=list)

    @property
    def last(self) -> Node:
        return self.members[-1]


def shape_text(t: TensorType | None) -> str:
    return "?" if t is None else str(t)


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value_text(i) for i in v) + "]"
    return str(v)


def space_text(s: Space) -> str:
    return f"{s.kind}({', '.join(_value_text(expr_json(o)) for o in s.options)})"


def _arg_items(node: Node, detail: str) -> list[str]:
    """`name=value` for the arguments worth showing: in compact mode the required ones and those
    that differ from the catalog's default; in full mode all of them. Search spaces always."""
    entry = catalog.layers.get(node.kind) if node.op == "layer" else catalog.activations.get(node.kind)
    params = {p.name: p for p in entry.params} if entry is not None else {}
    items = []
    for name in sorted(node.args):
        value = node.args[name]
        if name in node.searched:
            items.append(f"{name}={space_text(node.searched[name])}")
            continue
        if name in HIDDEN_ARGS and not (detail == "full" and name != "activation" and value):
            continue
        p = params.get(name)
        if detail == "compact" and p is not None and not p.required and p.default == value:
            continue
        items.append(f"{name}={_value_text(value)}")
    if "repeat" in node.searched and "repeat" not in node.args:
        items.append(f"repeat={space_text(node.searched['repeat'])}")
    return items


def _type_text(node: Node) -> str:
    if node.op == "layer" and node.args.get("bidirectional"):
        return f"Bidirectional({node.kind})"
    return node.kind


def _wrap(items: list[str], width: int = 34) -> list[str]:
    lines, line = [], ""
    for item in items:
        candidate = f"{line}, {item}" if line else item
        if line and len(candidate) > width:
            lines.append(line + ",")
            line = item
        else:
            line = candidate
    return lines + ([line] if line else [])


def _params_text(n: int) -> str:
    return f"{n:,} param{'s' if n != 1 else ''}"


def _html(rows: list[tuple[str, str]]) -> str:
    """An HTML-like Graphviz label: (text, style) rows; style is '', 'b' (bold) or 'i' (grey)."""
    out = []
    for text, style in rows:
        t = html.escape(text, quote=False)
        if style == "b":
            t = f"<B>{t}</B>"
        elif style == "head":  # "name\ttype": the name in bold, then the type
            name, kind = text.split("\t")
            t = f"<B>{html.escape(name, quote=False)}</B>  {html.escape(kind, quote=False)}"
        elif style == "i":
            t = f'<FONT POINT-SIZE="10" COLOR="#555555">{t}</FONT>'
        out.append(t)
    return "<" + "<BR/>".join(out) + ">"


class Diagram:
    def __init__(self, checked: Checked, detail: str = "compact", collapse_blocks: bool = False):
        self.checked, self.detail, self.collapse = checked, detail, collapse_blocks
        self.graph = checked.graph
        self.consumers: dict[str, list[str]] = {n.name: [] for n in self.graph.nodes}
        for n in self.graph.nodes:
            for i in n.inputs:
                self.consumers[i].append(n.name)
        self.boxes, self.box_of = self._fold()

    # ------------------------------------------------------------ structure
    def _fold(self) -> tuple[list[Box], dict[str, Box]]:
        boxes: list[Box] = []
        box_of: dict[str, Box] = {}
        for n in self.graph.nodes:
            src = box_of.get(n.inputs[0]) if len(n.inputs) == 1 else None
            if (n.op == "activation" and src is not None and src.last.op != "input"
                    and src.last.name == n.inputs[0] and self.consumers[n.inputs[0]] == [n.name]
                    and src.last.scope == n.scope):
                src.members.append(n)
            else:
                src = Box(n.name, [n])
                boxes.append(src)
            box_of[n.name] = src
        return boxes, box_of

    def _instance(self, scope: tuple[str, ...]) -> str | None:
        return scope[0] if self.collapse and scope else None

    def _block_kind(self, instance: str) -> str:
        """The block's name for an instance prefix: `residual_1` -> `Residual`."""
        if instance in self.checked.networks:  # a GAN's network: its cluster says so
            return "network"
        base = re.sub(r"_\d+$", "", instance.split(".")[-1])
        for b in self.checked.spec.blocks:
            if _snake(b.name) == base:
                return b.name
        return base

    def node_id(self, name: str) -> str:
        box = self.box_of[name]
        inst = self._instance(box.members[0].scope)
        return inst if inst is not None else box.key

    # ------------------------------------------------------------ labels
    def box_label(self, box: Box) -> str:
        head = box.members[0]
        if head.op == "input":
            return _html([(head.name, "b"), (f"input {shape_text(head.out)}", "")])
        alias = next((m.alias for m in reversed(box.members) if m.alias), None)  # `a = ...` in the spec
        rows = [(f"{head.name.split('.')[-1]}\t{_type_text(head)}" + (f"  = {alias}" if alias else ""), "head")]
        for line in _wrap(_arg_items(head, self.detail)):
            rows.append((line, "i"))
        for act in box.members[1:]:
            args = _arg_items(act, self.detail)
            if "repeat" in head.searched:  # the repetition is already stated on the layer
                args = [a for a in args if not a.startswith("repeat=")]
            rows.append((f"→ {act.kind}" + (f"({', '.join(args)})" if args else ""), ""))
        params = sum(m.params for m in box.members)
        rows.append((f"{shape_text(box.last.out)}" + (f" · {_params_text(params)}" if params else ""), "i"))
        return _html(rows)

    def box_attrs(self, box: Box) -> dict[str, str]:
        head = box.members[0]
        searched = any(m.searched for m in box.members)
        if head.op == "input":
            attrs = {"shape": "invhouse", "fillcolor": COLORS["input"]}
        elif head.op in ("add", "concat"):
            attrs = {"shape": "box", "fillcolor": COLORS["merge"]}
        elif head.op == "activation":
            attrs = {"shape": "box", "fillcolor": COLORS["activation"]}
        else:
            attrs = {"shape": "box", "fillcolor": COLORS["layer"]}
        if searched:
            attrs.update(fillcolor=COLORS["searched"], style="rounded,filled,dashed")
        return attrs

    def instance_label(self, instance: str, members: list[Node]) -> str:
        params = sum(m.params for m in members)
        layers = sum(1 for m in members if m.op == "layer")
        rows = [(instance, "b"), (f"block {self._block_kind(instance)}", ""),
                (f"{layers} layer{'s' if layers != 1 else ''}", "i"),
                (f"{shape_text(members[-1].out)}" + (f" · {_params_text(params)}" if params else ""), "i")]
        return _html(rows)

    # ------------------------------------------------------------ output
    def build(self, rankdir: str = "TB"):
        import graphviz

        spec = self.checked.spec
        g = graphviz.Digraph(name=spec.name, comment=f"nnspec diagram of model {spec.name}")
        total = self.graph.total_params
        g.attr("graph", rankdir=rankdir, fontname=FONT, fontsize="12", labelloc="t", nodesep="0.3",
               ranksep="0.35", label=f"{spec.name} · {_params_text(total)}")
        g.attr("node", fontname=FONT, fontsize="11", shape="box", style="rounded,filled", color="#5b6b7f",
               margin="0.12,0.06")
        g.attr("edge", fontname=FONT, fontsize="9", color="#5b6b7f", fontcolor="#444444", arrowsize="0.7")
        self._emit_nodes(g)
        self._emit_edges(g)
        return g

    def _emit_nodes(self, g) -> None:
        """Boxes in graph order; those of a block instance inside (nested) clusters."""
        instances: dict[str, list[Node]] = {}
        clusters: dict[tuple[str, ...], Any] = {}
        pending: list[tuple[tuple[str, ...], str, str, dict]] = []
        for box in self.boxes:
            scope = box.members[0].scope
            inst = self._instance(scope)
            if inst is not None:
                if inst not in instances:
                    instances[inst] = []
                    pending.append(((), inst, "", {}))
                instances[inst].extend(box.members)
                continue
            pending.append((scope, box.key, self.box_label(box), self.box_attrs(box)))
        for scope, key, label, attrs in pending:
            if key in instances:
                label = self.instance_label(key, instances[key])
                attrs = {"shape": "box3d", "fillcolor": COLORS["block"], "style": "filled"}
            target = self._cluster(g, clusters, scope)
            target.node(key, label=label, **attrs)
        out = self.graph.output
        if out is not None:
            g.node("output", label=_html([("output", "b"), (shape_text(self.graph.node(out).out), "")]),
                   shape="house", fillcolor=COLORS["output"])
        for scope in sorted(clusters, key=len, reverse=True):  # innermost clusters close first
            parent = self._cluster(g, clusters, scope[:-1]) if len(scope) > 1 else g
            parent.subgraph(clusters[scope])

    def _cluster(self, g, clusters: dict, scope: tuple[str, ...]):
        import graphviz

        if not scope:
            return g
        for depth in range(1, len(scope) + 1):
            key = scope[:depth]
            if key not in clusters:
                name = ".".join(key)
                c = graphviz.Digraph(name="cluster_" + name.replace(".", "__"))
                c.attr(label=f"{name} : {self._block_kind(name)}", style="rounded,filled",
                       fillcolor="#faf8fd", color="#9b88b8", fontname=FONT, fontsize="11", labeljust="l")
                clusters[key] = c
        return clusters[scope]

    def _emit_edges(self, g) -> None:
        seen: set[tuple[str, str]] = set()
        for n in self.graph.nodes:
            dst = self.node_id(n.name)
            for i in n.inputs:
                src = self.node_id(i)
                if src == dst or (src, dst) in seen:
                    continue  # inside a folded box or a collapsed block instance
                seen.add((src, dst))
                g.edge(src, dst, label=" " + shape_text(self.graph.node(i).out))
        out = self.graph.output
        if out is not None:
            g.edge(self.node_id(out), "output")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def to_dot(checked: Checked, rankdir: str = "TB", detail: str = "compact", collapse_blocks: bool = False) -> str:
    return Diagram(checked, detail, collapse_blocks).build(rankdir).source


# ---------------------------------------------------------------- rendering
class DotMissing(UserError):
    """Graphviz's `dot` program is not installed; the .dot file was written instead."""


def output_path(spec_path: str, output: str | None, out_dir: str | None) -> Path:
    if output:
        path = Path(output)
        if out_dir and not path.is_absolute():
            path = Path(out_dir) / path
    else:
        path = Path(out_dir or Path(spec_path).parent) / (Path(spec_path).stem + ".svg")
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UserError(f"cannot draw to '{path.name}': unknown format '{path.suffix or '(none)'}'",
                        help=f"name the output with one of: {', '.join('.' + f for f in FORMATS)}")
    return path


def render(dot_source: str, path: Path) -> Path:
    """Write `path` (.dot as is; other formats through Graphviz's `dot`), atomically: `dot` draws
    into a temporary file that replaces `path` only once it succeeded, so a failure leaves no
    0-byte or half file (and an old drawing stays as it was). Raises DotMissing after writing the
    .dot file when `dot` is not installed. The folder of `path` must exist (cli: --out makes it)."""
    from ..fsutil import atomic_path, atomic_write_text

    fmt = path.suffix.lstrip(".").lower()
    if fmt == "dot":
        atomic_write_text(path, dot_source)
        return path
    exe = shutil.which("dot")
    if exe is None:
        dot_path = path.with_suffix(".dot")
        atomic_write_text(dot_path, dot_source)
        raise DotMissing(f"Graphviz's `dot` program is not installed; wrote {dot_path} instead of {path}",
                         help=f"install Graphviz, then run this command again:\n{INSTALL_HINT}")
    dpi = ["-Gdpi=144"] if fmt == "png" else []  # a sharp bitmap; the DOT text stays resolution-free
    with atomic_path(path) as tmp:
        proc = subprocess.run([exe, f"-T{fmt}", *dpi, "-o", str(tmp)], input=dot_source.encode("utf-8"),
                              capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise UserError(f"Graphviz's dot failed to draw {path}: {proc.stderr.decode(errors='replace').strip()}")
        if tmp.stat().st_size == 0:
            raise UserError(f"Graphviz's dot wrote nothing for {path}")
    return path
