"""Experiment logs (`--log tensorboard`, `--log mlflow`): read back with TensorBoard's own
EventAccumulator and MLflow's own MlflowClient, and compared with the run folder's history.csv,
its checkpoint and hand-counted facts of the spec."""
from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nnspec.cli import main

pytestmark = pytest.mark.slow  # each run opens an MLflow store (its tables are made: a few seconds)
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "specs" / "iris_mlp.nn"  # Dense(16) -> Dense(16) -> Dense(3), SGD(lr=0.05), batch 16
TUNE = ROOT / "specs" / "tune_mlp.nn"
IRIS_PARAMETERS = (4 * 16 + 16) + (16 * 16 + 16) + (16 * 3 + 3)  # by hand: 403


def nnspec(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def mlflow_client(store: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


def runs_of(client, name: str) -> list:
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id])


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """`nnspec train iris --log tensorboard --log mlflow`, with every network connection recorded."""
    out = tmp_path_factory.mktemp("logs") / "run"
    attempts: list = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("tests/test_logs.py: no network")
        return real_connect(sock, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        r = nnspec("train", IRIS, "--epochs", 3, "--out", out, "--log", "tensorboard", "--log", "mlflow")
    assert r.exit_code == 0, r.output
    return out, r.output, attempts


def test_train_says_where_it_logs_and_opens_no_connection(logged_run):
    out, text, attempts = logged_run
    assert f"tensorboard --logdir {out / 'tensorboard'}" in text
    assert f"sqlite:///{(out / 'mlflow').resolve() / 'mlflow.db'}" in text
    assert attempts == []  # MLflow's telemetry is off and its store is a local file


def test_tensorboard_scalars_equal_history_csv(logged_run):
    out = logged_run[0]
    rows = history(out)
    acc = events(out / "tensorboard")
    assert len(rows) == 3
    for key in rows[0]:
        if key == "epoch":
            continue
        logged = acc.Scalars(key)
        assert [e.step for e in logged] == [1, 2, 3], key
        assert [e.value for e in logged] == pytest.approx([r[key] for r in rows], rel=1e-6), key  # float32


def test_tensorboard_has_the_graph_and_weight_histograms(logged_run):
    out = logged_run[0]
    acc = events(out / "tensorboard")
    graph = acc.Graph()
    ops = [node.op for node in graph.node]
    assert sum(op == "aten::linear" for op in ops) == 3  # the spec's three Dense layers, traced by torch.jit
    weights = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["model"]
    tags = set(acc.Tags()["histograms"])
    assert tags == {f"weights/{name}" for name in weights}
    for name, tensor in weights.items():
        steps = acc.Histograms(f"weights/{name}")
        assert [h.step for h in steps] == [1, 2, 3]
        last = steps[-1].histogram_value  # the last epoch's weights are last.pt's
        assert last.num == tensor.numel()
        assert last.min == pytest.approx(float(tensor.min()), rel=1e-6)
        assert last.max == pytest.approx(float(tensor.max()), rel=1e-6)


def test_mlflow_params_metrics_and_artifacts(logged_run):
    out = logged_run[0]
    client = mlflow_client(out / "mlflow")
    (run,) = runs_of(client, "IrisMLP")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["optimizer"] == "SGD" and float(params["lr"]) == 0.05 and params["optimizer.momentum"] == "0.9"
    assert params["epochs"] == "3"  # the --epochs override, not the spec's 100
    assert params["batch_size"] == "16" and params["validation"] == "0.2" and params["seed"] == "0"
    assert params["layers"] == "3" and params["parameters"] == str(IRIS_PARAMETERS)
    assert params["data"] == "sklearn.iris" and params["loss"] == "categorical_crossentropy"
    rows = history(out)
    for key in rows[0]:
        if key == "epoch":
            continue
        logged = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in logged] == [(int(r["epoch"]), r[key]) for r in rows], key
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"history.csv", "metrics.json", "spec.nn", "curves.png", "best.pt", "data.json"} <= names
    logged_history = Path(client.download_artifacts(run.info.run_id, "history.csv", str(out.parent)))
    assert logged_history.read_text() == (out / "history.csv").read_text()
    assert json.loads((out / "logs.json").read_text())["mlflow_run_id"] == run.info.run_id


@pytest.mark.parametrize("logged_before", [True, False], ids=["logged-before", "log-added-on-resume"])
def test_resume_continues_the_same_logs(tmp_path, logged_before):
    """Resumed, the logs hold every epoch once: continued, or (--log added only now) filled in
    with the earlier epochs of history.csv."""
    out = tmp_path / "run"
    both = ("--log", "tensorboard", "--log", "mlflow")
    first = nnspec("train", IRIS, "--epochs", 2, "--out", out, *(both if logged_before else ()))
    assert first.exit_code == 0, first.output
    again = nnspec("train", IRIS, "--epochs", 4, "--out", out, "--resume", *both)
    assert again.exit_code == 0, again.output
    rows = history(out)
    logged = events(out / "tensorboard").Scalars("loss")
    assert [(e.step, e.value) for e in logged] == [(int(r["epoch"]), pytest.approx(r["loss"], rel=1e-6)) for r in rows]
    client = mlflow_client(out / "mlflow")
    (run,) = runs_of(client, "IrisMLP")  # one MLflow run, continued
    logged = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in logged] == [(int(r["epoch"]), r["loss"]) for r in rows]
    assert run.info.status == "FINISHED"


def test_tune_logs_each_trial(tmp_path):
    out = tmp_path / "tune"
    r = nnspec("tune", TUNE, "--trials", 2, "--epochs", 1, "--sampler", "random", "--out", out,
               "--log", "tensorboard", "--log", "mlflow")
    assert r.exit_code == 0, r.output
    for n in (0, 1):  # a TensorBoard folder per trial, holding that trial's history
        rows = history(out / "trials" / f"{n:03d}")
        logged = events(out / "tensorboard" / f"trial-{n:03d}").Scalars("val_auc")
        assert [e.value for e in logged] == pytest.approx([row["val_auc"] for row in rows], rel=1e-6)
    client = mlflow_client(out / "mlflow")
    runs = runs_of(client, "TunedMLP")
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    trials = sorted((run for run in runs if run is not parent), key=lambda run: run.info.run_name)
    assert [run.info.run_name for run in trials] == ["trial 0", "trial 1"]
    with open(out / "trials.csv", newline="") as f:
        table = list(csv.DictReader(f))
    for run, row in zip(trials, table):
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert float(run.data.params["search.Adam.lr"]) == pytest.approx(float(row["Adam.lr"]), rel=1e-5)
        assert run.data.params["search.train.batch_size"] == row["train.batch_size"]
        assert run.data.metrics["val_auc"] == pytest.approx(float(row["val_auc"]), rel=1e-5)
        assert run.data.params["epochs"] == "1"
    assert parent.data.params["trials"] == "2" and parent.data.params["metric"] == "val_auc"
    assert parent.data.metrics["val_auc"] == pytest.approx(max(float(row["val_auc"]) for row in table), rel=1e-5)
    plots = {f.name for f in out.glob("search*.png")}  # Optuna's plots that the search could draw
    assert "search.png" in plots
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"trials.csv", "best.nn", *plots}


def test_unknown_log_kind_is_refused():
    r = nnspec("train", IRIS, "--log", "wandb")
    assert r.exit_code == 2 and "'wandb' is not one of 'tensorboard', 'mlflow'" in r.output


@pytest.mark.parametrize("package, flag", [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_missing_package_names_the_logs_extra(package, flag, tmp_path):
    program = (f"import sys\nsys.modules[{package!r}] = None\n"
               "from nnspec.cli import main\nmain(prog_name='nnspec')\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", program, "train", str(IRIS), "--epochs", "1", "--out", str(out),
                           "--log", flag], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"`--log {flag}` needs" in err and "install it with: pip install 'nnspec[logs]'" in err, err
    assert not out.exists()  # refused before the run folder is made


NOISY = """model Noisy {
    input features: [4]
    layers {
        Dense(16) -> relu
        BatchNorm()
        Dropout(0.3)
        Dense(3) -> softmax
    }
    loss      categorical_crossentropy
    optimizer Adam(lr=0.01)
    train { data sklearn.iris; epochs 2; batch_size 32; validation 0.2; seed 1 }
}
"""


def test_logging_does_not_change_training(tmp_path):
    """The graph is traced in eval mode without gradients: BatchNorm's running statistics and the
    dropout masks of the run are those of a run without logs, so the weights are identical."""
    from nnspec.pipeline import check_text
    from nnspec.train.run import train_spec

    result = check_text(NOISY, str(tmp_path / "noisy.nn"))
    plain = train_spec(result, out_dir=tmp_path / "plain", device="cpu")
    logged = train_spec(result, out_dir=tmp_path / "logged", device="cpu", log=["tensorboard"])
    assert plain.history == [dict(row, seconds=other["seconds"]) for row, other in zip(logged.history, plain.history)]
    a = torch.load(tmp_path / "plain" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "logged" / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # running_mean/var included
    assert any(k.endswith("running_mean") for k in a)


def test_api_refuses_an_unknown_kind_and_a_gan():
    from nnspec.diagnostics import UserError
    from nnspec.pipeline import check_file
    from nnspec.train.run import train_spec

    with pytest.raises(UserError, match="unknown log 'wandb'"):
        train_spec(check_file(IRIS), log=["wandb"])
    with pytest.raises(UserError, match="not supported for adversarial training"):
        train_spec(check_file(ROOT / "specs" / "digits_gan.nn"), log=["tensorboard"])


def test_cross_validation_logs_each_fold(tmp_path):
    out = tmp_path / "cv"
    r = nnspec("train", ROOT / "specs" / "diabetes_mlp.nn", "--folds", 2, "--epochs", 2, "--out", out,
               "--log", "tensorboard", "-q")
    assert r.exit_code == 0, r.output
    for fold in ("fold_1", "fold_2"):  # `tensorboard --logdir cv` shows the folds side by side
        rows = history(out / fold)
        logged = events(out / fold / "tensorboard").Scalars("val_loss")
        assert [e.value for e in logged] == pytest.approx([row["val_loss"] for row in rows], rel=1e-6)


def test_a_store_that_is_not_an_mlflow_database_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    (out / "mlflow").mkdir(parents=True)
    (out / "mlflow" / "mlflow.db").write_text("not a database")
    r = nnspec("train", IRIS, "--epochs", 1, "--out", out, "--log", "mlflow")
    assert r.exit_code == 1, r.output
    assert "cannot use the MLflow store" in r.output and "file is not a database" in r.output
    assert "internal error" not in r.output and "Traceback" not in r.output
