"""The public Python API (nnspec/api.py, docs/api.md): its examples run, and what it returns agrees
with references nnspec did not write (a torch.nn module written by hand, scikit-learn's metrics,
the run folder's files read with csv/json, hand-counted parameters)."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nnspec

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"

IRIS = """model Iris {
    input features: [4]
    layers {
        Dense(8) -> relu
        Dense(3) -> softmax
    }
    loss      categorical_crossentropy
    optimizer Adam(lr=0.02)
    metrics   [accuracy]
    train {
        data        sklearn.iris
        epochs      4
        batch_size  16
        validation  0.2
        seed        1
    }
}
"""


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


@pytest.mark.slow  # imports torch, sklearn and matplotlib and trains: ~5 s on 2 cores
def test_docs_api_examples_run(tmp_path, monkeypatch, capsys):
    """Every ```python block of docs/api.md, in order, in one namespace, in an empty folder."""
    blocks = python_blocks(API_DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_doc"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"docs/api.md python block {number} failed: {exc!r}\n{block}") from exc
    assert "refused:" in capsys.readouterr().out


# ---------------------------------------------------------------- import, version


def test_import_is_light():
    """`import nnspec` loads neither torch nor the checker; asking for nnspec.Spec loads the API, not torch."""
    code = ("import sys, nnspec; a = sorted(m for m in ('torch', 'nnspec.api', 'nnspec.pipeline') if m in sys.modules);"
            "nnspec.Spec; b = sorted(m for m in ('torch', 'nnspec.api') if m in sys.modules); print(a, b)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[] ['nnspec.api']"


def test_version_is_the_package_version():
    from importlib.metadata import version

    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert nnspec.__version__ == version("nnspec")
    assert nnspec.__version__ == re.search(r'^version = "(.+)"', text, re.MULTILINE).group(1)
    assert nnspec._pyproject_version() == nnspec.__version__  # the fallback for an uninstalled checkout


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Model'"):
        nnspec.Model  # noqa: B018


# ---------------------------------------------------------------- a spec


def test_spec_from_text_and_path_agree(tmp_path):
    path = tmp_path / "iris.nn"
    path.write_text(IRIS)
    a, b = nnspec.Spec.load(path), nnspec.Spec.from_text(IRIS, str(path))
    assert a.ok and b.ok and a.name == b.name == "Iris"
    assert a.summary() == b.summary()


def test_summary_counts_parameters_by_hand():
    table = nnspec.Spec.from_text(IRIS).summary()
    assert table["params"]["total"] == (4 * 8 + 8) + (8 * 3 + 3)
    assert [row["output_shape"] for row in table["layers"] if row["op"] == "layer"] == [[8], [3]]


def test_diagnostics_of_a_bad_spec_locate_each_error():
    spec = nnspec.Spec.from_text(IRIS.replace("Dense(8) -> relu", "Dense(8) -> rellu"), "bad.nn")
    assert not spec.ok
    codes = [(d.code, d.span.line) for d in spec.errors]
    assert codes and codes[0][1] == 4  # the activation's line
    assert "bad.nn:4:" in spec.render()
    with pytest.raises(nnspec.SpecError) as err:
        spec.check()
    assert err.value.diagnostics == spec.diagnostics


def test_a_spec_that_does_not_parse():
    spec = nnspec.Spec.from_text("model M { input x: [4] layers { Dense(3 } }")
    assert not spec.ok and spec.name is None and spec.diagnostics
    with pytest.raises(nnspec.SpecError):
        spec.module()
    with pytest.raises(nnspec.SpecError):
        spec.summary()


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(nnspec.UserError, match="no such file"):
        nnspec.Spec.load(tmp_path / "missing.nn")


def test_module_is_the_hand_written_network():
    """The module computes what torch.nn.Sequential of the same layers computes with the same weights."""
    import torch
    from torch import nn

    net = nnspec.Spec.from_text(IRIS).module()
    reference = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1))
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linear) == 2
    with torch.no_grad():
        for mine, theirs in zip(linear, [reference[0], reference[2]]):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    x = torch.randn(7, 4)
    assert torch.allclose(net(x), reference(x), atol=1e-6)
    assert isinstance(net, nn.Module) and net.training


# ---------------------------------------------------------------- build_model refuses


def test_build_model_refuses_a_spec_with_errors():
    from nnspec.backends.torch_model import build_model
    from nnspec.pipeline import check_text

    result = check_text(IRIS.replace("Dense(3) -> softmax", "Dense(3) -> softmax\n        Conv2D(4, 3)"))
    assert not result.ok and result.checked is not None
    for given in (result.checked, result):
        with pytest.raises(nnspec.UserError, match=r"refuses Iris: the spec has \d+ error"):
            build_model(given)


@pytest.mark.parametrize("given, says", [(None, "did not parse"), ("model M { }", "got str")])
def test_build_model_refuses_what_was_never_checked(given, says):
    from nnspec.backends.torch_model import build_model

    with pytest.raises(nnspec.UserError, match=says) as err:
        build_model(given)
    assert "check the spec first" in err.value.help


def test_build_model_takes_a_checked_result():
    from nnspec.backends.torch_model import NnspecModel, build_model
    from nnspec.pipeline import check_text

    assert isinstance(build_model(check_text(IRIS)), NnspecModel)


# ---------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api") / "run"
    rows = []
    run = nnspec.Spec.from_text(IRIS, "iris.nn").train(out_dir=folder, device="cpu",
                                                      on_epoch=lambda epoch, row: rows.append(dict(row)))
    return run, rows


def test_train_returns_the_run_folder(trained):
    run, rows = trained
    assert run.folder.is_dir() and len(rows) == 4
    assert run.spec.source == IRIS


def test_run_reads_its_files_as_written(trained):
    run, rows = trained
    with open(run.folder / "history.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [{k: float(v) for k, v in row.items()} for row in written] == run.history
    assert run.history[-1]["val_loss"] == pytest.approx(rows[-1]["val_loss"])
    assert run.metrics == json.loads((run.folder / "metrics.json").read_text())
    assert run.metrics["finished"] and run.metrics["epochs"] == 4
    assert run.data["class_names"] == ["setosa", "versicolor", "virginica"] == run.class_names


def test_reopened_run_is_the_same(trained):
    run, _ = trained
    again = nnspec.Run.open(str(run.folder))
    assert again.history == run.history and again.checkpoint() == run.folder / "best.pt"


def test_run_module_holds_the_checkpoint_weights(trained):
    import torch

    from nnspec.train import checkpoint as ckpt_io

    run, _ = trained
    net = run.module("last")
    saved = ckpt_io.load(run.folder / "last.pt")["model"]
    assert not net.training
    assert all(torch.equal(net.state_dict()[k], v) for k, v in saved.items())


def test_predict_and_evaluate_agree_with_scikit_learn(trained):
    """evaluate on the whole iris set reports the accuracy scikit-learn computes from predict's classes."""
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score

    run, _ = trained
    iris = load_iris()
    table = run.predict(iris.data.astype("float32"))
    assert table.header == ["p_0", "p_1", "p_2", "predicted", "label"]
    predicted = table.column("predicted")
    assert table.column("label") == [iris.target_names[c] for c in predicted]
    scores = run.evaluate(data="sklearn.iris")
    assert scores["samples"] == 150
    assert scores["accuracy"] == pytest.approx(accuracy_score(iris.target, predicted))


def test_predict_takes_a_file_or_named_arrays(trained, tmp_path):
    import numpy as np
    from sklearn.datasets import load_iris

    run, _ = trained
    x = load_iris().data[:6].astype("float32")
    np.savez(tmp_path / "rows.npz", features=x)
    from_file = run.predict(tmp_path / "rows.npz", output=tmp_path / "out.csv")
    assert from_file == run.predict({"features": x})
    with open(tmp_path / "out.csv", newline="") as f:
        assert next(csv.reader(f)) == from_file.header
    with pytest.raises(nnspec.UserError, match="no column"):
        from_file.column("p_9")


def test_train_with_cross_validation_is_refused_with_the_way(tmp_path):
    spec = nnspec.Spec.from_text(IRIS.replace("validation  0.2", "folds 2"))
    with pytest.raises(nnspec.UserError, match="cross-validated") as err:
        spec.train(out_dir=tmp_path / "cv")
    assert "cross_validate" in err.value.help


def test_open_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(nnspec.UserError, match="not a folder"):
        nnspec.Run.open(tmp_path / "nowhere")
    with pytest.raises(nnspec.UserError, match="no spec.nn"):
        nnspec.Run.open(tmp_path)
    (tmp_path / "spec.nn").write_text(IRIS)
    with pytest.raises(nnspec.UserError, match="no best.pt"):
        nnspec.Run.open(tmp_path).checkpoint()
    with pytest.raises(nnspec.UserError, match="expected one of"):
        nnspec.Run.open(tmp_path).checkpoint("middle")


def test_runs_folder_default_is_under_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = nnspec.Spec.from_text(IRIS.replace("epochs      4", "epochs      1")).train(device="cpu")
    assert run.folder.resolve().parent.parent == (tmp_path / "runs").resolve()
    assert os.path.basename(run.folder) == "1"


def test_module_of_a_gan_names_its_network():
    """Each network of a GAN spec builds alone; its parameters are what the layers hold, counted by hand."""
    spec = nnspec.Spec.load(ROOT / "specs" / "digits_gan.nn")
    with pytest.raises(nnspec.UserError, match="say which one") as err:
        spec.module()
    assert "network='generator'" in err.value.help
    with pytest.raises(nnspec.UserError, match="no network 'G'"):
        spec.module(network="G")
    for name in ("generator", "discriminator"):
        net = spec.module(network=name)
        by_hand = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                      for m in net.modules() if hasattr(m, "weight") and m.weight is not None)
        assert sum(p.numel() for p in net.parameters()) == by_hand == spec.checked.networks[name].graph.total_params
    with pytest.raises(nnspec.UserError, match="single network"):
        nnspec.Spec.from_text(IRIS).module(network="generator")


def test_the_package_says_it_is_typed():
    """PEP 561: py.typed ships with the package, so type checkers read the API's annotations."""
    assert (ROOT / "nnspec" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_report_is_what_check_prints_as_json(tmp_path):
    """`nnspec check --format json` prints Spec.report() of each file; a diagnostic's span is 1-based."""
    from click.testing import CliRunner

    from nnspec.cli import main

    bad = tmp_path / "bad.nn"
    bad.write_text(IRIS.replace("Dense(3) -> softmax", "Dense(3) -> softmax\n        Conv2D(4, 3)"))
    result = CliRunner().invoke(main, ["check", "--format", "json", str(bad)])
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed == [nnspec.Spec.load(str(bad)).report()]
    first = printed[0]["diagnostics"][0]
    assert first["line"] == 6 and first["col"] == 9 and first["severity"] == "error"


def test_train_takes_the_log_option_as_the_cli_does(tmp_path):
    """`log` is --log: an unknown kind is refused before anything is trained."""
    with pytest.raises(nnspec.UserError, match="unknown log 'wandb'"):
        nnspec.Spec.from_text(IRIS).train(out_dir=tmp_path / "run", log=["wandb"])
    assert not (tmp_path / "run").exists()


def test_cross_validate_returns_a_run_per_fold(tmp_path):
    spec = nnspec.Spec.from_text(IRIS.replace("epochs      4", "epochs      2"))
    runs = spec.cross_validate(folds=2, out_dir=tmp_path / "cv", device="cpu")
    assert [run.folder.name for run in runs] == ["fold_1", "fold_2"]
    assert all(run.metrics["validation_samples"] == 75 for run in runs)  # 150 rows in two folds
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert summary and len(runs[0].history) == 2
