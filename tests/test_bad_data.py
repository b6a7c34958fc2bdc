"""Bad data files: each one is a clear error (exit 1, no traceback) that names the file, the column
or array, and what was expected -- and leaves nothing behind that looks like a finished run.

The files are in tests/bad_data/ (the .npz ones are written by tests/bad_data/make_npz.py). Each
is fed to the spec tests/bad_data/tabular.nn (input features: [4], 3 classes) through a copy of
the spec whose `data` names the file, and trained with the real `nnspec train` command (in
process through click; one case also as a separate process).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.cli import main

BAD = Path(__file__).parent / "bad_data"
SPEC = (BAD / "tabular.nn").read_text()

# file -> fragments the message must contain (besides the file's path), and the spec's validation.
# A message names a cell by its line and column number and says what is wrong with it, but never
# quotes the file (a spec may name any file: docs/security.md); NOT_QUOTED lists what must not appear.
CASES = {
    "missing_target.csv": ["no column named 'label'", "line 1, 5 columns"],
    "non_numeric.csv": [":4:", "column 2 holds text", "not a number"],
    "nan_feature.csv": [":5:", "column 3", "nan", "not a finite number"],
    "inf_feature.csv": [":3:", "column 3", "inf", "not a finite number"],
    "missing_label.csv": [":7:", "label column 'label' is empty"],
    "label_out_of_range.csv": [":6:", "class labels must be integers 0..2", "3 classes", "a class label above 2"],
    "negative_label.csv": [":2:", "class labels must be integers 0..2", "a negative label"],
    "fractional_label.csv": [":3:", "class labels must be integers 0..2", "a fractional label"],
    "four_text_classes.csv": ["4 classes", "output has 3"],
    "empty.csv": ["no data rows", "header line"],
    "header_only.csv": ["no data rows"],
    "ragged.csv": [":5:", "4 values", "header has 5 columns"],
    "wrong_delimiter.csv": ["no column named 'label'", "line 1, 1 column", "is the delimiter right?"],
    "wrong_keys.npz": ["no array 'y'", "features, labels"],
    "no_labels.npz": ["no array 'y'", "it has: x"],
    "wrong_shape.npz": ["input 'features' expects [4]", "received [5]"],
    "text_features.npz": ["input 'features' expects numbers"],
    "object_array.npz": ["not a readable .npz", "allow_pickle"],
    "length_mismatch.npz": ["9 labels", "[12] rows"],
    "zero_rows.npz": ["no rows", "array 'y' is empty"],
    "nan_features.npz": ["array 'x'", "nan", "(7, 2)", "not a finite number"],
    "label_out_of_range.npz": ["array 'y' at index 2", "a class label above 2", "3 classes"],
    "npy_not_npz.npz": ["single array (.npy)", "numpy.savez"],
    "not_a_zip.npz": ["not an .npz file", "zip archive"],
}


def _spec_for(data_file: Path, tmp_path: Path, validation: float = 0.0) -> Path:
    source = f'csv("{data_file}", target="label")' if data_file.suffix == ".csv" else f'npz("{data_file}")'
    text = SPEC.replace('csv("good.csv", target="label")', source).replace("validation 0.0", f"validation {validation}")
    spec = tmp_path / "spec.nn"
    spec.write_text(text)
    return spec


def _train(spec: Path, out: Path):
    return CliRunner().invoke(main, ["train", str(spec), "--out", str(out), "--device", "cpu", "-q"])


def _assert_no_finished_run(out: Path) -> None:
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not {"metrics.json", "best.pt", "last.pt", "history.csv"} & set(left), f"a failed run left {left}"


def test_the_good_file_trains_so_each_bad_one_fails_for_its_own_reason(tmp_path: Path):
    result = _train(_spec_for(BAD / "good.csv", tmp_path), tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_data_file_is_a_clear_error(name: str, tmp_path: Path):
    data_file = BAD / name
    out = tmp_path / "run"
    result = _train(_spec_for(data_file, tmp_path), out)
    message = result.output
    assert result.exit_code == 1, f"exit {result.exit_code}: {message}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in message and "internal error" not in message, message
    assert str(data_file) in message, f"the message names the file: {message}"
    for fragment in CASES[name]:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    _assert_quotes_nothing_of(data_file, message)
    _assert_no_finished_run(out)


def _assert_quotes_nothing_of(data_file: Path, message: str) -> None:
    """No header name the spec did not ask for (only 'label' is), and no cell, appears in the message."""
    if data_file.suffix != ".csv":
        return
    text = message.replace(str(data_file), "")
    for line in data_file.read_text().splitlines():
        for cell in line.replace(";", ",").split(","):
            cell = cell.strip()
            if len(cell) >= 3 and cell != "label" and not cell.replace(".", "").isdigit() and cell.lower() not in ("nan", "inf"):
                assert cell not in text, f"{cell!r} from {data_file.name} is quoted in: {message}"


def test_a_validation_split_that_leaves_no_training_rows_is_refused(tmp_path: Path):
    out = tmp_path / "run"
    result = _train(_spec_for(BAD / "one_row.csv", tmp_path, validation=0.5), out)
    assert result.exit_code == 1, result.output
    assert "leaves nothing to train on" in result.output and "1 rows" in result.output, result.output
    _assert_no_finished_run(out)


def test_data_paths_in_a_spec_are_relative_to_the_spec_file_and_reported(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # far from tests/bad_data, where good.csv is
    result = _train(BAD / "tabular.nn", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert str(BAD / "good.csv") in result.output, "the resolved data path is printed"


def test_a_bad_file_as_a_real_process_exits_1_with_the_message(tmp_path: Path):
    spec = _spec_for(BAD / "nan_feature.csv", tmp_path)
    proc = subprocess.run([sys.executable, "-m", "nnspec", "train", str(spec), "--out", str(tmp_path / "run"), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "nan_feature.csv:5: column 3 holds nan" in proc.stderr
    _assert_no_finished_run(tmp_path / "run")
