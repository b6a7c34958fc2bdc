"""A trained run exported (`nnspec compile RUN_DIR`): the ONNX file alone, in a process that
imports only onnxruntime and NumPy, reproduces `nnspec predict` on the same rows; TorchScript
likewise; the export is verified and says so; the file carries the run's facts."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from nnspec.cli import main
from nnspec.pipeline import check_file, check_text
from nnspec.train.run import train_spec

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent

# variable-length tokens through a same-padded Conv1D (the export once refused it as E900)
CONV1D_TOKENS = """
model TokenConv {
    input tokens: int[?]
    layers {
        Embedding(vocab=40, dim=8, padding_idx=0)
        Conv1D(4, 3, padding=same) -> relu
        GlobalMaxPool()
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    train { data synthetic(n=64, seed=0); epochs 1; validation 0.25 }
}
"""

# Runs only onnxruntime and NumPy: what a user without nnspec or torch has.
ONNX_ONLY = """
import sys, numpy as np, onnxruntime as ort
model, rows, out = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
data = np.load(rows)
result = session.run(None, {i.name: data[i.name] for i in session.get_inputs()})[0]
assert "torch" not in sys.modules and not any(m.startswith("nnspec") for m in sys.modules), sorted(sys.modules)
np.save(out, result)
"""


def _train(tmp_path: Path, spec, data: str | None = None) -> Path:
    result = check_text(spec, str(tmp_path / "spec.nn")) if isinstance(spec, str) else check_file(spec)
    run_dir = tmp_path / "run"
    folds = result.checked.train["folds"]
    train_spec(result, out_dir=run_dir, epochs=1, data=data, defaults=True, fold=(0, folds) if folds else None)
    return run_dir


def _rows(checked, n: int = 7, seed: int = 3) -> dict[str, np.ndarray]:
    """Rows of the spec's inputs made here: floats, or token ids padded at the end of some rows."""
    rng = np.random.default_rng(seed)
    rows = {}
    for name in checked.graph.inputs:
        t = checked.graph.node(name).out
        shape = [n] + [d or 9 for d in t.shape]
        if t.dtype == "int":
            ids = rng.integers(1, 40, size=shape).astype(np.int64)
            ids[1:, -3:] = 0  # padding
            rows[name] = ids
        else:
            rows[name] = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    return rows


def _predicted(run_dir: Path, rows_file: Path, tmp_path: Path) -> np.ndarray:
    """`nnspec predict`'s numbers for the rows (its probability or output columns)."""
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(main, ["predict", str(run_dir / "spec.nn"), "--checkpoint", str(run_dir / "best.pt"),
                                       "--input", str(rows_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        table = list(csv.reader(f))
    columns = [i for i, h in enumerate(table[0]) if h not in ("predicted", "label")]
    return np.array([[float(r[i]) for i in columns] for r in table[1:]], dtype=np.float64)


def _onnx_alone(model: Path, rows_file: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "onnx_out.npy"
    subprocess.run([sys.executable, "-c", ONNX_ONLY, str(model), str(rows_file), str(out)], check=True,
                   cwd=tmp_path, timeout=120)
    return np.load(out)


def _export(run_dir: Path, emit: str, *extra: str) -> str:
    result = CliRunner().invoke(main, ["compile", str(run_dir), "--emit", emit, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def _same_as_predict(got: np.ndarray, predicted: np.ndarray) -> float:
    """predict prints 6 significant digits: compared to 1e-5, relative beyond magnitude 1."""
    got = got.reshape(len(got), -1).astype(np.float64)
    assert got.shape == predicted.shape
    diff = np.abs(got - predicted)
    assert (diff <= 1e-5 * np.maximum(1.0, np.abs(predicted))).all(), diff.max()
    return float(diff.max())


CASES = {  # spec (a file of specs/ or a text), the data it trains on here
    "iris_mlp": (ROOT / "specs" / "iris_mlp.nn", None),  # standardised inside, class names
    "two_tower": (ROOT / "specs" / "two_tower.nn", "synthetic(n=64, seed=0)"),  # two inputs
    "diabetes_mlp": (ROOT / "specs" / "diabetes_mlp.nn", None),  # regression, cross-validated
    "token_conv1d": (CONV1D_TOKENS, None),  # padded variable-length tokens, same-padded Conv1D
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_onnx_file_alone_reproduces_nnspec_predict(case, tmp_path):
    spec, data = CASES[case]
    run_dir = _train(tmp_path, spec, data)
    output = _export(run_dir, "onnx")
    assert "verified on" in output and "largest difference from the checkpoint" in output
    checked = check_file(run_dir / "spec.nn").checked
    rows_file = tmp_path / "rows.npz"
    np.savez(rows_file, **_rows(checked))
    predicted = _predicted(run_dir, rows_file, tmp_path)
    _same_as_predict(_onnx_alone(run_dir / "best.onnx", rows_file, tmp_path), predicted)

    facts = json.loads((run_dir / "best.onnx.json").read_text())
    inside = {p.key: p.value for p in onnx.load(str(run_dir / "best.onnx")).metadata_props}
    assert json.loads(inside["nnspec.export"]) == facts
    assert facts["verified"]["max_abs_diff"] <= 1e-5 and facts["verified"]["rows"] > 0
    assert [i["name"] for i in facts["inputs"]] == list(checked.graph.inputs)


def test_iris_export_holds_class_names_standardisation_and_torchscript_matches(tmp_path):
    run_dir = _train(tmp_path, ROOT / "specs" / "iris_mlp.nn")
    _export(run_dir, "torchscript")
    _export(run_dir, "onnx", "--checkpoint", "last", "-o", str(tmp_path / "iris.onnx"))
    facts = json.loads((tmp_path / "iris.onnx.json").read_text())
    assert facts["checkpoint"] == "last.pt"
    assert facts["output"]["class_names"] == ["setosa", "versicolor", "virginica"]
    assert facts["output"]["is"] == "probabilities"
    std = facts["inputs"][0]["standardize"]
    assert std["inside"] and len(std["mean"]) == 4

    proto = onnx.load(str(tmp_path / "iris.onnx"))
    assert [n.op_type for n in proto.graph.node[:2]] == ["Sub", "Div"]  # standardisation first
    names = {n.name for n in proto.graph.node}
    assert {"dense_1", "relu_1", "dense_2", "dense_3", "softmax_1"} <= names
    assert len(proto.graph.value_info) >= len(proto.graph.node) - 1  # a shape on every inner edge

    from sklearn.datasets import load_iris

    rows_file = tmp_path / "rows.npz"
    np.savez(rows_file, features=load_iris().data[::10].astype(np.float32))
    predicted = _predicted(run_dir, rows_file, tmp_path)
    loaded = torch.jit.load(str(run_dir / "best.torchscript.pt"))
    with torch.no_grad():
        scripted = loaded(torch.from_numpy(np.load(rows_file)["features"])).numpy()
    _same_as_predict(scripted, predicted)


def test_a_spec_cannot_export_trained_formats_and_a_bad_run_folder_is_named(tmp_path):
    result = CliRunner().invoke(main, ["compile", str(ROOT / "specs" / "iris_mlp.nn"), "--emit", "torchscript"])
    assert result.exit_code == 1 and "needs trained weights" in result.output
    empty = tmp_path / "empty_run"
    empty.mkdir()
    result = CliRunner().invoke(main, ["compile", str(empty)])
    assert result.exit_code == 1 and "holds no best.pt" in result.output


def test_safetensors_holds_the_state_dict_or_names_its_extra(tmp_path):
    """With safetensors installed: the file, read by safetensors itself, is the checkpoint's
    state_dict, its metadata the facts. Without it: one line naming the extra to install."""
    import importlib.util

    run_dir = _train(tmp_path, ROOT / "specs" / "iris_mlp.nn")
    result = CliRunner().invoke(main, ["compile", str(run_dir), "--emit", "safetensors"])
    if importlib.util.find_spec("safetensors") is None:
        assert result.exit_code == 1 and "pip install 'nnspec[safetensors]'" in result.output
        return
    assert result.exit_code == 0, result.output
    from safetensors import safe_open

    state = torch.load(run_dir / "best.pt", weights_only=True)["model"]
    with safe_open(str(run_dir / "best.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == sorted(state)
        for key in state:
            assert torch.equal(f.get_tensor(key), state[key])
        facts = json.loads(f.metadata()["nnspec.export"])
    assert facts["output"]["class_names"] == ["setosa", "versicolor", "virginica"]
    assert facts["verified"]["max_abs_diff"] == 0.0
