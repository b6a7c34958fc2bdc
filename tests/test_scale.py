"""Big and deep specs: no recursion limit, no quadratic blow-up that makes them unusable.

Timing targets live in bench/check_speed.py (not a timed test); here we check that the
results are right at sizes far beyond any real spec.
"""
from __future__ import annotations

import pytest

from nnspec.fmt import format_text, spec_ir, strip_spans
from nnspec.parse import MAX_NESTING
from nnspec.pipeline import check_text

HEAD = "model Big {\n    input x: [4]\n"
TAIL = "    loss mse\n    optimizer SGD(lr=0.1)\n}\n"
DENSE_4_PARAMS = 4 * 4 + 4  # torch.nn.Linear(4, 4): weight 4x4 + bias 4


def spec(layers: str, blocks: str = "") -> str:
    return HEAD + blocks + "    layers {\n" + layers + "    }\n" + TAIL


def dense_nodes(result):
    return [n for n in result.checked.graph.nodes if n.kind == "Dense"]


@pytest.mark.slow
def test_ten_thousand_statements():
    result = check_text(spec("        Dense(4)\n" * 10_000))
    assert result.ok, result.render()
    nodes = dense_nodes(result)
    assert len(nodes) == 10_000 and len({n.name for n in nodes}) == 10_000
    assert result.checked.graph.total_params == 10_000 * DENSE_4_PARAMS


@pytest.mark.slow
def test_ten_thousand_links_in_one_chain_and_fmt_breaks_it():
    text = spec("        x -> " + " -> ".join(["Dense(4)"] * 10_000) + "\n")
    result = check_text(text)
    assert result.ok and len(dense_nodes(result)) == 10_000
    formatted = format_text(text)
    assert formatted.count("\n            -> Dense(4)") == 10_000  # too long for a line: one link a line
    assert spec_ir(formatted) == strip_spans(result.checked.spec)


def test_ten_thousand_terms_in_one_sum():
    result = check_text(spec("        h = Dense(4)\n        " + " + ".join(["h"] * 10_000) + "\n"))
    assert result.ok
    assert result.checked.graph.output_node.kind == "add"
    assert len(result.checked.graph.output_node.inputs) in (2, 10_000)  # a chain of adds or one n-ary add


def test_blocks_nested_two_hundred_deep():
    blocks = "".join(f"    block B{i}() {{ B{i + 1}() }}\n" for i in range(200)) + "    block B200() { Dense(4) }\n"
    result = check_text(spec("        B0()\n", blocks))
    assert result.ok, result.render()
    (node,) = dense_nodes(result)
    assert len(node.scope) == 201 and node.name.startswith("b0_1.b1_1.b2_1.")
    assert node.out.shape == (4,)


def test_parentheses_two_hundred_deep():
    depth = 200
    text = spec("        " + "(" * depth + "Dense(4)" + ")" * depth + "\n")
    result = check_text(text)
    if depth <= MAX_NESTING:
        assert result.ok and len(dense_nodes(result)) == 1
        assert spec_ir(format_text(text)) == spec_ir(text)
    else:
        assert [d.code for d in result.diagnostics] == ["E004"]


@pytest.mark.parametrize("opener, closer", [("(", ")"), ("[", "]"), ("-", "")])
def test_nesting_beyond_the_limit_is_a_diagnostic_not_a_recursion_error(opener, closer):
    depth = MAX_NESTING + 50
    value = opener * depth + "1" + closer * depth
    result = check_text(spec(f"        Dense(4, l2={value})\n"))
    assert [d.code for d in result.diagnostics] == ["E004"]
    assert result.diagnostics[0].span.line == 4


def test_repetition_products_two_hundred_long():
    result = check_text(spec("        Dense(4)" + " * 1" * 200 + "\n"))
    assert result.ok and len(dense_nodes(result)) == 1
