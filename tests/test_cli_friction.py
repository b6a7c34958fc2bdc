"""Issue 17 friction fixes of the command line: fmt on many files, one line per epoch when piped,
--log-format json, help texts that are not cut off, --emit a choice."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from nnspec.cli import main

ROOT = Path(__file__).resolve().parents[1]
FORMATTED = "model M {\n    input x: [2]\n    layers {\n        Dense(1)\n    }\n    loss mse\n}\n"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_fmt_check_takes_many_files_and_fails_if_any_is_unformatted(tmp_path):
    good, bad = tmp_path / "good.nn", tmp_path / "bad.nn"
    good.write_text(FORMATTED)
    bad.write_text(FORMATTED.replace("loss mse", "loss      mse"))
    assert invoke("fmt", "--check", good, good).exit_code == 0
    result = invoke("fmt", "--check", good, bad)
    assert result.exit_code == 1
    assert f"{bad}: would be reformatted" in result.output
    assert str(good) + ":" not in result.output


def test_fmt_write_rewrites_every_file(tmp_path):
    files = [tmp_path / f"{name}.nn" for name in "abc"]
    for f in files:
        f.write_text(FORMATTED.replace("loss mse", "loss   mse"))
    assert invoke("fmt", "--write", *files).exit_code == 0
    assert all(f.read_text() == FORMATTED for f in files)
    assert invoke("fmt", "--check", *files).exit_code == 0


def test_fmt_reports_a_broken_file_and_still_checks_the_others(tmp_path):
    broken, bad = tmp_path / "broken.nn", tmp_path / "bad.nn"
    broken.write_text("model M {\n    input x: [2\n}\n")
    bad.write_text(FORMATTED.replace("loss mse", "loss   mse"))
    result = invoke("fmt", "--check", broken, bad)
    assert result.exit_code == 1
    assert "broken.nn:3:1: error[E003]" in result.output and f"{bad}: would be reformatted" in result.output
    assert "Traceback" not in result.output


def test_fmt_prints_one_file_only(tmp_path):
    a = tmp_path / "a.nn"
    a.write_text(FORMATTED)
    assert invoke("fmt", a).output == FORMATTED
    result = invoke("fmt", a, a)
    assert result.exit_code == 2 and "--check or --write" in result.output
