"""Ctrl-C and --resume as people use them: an interrupted run keeps its curves and says how to go on;
a run resumes after its `epochs` (or `steps`) changed, and nothing else; a finished run says that
nothing is left to train instead of reporting its old best row as if it had trained."""
from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.cli import main
from nnspec.pipeline import check_text
from nnspec.train import checkpoint as ckpt_io

torch = pytest.importorskip("torch")

SPEC = """model Stop {{
    input x: [8]
    layers {{
        Dense(16) -> relu -> Dropout(0.2)
        Dense(3) -> softmax
    }}
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    metrics [accuracy]
    train {{
        data synthetic(n=200, seed=1)
        epochs {epochs}
        batch_size 20
        validation 0.2
        seed 3
    }}
}}
"""
PNG = b"\x89PNG\r\n\x1a\n"


def _spec(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "stop.nn"
    path.write_text(SPEC.format(epochs=epochs))
    return path


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _without_seconds(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _train(*args) -> object:
    return CliRunner().invoke(main, ["train", *map(str, args), "--device", "cpu"])


@pytest.mark.slow
def test_ctrl_c_keeps_curves_and_prints_the_command_that_resumes(tmp_path):
    spec, out = _spec(tmp_path, 5000), tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "nnspec", "train", str(spec), "--out", str(out), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:  # the first epoch's line, then Ctrl-C (SIGINT, as a terminal sends it)
        lines.append(line)
        if line.startswith("epoch"):
            proc.send_signal(signal.SIGINT)
            break
    lines += proc.stdout.readlines()
    output = "".join(lines)
    assert proc.wait(timeout=120) == 130, output
    assert "Traceback" not in output
    resume = [line.removeprefix("resume with: ").strip() for line in lines if line.startswith("resume with: ")]
    assert len(resume) == 1, output
    assert shlex.split(resume[0]) == ["nnspec", "train", str(spec), "--device", "cpu", "--out", str(out), "--resume"]

    done = len(_history(out))  # the epochs that finished before Ctrl-C: the run folder agrees on them
    assert done >= 1 and f"interrupted after epoch {done} of 5000" in output
    assert (out / "curves.png").read_bytes()[:8] == PNG
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == done and metrics["finished"] is False
    assert ckpt_io.load(out / "last.pt")["epoch"] == done

    spec.write_text(SPEC.format(epochs=done + 2))  # a shorter run now: the length may change on resume
    again = subprocess.run([sys.executable, "-m", "nnspec", *shlex.split(resume[0])[1:]], capture_output=True,
                           text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"after epoch {done}" in again.stdout and f"epochs 5000 -> {done + 2}" in again.stdout
    assert len(_history(out)) == done + 2 and json.loads((out / "metrics.json").read_text())["finished"] is True


@pytest.mark.slow
def test_a_longer_epochs_resumes_the_run_exactly_and_a_finished_run_says_so(tmp_path):
    spec, out, whole = _spec(tmp_path, 2), tmp_path / "run", tmp_path / "whole"
    assert _train(spec, "--out", out).exit_code == 0
    spec.write_text(SPEC.format(epochs=4))  # the spec edited: `epochs 2` -> `epochs 4`
    r = _train(spec, "--out", out, "--resume")
    assert r.exit_code == 0, r.output
    assert "resumed from" in r.output and "epochs 2 -> 4" in r.output
    assert _train(spec, "--out", whole).exit_code == 0  # the same 4 epochs without a stop
    assert _without_seconds(_history(out)) == _without_seconds(_history(whole))
    resumed, uninterrupted = ckpt_io.load(out / "last.pt")["model"], ckpt_io.load(whole / "last.pt")["model"]
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)

    r = _train(spec, "--out", out, "--resume")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{out} is finished: it trained 4 of 4 epochs; nothing is left to train" in r.output
    assert f"raise `epochs` above 4 in {spec}" in r.output and f"nnspec train {spec} --out {out} --resume" in r.output
    assert "best epoch" not in r.output  # not the old best row, as if it had trained

    spec.write_text(SPEC.format(epochs=6).replace("lr=0.01", "lr=0.02"))  # any other change: another spec
    r = _train(spec, "--out", out, "--resume")
    assert r.exit_code == 1 and "different spec" in r.output, r.output


def test_the_length_of_training_is_no_part_of_the_ir_hash():
    def digest(text):
        result = check_text(text, "spec.nn")
        assert result.ok, result.render()
        return ckpt_io.ir_hash(result.checked)

    base = digest(SPEC.format(epochs=3))
    assert digest(SPEC.format(epochs=8)) == base
    assert digest(SPEC.format(epochs=3).replace("epochs 3", "epochs 3\n        steps 40")) == base
    assert digest(SPEC.format(epochs=3).replace("seed 3", "seed 4")) != base
    assert digest(SPEC.format(epochs=3).replace("batch_size 20", "batch_size 10")) != base


def test_a_checkpoint_hashed_with_its_epochs_still_loads(tmp_path):
    # written before the length left the hash: its ir_hash is of the whole IR; its spec source decides
    spec, out = _spec(tmp_path, 1), tmp_path / "run"
    assert _train(spec, "--out", out).exit_code == 0
    state = ckpt_io.load(out / "last.pt")
    ckpt_io.save(out / "old.pt", {k: v for k, v in state.items() if k not in ("checksum", "format")}
                 | {"ir_hash": "0" * 64})
    expected = ckpt_io.ir_hash(check_text(SPEC.format(epochs=5), "spec.nn").checked)
    assert ckpt_io.load(out / "old.pt", expected, "Stop")["epoch"] == 1
    other = ckpt_io.ir_hash(check_text(SPEC.format(epochs=5).replace("Dense(16)", "Dense(12)"), "spec.nn").checked)
    with pytest.raises(Exception, match="different spec"):
        ckpt_io.load(out / "old.pt", other, "Stop")


def test_ctrl_c_inside_an_epochs_bookkeeping_waits_for_it_and_the_run_folder_agrees(tmp_path, monkeypatch):
    """SIGINT between `progress.epoch = 2` and history.csv's write (the window CI once hit): the
    epoch is saved whole, and the message, last.pt, history.csv and metrics.json all say epoch 2."""
    from nnspec.train import run as run_module
    from nnspec.train.run import TrainingInterrupted, train_spec

    write_history = run_module.write_history

    def interrupted_while_writing(path, history, keys):
        if len(history) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once to this (the main) thread
        write_history(path, history, keys)

    monkeypatch.setattr(run_module, "write_history", interrupted_while_writing)
    spec, out = _spec(tmp_path, 50), tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stop:
        train_spec(check_text(spec.read_text(), str(spec)), out_dir=out, device="cpu")
    assert stop.value.epoch == 2 and str(stop.value) == "interrupted after epoch 2 of 50"
    assert len(_history(out)) == 2 and ckpt_io.load(out / "last.pt")["epoch"] == 2
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_epoch_commit_delivers_a_deferred_ctrl_c_after_the_block_and_lets_an_error_win():
    from nnspec.train.interrupts import epoch_commit

    done = []
    with pytest.raises(KeyboardInterrupt):
        with epoch_commit():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the rest of the block ran")
    assert done == ["the rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back

    with pytest.raises(ValueError, match="disk full"):
        with epoch_commit():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("disk full")
    with epoch_commit():  # no Ctrl-C: nothing raised
        done.append("quiet")
    assert done[-1] == "quiet"


def test_epoch_commit_outside_the_main_thread_runs_the_block_as_it_is():
    import threading

    from nnspec.train.interrupts import epoch_commit

    ran, errors = [], []

    def worker():
        try:
            with epoch_commit():  # signal.signal would raise ValueError here
                ran.append(True)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert ran == [True] and errors == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_fresh_run_into_a_folder_of_the_same_spec_hashed_with_its_epochs_starts_over_without_overwrite(tmp_path):
    # the folder's checkpoints were written before the length left the hash (simulated: another stored
    # hash); its spec source is this spec, so it is no run "of another spec"
    spec, out = _spec(tmp_path, 1), tmp_path / "run"
    assert _train(spec, "--out", out).exit_code == 0
    for name in ("last.pt", "best.pt"):
        state = ckpt_io.load(out / name)
        ckpt_io.save(out / name, {k: v for k, v in state.items() if k not in ("checksum", "format")}
                     | {"ir_hash": "0" * 64})
    r = _train(spec, "--out", out)
    assert r.exit_code == 0, r.output
    assert ckpt_io.load(out / "last.pt")["ir_hash"] != "0" * 64  # the run was trained again
    spec.write_text(SPEC.format(epochs=1).replace("Dense(16)", "Dense(12)"))  # another spec is still refused
    r = _train(spec, "--out", out)
    assert r.exit_code == 1 and "holds a run of another spec" in r.output, r.output
