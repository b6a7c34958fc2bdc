"""Every spec in specs/ trains for one epoch (synthetic data where it names none, kept small)."""
import math
from pathlib import Path

import pytest
import torch

from nnspec.pipeline import check_file
from nnspec.train.run import train_spec

torch.set_num_threads(1)

SPECS = Path(__file__).resolve().parent.parent / "specs"
HEAVY = {"tiny_resnet.nn", "sentiment_lstm.nn", "tiny_transformer.nn", "digits_cnn.nn"}
ALL = sorted(p.name for p in SPECS.glob("*.nn"))


def small_data(result):
    """The spec's bundled data; synthetic data (64 rows) for specs that name none or a large one."""
    source = result.checked.train["data"]
    if source is None or source[0] == "synthetic":
        return "synthetic(n=64, seed=0)"
    return None


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ALL])
def test_every_spec_trains_one_epoch(tmp_path, name):
    result = check_file(SPECS / name)
    folds = result.checked.train["folds"]  # a cross-validated spec: its first fold
    run = train_spec(result, out_dir=tmp_path, epochs=1, data=small_data(result), defaults=True,
                     fold=(0, folds) if folds else None)
    losses = ("d_loss", "g_loss") if result.checked.networks else ("loss",)  # a GAN records both networks' losses
    assert len(run.history) == 1 and all(math.isfinite(run.history[0][k]) for k in losses)
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "curves.png").is_file()
