"""`nnspec fmt`: canonical layout, comments kept, idempotent, same spec IR; the command's exit codes.

Golden files (tests/golden/fmt/NAME.nn) hold the reviewed canonical text of specs/NAME.nn and
of tests/golden/fmt/*.input.nn; regenerate them with NNSPEC_UPDATE_GOLDEN=1 and review the diff.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.fmt import MAX_WIDTH, format_checked, format_text, spec_ir
from nnspec.parse import parse_text
from nnspec.pipeline import check_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
GOLDEN = ROOT / "tests" / "golden" / "fmt"
GOLDEN_SPECS = ["perceptron", "iris_mlp", "tiny_resnet", "tune_mlp", "sentiment_lstm", "forecast_gru"]
NNSPEC = [sys.executable, "-m", "nnspec"]


def comment_texts(text: str) -> list[str]:
    return [str(c).rstrip() for c in parse_text(text).comments]


def golden_case(source: Path, golden: Path) -> None:
    formatted = format_checked(source.read_text(encoding="utf-8"), str(source))
    if os.environ.get("NNSPEC_UPDATE_GOLDEN"):
        golden.write_text(formatted, encoding="utf-8")
    assert formatted == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", GOLDEN_SPECS)
def test_golden_examples(name):
    golden_case(ROOT / "specs" / f"{name}.nn", GOLDEN / f"{name}.nn")


def test_golden_messy_layout():
    """Odd spacing, `;`, multi-line calls, comments everywhere, blank-line runs."""
    golden_case(GOLDEN / "messy.input.nn", GOLDEN / "messy.nn")


@pytest.mark.parametrize("path", SPECS + sorted(GOLDEN.glob("*.input.nn")), ids=lambda p: p.stem)
def test_same_ir_idempotent_and_comments_kept(path):
    text = path.read_text(encoding="utf-8")
    once = format_checked(text, str(path))
    assert spec_ir(once) == spec_ir(text)
    assert format_text(once) == once
    assert comment_texts(once) == comment_texts(text)  # every comment, in the written order
    assert check_text(once).ok
    assert all(len(line) <= MAX_WIDTH for line in once.splitlines() if "#" not in line)


def test_numbers_keep_their_spelling():
    text = ("model N { input x: [3]\nlayers { Dense(2, l2=1e-4, l1=0.00010) -> scaled_tanh(-5, 3.50E+1) }\n"
            "loss mse; optimizer SGD(lr=1., momentum=.9) }\n")
    out = format_checked(text, "n.nn")
    for spelling in ("1e-4", "0.00010", "-5", "3.50E+1", "lr=1.", "momentum=.9"):
        assert spelling in out
    assert spec_ir(out) == spec_ir(text)


def test_trailing_and_full_line_comments_stay_beside_their_items():
    text = ("# top\nmodel C {\n  input x: [4]  # the input\n  layers {\n    # a hidden layer\n"
            "    Dense(8)->relu   # eight\n    Dense(1)\n  }\n  loss mse # plain\n}\n# end\n")
    lines = format_checked(text, "c.nn").splitlines()
    assert lines[0] == "# top"
    assert lines[2] == "    input x: [4]  # the input"
    assert lines[4:6] == ["        # a hidden layer", "        Dense(8) -> relu  # eight"]
    assert lines[-3:] == ["    loss mse  # plain", "}", "# end"]


def test_one_line_train_rule_and_long_chains_break_before_arrows():
    settings = "; ".join(f"seed {i}" for i in range(30))
    chain = " -> ".join(["Dense(64, activation=relu)"] * 8)
    text = f"model L {{ input x: [4]\nlayers {{\n{chain}\n}}\nloss mse\ntrain {{ epochs 2; batch_size 8 }}\n" \
           f"search {{ {settings} }}\n}}\n"
    out = format_text(text)
    assert "    train { epochs 2; batch_size 8 }" in out.splitlines()  # short: kept on one line
    assert "        seed 29" in out.splitlines()  # too long for one line: one setting a line
    lines = out.splitlines()
    start = lines.index("        Dense(64, activation=relu)")
    assert lines[start + 1: start + 8] == ["            -> Dense(64, activation=relu)"] * 7
    assert spec_ir(out) == spec_ir(text) and format_text(out) == out


def test_crlf_bom_and_tabs_are_normalized():
    text = "\ufeffmodel W {\r\n\tinput x: [2]\r\n\tlayers { Dense(1) }\t# w\r\n\tloss mse\r\n}\r\n"
    out = format_checked(text, "w.nn")
    assert out == "model W {\n    input x: [2]\n    layers {\n        Dense(1)\n    }  # w\n    loss mse\n}\n"


def run_fmt(*args, cwd=None):
    return subprocess.run(NNSPEC + ["fmt", *args], capture_output=True, text=True, cwd=cwd)


def test_command_print_check_and_write(tmp_path):
    source = (ROOT / "specs" / "iris_mlp.nn").read_text(encoding="utf-8")
    spec = tmp_path / "iris.nn"
    spec.write_text(source, encoding="utf-8")
    printed = run_fmt(str(spec))
    assert printed.returncode == 0 and printed.stdout == format_text(source)
    checked = run_fmt("--check", str(spec))
    assert checked.returncode == 1 and "-        data        sklearn.iris" in checked.stdout
    assert spec.read_text(encoding="utf-8") == source  # --check changes nothing
    written = run_fmt("--write", str(spec))
    assert written.returncode == 0 and spec.read_text(encoding="utf-8") == printed.stdout
    assert run_fmt("--check", str(spec)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iris.nn"]  # no temporary file left
    assert run_fmt("--check", "--write", str(spec)).returncode == 2


@pytest.mark.parametrize("content, code", [
    ("model X {\n  input x: [2]\n  layers { Dens(1) }\n  loss mse\n}\n", "E100"),
    ("model X {\n  input x: [2]\n  layers { Dense(1)\n", "E005"),
])
def test_invalid_spec_is_reported_and_never_touched(tmp_path, content, code):
    spec = tmp_path / "bad.nn"
    spec.write_text(content, encoding="utf-8")
    result = run_fmt("--write", str(spec))
    assert result.returncode == 1 and code in result.stderr and "Traceback" not in result.stderr
    assert spec.read_text(encoding="utf-8") == content


def test_missing_and_binary_files_are_errors_not_tracebacks(tmp_path):
    missing = run_fmt(str(tmp_path / "nope.nn"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    binary = tmp_path / "b.nn"
    binary.write_bytes(b"\x00\x01model")
    result = run_fmt(str(binary))
    assert result.returncode == 1 and "E001" in result.stderr and "Traceback" not in result.stderr


def test_fmt_never_imports_torch():
    code = ("import sys\nfrom nnspec.cli import main\n"
            f"try:\n    main(['fmt', {str(ROOT / 'specs' / 'tiny_resnet.nn')!r}])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("model TinyResNet {")
