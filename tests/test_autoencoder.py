"""`target input` (autoencoders) and `nnspec predict --tensor NAME`."""
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.datasets import load_digits, load_iris

from nnspec.cli import main
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_file, check_text
from nnspec.train.autoencoder import mean_predictor_mse
from nnspec.train.data import load_data
from nnspec.train.run import evaluate_spec, train_spec

torch.set_num_threads(1)

SPECS = Path(__file__).resolve().parent.parent / "specs"
DIGITS_AE = SPECS / "digits_autoencoder.nn"

TABULAR = """model Iris {{
    input x: [4]
    layers {{
        code = x -> Dense(2)
        code -> Dense(4)
    }}
    loss mse
    optimizer Adam(lr=0.01)
    train {{ data {data}; target input; validation 0.2; epochs 2 }}
}}
"""


def nnspec(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_digits_are_their_own_labels_as_the_model_sees_them():
    data = load_data(check_file(DIGITS_AE).run_config())
    assert torch.equal(data.train.y, data.train.inputs[0]) and torch.equal(data.val.y, data.val.inputs[0])
    pixels = np.sort((load_digits().data / 16.0).astype(np.float32).reshape(-1))
    both = torch.cat([data.train.y, data.val.y]).reshape(-1).numpy()
    np.testing.assert_array_equal(np.sort(both), pixels)  # every image once, scaled to [0, 1]


def test_standardised_features_are_the_labels_after_standardising():
    data = load_data(check_text(TABULAR.format(data="sklearn.iris")).run_config())
    assert torch.equal(data.train.y, data.train.inputs[0])
    y = data.train.y.numpy()
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)  # the features as the model sees them, not as read
    np.testing.assert_allclose(y.std(0), 1, atol=1e-4)
    raw = y * data.stats["x"]["std"].numpy() + data.stats["x"]["mean"].numpy()
    nearest = np.abs(raw[:, None, :] - load_iris().data[None]).max(2).min(1)
    assert nearest.max() < 1e-4  # each label is a row of the data, standardised


def test_csv_and_npz_files_need_no_labels(tmp_path):
    x = load_iris().data.astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    header = "a,b,c,d,species\n"
    rows = "".join(",".join(map(str, r)) + ",setosa\n" for r in x)
    (tmp_path / "x.csv").write_text(header + rows)
    (tmp_path / "features.csv").write_text("a,b,c,d\n" + "".join(",".join(map(str, r)) + "\n" for r in x))
    for source in ('npz("x.npz")', 'csv("x.csv", target="species")', 'csv("features.csv")'):
        result = check_text(TABULAR.format(data=source), str(tmp_path / "spec.nn"))
        assert result.ok, result.diagnostics
        data = load_data(result.run_config())
        assert len(data.train) + len(data.val) == 150 and data.train.inputs[0].shape[1] == 4, source
        assert torch.equal(data.train.y, data.train.inputs[0]), source


def test_a_source_without_inputs_to_reproduce_is_refused_when_given_for_the_run():
    result = check_text(TABULAR.format(data="sklearn.iris"))
    with pytest.raises(UserError, match="cannot read data source logic.xor"):
        load_data(result.checked, "", "logic.xor")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae")
    run = train_spec(check_file(DIGITS_AE), out_dir=out, epochs=8, seed=0)
    return out, run


@pytest.mark.slow
def test_the_autoencoder_beats_half_the_per_pixel_mean_and_draws_its_reconstructions(digits_run):
    out, run = digits_run
    data = load_data(check_file(DIGITS_AE).run_config(seed=0))
    baseline = mean_predictor_mse(data.train.y, data.val.y)
    assert run.best["val_loss"] <= 0.5 * baseline, (run.best["val_loss"], baseline)
    png = (out / "reconstructions.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_predict_tensor_gives_the_code_the_encoder_computes(digits_run, tmp_path):
    out, _ = digits_run
    x = (load_digits().data[:5] / 16.0).astype(np.float32)
    np.savez(tmp_path / "rows.npz", x=x)
    r = nnspec("predict", DIGITS_AE, "--checkpoint", out / "best.pt", "--input", tmp_path / "rows.npz",
               "--tensor", "code", "-o", tmp_path / "code.csv")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "code.csv").read_text().splitlines()
    assert lines[0] == ",".join(f"output_{i}" for i in range(16)) and len(lines) == 6
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    # the reference: the encoder written with torch.nn.functional and the checkpoint's weights
    w = torch.load(out / "best.pt", weights_only=True)["model"]
    h = torch.relu(torch.nn.functional.linear(torch.from_numpy(x), w["dense_1.weight"], w["dense_1.bias"]))
    code = torch.nn.functional.linear(h, w["dense_2.weight"], w["dense_2.bias"]).numpy()
    np.testing.assert_allclose(got, code, rtol=1e-4, atol=1e-5)
    r = nnspec("predict", DIGITS_AE, "--checkpoint", out / "best.pt", "--input", tmp_path / "rows.npz",
               "--tensor", "cod")
    assert r.exit_code == 1
    assert "no tensor of that name; its named tensors are: code, image" in r.output and "did you mean 'code'" in r.output


@pytest.mark.slow
def test_evaluate_scores_data_given_for_the_run_against_its_standardised_inputs(tmp_path):
    result = check_text(TABULAR.format(data="sklearn.iris"), str(tmp_path / "spec.nn"))
    run = train_spec(result, out_dir=tmp_path / "run")
    x = load_iris().data.astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)  # no array y: the inputs are the labels
    state = torch.load(run.out_dir / "last.pt", weights_only=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 4))
    model[0].weight.data, model[0].bias.data = state["model"]["dense_1.weight"], state["model"]["dense_1.bias"]
    model[1].weight.data, model[1].bias.data = state["model"]["dense_2.weight"], state["model"]["dense_2.bias"]
    stats = state["data_stats"]["x"]
    z = (torch.from_numpy(x) - stats["mean"]) / stats["std"]
    with torch.no_grad():
        expected = float(((model(z) - z) ** 2).mean())
    for source in (f'npz("{tmp_path / "x.npz"}")', "sklearn.iris"):
        values = evaluate_spec(result, str(run.out_dir / "last.pt"), data=source)
        assert values["samples"] == 150 and values["loss"] == pytest.approx(expected, rel=1e-4), source


def test_a_sigmoid_decoder_with_mse_is_a_reconstruction_not_a_binary_classifier():
    """The output activation decides the task of mse, except under `target input`: the targets are
    the input's values (digits' pixels in [0, 1]), so a sigmoid decoder is still regression."""
    source = DIGITS_AE.read_text().replace("Reshape([1, 8, 8])", "Reshape([1, 8, 8]) -> sigmoid")
    source = source.replace("    loss      mse", "    loss      mse\n    metrics   [mse, r2]")
    result = check_text(source, "ae_sigmoid.nn")
    assert result.ok, result.render()
    assert result.checked.task.kind == "regression"
    plain = check_text(source.replace("        target input\n", "").replace("[mse, r2]", "[accuracy]"), "binary.nn")
    assert plain.checked.task.kind == "binary"  # without target input, sigmoid + mse is binary
