"""Issue 17 friction fixes of the command line: fmt on many files, one line per epoch when piped,
--log-format json, help texts that are not cut off, --emit a choice."""
from __future__ import annotations

from pathlib import Path

import pytest
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


IRIS = ROOT / "specs" / "iris_mlp.nn"


def _train(tmp_path, *extra):
    """A 3-epoch iris run into a folder whose path alone is longer than the old 160-column wrap."""
    out = tmp_path / ("a_long_folder_name_" * 9) / "run"
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    result = runner.invoke(main, [str(a) for a in ("train", IRIS, "--epochs", 3, "--out", out, *extra)])
    assert result.exit_code == 0, result.output
    return out, result


@pytest.mark.slow  # imports torch and trains
def test_piped_training_prints_one_unwrapped_key_value_line_per_epoch(tmp_path):
    out, result = _train(tmp_path)
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch=")]
    assert [line.split()[0] for line in epoch_lines] == ["epoch=1/3", "epoch=2/3", "epoch=3/3"]
    for line in epoch_lines:  # every value sits right after its key on the same line
        for key in ("loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "lr", "seconds"):
            assert f" {key}=" in line, (key, line)
    history = (out / "history.csv").read_text().splitlines()
    header, last = history[0].split(","), dict(zip(history[0].split(","), history[-1].split(",")))
    assert "val_accuracy" in header
    assert f"val_accuracy={float(last['val_accuracy']):.4g}" in epoch_lines[-1]
    assert any(str(out) in line for line in lines), "the run folder is printed whole on one line"
    assert not any(line.startswith(("_name_", "run/")) for line in lines), "nothing hard-wrapped"


def test_log_format_json_streams_one_object_per_epoch_on_stdout(tmp_path):
    import json

    out, result = _train(tmp_path, "--log-format", "json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # stdout holds nothing else
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(r["epochs"] == 3 for r in rows)
    history = (out / "history.csv").read_text().splitlines()
    for row, csv_line in zip(rows, history[1:]):
        csv_row = dict(zip(history[0].split(","), csv_line.split(",")))
        assert abs(row["val_loss"] - float(csv_row["val_loss"])) < 1e-6 * max(1.0, abs(row["val_loss"]))


def test_a_narrow_terminal_wraps_between_pairs_never_inside_one():
    from rich.console import Console

    from nnspec.train.cli_view import epoch_line

    row = {"epoch": 1, "loss": 0.4123, "accuracy": 0.91, "val_loss": 0.5, "val_accuracy": 0.875, "val_auc": 0.9321,
           "val_f1": 0.88, "lr": 0.001, "seconds": 0.52}
    console = Console(width=40, force_terminal=True, record=True, color_system=None)
    console.print(epoch_line(1, 10, row, 1234.0))
    printed = console.export_text().split()
    assert "val_auc=0.9321" in printed and "val_accuracy=0.875" in printed
    assert all("=" in word for word in printed)


def test_the_command_list_shows_every_summary_whole_and_each_command_has_examples():
    listing = invoke("--help").output.split("Commands:")[1]
    assert "…" not in listing and "..." not in listing
    assert "Keras-style table: layers, output shapes, parameter counts." in listing
    for name in main.commands:
        text = invoke(name, "--help").output
        assert "Examples:" in text and f"nnspec {name}" in text.split("Examples:")[1], name


def test_emit_is_a_choice_listed_in_help():
    text = invoke("compile", "--help").output
    assert "[json|onnx|python|torchscript|safetensors]" in text
    wrong = invoke("compile", ROOT / "specs" / "iris_mlp.nn", "--emit", "tflite")
    assert wrong.exit_code == 2 and "'tflite' is not one of" in wrong.output


def test_shell_completion_script_is_what_the_docs_say():
    import os
    import subprocess
    import sys

    env = dict(os.environ, _NNSPEC_COMPLETE="bash_source")
    script = subprocess.run([sys.executable, "-c", "from nnspec.cli import main; main(prog_name='nnspec')"],
                            env=env, capture_output=True, text=True, timeout=60).stdout
    assert "_nnspec_completion" in script and "complete -o nosort -F _nnspec_completion nnspec" in script
    docs = (ROOT / "docs" / "cli.md").read_text()
    assert 'eval "$(_NNSPEC_COMPLETE=bash_source nnspec)"' in docs


def test_viz_netron_says_serving_and_stopping_once(tmp_path, monkeypatch, capsys, caplog):
    import logging

    netron = pytest.importorskip("netron")
    from nnspec.backends import onnx_export

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not served to anyone")
    monkeypatch.setattr(netron, "wait", lambda: netron.stop())  # what Ctrl+C does inside netron.wait
    with caplog.at_level(logging.INFO):
        onnx_export.serve_netron(None, port=0, browse=False, make_file=lambda: model)
    out = capsys.readouterr().out
    said = out + "".join(r.getMessage() + "\n" for r in caplog.records)
    lines = [line.lower() for line in said.splitlines()]
    assert sum("serving" in line and "http" in line for line in lines) == 1, said
    assert sum(line.startswith("stopping") for line in lines) == 1, said


@pytest.mark.slow  # imports torch and trains
def test_a_100_column_terminal_shows_the_bar_and_never_splits_a_key_from_its_value(tmp_path, monkeypatch):
    import io
    import re

    from rich.console import Console

    import nnspec.cli as cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "_console", lambda stderr=False, silent=False: Console(
        file=screen, width=100, force_terminal=True, color_system=None, quiet=silent))
    result = invoke("train", IRIS, "--epochs", 2, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # cursor moves of the live bar
    words = text.split()
    assert "epoch=2/2" in words and any(w.startswith("val_accuracy=") and len(w) > 13 for w in words)
    assert not any(w.endswith("=") for w in words), "a key was split from its value"


def test_the_readme_walkthrough_says_what_nnspec_says(tmp_path, monkeypatch):
    import re

    readme = (ROOT / "README.md").read_text()
    walk = readme.split("## Your first spec")[1].split("\n## ")[0]
    spec = re.search(r"```\n(model Flowers \{.*?\n\})\n```", walk, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    Path("flowers.nn").write_text(spec + "\n")
    said = invoke("check", "flowers.nn")
    shown = re.search(r"\$ nnspec check flowers.nn\n(.*?)\n```", walk, re.S).group(1)
    assert said.exit_code == 1 and said.output.strip() == shown.strip()
    Path("flowers.nn").write_text(spec.replace("rellu", "relu").replace("learning_rate=", "lr=") + "\n")
    fixed = invoke("check", "flowers.nn")
    assert fixed.exit_code == 0 and fixed.output.strip() in walk
