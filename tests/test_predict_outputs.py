"""`predict` says what it outputs: a classifier that ends without softmax (logits, the PyTorch
habit with cross_entropy) gets `logit_<c>` columns and a note, never probabilities-named logits;
the trained export's facts say the same, and its ONNX output equals those columns."""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.datasets import load_iris

from nnspec.cli import main
from nnspec.pipeline import check_file, check_text
from nnspec.train.run import train_spec

ROOT = Path(__file__).resolve().parent.parent

IRIS = """model Iris {
    input x: [4]
    layers { Dense(8) -> relu
             Dense(3)OUTPUT }
    loss categorical_crossentropy
    optimizer Adam(lr=0.05)
    train { data sklearn.iris; epochs 2; validation 0.2 }
}
"""


def _train(tmp_path: Path, output: str) -> Path:
    folder = tmp_path / (output.strip(" ->") or "logits")
    folder.mkdir()
    spec = folder / "iris.nn"
    spec.write_text(IRIS.replace("OUTPUT", output))
    result = check_file(spec)
    assert result.ok, result.render()
    train_spec(result, out_dir=folder / "run", defaults=True)
    return folder / "run"


def _predict(run: Path, rows: Path, out: Path) -> tuple[list[str], np.ndarray, str]:
    result = CliRunner().invoke(main, ["predict", str(run / "spec.nn"), "--checkpoint", str(run / "best.pt"),
                                       "--input", str(rows), "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        table = list(csv.reader(f))
    return table[0], np.array([[float(v) for v in r[:3]] for r in table[1:]]), result.output


def _rows(tmp_path: Path) -> tuple[Path, np.ndarray]:
    x = load_iris().data[::7].astype(np.float32)
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["a", "b", "c", "d"], *x.tolist()])
    return path, x


def _plain_torch(run: Path, x: np.ndarray) -> np.ndarray:
    """The checkpoint's weights in torch.nn layers nnspec did not build, on rows standardised by hand."""
    state = torch.load(run / "best.pt", weights_only=True)
    stats = state["data_stats"]["x"]
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    w = state["model"]
    net.load_state_dict({"0.weight": w["dense_1.weight"], "0.bias": w["dense_1.bias"],
                         "2.weight": w["dense_2.weight"], "2.bias": w["dense_2.bias"]})
    with torch.no_grad():
        return net((torch.from_numpy(x) - stats["mean"]) / stats["std"]).numpy()


def _close(got: np.ndarray, want: np.ndarray) -> None:
    """predict prints 6 significant digits."""
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6), np.abs(got - want).max()


@pytest.mark.slow
def test_logits_are_named_logits_and_said_so(tmp_path):
    run = _train(tmp_path, "")
    rows, x = _rows(tmp_path)
    header, logits, output = _predict(run, rows, tmp_path / "pred.csv")
    assert header[:4] == ["logit_0", "logit_1", "logit_2", "predicted"]  # then `label`, the class names
    assert "logit_0..logit_2 are its logits, not probabilities" in output and "softmax" in output
    _close(logits, _plain_torch(run, x))
    assert not np.allclose(logits.sum(1), 1.0)  # not probabilities in disguise

    # printed to the terminal: stdout stays a CSV, the note goes to stderr
    printed = CliRunner().invoke(main, ["predict", str(run / "spec.nn"), "--checkpoint", str(run / "best.pt"),
                                        "--input", str(rows)])
    assert printed.exit_code == 0 and printed.stdout.splitlines()[0] == ",".join(header)
    assert "not probabilities" in printed.stderr and "not probabilities" not in printed.stdout


def test_the_same_network_with_softmax_trains_the_same_and_predicts_probabilities(tmp_path):
    """The note's advice: `-> softmax` is fused into the loss, so training is the same and the
    p_ columns are softmax of the logits the network without it predicts."""
    rows, _ = _rows(tmp_path)
    _, logits, _ = _predict(_train(tmp_path, ""), rows, tmp_path / "logits.csv")
    header, probs, output = _predict(_train(tmp_path, " -> softmax"), rows, tmp_path / "probs.csv")
    assert header[:3] == ["p_0", "p_1", "p_2"] and "logit" not in output
    _close(probs, torch.softmax(torch.from_numpy(logits), 1).numpy())


@pytest.mark.parametrize("spec, meaning", [("tiny_resnet", "logits"), ("iris_mlp", "probabilities"),
                                           ("breast_cancer_mlp", "probabilities"), ("perceptron", "probabilities"),
                                           ("diabetes_mlp", "values"), ("forecast_gru", "values")])
def test_what_each_spec_outputs(spec, meaning):
    assert check_file(ROOT / "specs" / f"{spec}.nn").checked.output_is == meaning


def test_a_logits_export_says_logits_and_gives_the_logit_columns(tmp_path):
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx and onnxruntime are not installed: pip install 'nnspec[onnx]'")
    import onnxruntime as ort

    run = _train(tmp_path, "")
    result = CliRunner().invoke(main, ["compile", str(run), "--emit", "onnx"])
    assert result.exit_code == 0, result.output
    facts = json.loads((run / "best.onnx.json").read_text())
    assert facts["output"]["is"] == "logits"
    rows, x = _rows(tmp_path)
    _, logits, _ = _predict(run, rows, tmp_path / "pred.csv")
    session = ort.InferenceSession(str(run / "best.onnx"), providers=["CPUExecutionProvider"])
    _close(logits, session.run(None, {"x": x})[0])


def test_a_spec_without_loss_reads_its_output_activation():
    text = IRIS.replace("    loss categorical_crossentropy\n", "").replace("    train { data sklearn.iris; epochs 2; validation 0.2 }\n", "")
    assert check_text(text.replace("OUTPUT", " -> softmax"), "x.nn").checked.output_is == "probabilities"
    assert check_text(text.replace("OUTPUT", ""), "x.nn").checked.output_is == "values"
