"""`nnspec lsp` end to end: a real client process (tests/lsp_client.py) starts the server as an
editor would, over stdio, and checks each answer against what the spec and PyTorch say."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lsp_client import ROOT, LspClient

SPEC = """\
model TinyResNet {
    input image: [3, 32, 32]

    block Residual(channels) {
        h = in -> Conv2D(channels, 3, padding=same) -> BatchNorm() -> relu
        h = h -> Conv2D(channels, 3, padding=same) -> BatchNorm()
        relu(h + in)
    }

    layers {
        Conv2D(16, 3, padding=same) -> leaky_relu(0.1)
        Residual(16) * 3
        GlobalAvgPool()
        features = Dense(10)
    }
    loss      cross_entropy
    optimizer SGD(lr=0.1, momentum=0.9)
    metrics   [accuracy]
    train { data sklearn.digits; epochs 1 }
}
"""


def line_of(text: str, needle: str) -> tuple[int, int]:
    """0-based (line, character) of the first `needle` in `text`."""
    for n, line in enumerate(text.split("\n")):
        if needle in line:
            return n, line.index(needle)
    raise AssertionError(needle)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path = tmp_path_factory.mktemp("lsp") / "resnet.nn"
    path.write_text(SPEC)
    client = LspClient()
    capabilities = client.initialize()["capabilities"]
    client.open(path.as_uri(), SPEC)
    yield client, path.as_uri(), capabilities
    assert client.close() == 0  # shutdown, then exit: the server ends cleanly


def test_initialize_advertises_every_feature(session):
    _, _, caps = session
    for feature in ("hoverProvider", "completionProvider", "definitionProvider", "documentSymbolProvider",
                    "documentFormattingProvider", "textDocumentSync"):
        assert caps.get(feature), feature


def test_a_valid_spec_gets_no_diagnostics(session):
    client, uri, _ = session
    assert client.diagnostics(uri, 1) == []


def test_hover_on_a_layer_in_a_block_shows_shape_parameters_and_doc(session):
    client, uri, _ = session
    line, char = line_of(SPEC, "Conv2D(channels, 3, padding=same) -> BatchNorm() -> relu")
    value = client.at("textDocument/hover", uri, line, char + 2)["contents"]["value"]
    expected = sum(p.numel() for p in torch.nn.Conv2d(16, 16, 3, padding="same").parameters())  # PyTorch's count
    assert f"{expected:,} parameters" in value
    assert "[16, 32, 32]" in value  # padding=same keeps 32x32; 16 filters
    assert "3 uses" in value  # Residual(16) * 3
    assert "2-D convolution" in value and "`kernel`" in value  # the catalog's documentation


def test_hover_on_dense_counts_as_pytorch_does(session):
    client, uri, _ = session
    line, char = line_of(SPEC, "Dense(10)")
    value = client.at("textDocument/hover", uri, line, char)["contents"]["value"]
    assert f"{sum(p.numel() for p in torch.nn.Linear(16, 10).parameters()):,} parameters" in value
    assert "`[10]`" in value


def test_hover_on_a_loss_shows_its_documentation(session):
    client, uri, _ = session
    line, char = line_of(SPEC, "cross_entropy")
    value = client.at("textDocument/hover", uri, line, char + 1)["contents"]["value"]
    assert "*loss*" in value


def labels(result) -> list[str]:
    return [item["label"] for item in result["items"]]


def test_completion_after_loss_lists_every_catalog_loss(session):
    from nnspec import catalog

    client, uri, _ = session
    line, char = line_of(SPEC, "cross_entropy")
    got = labels(client.at("textDocument/completion", uri, line, char))
    assert set(got) == {e.name for e in catalog.losses}


def test_completion_in_layers_offers_layers_activations_and_blocks(session):
    client, uri, _ = session
    line, char = line_of(SPEC, "GlobalAvgPool()")
    result = client.at("textDocument/completion", uri, line, char)
    got = labels(result)
    assert {"Dense", "Conv2D", "LSTM", "relu", "softmax", "Residual"} <= set(got)
    dense = next(i for i in result["items"] if i["label"] == "Dense")
    assert dense["detail"].startswith("Dense(units")  # the signature


def test_completion_inside_a_call_offers_its_argument_names(session):
    client, uri, _ = session
    line, char = line_of(SPEC, "SGD(lr=0.1")
    got = labels(client.at("textDocument/completion", uri, line, char + len("SGD(")))
    assert {"lr=", "momentum=", "nesterov=", "weight_decay="} <= set(got)


def test_completion_of_metrics_settings_and_data_sources(session):
    client, uri, _ = session
    line, char = line_of(SPEC, "[accuracy]")
    assert "auc" in labels(client.at("textDocument/completion", uri, line, char + 1))
    line, char = line_of(SPEC, "sklearn.digits")
    assert "sklearn.iris" in labels(client.at("textDocument/completion", uri, line, char))
    line, char = line_of(SPEC, "epochs 1")
    assert {"epochs", "batch_size", "validation"} <= set(labels(client.at("textDocument/completion", uri, line, char)))


def test_definition_of_a_block_and_of_named_tensors(session):
    client, uri, _ = session
    line, char = line_of(SPEC, "Residual(16)")
    target = client.at("textDocument/definition", uri, line, char + 1)
    assert target["uri"] == uri
    assert target["range"]["start"] == {"line": 3, "character": 10}  # `Residual` in `block Residual(...)`
    line, char = line_of(SPEC, "relu(h + in)")
    target = client.at("textDocument/definition", uri, line, char + 5)  # on `h`
    assert target["range"]["start"] == {"line": 5, "character": 8}  # the latest `h = ...` before it
    line, char = line_of(SPEC, "h = h ->")
    target = client.at("textDocument/definition", uri, line, char + 4)  # the `h` read on line 6
    assert target["range"]["start"]["line"] in (4, 5)


def test_document_symbols_outline_the_spec(session):
    client, uri, _ = session
    result = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})["result"]
    (model,) = result
    assert model["name"] == "TinyResNet"
    names = [c["name"] for c in model["children"]]
    assert names[:2] == ["image", "Residual"]
    assert {"layers", "loss", "optimizer", "metrics", "train"} <= set(names)
    layers = next(c for c in model["children"] if c["name"] == "layers")
    assert [c["name"] for c in layers["children"]] == ["features"]


def test_diagnostics_as_you_type_with_codes_and_related_locations(session):
    client, uri, _ = session
    bad = SPEC.replace("Residual(16)", "Residul(16)").replace("    loss", "    block Residual(x) { in }\n    loss")
    client.change(uri, bad, 2)
    diags = client.diagnostics(uri, 2)
    by_code = {d["code"]: d for d in diags}
    assert by_code["E100"]["range"]["start"] == {"line": 11, "character": 8}
    assert "did you mean 'Residual'" in by_code["E100"]["message"]
    assert by_code["E100"]["severity"] == 1
    related = by_code["E018"]["relatedInformation"][0]
    assert related["location"]["range"]["start"]["line"] == 3  # the first definition, line 4
    client.change(uri, SPEC, 3)  # fixed again: the diagnostics clear
    assert client.diagnostics(uri, 3) == []


def test_a_syntax_error_is_reported_and_symbols_still_answer(session):
    client, uri, _ = session
    client.change(uri, SPEC.replace("Dense(10)", "Dense(10"), 4)
    diags = client.diagnostics(uri, 4)
    assert diags and diags[0]["severity"] == 1 and diags[0]["code"].startswith("E0")
    result = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})["result"]
    assert result[0]["name"] == "TinyResNet"  # the last spec that parsed
    client.change(uri, SPEC, 5)
    assert client.diagnostics(uri, 5) == []


def test_formatting_gives_what_nnspec_fmt_prints(session, tmp_path):
    client, uri, _ = session
    messy = SPEC.replace("    loss      cross_entropy", "  loss cross_entropy").replace("Dense(10)", "Dense( 10 )")
    client.change(uri, messy, 6)
    client.diagnostics(uri, 6)
    edits = client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                       "options": {"tabSize": 4, "insertSpaces": True}})["result"]
    path = tmp_path / "messy.nn"
    path.write_text(messy)
    printed = subprocess.run([sys.executable, "-m", "nnspec.cli", "fmt", str(path)], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    (edit,) = edits
    assert edit["newText"] == printed
    assert edit["range"]["start"] == {"line": 0, "character": 0}
    client.change(uri, printed, 7)
    client.diagnostics(uri, 7)
    assert client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                      "options": {"tabSize": 4, "insertSpaces": True}})["result"] == []


def test_lsp_without_pygls_asks_for_the_lsp_extra():
    program = "import sys\nsys.modules['pygls'] = None\nfrom nnspec.cli import main\nmain(prog_name='nnspec')\n"
    proc = subprocess.run([sys.executable, "-c", program, "lsp"], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().startswith("error[E901]: ") and "pip install 'nnspec[lsp]'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "specs").glob("*.nn")), ids=lambda p: p.name)
def test_every_position_of_every_example_answers_whole_and_half_typed(path):
    """No request fails at any position of any example, whole or cut mid-way (as while typing):
    the handlers the server calls, in this process, for speed."""
    from nnspec.lsp.analysis import analyze
    from nnspec.lsp.completion import complete
    from nnspec.lsp.definition import definition
    from nnspec.lsp.hover import hover
    from nnspec.lsp.symbols import symbols

    text = path.read_text()
    for cut in (len(text), len(text) // 2):
        a = analyze(text[:cut], str(path))
        symbols(a.spec)
        for line, chars in enumerate(a.lines):
            for character in range(0, len(chars) + 1, 4):
                hover(a, line, character)
                assert complete(a, line, character).items is not None
                definition(a, path.as_uri(), line, character)
