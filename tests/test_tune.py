"""`nnspec tune`: outputs, the study budget in a database (resume, parallel workers), failed trials.

Trial counts and states are read back from Optuna's own storage, not from what nnspec prints.
"""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from nnspec import tune as tune_mod  # noqa: E402
from nnspec.cli import main  # noqa: E402
from nnspec.diagnostics import UserError  # noqa: E402
from nnspec.pipeline import check_file, check_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TUNE_MLP = ROOT / "specs" / "tune_mlp.nn"
NNSPEC = [sys.executable, "-m", "nnspec.cli"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def stored(url: str, name: str) -> list:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def counted(trials) -> list:
    return [t for t in trials if tune_mod.counts(t)]


@pytest.mark.slow
def test_tune_writes_trials_best_spec_and_plot_and_the_best_spec_checks_and_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["tune", str(TUNE_MLP), "--trials", "8", "--epochs", "3"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "TunedMLP" / "tune-1"  # the default output folder
    rows = read_csv(out / "trials.csv")
    assert [int(r["number"]) for r in rows] == list(range(8))
    assert list(rows[0]) == ["number", "Dense.units", "Dense.repeat", "Dropout.rate", "Adam.lr",
                             "train.batch_size", "val_auc", "state", "seconds", "failure"]
    assert all(r["state"] == "COMPLETE" for r in rows)
    assert all(r["Dense.units"] in ("16", "32", "64") and 1 <= int(r["Dense.repeat"]) <= 3 for r in rows)
    assert all(0.0001 <= float(r["Adam.lr"]) <= 0.1 and 0 <= float(r["Dropout.rate"]) <= 0.5 for r in rows)
    best_row = max(rows, key=lambda r: float(r["val_auc"]))
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    best = check_file(out / "best.nn")
    assert best.ok, best.render()
    from nnspec.search import dimensions

    assert dimensions(best.checked.spec, best.source) == []  # fully concrete
    dense = [n for n in best.checked.graph.nodes if n.kind == "Dense"]
    assert len(dense) == int(best_row["Dense.repeat"]) + 1
    assert dense[0].args["units"] == int(best_row["Dense.units"])
    assert best.checked.train["batch_size"] == int(best_row["train.batch_size"])
    assert best.checked.optimizer[1]["lr"] == pytest.approx(float(best_row["Adam.lr"]), rel=1e-5)
    assert best.source.startswith("# nnspec tune: the best of 8 trials")

    from nnspec.train.run import train_spec

    run = train_spec(best, out_dir=tmp_path / "best-run", epochs=2, device="cpu")
    assert len(run.history) == 2 and 0.5 <= run.final["val_auc"] <= 1.0
    res2 = CliRunner().invoke(main, ["check", str(out / "best.nn")])
    assert res2.exit_code == 0, res2.output


def test_each_space_kind_becomes_the_matching_optuna_distribution():
    result = check_file(TUNE_MLP)
    dims = tune_mod.search.dimensions(result.checked.spec, result.source)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    for d in dims:
        tune_mod.suggest_value(trial, d)
    dist = trial.distributions
    assert dist["Dense.units"] == optuna.distributions.CategoricalDistribution([16, 32, 64])
    assert dist["Dense.repeat"] == optuna.distributions.IntDistribution(1, 3)
    assert dist["Dropout.rate"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert dist["Adam.lr"] == optuna.distributions.FloatDistribution(0.0001, 0.1, log=True)
    assert dist["train.batch_size"] == optuna.distributions.CategoricalDistribution([16, 32, 64])


def test_a_study_in_sqlite_resumes_and_its_trial_count_adds_up(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = check_file(TUNE_MLP)
    first = tune_mod.tune(result, trials=3, storage=url, study_name="s", out_dir=tmp_path / "a", epochs=1,
                          device="cpu", quiet=True)
    assert len(counted(stored(url, "s"))) == 3
    second = tune_mod.tune(result, trials=5, storage=url, study_name="s", out_dir=tmp_path / "b", epochs=1,
                           device="cpu", quiet=True)
    trials = stored(url, "s")
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # the second run's outputs describe the whole study, and its best is the study's best
    assert [int(r["number"]) for r in read_csv(tmp_path / "b" / "trials.csv")] == [0, 1, 2, 3, 4]
    assert second.best.value == max(t.value for t in trials) >= first.best.value


def test_a_spec_with_other_search_spaces_cannot_join_a_stored_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tune_mod.open_study(check_file(TUNE_MLP), tune_mod.search.dimensions(check_file(TUNE_MLP).checked.spec,
                        TUNE_MLP.read_text()), tune_mod.settings_of(check_file(TUNE_MLP)), url, "s")
    other_text = TUNE_MLP.read_text().replace("choice(16, 32, 64))", "choice(8, 128))")
    other = check_text(other_text, "other.nn")
    with pytest.raises(UserError, match="other search spaces"):
        tune_mod.tune(other, trials=1, storage=url, study_name="s", out_dir=tmp_path / "o", quiet=True)


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study_without_duplicating_or_losing_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [*NNSPEC, "tune", str(TUNE_MLP), "--trials", "6", "--epochs", "1", "--device", "cpu",
           "--storage", url, "--study", "shared", "--quiet"]
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"w{i}")], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trials = stored(url, "shared")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    done = counted(trials)
    assert len(done) == 6 and all(t.state == TrialState.COMPLETE for t in done)
    assert len({t.number for t in trials}) == len(trials)  # every trial recorded once
    # a trial that is not counted can only be one asked for in the same instant as the last one, never run
    assert all(t.user_attrs.get("surplus") and not t.params for t in trials if t not in done)


@pytest.mark.slow
def test_a_killed_tune_resumes_and_the_killed_trial_does_not_count(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # The running tune is watched through its progress.json, never through the database: opening
    # the storage while the tune creates it would run Optuna's schema creation in two processes at
    # once (UNIQUE constraint failed: alembic_version). The storage is opened once the tune is dead.
    # Trials of 40 epochs (a few seconds each) leave ample time to see trial 2 running and kill it
    # before it ends, even on a loaded machine; 8 epochs raced it there.
    progress = tmp_path / "first" / tune_mod.PROGRESS
    log = tmp_path / "first.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([*NNSPEC, "tune", str(TUNE_MLP), "--trials", "4", "--epochs", "40", "--device",
                                 "cpu", "--storage", url, "--study", "k", "--quiet", "--out",
                                 str(tmp_path / "first")], cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:  # until one trial is done and the next one is running
            assert proc.poll() is None, f"the first tune ended by itself:\n{log.read_text()}"
            assert time.monotonic() < deadline, "the first tune never got to its second trial"
            seen = json.loads(progress.read_text()) if progress.exists() else {}
            if seen.get("counted", 0) >= 1 and seen["running"]:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = stored(url, "k")
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING], seen
    assert before[1].number == seen["running"][0]  # killed during the trial the file reported

    monkeypatch.setattr(tune_mod, "GRACE_S", 2)  # recognise the dead trial quickly
    monkeypatch.setattr(tune_mod, "HEARTBEAT_S", 1)
    tune_mod.tune(check_file(TUNE_MLP), trials=4, storage=url, study_name="k", out_dir=tmp_path / "second",
                  epochs=1, device="cpu", quiet=True)
    trials = stored(url, "k")
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and "failure" not in killed[0].user_attrs and killed[0].number == before[1].number
    assert len(counted(trials)) == 4 and not [t for t in trials if t.state == TrialState.RUNNING]
    final = json.loads((tmp_path / "second" / tune_mod.PROGRESS).read_text())
    assert (final["trials"], final["counted"], final["running"], final["done"]) == (4, 4, [], True)
    assert final["states"] == {"COMPLETE": 4, "FAIL": 1} and final["best"]["number"] in range(5)


FAILING = """\
model Fragile {
    input x: [1, 8, 8]
    layers {
        Conv2D(2, kernel=choice(3, 9)) -> relu     # 9 does not fit an 8x8 image
        Flatten()
        Dense(1)
    }
    loss mse
    optimizer SGD(lr=choice(0.01, 1e30))           # 1e30 diverges
    train { data synthetic(n=64); epochs 2; batch_size 32; validation 0.25 }
    search { trials 8; sampler random; seed 3 }
}
"""


def test_failing_trials_are_recorded_with_their_reason_and_the_search_goes_on(tmp_path):
    spec = tmp_path / "fragile.nn"
    spec.write_text(FAILING)
    result = check_file(spec)
    assert result.ok, result.render()
    summary = tune_mod.tune(result, out_dir=tmp_path / "out", device="cpu", quiet=True)
    trials = summary.trials
    assert len(trials) == 8
    for t in trials:
        kernel, lr = t.params["Conv2D.kernel"], t.params["SGD.lr"]
        if kernel == 9:
            assert t.state == TrialState.FAIL and "invalid spec for these values" in t.user_attrs["failure"]
        elif lr == 1e30:
            assert t.state == TrialState.FAIL and "loss became" in t.user_attrs["failure"]
        else:
            assert t.state == TrialState.COMPLETE
    assert {t.state for t in trials} == {TrialState.FAIL, TrialState.COMPLETE}
    rows = read_csv(tmp_path / "out" / "trials.csv")
    assert [r["failure"] != "" for r in rows] == [t.state == TrialState.FAIL for t in trials]
    best = check_file(tmp_path / "out" / "best.nn")
    assert best.ok and best.checked.optimizer[1]["lr"] == 0.01
    assert best.checked.graph.nodes[1].args["kernel"] in (3, (3, 3))


def test_an_objective_that_training_does_not_log_is_refused_before_any_trial(tmp_path):
    no_val = check_text(TUNE_MLP.read_text().replace("; validation 0.2", ""), "t.nn")
    with pytest.raises(UserError, match="needs a validation split"):
        tune_mod.tune(no_val, out_dir=tmp_path, quiet=True)
    typo = check_text(TUNE_MLP.read_text().replace("maximize val_auc", "maximize val_acu"), "t.nn")
    with pytest.raises(UserError, match="not logged") as err:
        tune_mod.tune(typo, out_dir=tmp_path, quiet=True)
    assert "val_auc" in (err.value.help or "")


def test_tune_refuses_a_spec_without_search_spaces(tmp_path):
    res = CliRunner().invoke(main, ["tune", str(ROOT / "specs" / "iris_mlp.nn"), "--out", str(tmp_path)])
    assert res.exit_code == 1 and "nothing to tune" in res.output


def test_train_refuses_a_spec_with_search_spaces_and_trains_its_defaults_when_asked(tmp_path):
    res = CliRunner().invoke(main, ["train", str(TUNE_MLP), "--out", str(tmp_path / "r")])
    assert res.exit_code == 1
    assert "nnspec tune" in res.output and "--defaults" in res.output
    res = CliRunner().invoke(main, ["train", str(TUNE_MLP), "--defaults", "--epochs", "1", "--device", "cpu",
                                    "--quiet", "--out", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "--defaults" in res.output and "Dense.units=16" in res.output
    trained = (tmp_path / "d" / "spec.nn").read_text()
    assert "Dense(16)" in trained and "lr=0.0001" in trained and "choice" not in trained


PRUNABLE = """\
model Prunable {
    input x: [4]
    layers {
        Dense(8) -> relu
        Dense(1)
    }
    loss mse
    optimizer SGD(lr=choice(0.05, 0.0000001))     # the second one does not learn
    train { data synthetic(n=256); epochs 5; batch_size 32; validation 0.25 }
    search { trials 4; pruner median }
}
"""


def test_the_median_pruner_is_fed_every_epoch_and_stops_a_trial_worse_than_the_median(tmp_path):
    spec = tmp_path / "prunable.nn"
    spec.write_text(PRUNABLE)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="p", direction="minimize")
    for lr in (0.05, 0.05, 0.05, 0.0000001):  # three that learn, then one that does not
        study.enqueue_trial({"SGD.lr": lr})
    summary = tune_mod.tune(check_file(spec), storage=url, study_name="p", out_dir=tmp_path / "out",
                            device="cpu", quiet=True)
    states = [t.state for t in summary.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    good, bad = summary.trials[0], summary.trials[3]
    assert len(good.intermediate_values) == 5  # one report per epoch
    assert 2 <= len(bad.intermediate_values) < 5  # epochs count from 1; pruned from epoch 2 (warm-up 2 steps)
    assert read_csv(tmp_path / "out" / "trials.csv")[3]["state"] == "PRUNED"
