"""One owner per run folder, runs of other specs kept, and checkpoints that must carry a checksum.

- A run folder is locked (`RUN_DIR/.lock`, nnspec/runlock.py) while `nnspec train` writes in it:
  a second train on it is refused, naming the process that holds it (the first owner here is the
  test process itself, holding the lock with the same helper, so nothing races). A lock left by
  a killed process is taken over with a note; the lock is released however the run ends.
- `train --out A` where A holds a run of another spec is refused unless --overwrite; the same
  spec's folder still resumes.
- A checkpoint whose `checksum` is missing (or whose key name is damaged) is refused.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from nnspec.cli import main  # noqa: E402
from nnspec.diagnostics import UserError  # noqa: E402
from nnspec.runlock import FolderInUse, RunLock  # noqa: E402
from nnspec.train import checkpoint as ckpt  # noqa: E402

torch.set_num_threads(1)

TINY = """model Tiny {
    input x: [4]
    layers {
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam
    train {
        data synthetic(n=32)
        epochs 2
    }
}
"""
OTHER = TINY.replace("model Tiny", "model Other").replace("Dense(3) -> softmax", "Dense(5) -> relu\n        Dense(3) -> softmax")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def specs(tmp_path):
    tiny, other = tmp_path / "tiny.nn", tmp_path / "other.nn"
    tiny.write_text(TINY)
    other.write_text(OTHER)
    return tiny, other


def train(spec, out, *extra):
    return invoke("train", spec, "--out", out, "--device", "cpu", "-q", *extra)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def hash_of(path: Path) -> str:
    return torch.load(path, weights_only=True)["ir_hash"]


# ---------------------------------------------------------------- the lock itself
def test_the_lock_is_exclusive_names_its_owner_and_is_removed_on_release(tmp_path):
    with RunLock(tmp_path, "nnspec train") as first:
        owner = json.loads((tmp_path / ".lock").read_text())
        assert owner["pid"] == os.getpid() and owner["what"] == "nnspec train" and owner["host"]
        with pytest.raises(FolderInUse, match=f"in use by nnspec train \\(process {os.getpid()}"):
            RunLock(tmp_path).acquire()
        assert first.note is None
    assert not (tmp_path / ".lock").exists()
    with RunLock(tmp_path) as again:  # free again
        assert again.note is None


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(tmp_path):
    pid = dead_pid()
    (tmp_path / ".lock").write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "started": "then",
                                                "what": "nnspec train"}))
    with RunLock(tmp_path) as lock:
        assert f"process {pid}" in lock.note and "no longer holds it" in lock.note
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


# ---------------------------------------------------------------- nnspec train and the lock
def test_a_second_train_on_a_folder_in_use_is_refused(specs, tmp_path):
    """The first owner holds the lock (this test process); a real second `nnspec train` process is refused."""
    tiny, _ = specs
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out, "nnspec train"):
        proc = subprocess.run([sys.executable, "-m", "nnspec", "train", str(tiny), "--out", str(out), "--device",
                               "cpu", "-q"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"{out} is in use by nnspec train (process {os.getpid()}" in proc.stderr, proc.stderr
        assert "run folder:" not in proc.stdout
        assert sorted(p.name for p in out.iterdir()) == [".lock"], "the refused run wrote nothing"
    for command in (("--resume",), ("--folds", "2")):  # resuming, cross-validating: refused alike
        with RunLock(out, "nnspec train"):
            r = train(tiny, out, *command)
            assert r.exit_code == 1 and "is in use by nnspec train" in r.output, r.output


def test_tune_without_storage_owns_its_folder(tmp_path):
    pytest.importorskip("optuna")
    spec = tmp_path / "t.nn"
    spec.write_text(TINY.replace("Dense(3) -> softmax", "Dense(choice(3, 4)) -> relu\n        Dense(3) -> softmax")
                    .replace("    train {", "    search { trials 1 }\n    train {\n        validation 0.25"))
    out = tmp_path / "tune"
    out.mkdir()
    with RunLock(out, "nnspec tune"):
        r = invoke("tune", spec, "--out", out, "--device", "cpu", "--quiet")
        assert r.exit_code == 1 and "is in use by nnspec tune" in r.output, r.output


def test_train_takes_over_a_stale_lock_and_releases_it(specs, tmp_path):
    tiny, _ = specs
    out = tmp_path / "run"
    out.mkdir()
    pid = dead_pid()
    (out / ".lock").write_text(json.dumps({"pid": pid, "started": "then", "what": "nnspec train"}))
    r = train(tiny, out)
    assert r.exit_code == 0, r.output
    assert f"was left by nnspec train (process {pid}" in r.output and "takes the folder over" in r.output
    assert not (out / ".lock").exists() and (out / "last.pt").is_file()


def test_resume_works_after_the_owner_was_killed(specs, tmp_path):
    tiny, _ = specs
    out = tmp_path / "run"
    assert train(tiny, out).exit_code == 0
    (out / ".lock").write_text(json.dumps({"pid": dead_pid(), "what": "nnspec train"}))  # as after kill -9
    r = train(tiny, out, "--resume", "--epochs", "3")
    assert r.exit_code == 0, r.output
    assert "no longer holds it" in r.output and "resumed from" in r.output and "after epoch 2" in r.output
    assert ckpt.load(out / "last.pt")["epoch"] == 3 and not (out / ".lock").exists()


def test_the_lock_is_released_after_an_error_and_after_ctrl_c(specs, tmp_path, monkeypatch):
    tiny, _ = specs
    out = tmp_path / "run"
    r = train(tiny, out, "--resume")  # no checkpoint to resume from: an error once the folder is locked
    assert r.exit_code == 1 and "no checkpoint" in r.output, r.output
    assert not (out / ".lock").exists()

    from nnspec.train import loop

    def interrupted(*args, **kwargs):
        assert (out / ".lock").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "fit", interrupted)
    r = train(tiny, out)
    assert r.exit_code == 130, r.output
    assert not (out / ".lock").exists()


# ---------------------------------------------------------------- a folder holding another spec's run
def test_a_folder_with_a_run_of_another_spec_is_refused_unless_overwrite(specs, tmp_path):
    tiny, other = specs
    out = tmp_path / "run"
    assert train(tiny, out).exit_code == 0
    tiny_hash = hash_of(out / "last.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = train(other, out)
    assert r.exit_code == 1, r.output
    assert f"{out} holds a run of another spec (Tiny, IR hash {tiny_hash[:12]})" in r.output, r.output
    assert "--overwrite" in r.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the other run is untouched"

    r = train(other, out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert "--overwrite: the run of Tiny" in r.output
    names = sorted(p.name for p in out.iterdir())
    assert ".lock" not in names and "last.pt" in names
    for name in ("last.pt", "best.pt", "last.prev.pt"):  # nothing of the old run is mixed in
        if (out / name).exists():
            assert hash_of(out / name) != tiny_hash, name
    assert "model Other" in (out / "spec.nn").read_text()


def test_the_same_spec_trains_again_and_resumes_in_its_folder(specs, tmp_path):
    tiny, _ = specs
    out = tmp_path / "run"
    assert train(tiny, out).exit_code == 0
    r = train(tiny, out, "--resume", "--epochs", "3")
    assert r.exit_code == 0 and "after epoch 2" in r.output, r.output
    r = train(tiny, out)  # a fresh run of the same spec starts the folder over
    assert r.exit_code == 0, r.output
    assert ckpt.load(out / "last.pt")["epoch"] == 2
    assert ckpt.load(out / "last.prev.pt")["epoch"] == 1, "last.prev.pt is of the new run, not the old one"


def test_resume_of_another_specs_folder_is_refused(specs, tmp_path):
    tiny, other = specs
    out = tmp_path / "run"
    assert train(tiny, out).exit_code == 0
    r = train(other, out, "--resume")
    assert r.exit_code == 1 and "different spec" in r.output, r.output


def test_cross_validation_refuses_a_folder_with_another_specs_run(specs, tmp_path):
    tiny, other = specs
    out = tmp_path / "cv"
    assert train(tiny, out).exit_code == 0
    r = train(other, out, "--folds", "2")
    assert r.exit_code == 1 and "holds a run of another spec (Tiny" in r.output, r.output
    assert "model Tiny" in (out / "spec.nn").read_text()
    r = train(other, out, "--folds", "2", "--overwrite", "--epochs", "1")
    assert r.exit_code == 0, r.output
    assert (out / "cv.json").is_file() and not list(out.rglob(".lock"))


# ---------------------------------------------------------------- the checksum is required
@pytest.fixture
def real_checkpoint(specs, tmp_path):
    tiny, _ = specs
    out = tmp_path / "run"
    r = train(tiny, out, "--epochs", "1")
    assert r.exit_code == 0, r.output
    return tiny, out / "last.pt"


def test_a_checkpoint_without_its_checksum_is_refused(real_checkpoint, tmp_path):
    tiny, last = real_checkpoint
    state = torch.load(last, weights_only=True)
    del state["checksum"]
    edited = tmp_path / "no_checksum.pt"
    torch.save(state, edited)
    r = invoke("evaluate", tiny, "--checkpoint", edited, "--device", "cpu")
    assert r.exit_code == 1, r.output
    assert f"{edited} has no checksum: it was not written by nnspec or is corrupt" in r.output
    with pytest.raises(UserError, match="has no checksum"):
        ckpt.load(edited)


def test_a_byte_flipped_in_the_checksums_key_name_is_refused(real_checkpoint, tmp_path):
    tiny, last = real_checkpoint
    data = last.read_bytes()
    at = data.index(b"checksum")
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(data[:at + 2] + bytes([data[at + 2] ^ 0x01]) + data[at + 3:])  # checksum -> chdcksum
    r = invoke("evaluate", tiny, "--checkpoint", flipped, "--device", "cpu")
    assert r.exit_code == 1, r.output
    assert "has no checksum" in r.output or "truncated or corrupt" in r.output, r.output
    assert invoke("evaluate", tiny, "--checkpoint", last, "--device", "cpu").exit_code == 0  # the original loads


def test_resume_falls_back_from_a_last_pt_without_checksum(specs, tmp_path):
    tiny, _ = specs
    out = tmp_path / "run"
    assert train(tiny, out).exit_code == 0  # epochs 1 and 2: last.prev.pt is epoch 1
    state = torch.load(out / "last.pt", weights_only=True)
    del state["checksum"]
    torch.save(state, out / "last.pt")
    r = train(tiny, out, "--resume", "--epochs", "3")
    assert r.exit_code == 0, r.output
    assert "has no checksum" in r.output and "last.prev.pt" in r.output and "after epoch 1" in r.output
