"""What `nnspec tune` leaves behind: a best.nn that carries the command line's overrides, so that
`nnspec train best.nn` trains exactly what the best trial trained; Optuna's own plots of the study."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

optuna = pytest.importorskip("optuna")

from nnspec import tune as tune_mod  # noqa: E402
from nnspec.cli import main  # noqa: E402
from nnspec.pipeline import check_text  # noqa: E402

SPEC = """model Tiny {
    input x: [6]
    layers {
        Dense(choice(4, 8)) -> relu
        Dense(2) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=loguniform(0.001, 0.1))
    metrics [accuracy]
    train { data synthetic(n=120, seed=2); epochs 40; batch_size int_range(8, 16); validation 0.25; seed 1 }
    search { trials 3; sampler random; seed 0 }
}
"""


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_best_nn_carries_the_epochs_flag_and_trains_the_best_trial_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.nn").write_text(SPEC)
    r = CliRunner().invoke(main, ["tune", "tiny.nn", "--epochs", "2", "--out", "study", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "Optuna's plots search.png, search_slice.png, search_importances.png" in r.output
    best = check_text((tmp_path / "study" / "best.nn").read_text(), "best.nn")
    assert best.ok and best.checked.train["epochs"] == 2  # not the spec's 40
    assert "--epochs 2 written as `epochs 2`" in best.source.splitlines()[0]
    number = int(best.source.split("(trial ")[1].split(")")[0])
    r = CliRunner().invoke(main, ["train", "study/best.nn", "--out", "again", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert _rows(tmp_path / "again" / "history.csv") == _rows(tmp_path / "study" / "trials" / f"{number:03d}" / "history.csv")
    for name in ("search.png", "search_slice.png", "search_importances.png"):
        assert (tmp_path / "study" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("train,expected", [
    ("train { data sklearn.iris; epochs 40 }", "train { data sklearn.iris; epochs 3 }"),
    ("train { data sklearn.iris }", "epochs 3"),
    ("", "train { epochs 3 }"),
])
def test_an_override_replaces_the_setting_or_is_added(train, expected):
    spec = ("model M {\n    input x: [4]\n    layers { Dense(3) -> softmax }\n    loss categorical_crossentropy\n"
            f"    optimizer Adam(lr=0.01)\n    {train}\n}}\n")
    text = tune_mod.with_train_settings(spec, {"epochs": 3}, "m.nn")
    result = check_text(text, "m.nn")
    assert result.ok, result.render()
    assert result.checked.train["epochs"] == 3 and expected in text


def test_optunas_plots_with_whole_trial_numbers_and_int_ranges(tmp_path, monkeypatch):
    result = check_text(SPEC, "tiny.nn")
    dims = tune_mod.search.dimensions(result.checked.spec, result.source)
    settings = tune_mod.settings_of(result)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_int("train.batch_size", 8, 16) / 16 + t.suggest_float("Adam.lr", 1e-3, 0.1, log=True)
                   + t.suggest_categorical("Dense.units", [4, 8]) / 8, n_trials=4)
    figures = {}
    monkeypatch.setattr(tune_mod, "_save_plot", lambda path, fig: figures.setdefault(path.name, fig))
    assert tune_mod.plot_search(tmp_path, study, dims, settings) == []
    assert set(figures) == {"search.png", "search_slice.png", "search_importances.png"}
    history = figures["search.png"].axes[0]
    assert history.get_xlabel() == "Trial" and all(float(t).is_integer() for t in history.get_xticks())
    batch = next(ax for ax in figures["search_slice.png"].axes if ax.get_xlabel() == "train.batch_size")
    assert all(float(t).is_integer() for t in batch.get_xticks())
    one = optuna.create_study()
    one.optimize(lambda t: t.suggest_float("Adam.lr", 1e-3, 0.1), n_trials=1)
    figures.clear()
    notes = tune_mod.plot_search(tmp_path, one, dims[:1], settings)
    assert "search_importances.png" not in figures and "more than one dimension and two finished trials" in notes[0]
