"""The checker on valid specs: every example passes, inferred shapes and parameter counts
match published numbers and PyTorch's own layers, warnings fire when they should (and only
then), and the check/summary/compile commands keep their output formats and exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.cli import main
from nnspec.pipeline import check_file, check_text

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.nn"))


def checked(name: str):
    result = check_file(Path(__file__).parent.parent / "specs" / name)
    assert result.ok, result.render()
    return result.checked


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def shapes(c) -> dict[str, list]:
    return {n.name: list(n.out.shape) for n in c.graph.nodes}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_spec_checks_cleanly(path: Path):
    result = check_file(path)
    assert result.ok, result.render()
    assert result.diagnostics == (), result.render()  # not even a warning
    assert all(n.out is not None for n in result.checked.graph.nodes)


CONTRACT = ("perceptron", "iris_mlp", "mnist_convnet", "digits_cnn", "tiny_resnet", "two_tower",
            "sentiment_lstm", "forecast_gru", "segment", "tune_mlp", "tiny_transformer")
LANGUAGE_MD = Path(__file__).resolve().parents[1].parent / "shared" / "LANGUAGE.md"


def test_the_eleven_examples_of_the_language_contract_are_all_there():
    names = {p.stem for p in SPECS}
    assert set(CONTRACT) <= names


@pytest.mark.skipif(not LANGUAGE_MD.exists(), reason="the shared contract is not beside this checkout")
def test_contract_specs_are_exactly_as_written_in_language_md():
    import re

    text = LANGUAGE_MD.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"\(`specs/([a-z_]+)\.nn`\)[^\n]*\n```\n(.*?)```", text, re.S))
    assert set(blocks) == set(CONTRACT)
    for name, body in blocks.items():
        assert (SPECS[0].parent / f"{name}.nn").read_text(encoding="utf-8") == body, name


def test_mnist_convnet_matches_the_published_keras_summary():
    # keras.io/examples/vision/mnist_convnet: (26,26,32) (13,13,32) (11,11,64) (5,5,64) 1600 10;
    # "Total params: 34,826". nnspec is channels-first.
    c = checked("mnist_convnet.nn")
    s = shapes(c)
    assert [s["conv2d_1"], s["max_pool2d_1"], s["conv2d_2"], s["max_pool2d_2"], s["flatten_1"], s["dense_1"]] == \
        [[32, 26, 26], [32, 13, 13], [64, 11, 11], [64, 5, 5], [1600], [10]]
    assert [c.graph.node(n).params for n in ("conv2d_1", "conv2d_2", "dense_1")] == [320, 18496, 16010]
    assert c.graph.total_params == 34826
    assert c.task.kind == "multiclass" and c.task.classes == 10


def test_mnist_convnet_shapes_and_counts_equal_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    layers = [("conv2d_1", nn.Conv2d(1, 32, 3)), ("relu_1", nn.ReLU()), ("max_pool2d_1", nn.MaxPool2d(2)),
              ("conv2d_2", nn.Conv2d(32, 64, 3)), ("relu_2", nn.ReLU()), ("max_pool2d_2", nn.MaxPool2d(2)),
              ("flatten_1", nn.Flatten()), ("dropout_1", nn.Dropout(0.5)), ("dense_1", nn.Linear(1600, 10))]
    c = checked("mnist_convnet.nn")
    x = torch.zeros(2, 1, 28, 28)
    for name, module in layers:
        x = module(x)
        assert list(x.shape[1:]) == list(c.graph.node(name).out.shape), name
        assert sum(p.numel() for p in module.parameters()) == c.graph.node(name).params, name


def test_recurrent_and_residual_counts_equal_pytorch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    lstm = checked("sentiment_lstm.nn")
    reference = [nn.Embedding(20000, 128, padding_idx=0), nn.LSTM(128, 64, bidirectional=True, batch_first=True),
                 nn.LSTM(128, 64, bidirectional=True, batch_first=True), nn.Linear(128, 1)]
    assert lstm.graph.total_params == sum(p.numel() for m in reference for p in m.parameters()) == 2_758_785
    assert shapes(lstm)["lstm_1"] == [None, 128] and shapes(lstm)["lstm_2"] == [128]

    # tiny_resnet: BatchNorm's running mean and variance count as non-trainable, as in Keras.
    resnet = checked("tiny_resnet.nn")
    block = [nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)] * 2
    modules = [nn.Conv2d(3, 16, 3, padding=1)] + block * 3 + [nn.Linear(16, 10)]
    trainable = sum(p.numel() for m in modules for p in m.parameters())
    buffers = sum(b.numel() for m in modules for n, b in m.named_buffers() if n.startswith("running_"))
    assert resnet.graph.total_params == trainable + buffers == 14_922
    assert resnet.graph.non_trainable_params == buffers
    assert shapes(resnet)["global_avg_pool_1"] == [16]
    assert resnet.graph.node("residual_3.add_1").out.shape == (16, 32, 32)


def test_other_examples_shapes_and_tasks():
    iris = checked("iris_mlp.nn")
    assert iris.graph.total_params == 4 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert (iris.task.kind, iris.task.classes) == ("multiclass", 3)
    assert iris.train["data"] == ("sklearn.iris", {}) and iris.train["batch_size"] == 16
    tower = checked("two_tower.nn")
    assert shapes(tower)["concat_1"] == [32 + 8] and tower.task.kind == "binary"
    assert tower.graph.node("concat_1").inputs == (tower.graph.node("relu_1").name, "global_max_pool_1")
    forecast = checked("forecast_gru.nn")
    assert forecast.task.kind == "regression" and shapes(forecast)["gru_1"] == [32]
    transformer = checked("tiny_transformer.nn")
    assert shapes(transformer)["transformer_encoder_1"] == [64, 64] and transformer.task.classes == 4
    tuned = checked("tune_mlp.nn")
    searched = {s.label for n in tuned.graph.nodes for s in n.searched.values()}
    assert len(searched) >= 3  # units, repeat count, dropout rate


BASE = """model M {{
    input x: [2]
    layers {{
{layers}
    }}
{rest}
}}
"""


def codes(layers: str, rest: str = "    loss mse") -> list[str]:
    return [d.code for d in check_text(BASE.format(layers=layers, rest=rest)).diagnostics]


def test_step_warns_under_a_gradient_optimizer_only():
    assert codes("        Dense(1) -> step", "    loss mse\n    optimizer SGD(lr=0.1)") == ["W403"]
    assert codes("        Dense(1) -> step", "    loss mse\n    optimizer Perceptron(lr=0.1)") == []
    assert codes("        Dense(1) -> sigmoid", "    loss binary_crossentropy\n    optimizer SGD(lr=0.1)") == []


def test_unused_names_warn_and_used_ones_do_not():
    assert codes("        h = x -> Dense(2)\n        x -> Dense(1)") == ["W201"]
    assert codes("        h = x -> Dense(2)\n        h -> Dense(1)") == []
    assert codes("        h = x -> Dense(2)") == []  # the output itself is used
    assert codes("        Dense(1)", "") == ["W012"]


def test_warnings_alone_do_not_fail_a_spec():
    result = check_text(BASE.format(layers="        Dense(1) -> step", rest="    loss mse\n    optimizer Adam()"))
    assert result.ok and [d.severity for d in result.diagnostics] == ["warning"]


def test_all_errors_are_collected_in_one_pass():
    result = check_text(BASE.format(layers="        Dense(-1)\n        Dense(2, foo=1)\n        Dnse(3)",
                                    rest="    loss msee\n    optimizer Adamm()\n    metrics [acc, r3]"))
    assert [d.code for d in result.diagnostics] == ["E108", "E105", "E100", "E102", "E103", "E104"]
    assert [d.span.line for d in result.diagnostics] == [4, 5, 6, 8, 9, 10]


def test_compile_emit_json_has_the_checked_ir():
    result = run("compile", str(SPECS[0].parent / "two_tower.nn"), "--emit", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"model", "inputs", "output", "nodes", "task", "loss", "optimizer", "metrics", "train", "search",
            "params"} <= set(data)
    assert data["inputs"] == [{"name": "numeric", "shape": [13], "dtype": "float"},
                              {"name": "image", "shape": [1, 28, 28], "dtype": "float"}]
    node = next(n for n in data["nodes"] if n["name"] == "conv2d_1")
    assert {"name", "op", "kind", "args", "inputs", "output", "params", "span"} <= set(node)
    assert node["output"] == {"shape": [8, 26, 26], "dtype": "float"} and node["params"] == 80
    assert node["args"]["filters"] == 8 and node["args"]["padding"] == "valid"
    assert node["span"]["line"] == 6
    assert data["output"] == data["nodes"][-1]["name"]
    assert data["loss"] == [{"weight": 1.0, "loss": "binary_crossentropy", "args": {}}]
    assert data["optimizer"]["name"] == "RMSprop" and data["optimizer"]["args"]["lr"] == 0.001
    assert data["params"]["total"] == 569


def test_compile_json_records_search_spaces(tmp_path: Path):
    out = tmp_path / "ir.json"
    result = run("compile", str(SPECS[0].parent / "tune_mlp.nn"), "--emit", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    spaces = [s for n in data["nodes"] for s in n["searched"].values()]
    assert {"search", "options", "label"} <= set(spaces[0])
    assert {s["search"] for s in spaces} >= {"choice", "int_range", "uniform"}


def test_summary_json_totals():
    result = run("summary", str(SPECS[0].parent / "mnist_convnet.nn"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["params"] == {"total": 34826, "trainable": 34826, "non_trainable": 0, "bytes": 34826 * 4}
    assert sum(r["params"] for r in data["layers"]) == 34826
    resnet = json.loads(run("summary", str(SPECS[0].parent / "tiny_resnet.nn"), "--json").output)
    assert resnet["params"]["non_trainable"] == 6 * 32 and resnet["params"]["trainable"] == 14922 - 192


def test_summary_table_reports_the_total():
    result = run("summary", str(SPECS[0].parent / "mnist_convnet.nn"))
    assert result.exit_code == 0 and "Total params: 34,826" in result.output


def test_check_several_files_reports_each_and_fails_if_any_fails(tmp_path: Path):
    bad = tmp_path / "bad.nn"
    bad.write_text(BASE.format(layers="        Dense(0)", rest="    loss mse"))
    good = [str(p) for p in SPECS[:3]]
    ok = run("check", *good)
    assert ok.exit_code == 0 and ok.output.count(": ok (") == 3
    mixed = run("check", good[0], str(bad), good[1])
    assert mixed.exit_code == 1
    assert mixed.output.count(": ok (") == 2 and f"{bad}:4:15: error[E108]" in mixed.output


def test_check_json_format(tmp_path: Path):
    bad = tmp_path / "bad.nn"
    bad.write_text(BASE.format(layers="        Dense(0)", rest="    loss mse"))
    result = run("check", "--format", "json", str(bad))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report[0]["ok"] is False
    assert {k: report[0]["diagnostics"][0][k] for k in ("code", "line", "col")} == {"code": "E108", "line": 4, "col": 15}


def test_exit_codes_usage_and_missing_files(tmp_path: Path):
    spec = str(SPECS[0])
    unknown_target = run("compile", spec, "--emit", "foo")
    assert unknown_target.exit_code == 2 and "json" in unknown_target.output and "foo" in unknown_target.output
    assert run("check").exit_code == 2  # no file given
    assert run("check", "--bogus-flag", spec).exit_code == 2
    assert run("frobnicate").exit_code == 2
    for args in (["check"], ["summary"], ["compile", "--emit", "json"]):
        missing = run(*args[:1], str(tmp_path / "nope.nn"), *args[1:])
        assert missing.exit_code == 1, missing.output
        assert "no such file" in missing.output and "Traceback" not in missing.output
    directory = run("summary", str(tmp_path))
    assert directory.exit_code in (1, 2) and "Traceback" not in directory.output


def test_bad_spec_under_summary_and_compile_exits_1(tmp_path: Path):
    bad = tmp_path / "bad.nn"
    bad.write_text(BASE.format(layers="        Conv2D(4, 3)", rest="    loss mse"))
    for args in (["summary", str(bad)], ["compile", str(bad), "--emit", "json"]):
        result = run(*args)
        assert result.exit_code == 1 and "error[E300]" in result.output and "Traceback" not in result.output


def test_opening_braces_may_stand_on_their_own_line():
    allman = "model M\n{\n    input x: [4]\n    block B(n)\n    {\n        Dense(n)\n    }\n    layers\n    {\n" \
             "        B(2) -> Dense(1)\n    }\n    loss mse\n    train\n    {\n        epochs 3\n    }\n}\n"
    result = check_text(allman)
    assert result.ok and result.diagnostics == (), result.render()
    assert result.checked.train["epochs"] == 3 and result.checked.graph.total_params == 4 * 2 + 2 + 2 + 1
