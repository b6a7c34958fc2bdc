"""`nnspec train / evaluate / predict` from the command line: outputs, files and exit codes."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nnspec.cli import main

torch.set_num_threads(1)

SPECS = Path(__file__).resolve().parent.parent / "specs"
IRIS = str(SPECS / "iris_mlp.nn")


def nnspec(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("iris")
    r = nnspec("train", IRIS, "--epochs", 3, "--out", out)
    assert r.exit_code == 0, r.output
    return out, r.output


def test_train_prints_epochs_and_where_the_run_is(iris_run):
    out, text = iris_run
    assert "epoch=3/3" in text and "samples_per_s=" in text and "val_accuracy=" in text
    assert f"run folder: {out}" in text and "curves.png" in text


def test_evaluate_prints_and_writes_metrics(iris_run, tmp_path):
    out, _ = iris_run
    r = nnspec("evaluate", IRIS, "--checkpoint", out / "best.pt", "-o", tmp_path / "m.json")
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "validation split, 30 samples" in r.output
    assert json.loads((tmp_path / "m.json").read_text())["samples"] == 30
    r = nnspec("evaluate", IRIS, "--checkpoint", out / "best.pt", "--data", "sklearn.iris")
    assert r.exit_code == 0 and "whole data set, 150 samples" in r.output


def test_predict_csv_probabilities_and_class(iris_run, tmp_path):
    out, _ = iris_run
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    r = nnspec("predict", IRIS, "--checkpoint", out / "best.pt", "--input", rows, "-o", tmp_path / "p.csv")
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "p_0,p_1,p_2,predicted,label" and len(lines) == 3  # label: iris's class names
    probs = np.array([[float(v) for v in line.split(",")[:3]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    assert [int(line.split(",")[3]) for line in lines[1:]] == probs.argmax(1).tolist()
    names = ["setosa", "versicolor", "virginica"]
    assert [line.split(",")[4] for line in lines[1:]] == [names[i] for i in probs.argmax(1)]


def test_user_errors_exit_1_with_a_message(iris_run, tmp_path):
    out, _ = iris_run
    r = nnspec("evaluate", SPECS / "digits_cnn.nn", "--checkpoint", out / "best.pt")
    assert r.exit_code == 1 and "different spec" in r.output and "Traceback" not in r.output
    r = nnspec("train", SPECS / "tune_mlp.nn", "--out", tmp_path / "t")
    assert r.exit_code == 1 and "nnspec tune" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    r = nnspec("predict", IRIS, "--checkpoint", out / "best.pt", "--input", bad)
    assert r.exit_code == 1 and "expects [4]" in r.output
    if not torch.cuda.is_available():
        r = nnspec("train", IRIS, "--device", "cuda", "--out", tmp_path / "c")
        assert r.exit_code == 1 and "CUDA is not available" in r.output


def test_bad_flags_exit_2():
    r = nnspec("train", IRIS, "--batch-size", "lots")
    assert r.exit_code == 2 and "--batch-size" in r.output


def test_quiet_resume_continues_the_run(iris_run, tmp_path):
    out = tmp_path / "r"
    assert nnspec("train", IRIS, "--epochs", 2, "--out", out, "-q").exit_code == 0
    r = nnspec("train", IRIS, "--epochs", 4, "--out", out, "--resume", "-q")
    assert r.exit_code == 0, r.output
    assert "resumed" in r.output and "epoch=3/4" not in r.output  # quiet: no per-epoch lines
    assert len((out / "history.csv").read_text().splitlines()) == 5
