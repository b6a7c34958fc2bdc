"""Hostile sizes, damaged checkpoints, full and read-only disks, and what a spec cannot do.

- Scale: 10,000 layers and 200-deep nesting of blocks and brackets check; deeper nesting and
  absurd numbers are errors, never a RecursionError.
- Absurd sizes are caught by the checker (E307) with the memory they would need, also by
  `nnspec train`, before torch builds anything.
- Checkpoints: a truncated or tampered file is refused by its checksum; `--resume` falls back to
  last.prev.pt. A full disk or a read-only folder is a clear error and leaves last.pt intact
  (a real tiny tmpfs and a read-only mount where this machine allows mounting, else simulated).
- Security: no eval/exec/pickle of user content anywhere in nnspec; checkpoints load with
  weights_only=True; `--data` text is parsed, never evaluated; Netron binds 127.0.0.1.
"""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.cli import main
from nnspec.pipeline import check_text

ROOT = Path(__file__).resolve().parent.parent


def _errors(result) -> list:
    return [d for d in result.diagnostics if d.is_error]


# ---------------------------------------------------------------- scale
def test_a_10000_layer_spec_checks():
    body = "\n".join("        Dense(8)" if i % 2 == 0 else "        relu" for i in range(10_000))
    result = check_text("model Big {\n    input x: [8]\n    layers {\n" + body + "\n    }\n}\n")
    assert result.ok, result.render()[:2000]
    assert len(result.checked.graph.nodes) == 10_001


def test_200_deep_nesting_of_blocks_checks():
    depth = 200
    blocks = "".join(f"    block B{i}(n) {{\n        B{i + 1}(n) -> relu\n    }}\n" for i in range(depth))
    blocks += f"    block B{depth}(n) {{\n        Dense(n)\n    }}\n"
    result = check_text("model Deep {\n    input x: [4]\n" + blocks + "    layers {\n        B0(8)\n    }\n}\n")
    assert result.ok, result.render()[:2000]
    dense = [n for n in result.checked.graph.nodes if n.kind == "Dense"]
    assert len(dense) == 1 and dense[0].name.count(".") == depth + 1  # b0_1. ... .b200_1.dense_1
    assert dense[0].out.shape == (8,)


def test_200_deep_parentheses_and_signs_check():
    inner = "(" * 100 + "Dense(" + "(" * 100 + "-" * 21 + "3" + ")" * 100 + ")" + ")" * 100
    result = check_text("model Deep {\n    input x: [4]\n    layers {\n        x -> " + inner + "\n    }\n}\n")
    assert not [d for d in _errors(result) if d.code == "E004"], result.render()
    assert any(d.code == "E108" for d in _errors(result))  # 21 minus signs: -3 units, out of range


@pytest.mark.parametrize("text, code", [
    ("x -> " + "(" * 5000 + "Dense(2)" + ")" * 5000, "E004"),
    ("Dense(" + "[" * 3000 + "2" + "]" * 3000 + ")", "E004"),
    ("Dense(" + "-" * 5000 + "2)", "E004"),
    ("Dense(" + "9" * 5000 + ")", "E107"),
    ("Dense(1" + "0" * 400 + ")", "E107"),
    ("Dense(1e999)", "E107"),
])
def test_absurd_nesting_and_numbers_are_errors_not_crashes(text: str, code: str):
    result = check_text("model M {\n    input x: [4]\n    layers {\n        " + text + "\n    }\n}\n")
    assert any(d.code == code for d in _errors(result)), result.render()[:1000]
    assert all(len(d.message) < 400 for d in result.diagnostics), "no 5,000-digit messages"


def test_blocks_nested_deeper_than_the_limit_are_an_error():
    depth = 300
    blocks = "".join(f"    block B{i}(n) {{\n        B{i + 1}(n)\n    }}\n" for i in range(depth))
    blocks += f"    block B{depth}(n) {{\n        Dense(n)\n    }}\n"
    result = check_text("model Deep {\n    input x: [4]\n" + blocks + "    layers {\n        B0(8)\n    }\n}\n")
    assert [d.code for d in _errors(result)] == ["E004"], result.render()[:1000]


def test_an_rnn_with_10_to_the_12_stacked_layers_does_not_hang_the_checker():
    result = check_text("model R {\n    input x: [5, 4]\n    layers {\n        LSTM(8, layers=1000000000000)\n"
                        "    }\n}\n")
    assert any(d.code == "E307" for d in _errors(result)), result.render()


# ---------------------------------------------------------------- absurd sizes
ABSURD_DENSE = """model Huge {
    input x: [4]
    layers {
        Dense(1000000000000) -> relu
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam
}
"""

BILLION_INPUT = """model HugeInput {
    input image: [1, 31623, 31623]
    layers {
        GlobalAvgPool()
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam
    train {
        data synthetic(n=8)
        batch_size 32
    }
}
"""


def test_dense_of_10_to_the_12_is_e307_with_the_memory_it_would_need():
    errors = [d for d in _errors(check_text(ABSURD_DENSE)) if d.code == "E307"]
    said = " ".join(d.message for d in errors)
    assert "1,000,000,000,000 elements" in said and "3.6 TiB" in said, said  # 10^12 * 4 bytes
    assert "parameters" in said and "GiB" in said or "TiB" in said


def test_a_billion_element_input_is_e307_with_the_training_memory():
    errors = [d for d in _errors(check_text(BILLION_INPUT)) if d.code == "E307"]
    assert errors, "a 10^9-element input cannot be trained in batches of 32"
    said = errors[0].message
    # 31623^2 values per example, kept with their gradients (x2), 4 bytes, 32 per batch: >= 238 GiB
    assert "training one batch of 32" in said and "GiB" in said or "TiB" in said, said


def test_nnspec_train_refuses_an_absurd_spec_before_building_anything(tmp_path: Path):
    spec = tmp_path / "huge.nn"
    spec.write_text(BILLION_INPUT)
    result = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "E307" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists(), "nothing was started"


WIDE_HIDDEN = """model WideHidden {
    input x: [4]
    layers {
        Dense(10000000) -> relu
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam
    train {
        data synthetic(n=4096)
        batch_size 32
    }
}
"""


def test_nnspec_train_checks_the_memory_again_for_the_batch_size_given_on_the_command_line(tmp_path: Path):
    spec = tmp_path / "wide.nn"
    spec.write_text(WIDE_HIDDEN)
    assert check_text(WIDE_HIDDEN).ok, "batches of 32 fit (32 x 2 x 10^7 values x 8 bytes = 5 GB)"
    result = CliRunner().invoke(main, ["train", str(spec), "--batch-size", "2048", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "E307" in result.output and "training one batch of 2048" in result.output, result.output
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- checkpoints
torch = pytest.importorskip("torch")
from nnspec.diagnostics import UserError  # noqa: E402
from nnspec.train import checkpoint as ckpt  # noqa: E402


def _payload(value: float) -> dict:
    return {"model": {"w": torch.full((64, 64), value)}, "ir_hash": "abc", "epoch": int(value), "spec_name": "M"}


def test_a_truncated_checkpoint_is_refused_with_a_message(tmp_path: Path):
    path = tmp_path / "last.pt"
    ckpt.save(path, _payload(1.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        ckpt.load(path, "abc")


def test_a_tampered_checkpoint_fails_its_checksum(tmp_path: Path):
    path = tmp_path / "best.pt"
    ckpt.save(path, _payload(1.0))
    state = torch.load(path, weights_only=True)
    state["model"]["w"][3, 5] = 42.0  # a change torch itself cannot see: the file is well formed
    torch.save(state, path)
    with pytest.raises(UserError, match="does not match the checksum"):
        ckpt.load(path, "abc")


def test_resume_falls_back_to_the_previous_checkpoint(tmp_path: Path):
    ckpt.save(tmp_path / "last.pt", _payload(1.0))
    ckpt.save(tmp_path / "last.pt", _payload(2.0))  # epoch 1 is kept as last.prev.pt
    assert torch.load(tmp_path / "last.prev.pt", weights_only=True)["epoch"] == 1
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 broken")
    (tmp_path / ".last.pt.123.tmp").write_bytes(b"half")  # as left by a kill while writing
    state, notes = ckpt.load_for_resume(tmp_path, "abc", "M")
    assert state["epoch"] == 1 and "last.prev.pt" in notes[0]
    assert (tmp_path / "last.pt.corrupt").is_file() and not list(tmp_path.glob(".*.tmp"))
    assert ckpt.load(tmp_path / "last.pt", "abc")["epoch"] == 1  # the run folder is whole again


def test_a_full_disk_during_a_save_is_a_clear_error_and_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save(path, _payload(1.0))

    def disk_full(tmp, data, name):
        Path(tmp).write_bytes(data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_bytes", disk_full)
    with pytest.raises(UserError, match="the disk is full"):
        ckpt.save(path, _payload(2.0))
    assert ckpt.load(path, "abc")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


WIDE = """model Wide {
    input x: [64]
    layers {
        Dense(512) -> relu
        Dense(3) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam
    train {
        data synthetic(n=64)
        epochs 4
    }
}
"""


def test_nnspec_train_on_a_really_full_disk(tmp_path: Path):
    """A 1 MiB tmpfs holds last.pt and best.pt of epoch 1 (424 KiB each) but not epoch 2's."""
    disk = tmp_path / "tiny"
    if not _mount_tmpfs(disk, "size=1m"):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux); the simulated full disk test covers it")
    try:
        spec = tmp_path / "wide.nn"
        spec.write_text(WIDE)
        result = CliRunner().invoke(main, ["train", str(spec), "--out", str(disk / "run"), "--device", "cpu", "-q"])
        assert result.exit_code == 1, result.output
        assert "the disk is full" in result.output and "Traceback" not in result.output, result.output
        last = disk / "run" / "last.pt"
        assert ckpt.load(last)["epoch"] >= 1, "the last complete checkpoint is intact and verifies"
        assert not list((disk / "run").glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_nnspec_train_into_a_read_only_folder(tmp_path: Path):
    spec = tmp_path / "wide.nn"
    spec.write_text(WIDE)
    readonly = tmp_path / "ro"
    mounted = _mount_tmpfs(readonly, "ro,size=1m")
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root ignores chmod and this machine cannot mount a read-only tmpfs")
        readonly.mkdir(exist_ok=True)
        readonly.chmod(0o555)
    try:
        result = CliRunner().invoke(main, ["train", str(spec), "--out", str(readonly / "run"), "--device", "cpu"])
        assert result.exit_code == 1, result.output
        assert "cannot write" in result.output and "Traceback" not in result.output, result.output
        assert ("read-only" if mounted else "permission denied") in result.output
    finally:
        if mounted:
            subprocess.run(["umount", str(readonly)], capture_output=True)
        else:
            readonly.chmod(0o755)


def test_nnspec_train_with_a_file_where_the_output_folder_should_be(tmp_path: Path):
    spec = tmp_path / "wide.nn"
    spec.write_text(WIDE)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    result = CliRunner().invoke(main, ["train", str(spec), "--out", str(blocker / "run"), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert f"cannot write {blocker / 'run'}" in result.output and "is a file, not a folder" in result.output
    assert blocker.read_text() == "a file"


# ---------------------------------------------------------------- security
FORBIDDEN = [
    (r"(?<![\w.])eval\(", "eval"),
    (r"(?<![\w.])exec\(", "exec"),
    (r"\bpickle\.loads?\(|\bimport pickle\b|\bmarshal\b|\bshelve\b", "pickle"),
    (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
    (r"shell\s*=\s*True|os\.system\(|os\.popen\(", "a shell"),
    (r"\byaml\.load\(", "yaml.load"),
    (r"__import__\(|importlib\.import_module\(", "imports by name"),
]


# extras.require imports by name only the optional packages of its own fixed table (any other
# name is a ValueError, tested in test_extras.py): no user text reaches it.
ALLOWED = {("nnspec/extras.py", "imports by name")}


def test_no_code_path_evaluates_or_unpickles_user_content():
    found = []
    for path in sorted((ROOT / "nnspec").rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            for pattern, what in FORBIDDEN:
                if re.search(pattern, code) and (str(path.relative_to(ROOT)), what) not in ALLOWED:
                    found.append(f"{path.relative_to(ROOT)}:{lineno}: {what}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                found.append(f"{path.relative_to(ROOT)}:{lineno}: torch.load without weights_only=True")
    assert not found, "\n".join(found)


def test_a_data_option_that_looks_like_code_is_not_run(tmp_path: Path):
    sentinel = tmp_path / "pwned"
    spec = tmp_path / "wide.nn"
    spec.write_text(WIDE)
    for text in (f'__import__("os").system("touch {sentinel}")', f'csv(open("{sentinel}", "w"))',
                 f'synthetic(n=__import__("os").system("touch {sentinel}"))'):
        result = CliRunner().invoke(main, ["train", str(spec), "--data", text, "--out", str(tmp_path / "run")])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
    assert not sentinel.exists(), "the text was evaluated"


def test_strings_in_a_spec_are_data_only():
    sentinel = ROOT / "pwned_by_a_spec"
    text = f'''model M {{
    input x: [4]
    layers {{ Dense(3, activation="__import__('os').system('touch {sentinel}')") -> softmax }}
    loss categorical_crossentropy
    train {{ data csv("$(touch {sentinel})", target="`touch {sentinel}`") }}
}}
'''
    result = check_text(text)
    assert not result.ok and not sentinel.exists()


def test_netron_is_served_on_localhost_only(monkeypatch, tmp_path: Path):
    import types

    from nnspec.backends import onnx_export

    calls = {}
    fake = types.SimpleNamespace(serve=lambda path, data, address, browse: calls.setdefault("address", address),
                                 wait=lambda: None, stop=lambda address: None)
    monkeypatch.setitem(sys.modules, "netron", fake)
    monkeypatch.setattr(onnx_export, "export", lambda checked, source, path, **_: {})
    spec = tmp_path / "m.nn"
    spec.write_text(WIDE)
    from nnspec.pipeline import check_file

    onnx_export.serve_netron(check_file(spec), port=0, browse=False, out_dir=str(tmp_path), block=False)
    assert calls["address"][0] == "127.0.0.1"
