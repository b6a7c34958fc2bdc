"""k-fold cross-validation (`folds K`, `nnspec train --folds K`): the folds partition the data as
scikit-learn's (Stratified)KFold does, each fold is an ordinary run, and cv.json's means are the
means of the runs' own metrics."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.model_selection import KFold, StratifiedKFold

from nnspec.cli import main
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_file, check_text
from nnspec.train.crossval import cross_validate
from nnspec.train.data import fold_indices
from nnspec.train.run import train_spec

torch.set_num_threads(1)
SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_folds_partition_the_rows_as_sklearn_splits_them():
    y = np.repeat(np.arange(3), [20, 30, 50])
    reference = list(StratifiedKFold(5, shuffle=True, random_state=7).split(np.zeros(100), y))
    seen = []
    for k in range(5):
        train, val = fold_indices(y, (k, 5), seed=7, stratify=True)
        assert np.array_equal(val, np.sort(reference[k][1]))
        assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
        assert np.bincount(y[val]).tolist() == [4, 6, 10]  # each fold keeps the class proportions
        seen.append(val)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(100))  # every row validates once

    targets = np.linspace(0, 1, 23)  # regression: plain shuffled KFold
    reference = list(KFold(4, shuffle=True, random_state=0).split(targets))
    for k in range(4):
        assert np.array_equal(fold_indices(targets, (k, 4), 0, stratify=False)[1], np.sort(reference[k][1]))


def test_more_folds_than_rows_is_a_clear_error():
    with pytest.raises(UserError, match="folds 5 needs at least 5 rows; the data has 4"):
        fold_indices(np.arange(4), (0, 5), 0, stratify=False)


def test_cross_validate_writes_one_run_per_fold_and_their_means(tmp_path):
    result = check_file(SPECS / "iris_mlp.nn")
    cv = cross_validate(result, folds=3, out_dir=tmp_path, epochs=2)
    assert cv.notes == ["--folds 3 replaces the spec's `validation 0.2`"]
    summary = json.loads((tmp_path / "cv.json").read_text())
    assert summary["folds"] == 3 and summary["monitor"] == "val_loss"
    bests = [json.loads((tmp_path / f"fold_{k}" / "metrics.json").read_text())["best"] for k in (1, 2, 3)]
    for key in ("val_loss", "val_accuracy", "loss"):
        values = np.array([b[key] for b in bests])
        assert summary["best"][key]["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert summary["best"][key]["std"] == pytest.approx(values.std(), rel=1e-12, abs=1e-15)
    for k in (1, 2, 3):
        state = torch.load(tmp_path / f"fold_{k}" / "last.pt", weights_only=True)
        assert state["fold"] == [k - 1, 3]
    assert (tmp_path / "spec.nn").read_text() == result.source


def test_a_fold_validates_on_its_own_rows(tmp_path):
    """The last epoch's val_accuracy of fold 2 of 3 equals the accuracy of its last.pt on the rows
    scikit-learn's StratifiedKFold puts in that fold, standardised with the other rows' statistics."""
    from sklearn.datasets import load_iris

    from nnspec.backends.torch_model import build_model

    result = check_file(SPECS / "iris_mlp.nn")
    run = train_spec(result, out_dir=tmp_path, epochs=3, fold=(1, 3))
    x, y = load_iris(return_X_y=True)
    train, val = list(StratifiedKFold(3, shuffle=True, random_state=result.checked.train["seed"]).split(x, y))[1]
    mean, std = x[train].mean(0), x[train].std(0)
    model = build_model(result.checked)
    model.load_state_dict(torch.load(tmp_path / "last.pt", weights_only=True)["model"])
    with torch.no_grad():
        probs = model(torch.tensor((x[val] - mean) / std, dtype=torch.float32))
    assert run.history[-1]["val_accuracy"] == pytest.approx(float((probs.argmax(1).numpy() == y[val]).mean()))
    assert len(val) == 50


def test_a_folds_spec_is_not_trained_as_one_run(tmp_path):
    text = (SPECS / "iris_mlp.nn").read_text().replace("validation  0.2", "folds 3")
    result = check_text(text, str(SPECS / "iris_mlp.nn"))
    assert result.ok, result.render()
    with pytest.raises(UserError, match=r"cross-validated \(`folds 3`\)"):
        train_spec(result, out_dir=tmp_path, epochs=1)
    with pytest.raises(UserError, match="--resume does not apply"):
        cross_validate(result, out_dir=tmp_path, epochs=1, resume=True)


def test_nnspec_train_folds_on_the_command_line(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cv"
    done = runner.invoke(main, ["train", str(SPECS / "iris_mlp.nn"), "--folds", "2", "--epochs", "1", "-q",
                                "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "2-fold cross-validation" in done.output and "mean ± std" in done.output
    assert sorted(p.name for p in out.iterdir()) == ["cv.json", "fold_1", "fold_2", "spec.nn"]

    refused = runner.invoke(main, ["train", str(SPECS / "iris_mlp.nn"), "--folds", "2", "--nproc-per-node", "2"])
    assert refused.exit_code == 2 and "one after another" in refused.output
    bad = runner.invoke(main, ["train", str(SPECS / "iris_mlp.nn"), "--folds", "1"])
    assert bad.exit_code == 2 and "--folds" in bad.output


def test_tune_refuses_a_cross_validated_spec():
    from nnspec.tune import check_objective

    text = (SPECS / "iris_mlp.nn").read_text().replace("validation  0.2", "folds 3")
    with pytest.raises(UserError, match="tune does not cross-validate"):
        check_objective(check_text(text, "iris.nn"), "val_loss")
