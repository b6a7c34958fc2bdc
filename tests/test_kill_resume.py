"""Kill -9 in the middle of `nnspec train`, then `--resume`: nothing is lost, nothing differs.

Each case runs the real command in a subprocess on a small spec with dropout (so the random
state matters too), kills it with SIGKILL at a chosen point, resumes it, and compares the final
weights (bit for bit) and the history (every value but the wall-clock seconds) with an
uninterrupted run of the same spec and seed, on the CPU with one thread.

- during an epoch: after the first epoch is reported, while the second runs;
- while a checkpoint is being written: NNSPEC_TEST_PAUSE_IN_SAVE makes the process stop with
  half of the new last.pt written to its temporary file; the kill lands there;
- a corrupted last.pt (one byte flipped): refused by its checksum with a message, and the run
  resumes from last.prev.pt (a truncated one, in process: tests/test_robustness.py).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

SPEC = """model KillMe {
    input x: [32]
    layers {
        Dense(64) -> relu -> Dropout(0.2)
        Dense(64) -> relu
        Dense(4) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.001)
    metrics [accuracy]
    train {
        data synthetic(n=10000, seed=1)
        epochs 3
        batch_size 32
        validation 0.2
        seed 7
    }
}
"""
EPOCHS = 3


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NNSPEC_TEST_PAUSE_IN_SAVE"}
    return dict(env, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)


def _cmd(spec: Path, out: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "nnspec", "train", str(spec), "--out", str(out), "--device", "cpu", *more]


class Training:
    """`nnspec train` in the background, its output read line by line as it comes."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"the run ended before printing {text!r}:\n{''.join(self.lines)}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"no {text!r} after {timeout}s:\n{''.join(self.lines)}")
            time.sleep(0.02)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output
    return output


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _assert_same_run(run: Path, reference: Path) -> None:
    got, want = _weights(run / "last.pt"), _weights(reference / "last.pt")
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), f"weights {name} differ from the uninterrupted run"
    assert _history(run) == _history(reference)
    assert len(_history(run)) == EPOCHS
    assert json.loads((run / "metrics.json").read_text())["finished"] is True


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "kill.nn"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def reference(spec: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    _run(_cmd(spec, out))
    return out


def test_killed_during_an_epoch_resumes_to_the_same_weights_and_history(spec: Path, reference: Path, tmp_path: Path):
    out = tmp_path / "run"
    run = Training(_cmd(spec, out), _env())
    run.wait_for(f"epoch=1/{EPOCHS}")
    time.sleep(0.2)  # well inside epoch 2, which takes seconds
    run.kill()
    report = json.loads((out / "metrics.json").read_text())
    assert report["finished"] is False and report["epochs"] < EPOCHS, "a killed run must not look finished"
    assert len(_history(out)) < EPOCHS
    said = _run(_cmd(spec, out, "--resume"))
    assert "resumed from" in said
    _assert_same_run(out, reference)


def test_killed_while_writing_a_checkpoint_resumes_to_the_same_result(spec: Path, reference: Path, tmp_path: Path):
    out = tmp_path / "run"
    run = Training(_cmd(spec, out), _env(NNSPEC_TEST_PAUSE_IN_SAVE="120"))
    run.wait_for("pausing in the middle of writing last.pt")  # epoch 2's last.pt, half written
    run.kill()
    stale = list(out.glob(".last.pt.*.tmp"))
    assert stale and stale[0].stat().st_size > 0, "the kill left a half-written temporary file"
    epoch_on_disk = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert epoch_on_disk == 1, "last.pt still holds the previous, complete checkpoint"
    _run(_cmd(spec, out, "--resume"))
    assert not list(out.glob(".*.tmp")), "the temporary file of the killed write is cleaned up"
    _assert_same_run(out, reference)


def test_a_corrupted_last_checkpoint_is_refused_and_the_previous_one_used(spec: Path, reference: Path,
                                                                          tmp_path: Path):
    out = tmp_path / "run"
    # A run stopped after epoch 2 (last.pt) with epoch 1 kept as last.prev.pt; last.pt is then
    # damaged, and resuming to 3 epochs must fall back to epoch 1 and still match the reference.
    _run(_cmd(spec, out, "--epochs", "2"))
    last = out / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF  # one flipped bit pattern inside the weights (truncation: test_robustness.py)
    last.write_bytes(bytes(data))

    refused = subprocess.run([sys.executable, "-m", "nnspec", "evaluate", str(spec), "--checkpoint", str(last)],
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "corrupt" in refused.stderr and str(last) in refused.stderr, refused.stderr

    said = _run(_cmd(spec, out, "--resume", "--epochs", str(EPOCHS)))
    assert "last.prev.pt" in said and "corrupt" in said, said
    assert (out / "last.pt.corrupt").is_file(), "the damaged file is kept aside, not deleted"
    _assert_same_run(out, reference)
