"""Every layer of the catalog, as the tests run it: each entry's example and variants (kept in
the entry, `nnspec/catalog/layers.py`), as a one-layer spec. The torch, ONNX and ejected-source
tests iterate over EXAMPLES, so a new layer is tested everywhere by its entry alone."""
from __future__ import annotations

from nnspec import catalog
from nnspec.pipeline import check_text

LAYER_ENTRIES = list(catalog.layers)
EXAMPLES = [(entry, call, shape) for entry in LAYER_ENTRIES for call, shape in entry.examples]
IDS = [call for _, call, _ in EXAMPLES]


def input_decl(shape: tuple) -> str:
    """(2, 3) -> `[2, 3]`; ("int", 7) -> `int[7]`; None -> `?`."""
    prefix, dims = ("int", shape[1:]) if shape and shape[0] == "int" else ("", shape)
    return f"{prefix}[{', '.join('?' if d is None else str(d) for d in dims)}]"


def spec_text(call: str, shape: tuple, name: str = "T") -> str:
    return f"model {name} {{\n  input x: {input_decl(shape)}\n  layers {{ {call} }}\n}}\n"


def one_layer(call: str, shape_or_decl):
    """The checked one-layer spec (a shape tuple or an input declaration such as "[3, 5]")."""
    decl = shape_or_decl if isinstance(shape_or_decl, str) else input_decl(shape_or_decl)
    result = check_text(f"model T {{\n  input x: {decl}\n  layers {{ {call} }}\n}}\n")
    assert result.ok, result.render()
    return result.checked
