"""ONNX export: checker, onnxruntime vs PyTorch for every catalog layer's examples and every spec,
names, metadata, Netron."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from catalog_examples import EXAMPLES, IDS, one_layer, spec_text
from nnspec.backends import onnx_export as ox
from nnspec.backends import torch_layers as tl
from nnspec.cli import main
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text, load_checked

ROOT = Path(__file__).resolve().parent.parent
SPECS = [p for p in sorted((ROOT / "specs").glob("*.nn")) if "adversarial" not in p.read_text()]
GAN_SPECS = [p for p in sorted((ROOT / "specs").glob("*.nn")) if "adversarial" in p.read_text()]  # refused below


def _load(spec: Path):
    result = load_checked(spec)
    return result.checked, result.source


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_exports_and_matches_pytorch_in_onnxruntime(spec, tmp_path):
    checked, source = _load(spec)
    path = tmp_path / "model.onnx"
    model = _distinct_weights(ox.build_eval_model(checked))
    ox.export(checked, source, path, model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no .onnx.data sidecar
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == ox.OPSET
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta == {"nnspec.model": checked.spec.name, "nnspec.source": source}

    # dynamic batch on every input and the output; `?` dimensions dynamic as well
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch", value.name
    for inp in proto.graph.input:
        declared = checked.graph.node(inp.name).out.shape
        dims = inp.type.tensor_type.shape.dim[1:]
        assert [d.dim_value if d.dim_value else None for d in dims] == list(declared)

    # initializers and nodes name the spec's layers
    layers_with_weights = {n.name for n in checked.graph.nodes if n.params}
    inits = [i.name for i in proto.graph.initializer]
    assert not [i for i in inits if i.startswith("onnx::")]
    for layer in layers_with_weights:
        assert any(i.startswith(layer + ".") for i in inits), (layer, inits)
    assert not [n.name for n in proto.graph.node if ox.SCOPE_DOT in n.name]
    node_names = [n.name for n in proto.graph.node]
    for layer in layers_with_weights:  # the layer's output node is named as the layer (onnx_tidy)
        assert layer in node_names, (layer, node_names)
    assert len(set(node_names)) == len(node_names)
    assert not [n.op_type for n in proto.graph.node if n.op_type == "Identity"]

    # an independent run: the same weights in PyTorch (eval) and onnxruntime, batch 1 and 3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        xs = ox.example_inputs(checked, batch=batch, steps=9, seed=100 + batch)
        with torch.no_grad():
            expected = model(*xs).numpy()
        got = session.run(None, {n: x.numpy() for n, x in zip(model.input_names, xs)})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5


@pytest.mark.parametrize("entry, call, shape", EXAMPLES, ids=IDS)
def test_every_catalog_example_exports_and_matches_pytorch(entry, call, shape, tmp_path):
    """export() checks the file and runs it in onnxruntime against PyTorch at batch 1 and 3 (other
    `?` lengths than the traced one); here with perturbed weights and statistics as well."""
    checked = one_layer(call, shape)
    model = _distinct_weights(ox.build_eval_model(checked))
    info = ox.export(checked, spec_text(call, shape), tmp_path / "layer.onnx", model=model)
    assert max(info["max_abs_diff"].values()) <= 1e-5
    xs = ox.example_inputs(checked, batch=2, steps=5, seed=3)
    session = ort.InferenceSession(str(tmp_path / "layer.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(*xs).numpy()
    assert np.abs(session.run(None, {"x": xs[0].numpy()})[0] - expected).max() <= 1e-5


def _distinct_weights(model):
    """Perturb every weight and running statistic: no two layers then hold equal tensors (the
    exporter merges equal initializers, e.g. the ones/zeros of fresh BatchNorms), and BatchNorm
    is exercised with non-trivial statistics."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if t.is_floating_point():
                noise = 0.05 * torch.randn(t.shape, generator=gen)
                t.add_(noise.abs() if name.endswith("running_var") else noise)
    return model


def _rnn(kind: str, bidirectional: bool, layers: int, return_sequences: bool):
    torch.manual_seed(0)
    m = getattr(tl, kind)(5, 6, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                          return_sequences=return_sequences)
    return m.eval()


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional,layers,return_sequences",
                         [(False, 1, False), (True, 1, True), (True, 2, False), (False, 2, True)])
def test_export_friendly_recurrence_equals_pytorch_packed_sequences(kind, bidirectional, layers, return_sequences):
    """The gather-based forward used for the export against PyTorch's pack_padded_sequence."""
    m = _rnn(kind, bidirectional, layers, return_sequences)
    x = torch.randn(4, 7, 5)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 3, 1, 5])[:, None]
    mask[2] = False  # an all-padding row: the packed forward runs it for one step
    with torch.no_grad():
        expected = m(x, mask)
        with ox.export_friendly(m):
            got = m(x, mask)
            unmasked = m(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(unmasked, m(x), rtol=0, atol=1e-6)
    assert "forward" not in m.__dict__  # the patch is gone after the block


PADDED_ATTENTION = """
model PaddedAttention {
    input tokens: int[?]
    layers {
        Embedding(vocab=50, dim=8, padding_idx=0)
        MultiHeadAttention(heads=2)
        GRU(6, return_sequences=true, bidirectional=true)
        TransformerEncoder(heads=2, ff=16, layers=1)
        GlobalMaxPool()
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
}
"""


def test_padded_tokens_through_attention_rnn_and_transformer_export(tmp_path):
    """Padding masks into self-attention, a bidirectional GRU and PyTorch's encoder layers, run at
    other batch sizes and lengths than the traced ones (export() verifies it, and so do we)."""
    checked = check_text(PADDED_ATTENTION, "padded.nn").checked
    model = _distinct_weights(ox.build_eval_model(checked))
    info = ox.export(checked, PADDED_ATTENTION, tmp_path / "p.onnx", model=model)
    assert max(info["max_abs_diff"].values()) <= 1e-5
    session = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    xs = ox.example_inputs(checked, batch=5, steps=13, seed=7)
    assert (xs[0] == 0).any()  # some rows are padded
    with torch.no_grad():
        expected = model(*xs).numpy()
    assert np.abs(session.run(None, {"tokens": xs[0].numpy()})[0] - expected).max() <= 1e-5


def test_a_padded_sequence_shortened_by_conv1d_is_a_clear_error(tmp_path):
    text = PADDED_ATTENTION.replace("MultiHeadAttention(heads=2)", "Conv1D(8, 3, stride=2)")
    checked = check_text(text, "c.nn").checked
    with pytest.raises(UserError) as err:
        ox.export(checked, text, tmp_path / "c.onnx", filename="c.nn")
    assert "'conv1d_1' (Conv1D) changes the length of a padded sequence" in err.value.message
    node = checked.graph.node("conv1d_1")
    assert err.value.where == f"c.nn:{node.span.line}:{node.span.col}"  # the file, as every diagnostic


def test_a_same_padded_conv1d_keeps_a_padded_sequence_and_exports(tmp_path):
    """padding=same, stride 1 keeps every length: the mask passes through (it was refused as
    E900 "changes the length"); onnxruntime equals PyTorch on padded rows of other lengths."""
    text = PADDED_ATTENTION.replace("MultiHeadAttention(heads=2)", "Conv1D(4, 3, padding=same)")
    checked = check_text(text, "c.nn").checked
    model = _distinct_weights(ox.build_eval_model(checked))
    info = ox.export(checked, text, tmp_path / "c.onnx", model=model, filename="c.nn")
    assert max(info["max_abs_diff"].values()) <= 1e-5
    xs = ox.example_inputs(checked, batch=4, steps=11, seed=5)
    assert (xs[0] == 0).any()
    with torch.no_grad():
        expected = model(*xs).numpy()
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"tokens": xs[0].numpy()})[0] - expected).max() <= 1e-5


def test_a_layer_that_cannot_be_exported_is_named(tmp_path):
    checked, source = _load(ROOT / "specs" / "iris_mlp.nn")
    model = ox.build_eval_model(checked)
    # an operator without an ONNX form, inside dense_2
    model.dense_2.forward = lambda x: torch.special.airy_ai(torch.nn.functional.linear(
        x, model.dense_2.weight, model.dense_2.bias))
    with pytest.raises(UserError) as err:
        ox.export(checked, source, tmp_path / "m.onnx", model=model)
    assert "'dense_2' (Dense) cannot be exported to ONNX" in err.value.message
    assert "--emit python" in err.value.help


def test_compile_default_writes_onnx_beside_the_spec(tmp_path):
    spec = tmp_path / "forecast.nn"
    spec.write_text((ROOT / "specs" / "forecast_gru.nn").read_text())
    result = CliRunner().invoke(main, ["compile", str(spec)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "forecast.onnx").exists() and "opset 17" in result.output
    diffs = [float(v) for v in re.findall(r"(\d\.\de[+-]\d+) at batch", result.output)]
    assert len(diffs) == 2 and max(diffs) <= 1e-5
    grus = [n for n in onnx.load(str(tmp_path / "forecast.onnx")).graph.node if n.op_type == "GRU"]
    assert grus and all(n.name == "gru_1" or n.name.startswith("gru_1/") for n in grus)


def test_netron_serves_the_exported_model_on_loopback(tmp_path):
    pytest.importorskip("netron")
    spec = tmp_path / "iris.nn"
    spec.write_text((ROOT / "specs" / "iris_mlp.nn").read_text())
    proc = subprocess.Popen([sys.executable, "-m", "nnspec", "viz", str(spec), "--netron", "--port", "0",
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url, lines, deadline = None, [], time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"http://127\.0\.0\.1:\d+/", line)
            url = m.group(0) if m else None
        assert url, "".join(lines)
        page = urllib.request.urlopen(url, timeout=20).read().decode()
        assert "<html" in page and "Netron" in page or "netron" in page
        model = urllib.request.urlopen(url + "data/iris.onnx", timeout=20).read()
        assert onnx.load_from_string(model).graph.name == "IrisMLP"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("spec", GAN_SPECS, ids=lambda p: p.stem)
def test_a_gan_spec_is_refused_by_name_not_exported_half(spec, tmp_path):
    from click.testing import CliRunner

    from nnspec.cli import main

    result = CliRunner().invoke(main, ["compile", str(spec), "--emit", "onnx", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "declares networks" in result.output, result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())
