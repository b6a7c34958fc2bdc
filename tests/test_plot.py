"""`nnspec plot`: curves redrawn from history.csv as `nnspec train` writes it; clear errors."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec.cli import main
from nnspec.plot import figure, read_history
from nnspec.train.run import write_history

KEYS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def _run(tmp_path: Path, name: str, epochs: int, scale: float) -> Path:
    run = tmp_path / "runs" / "IrisMLP" / name
    run.mkdir(parents=True)
    history = [{"epoch": e, "loss": scale / e, "accuracy": 1 - scale / (e + 1), "val_loss": scale / e + 0.1,
                "val_accuracy": 1 - scale / e, "lr": 0.05, "seconds": 0.01 * e} for e in range(1, epochs + 1)]
    write_history(run / "history.csv", history, KEYS)  # the trainer's own writer
    return run


def test_lines_hold_the_csv_values(tmp_path):
    a, b = _run(tmp_path, "1", 5, 1.0), _run(tmp_path, "2", 3, 0.5)
    fig = figure([read_history(a), read_history(b)])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy"]  # lr and seconds are not curves
    loss_ax = fig.axes[0]
    with open(b / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lines = {line.get_label(): line.get_xydata().tolist() for line in loss_ax.lines}
    assert lines["IrisMLP/2 validation"] == [[float(r["epoch"]), float(r["val_loss"])] for r in rows]
    assert lines["IrisMLP/2 train"] == [[float(r["epoch"]), float(r["loss"])] for r in rows]
    assert len(lines) == 4  # two runs x (train, validation)
    styles = {line.get_label(): line.get_linestyle() for line in loss_ax.lines}
    assert styles["IrisMLP/1 train"] == "-" and styles["IrisMLP/1 validation"] == "--"


def test_cli_writes_curves_png_here_never_over_the_runs_and_compares_runs(tmp_path, monkeypatch):
    a, b = _run(tmp_path, "1", 4, 1.0), _run(tmp_path, "2", 4, 0.7)
    (a / "curves.png").write_bytes(b"the run's own figure")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["plot", str(a)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (a / "curves.png").read_bytes() == b"the run's own figure"  # the default is ./curves.png
    result = CliRunner().invoke(main, ["plot", str(a), str(b)])
    assert result.exit_code == 0 and "replaced the figure that was there" in result.output
    result = CliRunner().invoke(main, ["plot", str(a), "-o", str(a / "curves.png")])  # only when asked
    assert result.exit_code == 0 and (a / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = CliRunner().invoke(main, ["plot", str(a), str(b), "-o", str(tmp_path / "cmp.svg")])
    assert result.exit_code == 0 and (tmp_path / "cmp.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("content,expected", [
    (None, "has no history.csv"),
    ("", "no 'epoch' or 'loss' column"),
    ("step,value\n1,2\n", "no 'epoch' or 'loss' column (received columns: step, value)"),
    ("epoch,loss\n1,0.5\n2,abc\n", "history.csv:3: column 'loss' holds 'abc', which is not a number"),
    ("epoch,loss\n1,0.5,7\n", "history.csv:2: more values than the 2 columns"),
    ("epoch,loss\n", "has a header but no epochs yet"),
])
def test_missing_or_malformed_history_is_a_clear_error(tmp_path, content, expected):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "history.csv").write_text(content)
    result = CliRunner().invoke(main, ["plot", str(run)])
    assert result.exit_code == 1
    assert expected in result.output and "Traceback" not in result.output


def test_a_missing_run_folder_is_named(tmp_path):
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "no such run folder" in result.output


def test_empty_cells_are_gaps_not_errors(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "history.csv").write_text("epoch,loss,val_loss,lr,seconds\n1,0.9,,0.1,1\n2,0.5,0.6,0.1,1\n")
    h = read_history(run)
    assert h.series("val_loss") == ([2.0], [0.6]) and h.series("loss") == ([1.0, 2.0], [0.9, 0.5])


def test_panels_in_a_grid_with_whole_epochs_and_the_best_epoch_marked(tmp_path):
    # the figure nnspec train writes (run.write_curves) is plot.figure's: six quantities, 3 x 2 panels
    from PIL import Image

    from nnspec.plot import History
    from nnspec.train.run import write_curves

    names = ["loss", "accuracy", "precision", "recall", "f1", "auc"]
    history = [{"epoch": e, **{k: 1.0 / e for k in names}, **{f"val_{k}": 1.1 / e for k in names},
                "lr": 0.1, "seconds": 0.5} for e in range(1, 4)]
    write_curves(tmp_path / "curves.png", history, "M", best_epoch=2)
    width, height = Image.open(tmp_path / "curves.png").size
    assert (width, height) == (1320, 660)  # 3 x 2 panels of 440 x 330, not one row of six (2520 x 340)
    fig = figure([History("M", tuple(history[0]), tuple(history), best_epoch=2)])
    assert [ax.get_title() for ax in fig.axes] == names
    assert {ax.get_subplotspec().rowspan.start for ax in fig.axes} == {0, 1}
    for ax in fig.axes:
        best = [line for line in ax.lines if line.get_label() == "best epoch 2"]
        assert len(best) == 1 and list(best[0].get_xdata()) == [2, 2]
        assert all(float(t).is_integer() for t in ax.get_xticks())  # no epoch 1.5


def test_the_best_epoch_comes_from_the_runs_metrics_json(tmp_path):
    run = _run(tmp_path, "1", 5, 1.0)
    (run / "metrics.json").write_text('{"best_epoch": 4, "monitor": "val_loss"}')
    assert read_history(run).best_epoch == 4
    (run / "metrics.json").write_text("not json")
    assert read_history(run).best_epoch is None
