"""Keras-style summary table and its JSON form, from the checked graph (no torch)."""
from __future__ import annotations

from typing import Any

from ..checked import Checked
from ..ir import Node

BYTES_PER_PARAM = 4  # float32


def _type_label(node: Node) -> str:
    if node.op == "layer" and node.args.get("bidirectional") and node.kind in ("LSTM", "GRU", "SimpleRNN"):
        return f"{node.kind} (bidirectional)"
    return node.kind if node.op != "input" else "Input"


def rows(checked: Checked) -> list[dict[str, Any]]:
    out = []
    for n in checked.graph.nodes:
        out.append({
            "name": n.name, "type": _type_label(n), "op": n.op,
            "output_shape": None if n.out is None else [d for d in n.out.shape],
            "dtype": None if n.out is None else n.out.dtype,
            "params": n.params, "non_trainable": n.non_trainable,
            "inputs": list(n.inputs), "line": n.span.line, "col": n.span.col,
            "alias": n.alias, "trainable": n.trainable,
        })
    return out


def totals(checked: Checked) -> dict[str, Any]:
    g = checked.graph
    total, frozen = g.total_params, g.non_trainable_params
    return {"total": total, "trainable": total - frozen, "non_trainable": frozen,
            "bytes": total * BYTES_PER_PARAM}


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.2f} GB"


def network_totals(checked: Checked) -> dict[str, dict[str, Any]]:
    """Each network's parameter counts, for a spec of `network`s (a GAN); {} otherwise."""
    return {name: totals(net) for name, net in checked.networks.items()}


def as_json(checked: Checked) -> dict[str, Any]:
    extra = {"networks": network_totals(checked)} if checked.networks else {}
    return {"model": checked.spec.name, "layers": rows(checked), "params": totals(checked), **extra}


def render_table(checked: Checked, console) -> None:
    """Print the table with rich."""
    from rich.table import Table

    table = Table(title=f'Model: "{checked.spec.name}"', title_justify="left", show_lines=False)
    for col, justify in (("Layer (type)", "left"), ("Output shape", "left"), ("Param #", "right"),
                         ("Connected to", "left"), ("Source", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for r in rows(checked):
        shape = "?" if r["output_shape"] is None else "[" + ", ".join("?" if d is None else str(d) for d in r["output_shape"]) + "]"
        if r["dtype"] == "int":
            shape = "int" + shape
        label = f"{r['name']} ({r['type']}{'' if r['trainable'] else ', frozen'})"
        if r["alias"]:
            label += f" = {r['alias']}"
        table.add_row(label, shape, f"{r['params']:,}", ", ".join(r["inputs"]), f"{r['line']}:{r['col']}")
    console.print(table)
    t = totals(checked)
    console.print(f" Total params: {t['total']:,} ({human_bytes(t['bytes'])})")
    console.print(f" Trainable params: {t['trainable']:,} ({human_bytes(t['trainable'] * BYTES_PER_PARAM)})")
    console.print(f" Non-trainable params: {t['non_trainable']:,} ({human_bytes(t['non_trainable'] * BYTES_PER_PARAM)})")
    for name, n in network_totals(checked).items():
        console.print(f" network {name}: {n['total']:,} params ({human_bytes(n['bytes'])})")
