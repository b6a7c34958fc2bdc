"""Every file nnspec writes for the user is written atomically (nnspec/fsutil.py), and a write
that fails is one clear line and exit 1, never an internal error (70), a 0-byte or half file, or
a damaged old file.

Failures are simulated in-process (tests run as root, where chmod does not stop writes): a full
disk is an ENOSPC when the written file is flushed (half of it on disk by then); a read-only or
unwritable folder is EROFS / EACCES when the temporary file is created. A missing folder is real.
Where this machine can mount (root on Linux), a real tiny tmpfs and a read-only one are used too.
"""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec import fsutil
from nnspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
OLD = b"the old content\n"

TINY = """model Tiny {
    input x: [4]
    layers {
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam
    train {
        data synthetic(n=32)
        epochs 1
    }
}
"""

TINY_TUNE = """model TinyTune {
    input x: [4]
    layers {
        Dense(choice(3, 4)) -> relu
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam
    train { data synthetic(n=32); epochs 1; validation 0.25 }
    search { trials 1; sampler random }
}
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def leftovers(folder: Path) -> list[str]:
    """Temporary or empty files a failed write must not leave."""
    return sorted(p.name for p in folder.rglob("*")
                  if p.is_file() and (p.name.endswith(".tmp") or p.stat().st_size == 0))


# ---------------------------------------------------------------- the commands and their outputs
def _history(run: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "history.csv").write_text("epoch,loss,lr,seconds\n1,1.0,0.1,0.1\n2,0.5,0.1,0.1\n")


def _fmt(tmp: Path):
    spec = tmp / "perceptron.nn"
    spec.write_bytes((SPECS / "perceptron.nn").read_bytes())  # not formatted: --write rewrites it
    return ["fmt", "--write", spec], spec


def _json(tmp: Path):
    return ["compile", SPECS / "iris_mlp.nn", "--emit", "json", "-o", tmp / "out" / "m.json"], tmp / "out" / "m.json"


def _python(tmp: Path):
    return ["compile", SPECS / "iris_mlp.nn", "--emit", "python", "-o", tmp / "out" / "m.py"], tmp / "out" / "m.py"


def _svg(tmp: Path):
    return ["viz", SPECS / "iris_mlp.nn", "-o", tmp / "out" / "m.svg"], tmp / "out" / "m.svg"


def _png(tmp: Path):
    return ["viz", SPECS / "iris_mlp.nn", "-o", tmp / "out" / "m.png"], tmp / "out" / "m.png"


def _dot(tmp: Path):
    return ["viz", SPECS / "iris_mlp.nn", "-o", tmp / "out" / "m.dot"], tmp / "out" / "m.dot"


def _plot(tmp: Path):
    _history(tmp / "run")
    return ["plot", tmp / "run", "-o", tmp / "out" / "curves.png"], tmp / "out" / "curves.png"


def _onnx(tmp: Path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return ["compile", SPECS / "iris_mlp.nn", "--emit", "onnx", "-o", tmp / "out" / "m.onnx"], tmp / "out" / "m.onnx"


def _tune(tmp: Path):
    pytest.importorskip("optuna")
    spec = tmp / "tiny_tune.nn"
    spec.write_text(TINY_TUNE)
    return ["tune", spec, "--out", tmp / "out", "--device", "cpu", "--quiet"], tmp / "out" / "progress.json"


def _train(tmp: Path):
    pytest.importorskip("torch")
    spec = tmp / "tiny.nn"
    spec.write_text(TINY)
    # the run's files are new; a file of the user's in the run folder must survive
    return ["train", spec, "--out", tmp / "out", "--device", "cpu", "-q"], tmp / "out" / "mine.txt"


def _uses_dot(make) -> bool:
    return make in (_svg, _png)


WRITERS = {"fmt --write": _fmt, "compile json": _json, "compile python": _python, "compile onnx": _onnx,
           "viz svg": _svg, "viz png": _png, "viz dot": _dot, "plot": _plot, "tune": _tune, "train": _train}
# the commands whose -o FILE must be in an existing folder (--out folders are made)
FILE_OPTIONS = ["compile json", "compile python", "compile onnx", "viz svg", "viz dot", "plot"]

FAILURES = {
    "ENOSPC": ("the disk is full", "free some space"),
    "EACCES": ("permission denied", "write to a folder you may write in"),
    "EROFS": ("the file system is read-only", "writable file system"),
}


def _simulate(monkeypatch, failure: str) -> None:
    if failure == "ENOSPC":  # the disk fills up while the file is written: half of it is on disk
        def full(tmp: str) -> None:
            size = os.path.getsize(tmp)
            with open(tmp, "r+b") as f:
                f.truncate(size // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(fsutil, "_fsync_file", full)
    else:  # the folder refuses new files
        code = getattr(errno, failure)

        def refuse(*args, **kwargs):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(fsutil, "tempfile", types.SimpleNamespace(mkstemp=refuse))


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_failed_write_is_exit_1_naming_the_file_and_leaves_the_old_file(tmp_path, monkeypatch, command, failure):
    make = WRITERS[command]
    if _uses_dot(make) and not shutil_which("dot"):
        pytest.skip("Graphviz's dot is not installed")
    args, target = make(tmp_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if command != "fmt --write":
        target.write_bytes(OLD)
    before = target.read_bytes()
    _simulate(monkeypatch, failure)
    result = invoke(*args)
    reason, hint = FAILURES[failure]
    assert result.exit_code == 1, result.output
    assert f"cannot write {target.parent}" in result.output and reason in result.output, result.output
    if command != "train":  # a run folder's hint is to choose another --out
        assert hint in result.output, result.output
    assert "internal error" not in result.output, result.output
    assert target.read_bytes() == before, "the old file is left as it was"
    assert leftovers(tmp_path) == [], "no temporary, 0-byte or half file is left"


@pytest.mark.parametrize("command", FILE_OPTIONS)
def test_an_output_file_in_a_missing_folder_is_exit_1_saying_to_create_it(tmp_path, command):
    make = WRITERS[command]
    args, target = make(tmp_path)
    assert not target.parent.exists()
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert f"cannot write {target}: the folder {target.parent} does not exist" in result.output, result.output
    assert f"create the folder first (mkdir -p {target.parent})" in result.output, result.output
    assert not target.parent.exists(), "nothing is created on the way"


def test_an_output_that_is_a_folder_is_exit_1(tmp_path):
    target = tmp_path / "m.svg"
    target.mkdir()
    result = invoke("viz", SPECS / "iris_mlp.nn", "-o", target)
    assert result.exit_code == 1, result.output
    assert f"cannot write {target}: it is a folder, not a file" in result.output


@pytest.mark.parametrize("command", ["compile json", "compile python", "viz svg", "viz dot", "plot", "fmt --write"])
def test_successful_writes_replace_the_old_file_and_leave_nothing_else(tmp_path, command):
    make = WRITERS[command]
    if _uses_dot(make) and not shutil_which("dot"):
        pytest.skip("Graphviz's dot is not installed")
    args, target = make(tmp_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if command != "fmt --write":
        target.write_bytes(OLD)
        target.chmod(0o640)
    mode = target.stat().st_mode & 0o777
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert target.read_bytes() != OLD and target.stat().st_size > 0
    assert target.stat().st_mode & 0o777 == mode, "the replaced file keeps its permissions"
    assert leftovers(tmp_path) == []


def test_graphviz_failing_leaves_no_file(tmp_path, monkeypatch):
    if not shutil_which("dot"):
        pytest.skip("Graphviz's dot is not installed")
    from nnspec.backends import dot

    target = tmp_path / "m.svg"
    with pytest.raises(Exception, match="dot failed"):
        dot.render("digraph { this is not DOT", target)
    assert not target.exists() and leftovers(tmp_path) == []


def test_fsutil_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = tmp_path / "f.txt"
    target.write_bytes(OLD)

    def half_then_crash(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("the writer crashed")

    with pytest.raises(RuntimeError):
        fsutil.atomic_write(target, half_then_crash)
    assert target.read_bytes() == OLD and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    fsutil.atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def shutil_which(name: str):
    import shutil

    return shutil.which(name)


# ---------------------------------------------------------------- real file systems (root on Linux)
def _mount(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk(tmp_path):
    disk = tmp_path / "tiny"
    if not _mount(disk, "size=8k"):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux); simulated above")
    try:
        (disk / "m.json").write_bytes(OLD)
        (disk / "filler").write_bytes(b"x" * 4096)  # what is left is less than the IR's JSON
        result = invoke("compile", SPECS / "iris_mlp.nn", "--emit", "json", "-o", disk / "m.json")
        assert result.exit_code == 1, result.output
        assert f"cannot write {disk / 'm.json'}: the disk is full" in result.output, result.output
        assert (disk / "m.json").read_bytes() == OLD
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "m.json"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_really_read_only_file_system(tmp_path):
    ro = tmp_path / "ro"
    if not _mount(ro, "ro,size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux); simulated above")
    try:
        for args in (["compile", SPECS / "iris_mlp.nn", "--emit", "python", "-o", ro / "m.py"],
                     ["viz", SPECS / "iris_mlp.nn", "-o", ro / "m.dot"]):
            result = invoke(*args)
            assert result.exit_code == 1, result.output
            assert "the file system is read-only" in result.output, result.output
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


# ---------------------------------------------------------------- viz --netron on a port in use
@pytest.fixture
def busy_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_netron_on_a_port_in_use_is_exit_1_naming_it(busy_port):
    pytest.importorskip("netron")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    result = invoke("viz", SPECS / "iris_mlp.nn", "--netron", "--port", busy_port, "--no-browser")
    assert result.exit_code == 1, result.output
    assert f"127.0.0.1:{busy_port}: the port is in use" in result.output, result.output
    assert "--port" in result.output and "internal error" not in result.output


def test_netron_on_the_default_port_in_use_takes_a_free_one(busy_port, tmp_path, monkeypatch):
    netron = pytest.importorskip("netron")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from nnspec.backends import onnx_export
    from nnspec.pipeline import check_file

    monkeypatch.setattr(onnx_export, "export", lambda checked, source, path, **_: Path(path).write_bytes(b"onnx"))
    address = onnx_export.serve_netron(check_file(SPECS / "iris_mlp.nn"), port=busy_port, browse=False,
                                       out_dir=str(tmp_path), block=False, port_given=False)
    try:
        assert address[0] == "127.0.0.1" and address[1] not in (0, busy_port)
    finally:
        netron.stop(address)
