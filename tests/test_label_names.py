"""A run remembers its class names (sklearn's target_names, a CSV's text labels) and `predict`
writes them beside the class ids."""
from __future__ import annotations

import csv
import json

import numpy as np
from sklearn.datasets import load_iris

from nnspec.pipeline import check_file
from nnspec.train.run import predict_spec, train_spec

IRIS = """model Iris {
    input x: [4]
    layers { Dense(8) -> relu
             Dense(3) -> softmax }
    loss categorical_crossentropy
    optimizer Adam(lr=0.05)
    metrics [accuracy]
    train { data DATA; epochs 2; validation 0.2 }
}
"""


def _train(tmp_path, data: str):
    spec = tmp_path / "iris.nn"
    spec.write_text(IRIS.replace("DATA", data))
    result = check_file(spec)
    assert result.ok, result.render()
    summary = train_spec(result, out_dir=tmp_path / "run")
    return result, summary.out_dir


def _rows_csv(path, x):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d"])
        w.writerows(x.tolist())


def test_sklearn_target_names_are_kept_and_predicted(tmp_path):
    result, run = _train(tmp_path, "sklearn.iris")
    facts = json.loads((run / "data.json").read_text())
    names = [str(n) for n in load_iris().target_names]
    assert facts["class_names"] == names and facts["origin"] == "sklearn.iris"
    _rows_csv(tmp_path / "rows.csv", load_iris().data[:7])
    header, rows = predict_spec(result, str(run / "best.pt"), str(tmp_path / "rows.csv"))
    assert header[-2:] == ["predicted", "label"]
    assert [r[-1] for r in rows] == [names[r[-2]] for r in rows]


def test_csv_text_labels_are_named_in_sorted_order(tmp_path):
    iris = load_iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[iris.target]
    with open(tmp_path / "flowers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "kind"])
        w.writerows([[*row, name] for row, name in zip(iris.data.tolist(), labels)])
    result, run = _train(tmp_path, 'csv("flowers.csv", target="kind")')
    assert json.loads((run / "data.json").read_text())["class_names"] == sorted(set(labels))
    _rows_csv(tmp_path / "rows.csv", iris.data[:5])
    header, rows = predict_spec(result, str(run / "best.pt"), str(tmp_path / "rows.csv"))
    assert header[-1] == "label" and all(r[-1] in set(labels) for r in rows)


def test_regression_runs_have_no_label_column(tmp_path):
    spec = tmp_path / "d.nn"
    spec.write_text("""model D {
    input x: [10]
    layers { Dense(1) }
    loss mse
    optimizer Adam(lr=0.05)
    train { data sklearn.diabetes; epochs 1 }
}
""")
    result = check_file(spec)
    run = train_spec(result, out_dir=tmp_path / "run").out_dir
    assert "class_names" not in json.loads((run / "data.json").read_text())
    from sklearn.datasets import load_diabetes
    x = load_diabetes().data[:3]
    with open(tmp_path / "rows.csv", "w", newline="") as f:
        csv.writer(f).writerows([[f"f{i}" for i in range(10)], *x.tolist()])
    header, rows = predict_spec(result, str(run / "best.pt"), str(tmp_path / "rows.csv"))
    assert header == ["output_0"] and len(rows) == 3


def test_predict_takes_a_run_folder_for_its_spec_and_best_checkpoint(tmp_path):
    from click.testing import CliRunner

    from nnspec.cli import main

    _, run = _train(tmp_path, "sklearn.iris")
    _rows_csv(tmp_path / "rows.csv", load_iris().data[:4])
    by_folder = CliRunner().invoke(main, ["predict", str(run), "--input", str(tmp_path / "rows.csv")])
    by_spec = CliRunner().invoke(main, ["predict", str(tmp_path / "iris.nn"), "--checkpoint", str(run / "best.pt"),
                                        "--input", str(tmp_path / "rows.csv")])
    assert by_folder.exit_code == 0 and by_folder.output == by_spec.output, by_folder.output
    no_checkpoint = CliRunner().invoke(main, ["predict", str(tmp_path / "iris.nn"), "--input", str(tmp_path / "rows.csv")])
    assert no_checkpoint.exit_code == 1 and "--checkpoint" in no_checkpoint.output
    not_a_run = CliRunner().invoke(main, ["predict", str(tmp_path), "--input", str(tmp_path / "rows.csv")])
    assert not_a_run.exit_code == 1 and "not a run folder" in not_a_run.output
    assert "Traceback" not in no_checkpoint.output + not_a_run.output
