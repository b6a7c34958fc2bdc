"""`nnspec compile --emit python`: the emitted source reproduces build_model's module.

For every catalog layer's examples, and every spec: the generated file (imported from a tmp dir,
as a user would) imports only torch, has the same state_dict keys and shapes, loads
build_model's weights strictly, and gives the same outputs (max abs diff <= 1e-6) in eval mode,
with padded token sequences where a spec has them. Its layer classes are nnspec's own source.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from catalog_examples import EXAMPLES, IDS, one_layer
from nnspec.backends import torch_layers
from nnspec.backends.onnx_export import example_inputs
from nnspec.backends.python_source import python_source
from nnspec.backends.torch_model import build_model
from nnspec.cli import main
from nnspec.pipeline import check_text, load_checked

ROOT = Path(__file__).resolve().parent.parent
SPECS = [p for p in sorted((ROOT / "specs").glob("*.nn")) if "adversarial" not in p.read_text()]
GAN_SPECS = [p for p in sorted((ROOT / "specs").glob("*.nn")) if "adversarial" in p.read_text()]  # refused below


def _import(path: Path, class_name: str):
    spec = importlib.util.spec_from_file_location(f"emitted_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    return names


def _same_outputs(checked, text: str, tmp_path: Path) -> float:
    path = tmp_path / "model.py"
    path.write_text(text)
    torch.manual_seed(0)
    reference = build_model(checked).eval()
    emitted = _import(path, checked.spec.name)()
    ours, theirs = reference.state_dict(), emitted.state_dict()
    assert list(theirs) == list(ours)
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    emitted.load_state_dict(ours, strict=True)
    emitted.eval()
    diff = 0.0
    for batch in (1, 3):
        xs = example_inputs(checked, batch=batch, steps=9, seed=batch)
        with torch.no_grad():
            expected, got = reference(*xs), emitted(*xs)
        assert got.shape == expected.shape
        diff = max(diff, float((got - expected).abs().max()))
    return diff


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_emitted_source_reproduces_the_lowered_module(spec, tmp_path):
    result = CliRunner().invoke(main, ["compile", str(spec), "--emit", "python", "-o", str(tmp_path / "gen.py")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "gen.py").read_text()
    assert _imports(text) <= {"torch", "torch.nn.functional"}
    tree = ast.parse(text)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert classes[-1].name == load_checked(spec).checked.spec.name  # after the layer classes it uses
    assert _same_outputs(load_checked(spec).checked, text, tmp_path) <= 1e-6


@pytest.mark.parametrize("entry, call, shape", EXAMPLES, ids=IDS)
def test_every_catalog_example_is_reproduced(entry, call, shape, tmp_path):
    checked = one_layer(call, shape)
    text = python_source(checked, "layer.nn")
    assert _imports(text) <= {"torch", "torch.nn.functional"}
    assert _same_outputs(checked, text, tmp_path) <= 1e-6


def test_ejected_layer_classes_are_the_ones_that_train():
    """Each top-level class and function of the file but the model is torch_layers' (or the
    geometry's) own source, character for character: a layer cannot train one way and eject another."""
    import inspect

    from nnspec.catalog import geometry

    text = python_source(one_layer("Conv1D(4, 3, stride=2, padding=same)", (9, 3)), "c.nn")
    tree = ast.parse(text)
    copied = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))][:-1]
    assert {n.name for n in copied} >= {"Window", "Conv", "conv_out", "pad_list", "same_pads"}
    for n in copied:
        own = getattr(torch_layers, n.name, None) or getattr(geometry, n.name)
        assert ast.get_source_segment(text, n) == inspect.getsource(own).rstrip("\n"), n.name


LAYER_ZOO = """
model Zoo {
    input seq: [12, 6]
    layers {
        Conv1D(8, 3, padding=same) -> gelu
        BatchNorm()
        MaxPool1D(2, padding=same)
        LayerNorm()
        MultiHeadAttention(heads=2)
        PositionalEncoding(kind=learned)
        SimpleRNN(5, return_sequences=true)
        AvgPool1D(2)
        Upsample(2)
        GRU(4, layers=2, bidirectional=true)
        Dense(6) -> selu
        Reshape([2, 3])
        GlobalMaxPool()
        Dense(2) -> scaled_tanh(-1, 3)
    }
    loss mse
}
"""


def test_layers_without_an_example_spec_are_reproduced(tmp_path):
    result = check_text(LAYER_ZOO, "zoo.nn")
    if not result.ok:
        pytest.fail(result.render())
    assert _same_outputs(result.checked, python_source(result.checked, "zoo.nn"), tmp_path) <= 1e-6


PADDED_ZOO = """
model PaddedZoo {
    input tokens: int[?]
    layers {
        Embedding(vocab=50, dim=8, padding_idx=0)
        Conv1D(8, 3, stride=2, padding=1) -> relu
        MaxPool1D(2)
        MultiHeadAttention(heads=2)
        GRU(6, return_sequences=true, bidirectional=true)
        Upsample(2)
        AvgPool1D(2, padding=same)
        TransformerEncoder(heads=2, ff=16, layers=1)
        LSTM(5)
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
}
"""


def test_padding_masks_are_reproduced_through_resizing_layers(tmp_path):
    result = check_text(PADDED_ZOO, "padded.nn")
    assert result.ok, result.render()
    text = python_source(result.checked, "padded.nn")
    assert "pack_padded_sequence" in text and "tokens != 0" in text
    assert _same_outputs(result.checked, text, tmp_path) <= 1e-6


PADDED_WINDOWS = """
model PaddedWindows {
    input tokens: int[?]
    layers {
        Embedding(vocab=50, dim=6, padding_idx=0)
        Dense(6) -> tanh
        Conv1D(6, 3, padding=same)
        MaxPool1D(3, stride=1, padding=1)
        AvgPool1D(2, stride=1)
        Upsample(2, mode=linear)
        ConvTranspose1D(5, 3, stride=2, padding=1, output_padding=1)
        Upsample1D(3, mode=linear)
        AvgPool1D(3, padding=same)
        GlobalAvgPool()
        Dense(2)
    }
    loss mse
}
"""


def test_padded_steps_read_as_padding_in_windows(tmp_path):
    """A Dense with a bias makes padded steps non-zero, so every windowed layer must mask them."""
    result = check_text(PADDED_WINDOWS, "windows.nn")
    assert result.ok, result.render()
    text = python_source(result.checked, "windows.nn")
    assert _same_outputs(result.checked, text, tmp_path) <= 1e-6


def test_emitted_default_path_is_beside_the_spec(tmp_path):
    spec = tmp_path / "iris.nn"
    spec.write_text((ROOT / "specs" / "iris_mlp.nn").read_text())
    result = CliRunner().invoke(main, ["compile", str(spec), "--emit", "python"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "iris.py").read_text()
    assert "class IrisMLP(nn.Module):" in text and "self.dense_1 = nn.Linear(4, 16, bias=True)" in text


@pytest.mark.parametrize("name", ["torch", "inf", "nan", "device", "nnspec_backends_torch_layers_step", "Conv",
                                  "Window", "F", "nn"])
def test_an_input_named_like_a_name_of_the_generated_code(name, tmp_path):
    """The generated forward's globals (`torch`, the functions fx names after their module) and the
    ejected file's own names are not shadowed by an input's name (`input torch` broke the forward)."""
    text = (f"model M {{\n  input {name}: [4, 6]\n  layers {{\n    {name} -> Conv1D(3, 2, activation=step) -> "
            "Dense(2) -> softmax\n  }\n}\n")
    result = check_text(text, "m.nn")
    assert result.ok, result.render()
    assert _same_outputs(result.checked, python_source(result.checked, "m.nn"), tmp_path) <= 1e-6


@pytest.mark.parametrize("spec", GAN_SPECS, ids=lambda p: p.stem)
def test_a_gan_spec_is_refused_by_name_not_exported_half(spec, tmp_path):
    from click.testing import CliRunner

    from nnspec.cli import main

    result = CliRunner().invoke(main, ["compile", str(spec), "--emit", "python", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "declares networks" in result.output, result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())
