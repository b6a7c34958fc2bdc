"""`nnspec viz`: deterministic DOT (golden files), an SVG for every spec, the missing-`dot` path.

Regenerate the golden files after an intended change of the drawing with
`NNSPEC_UPDATE_GOLDEN=1 pytest tests/test_viz.py`, and look at the diff.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.backends import dot
from nnspec.cli import main
from nnspec.pipeline import load_checked

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
GOLDEN = ROOT / "tests" / "golden" / "dot"
# (spec, options) pairs whose DOT text is pinned: blocks, collapsed blocks, search spaces,
# two inputs with a concat, a bidirectional RNN over `?` steps, left-to-right full detail.
GOLDEN_CASES = {
    "tiny_resnet": ("tiny_resnet", {}),
    "tiny_resnet_collapsed": ("tiny_resnet", {"collapse_blocks": True, "rankdir": "LR"}),
    "tune_mlp": ("tune_mlp", {}),
    "two_tower": ("two_tower", {}),
    "sentiment_lstm": ("sentiment_lstm", {}),
    "iris_mlp_full": ("iris_mlp", {"detail": "full", "rankdir": "LR"}),
    "tiny_transformer": ("tiny_transformer", {}),
}
HAS_DOT = shutil.which("dot") is not None


def _dot_text(spec: str, **options) -> str:
    return dot.to_dot(load_checked(ROOT / "specs" / f"{spec}.nn").checked, **options)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_dot_matches_golden_file(case):
    spec, options = GOLDEN_CASES[case]
    text = _dot_text(spec, **options)
    path = GOLDEN / f"{case}.dot"
    if os.environ.get("NNSPEC_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_dot_text_is_deterministic_across_processes():
    code = ("from nnspec.backends.dot import to_dot; from nnspec.pipeline import load_checked; "
            f"print(to_dot(load_checked({str(ROOT / 'specs' / 'two_tower.nn')!r}).checked), end='')")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1 and outs.pop() == _dot_text("two_tower")


def test_diagram_content_follows_the_graph():
    checked = load_checked(ROOT / "specs" / "tiny_resnet.nn").checked
    text = dot.to_dot(checked)
    # every layer node is drawn, inside its block's cluster when it has one
    for n in checked.graph.nodes:
        if n.op == "layer":
            assert f'"{n.name}" [' in text or f"\t{n.name} [" in text
    assert text.count("subgraph cluster_residual_") == 3
    assert "→ leaky_relu(alpha=0.1)" in text  # the activation folded into conv2d_1's box
    assert "shape=invhouse" in text and "shape=house" in text  # input and output terminals
    assert "14,922 params" in text  # Keras's count for this network (see test_check)
    collapsed = dot.to_dot(checked, collapse_blocks=True)
    assert "cluster" not in collapsed and collapsed.count("block Residual") == 3
    assert '"residual_1" -> "residual_2"' in collapsed or "residual_1 -> residual_2" in collapsed


def test_search_spaces_are_drawn_as_spaces():
    text = _dot_text("tune_mlp")
    assert "units=choice(16, 32, 64)" in text and "rate=uniform(0, 0.5)" in text
    assert "repeat=int_range(1, 3)" in text and "dashed" in text


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed (make test installs it)")
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_renders_to_svg(spec, tmp_path):
    result = CliRunner().invoke(main, ["viz", str(spec), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    svg = tmp_path / f"{spec.stem}.svg"
    root = ET.parse(svg).getroot()  # well-formed XML
    assert root.tag.endswith("svg")
    checked = load_checked(spec).checked
    titles = {el.text for el in root.iter("{http://www.w3.org/2000/svg}title")}
    assert set(checked.graph.inputs) <= titles and "output" in titles


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed (make test installs it)")
def test_png_and_default_output_beside_the_spec(tmp_path):
    spec = tmp_path / "net.nn"
    spec.write_text((ROOT / "specs" / "iris_mlp.nn").read_text())
    assert CliRunner().invoke(main, ["viz", str(spec)]).exit_code == 0
    assert (tmp_path / "net.svg").read_text().lstrip().startswith("<?xml")
    assert CliRunner().invoke(main, ["viz", str(spec), "-o", str(tmp_path / "n.png")]).exit_code == 0
    assert (tmp_path / "n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dot_writes_the_dot_file_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    spec = ROOT / "specs" / "two_tower.nn"
    result = CliRunner().invoke(main, ["viz", str(spec), "-o", str(tmp_path / "tt.svg")])
    assert result.exit_code == 1
    assert "apt-get install -y graphviz" in result.output and "brew install graphviz" in result.output
    assert (tmp_path / "tt.dot").read_text() == _dot_text("two_tower")
    assert not (tmp_path / "tt.svg").exists()


def test_dot_output_needs_no_graphviz_program(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = CliRunner().invoke(main, ["viz", str(ROOT / "specs" / "iris_mlp.nn"), "-o", str(tmp_path / "i.dot")])
    assert result.exit_code == 0 and (tmp_path / "i.dot").read_text() == _dot_text("iris_mlp")


def test_unknown_output_format_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["viz", str(ROOT / "specs" / "iris_mlp.nn"), "-o", str(tmp_path / "x.jpgg")])
    assert result.exit_code == 1 and "unknown format '.jpgg'" in result.output and ".svg" in result.output


def test_viz_does_not_import_torch(tmp_path):
    code = ("import sys; from click.testing import CliRunner; from nnspec.cli import main; "
            f"r = CliRunner().invoke(main, ['viz', {str(ROOT / 'specs' / 'tiny_resnet.nn')!r}, '-o', "
            f"{str(tmp_path / 't.dot')!r}]); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'viz imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
