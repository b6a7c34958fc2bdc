"""`nnspec tune --storage postgresql://...`: several tune processes on one study in a real
PostgreSQL server that the test starts itself (tests/postgres_server.py: initdb + pg_ctl in a
temporary folder, as an unprivileged user, on a free port of 127.0.0.1; stopped at the end).

Trial states are read back from Optuna's own storage, not from what nnspec prints.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402
from postgres_server import PostgresServer, find_bin  # noqa: E402

from nnspec import tune as tune_mod  # noqa: E402
from nnspec.diagnostics import UserError  # noqa: E402
from nnspec.pipeline import check_text  # noqa: E402

NNSPEC = [sys.executable, "-m", "nnspec.cli"]

SPEC = """\
model IrisSearch {
    input features: [4]
    layers {
        Dense(choice(8, 16)) -> relu
        Dense(3) -> softmax
    }
    loss      categorical_crossentropy
    optimizer SGD(lr=loguniform(0.01, 0.1), momentum=0.9)
    metrics   [accuracy]
    train { data sklearn.iris; epochs 2; batch_size 16; validation 0.2; seed 0 }
    search { trials 6; sampler random; objective maximize val_accuracy }
}
"""


@pytest.fixture(scope="module")
def postgres():
    if find_bin() is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    pytest.importorskip("psycopg", reason="the `postgres` extra (psycopg) is not installed")
    with PostgresServer() as server:  # stopped and deleted even when a test fails
        yield server


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "iris_search.nn"
    path.write_text(SPEC)
    return path


def stored(url: str, name: str) -> list:
    return optuna.load_study(study_name=name, storage=tune_mod.storage_url(url)).get_trials(deepcopy=False)


def tune_cmd(spec: Path, url: str, study: str, out: Path, *extra: str) -> list[str]:
    return [*NNSPEC, "tune", str(spec), "--storage", url, "--study", study, "--device", "cpu", "--quiet",
            "--out", str(out), *extra]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as sink:
        return subprocess.Popen(cmd, cwd=log.parent, stdout=sink, stderr=subprocess.STDOUT)


def finish(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    for proc in procs:
        proc.wait(timeout=300)
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(log.read_text() for log in logs)


@pytest.mark.slow
def test_two_processes_share_one_postgres_study_and_write_the_same_best_spec(postgres, spec, tmp_path):
    url = postgres.create_database("shared")
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    finish([start(tune_cmd(spec, url, "iris", tmp_path / f"w{i}", "--trials", "6"), log)
            for i, log in enumerate(logs)], logs)

    trials = stored(url, "iris")
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)  # no trial recorded twice
    done = [t for t in trials if tune_mod.counts(t)]
    assert len(done) == 6 and all(t.state == TrialState.COMPLETE for t in done)
    # the only other trials possible: one asked for in the same instant as the last, never run
    assert all(t.user_attrs.get("surplus") and not t.params for t in trials if t not in done)
    # both workers ran trials: each log is quiet, but each worker's trials/ holds the ones it ran
    ran = [{int(p.name) for p in (tmp_path / f"w{i}" / "trials").iterdir()} for i in range(2)]
    assert ran[0] and ran[1] and not ran[0] & ran[1] and ran[0] | ran[1] == {t.number for t in done}

    # every worker writes the study's outputs when it is done: the same bytes, the study's best
    best = max(done, key=lambda t: t.value)
    texts = [(tmp_path / f"w{i}" / "best.nn").read_text() for i in range(2)]
    assert texts[0] == texts[1] and f"(trial {best.number})" in texts[0].splitlines()[0]
    tables = [(tmp_path / f"w{i}" / "trials.csv").read_text() for i in range(2)]
    assert tables[0] == tables[1] and len(tables[0].splitlines()) == 1 + len(trials)


@pytest.mark.slow
def test_a_killed_worker_trial_is_failed_and_run_again_by_the_other(postgres, spec, tmp_path):
    url = postgres.create_database("killed")
    # worker a trains 3000 epochs per trial, so it is surely mid-trial when it is killed; b, 2 epochs
    a = start(tune_cmd(spec, url, "iris", tmp_path / "a", "--trials", "4", "--epochs", "3000", "--heartbeat", "1"),
              tmp_path / "a.log")
    b = start(tune_cmd(spec, url, "iris", tmp_path / "b", "--trials", "4", "--epochs", "2", "--heartbeat", "1"),
              tmp_path / "b.log")
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "a" / "trials").is_dir() or not any((tmp_path / "a" / "trials").iterdir()):
            assert a.poll() is None, (tmp_path / "a.log").read_text()
            assert time.monotonic() < deadline, "worker a never started a trial"
            time.sleep(0.2)
        time.sleep(1.0)  # well inside the trial: its heartbeat is in the database
    finally:
        a.kill()
        a.wait()
    killed_number = int(next((tmp_path / "a" / "trials").iterdir()).name)
    finish([b], [tmp_path / "b.log"])

    trials = {t.number: t for t in stored(url, "iris")}
    killed = trials[killed_number]
    assert killed.state == TrialState.FAIL and "failure" not in killed.user_attrs  # failed by the heartbeat
    retried = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and retried[0].params == killed.params
    assert (tmp_path / "b" / "trials" / f"{retried[0].number:03d}").is_dir()  # run by worker b
    assert len([t for t in trials.values() if tune_mod.counts(t)]) == 4
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_database_that_does_not_exist_is_one_clear_error(postgres, tmp_path, monkeypatch):
    monkeypatch.setattr(tune_mod, "STORAGE_ATTEMPTS", 1)
    url = f"postgresql://nnspec:secret@127.0.0.1:{postgres.port}/no_such_db"
    with pytest.raises(UserError) as err:
        tune_mod.make_storage(url)
    assert "cannot open the study storage postgresql://nnspec:***@127.0.0.1" in err.value.message
    assert "no_such_db" in err.value.message and "secret" not in err.value.message
    assert "createdb" in err.value.help


def test_a_missing_psycopg_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"needs psycopg, which is not installed; install it with: "
                                        r"pip install 'nnspec\[postgres\]'"):
        tune_mod.make_storage("postgresql://me@127.0.0.1:5432/studies")


def test_postgres_urls_use_psycopg_3_and_other_urls_are_left_alone():
    assert tune_mod.storage_url("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    assert tune_mod.storage_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert tune_mod.storage_url("sqlite:///study.db") == "sqlite:///study.db"
    assert tune_mod.hide_password("postgresql://u:pw@h/d") == "postgresql://u:***@h/d"
    assert tune_mod.heartbeat_and_grace(1) == (1, 6) and tune_mod.heartbeat_and_grace(None) == (5, 30)


def test_the_spec_checks():
    assert check_text(SPEC, "iris_search.nn").ok
