"""`nnspec inspect`: each attribution equals a direct computation on the same network written
with torch.nn (weights copied from the checkpoint): saliency = |torch.autograd.grad| of the
target logit, Grad-CAM = ReLU(sum_k mean(dL/dA_k) A_k) on the hooked maps, integrated gradients
= the Gauss-Legendre sum of gradients on the path from the baseline; the feature maps are the
reference layers' outputs. Then the files, index.html and the CLI's errors."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from sklearn.datasets import load_digits, load_iris
from torch import nn

from nnspec.cli import main
from nnspec.inspect import attribution as A
from nnspec.inspect import inspect_run
from nnspec.pipeline import check_text
from nnspec.train.run import train_spec

torch.set_num_threads(1)

CNN = """
model TinyCNN {
    input image: [1, 8, 8]
    layers {
        Conv2D(4, kernel=3, padding=same) -> relu
        MaxPool2D(2)
        Conv2D(6, kernel=3, padding=same) -> relu
        Flatten()
        Dense(10) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    train { data sklearn.digits; epochs 1; batch_size 64; validation 0.2; seed 0 }
}
"""

MLP = """
model IrisNet {
    input features: [4]
    layers {
        Dense(8) -> tanh
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.05)
    train { data csv("iris.csv", target="species"); epochs 2; validation 0.2; seed 0 }
}
"""

TWO_INPUTS = """
model Pair {
    input a: [3]
    input b: [2]
    layers {
        left = a -> Dense(4) -> relu
        right = b -> Dense(4) -> relu
        concat(left, right) -> Dense(2) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    train { data synthetic(n=32, seed=0); epochs 1; validation 0.25 }
}
"""


def _train(folder: Path, spec: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train_spec(check_text(spec, str(folder / "spec.nn")), out_dir=folder / "run", defaults=True)
    return folder / "run"


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cnn")
    run = _train(folder, CNN)
    digits = load_digits()
    np.savez(folder / "digits.npz", x=digits.images[:20].reshape(-1, 1, 8, 8).astype(np.float32))
    return run, folder / "digits.npz"


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp")
    iris = load_iris()
    names = ["sepal length", "sepal width", "petal length", "petal width"]
    with open(folder / "iris.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*names, "species"])
        for row, y in zip(iris.data, iris.target):
            w.writerow([*row, iris.target_names[y]])
    return _train(folder, MLP), folder / "iris.csv", names


def _state(run: Path) -> dict:
    return torch.load(run / "best.pt", weights_only=False)["model"]


def _reference_cnn(run: Path) -> tuple[nn.Module, nn.Module]:
    """(features up to the last conv's relu, the head to the logits), written with torch.nn."""
    w = _state(run)
    conv1, conv2, dense = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1), nn.Linear(6 * 4 * 4, 10)
    for module, name in ((conv1, "conv2d_1"), (conv2, "conv2d_2"), (dense, "dense_1")):
        module.load_state_dict({"weight": w[f"{name}.weight"], "bias": w[f"{name}.bias"]})
    features = nn.Sequential(conv1, nn.ReLU(), nn.MaxPool2d(2), conv2, nn.ReLU())
    return features.eval(), nn.Sequential(nn.Flatten(), dense).eval()


def _numbers(out: Path, row: int) -> dict:
    with np.load(out / f"row_{row}" / "attributions.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def cnn_out(cnn, tmp_path_factory):
    run, rows = cnn
    out = tmp_path_factory.mktemp("cnn_out")
    report = inspect_run(run, rows, [2, 5], out_dir=out, device="cpu")
    return out, report


def test_saliency_equals_autograd_of_the_logit(cnn, cnn_out):
    run, rows = cnn
    out, report = cnn_out
    features, head = _reference_cnn(run)
    x = torch.from_numpy(np.load(rows)["x"][5:6]).requires_grad_(True)
    logits = head(features(x))
    target = int(logits.argmax())
    assert report.rows[1]["predicted"] == target == report.rows[1]["target"]
    (grad,) = torch.autograd.grad(logits[0, target], x)
    got = _numbers(out, 5)
    np.testing.assert_allclose(got["saliency"], grad[0].abs().numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got["scores"], logits[0].detach().numpy(), atol=1e-4, rtol=1e-5)


def test_grad_cam_equals_the_formula_on_hooked_maps(cnn, cnn_out):
    run, rows = cnn
    out, _ = cnn_out
    features, head = _reference_cnn(run)
    x = torch.from_numpy(np.load(rows)["x"][2:3])
    maps = features(x)
    logits = head(maps)
    target = int(logits.argmax())
    (grad,) = torch.autograd.grad(logits[0, target], maps)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * maps).sum(1, keepdim=True))
    got = _numbers(out, 2)
    np.testing.assert_allclose(got["gradcam_coarse"], cam[0, 0].detach().numpy(), atol=1e-5, rtol=1e-5)
    resized = F.interpolate(cam, size=(8, 8), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(got["gradcam"], resized[0, 0].detach().numpy(), atol=1e-5, rtol=1e-5)


def test_feature_maps_are_the_layer_outputs_after_their_activation(cnn, cnn_out):
    run, rows = cnn
    out, _ = cnn_out
    features, _ = _reference_cnn(run)
    x = torch.from_numpy(np.load(rows)["x"][2:3])
    with torch.no_grad():
        first = features[1](features[0](x))
        second = features(x)
    got = _numbers(out, 2)
    np.testing.assert_allclose(got["maps/conv2d_1"], first[0].numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got["maps/conv2d_2"], second[0].numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(got["input"], np.load(rows)["x"][2])


def test_files_and_index_reference_every_picture(cnn_out):
    out, report = cnn_out
    pictures = [p for p in report.files if p.suffix == ".png"]
    names = {p.relative_to(out).as_posix() for p in pictures}
    assert names == {"filters_conv2d_1.png",
                     *(f"row_{r}/{f}.png" for r in (2, 5) for f in
                       ("input", "maps_conv2d_1", "maps_conv2d_2", "saliency", "gradcam"))}
    for p in pictures:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert set(re.findall(r"<img src='([^']+)'", page)) == names
    for label in ("conv2d_1 -&gt; relu_1", "conv2d_2 -&gt; relu_2", "Grad-CAM on conv2d_2", "TinyCNN"):
        assert label in page
    assert json.loads((out / "row_5" / "attributions.json").read_text())["score"] == "logit"


def _reference_mlp(run: Path) -> nn.Module:
    w = _state(run)
    first, second = nn.Linear(4, 8), nn.Linear(8, 3)
    first.load_state_dict({"weight": w["dense_1.weight"], "bias": w["dense_1.bias"]})
    second.load_state_dict({"weight": w["dense_2.weight"], "bias": w["dense_2.bias"]})
    return nn.Sequential(first, nn.Tanh(), second).eval()


def test_integrated_gradients_equal_the_gauss_legendre_sum(mlp, tmp_path):
    run, rows, names = mlp
    report = inspect_run(run, rows, [60], out_dir=tmp_path, target_class="virginica", device="cpu")
    got = _numbers(tmp_path, 60)
    x = torch.from_numpy(got["model_input"])[None]
    stats = torch.load(run / "best.pt", weights_only=False)["data_stats"]["features"]
    raw = np.array(list(csv.reader(open(rows)))[61][:4], dtype=np.float32)  # row 60 below the header
    np.testing.assert_allclose(x[0].numpy(), (raw - stats["mean"].numpy()) / stats["std"].numpy(), atol=1e-6)
    net = _reference_mlp(run)
    target = ["setosa", "versicolor", "virginica"].index("virginica")
    nodes, weights = np.polynomial.legendre.leggauss(A.STEPS)
    total = torch.zeros_like(x)
    for alpha, weight in zip((nodes + 1) / 2, weights / 2):
        point = (alpha * x).float().requires_grad_(True)  # baseline 0: the training mean
        (grad,) = torch.autograd.grad(net(point)[0, target], point)
        total += float(weight) * grad
    expected = (x * total)[0].numpy()
    np.testing.assert_allclose(got["integrated_gradients"], expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # completeness: the attributions add up to score(x) - score(baseline)
        gap = float(net(x)[0, target] - net(torch.zeros_like(x))[0, target])
    assert abs(float(expected.sum()) - gap) < 1e-3
    summary = report.rows[0]
    assert summary["target_label"] == "virginica" and list(summary["integrated_gradients"]) == names
    assert (tmp_path / "row_60" / "integrated_gradients.png").is_file()
    assert not (tmp_path / "row_60" / "saliency.png").exists()
    assert any("no 2-D convolutional layer" in n for n in report.notes)


def test_the_classes_name_the_target_and_tabular_feature_names_come_from_the_header(mlp, tmp_path):
    run, rows, names = mlp
    result = CliRunner().invoke(main, ["inspect", str(run), "--input", str(rows), "--index", "3", "--target", "1",
                                       "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "note: no 2-D convolutional layer" in result.output
    summary = json.loads((tmp_path / "row_3" / "attributions.json").read_text())
    assert summary["target"] == 1 and summary["target_label"] == "versicolor"
    assert list(summary["integrated_gradients"]) == names


@pytest.mark.parametrize("args, message", [
    (["--index", "20"], "--index 20: "),
    (["--target", "eleven"], "--target eleven is not a class of TinyCNN"),
    (["--target", "10"], "--target 10 is not a class of TinyCNN"),
])
def test_cli_errors_say_what_is_wrong(cnn, tmp_path, args, message):
    run, rows = cnn
    result = CliRunner().invoke(main, ["inspect", str(run), "--input", str(rows), "-o", str(tmp_path), *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    if "--index" in args:
        assert "has 20 row(s), numbered 0 to 19" in result.output


def test_a_multi_input_model_is_refused_by_name(tmp_path):
    run = _train(tmp_path, TWO_INPUTS)
    np.savez(tmp_path / "rows.npz", a=np.zeros((2, 3), np.float32), b=np.zeros((2, 2), np.float32))
    result = CliRunner().invoke(main, ["inspect", str(run), "--input", str(tmp_path / "rows.npz")])
    assert result.exit_code == 1
    assert "explains models with one input; Pair has 2 (a, b)" in result.output


def test_not_a_run_folder(tmp_path):
    result = CliRunner().invoke(main, ["inspect", str(tmp_path), "--input", "rows.csv"])
    assert result.exit_code == 1 and "holds no best.pt" in result.output


REGRESSION = """
model Line {
    input x: [3]
    layers { Dense(1) }
    loss mse
    optimizer Adam(lr=0.05)
    train { data csv("line.csv", target="y"); epochs 2; validation 0.25; seed 0 }
}
"""


def test_a_regression_model_attributes_its_output(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    with open(tmp_path / "line.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["u", "v", "w", "y"])
        w.writerows([[*r, 2 * r[0] - r[2]] for r in x])
    run = _train(tmp_path, REGRESSION)
    report = inspect_run(run, tmp_path / "line.csv", [0], out_dir=tmp_path / "out", device="cpu")
    assert any("regression model: the attributions explain output_0" in n for n in report.notes)
    summary = report.rows[0]
    assert summary["score"] == "output" and list(summary["integrated_gradients"]) == ["u", "v", "w"]
    # a linear model: integrated gradients are exactly weight * (x - baseline), per feature
    weight = _state(run)["dense_1.weight"][0].numpy()
    got = _numbers(tmp_path / "out", 0)
    np.testing.assert_allclose(got["integrated_gradients"], weight * got["model_input"], atol=1e-5, rtol=1e-5)
    result = CliRunner().invoke(main, ["inspect", str(run), "--input", str(tmp_path / "line.csv"), "--target", "3"])
    assert result.exit_code == 1 and "Line is a regression model with 1 output(s)" in result.output


def test_a_folder_of_images_is_read_as_predict_reads_it(cnn, tmp_path):
    from PIL import Image

    run, _ = cnn
    digits = load_digits()
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), mode="L").save(folder / f"d{i}.png")
    report = inspect_run(run, folder, [1], out_dir=tmp_path / "out", device="cpu")
    assert report.rows[0]["name"] == "d1.png"
    got = _numbers(tmp_path / "out", 1)
    expected = np.asarray(Image.open(folder / "d1.png"), np.float32)[None] / 255
    np.testing.assert_allclose(got["input"], expected, atol=1e-6)
    assert (tmp_path / "out" / "row_1" / "gradcam.png").is_file()


TOKENS = """
model Tokens {
    input ids: int[6]
    layers {
        Embedding(vocab=20, dim=4)
        Flatten()
        Dense(2) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
}
"""


@pytest.mark.parametrize("spec, message", [
    (TOKENS, "Tokens's input ids holds token ids (int[...]), which have no gradient: not supported"),
    ((Path(__file__).parent.parent / "specs" / "segment.nn").read_text(),
     "TinySegmenter's output is [1, 32, 32] (a value per position): not supported"),
])
def test_what_inspect_cannot_explain_is_refused_by_name(spec, message):
    from nnspec.diagnostics import UserError
    from nnspec.inspect import _require_supported

    result = check_text(spec, "spec.nn")
    assert result.ok, result.render()
    with pytest.raises(UserError) as err:
        _require_supported(result.checked, result.checked.spec.name)
    assert message in err.value.message
