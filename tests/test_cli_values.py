"""Options that override a spec value are bounded by that value's catalog entry, and `--data`
is read by the spec's own grammar: each bad value is a usage error naming the option and the
bound, never a value that reaches torch or numpy (exit 70 before)."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
IRIS = str(ROOT / "specs" / "iris_mlp.nn")


@pytest.mark.parametrize("command, option, value, words", [
    ("train", "--seed", "4294967296", "out of range: it must be int (>= 0, <= 4294967295)"),
    ("train", "--seed", "-1", "out of range"),
    ("train", "--seed", "1.5", "is not a whole number"),
    ("train", "--lr", "nan", "'nan' is not a finite number"),
    ("train", "--lr", "inf", "'inf' is not a finite number"),
    ("train", "--lr", "0", "out of range: it must be float (> 0)"),
    ("train", "--epochs", "0", "out of range"),
    ("tune", "--seed", "99999999999999999999", "out of range"),
    ("tune", "--timeout", "nan", "not a finite number"),
    ("tune", "--epochs", "-3", "out of range"),
])
def test_a_bad_override_is_a_usage_error_naming_the_bound(command, option, value, words, tmp_path):
    result = CliRunner().invoke(main, [command, IRIS, option, value, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and words in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_data_logic_and_is_read_as_in_a_spec(tmp_path):
    """`and` is a keyword of Python, not of the spec's grammar: `--data logic.and` reaches the data
    loader, which says the table's shape does not fit this spec's input (exit 1, no traceback)."""
    result = CliRunner().invoke(main, ["train", IRIS, "--data", "logic.and", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "logic.and has 2 features per row" in result.output and "Traceback" not in result.output


def test_a_bad_data_option_is_located_exit_1(tmp_path):
    result = CliRunner().invoke(main, ["train", IRIS, "--data", "synthetic(n=0)", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "--data 'synthetic(n=0)', column 11: error[E108]" in result.output
