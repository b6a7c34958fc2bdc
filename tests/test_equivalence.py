"""nnspec's model and loop give the same loss curve as a hand-written PyTorch model and loop.

The hand-written side uses only torch: nn.Sequential, F.cross_entropy, torch.optim, and the loop a
PyTorch user writes (shuffle with a seeded generator, index in-memory tensors, zero_grad, backward,
step). Both start from the same weights (copied parameter by parameter) and the same seed.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from torch import nn

from nnspec.backends.torch_model import build_model
from nnspec.pipeline import check_file
from nnspec.train.data import load_data
from nnspec.train.run import train_spec

torch.set_num_threads(1)  # tiny models; also makes the comparison independent of the thread count

SPECS = Path(__file__).resolve().parent.parent / "specs"


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    src, dst = list(source.parameters()), list(target.parameters())
    assert [p.shape for p in src] == [p.shape for p in dst]
    with torch.no_grad():
        for s, d in zip(src, dst):
            d.copy_(s)


def hand_loop(model, optimizer, x, y, epochs, batch, seed, x_val=None, y_val=None):
    """The textbook PyTorch loop; returns per-epoch (train loss, validation loss)."""
    torch.manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=order_gen)
        total = 0.0
        for start in range(0, len(x), batch):
            idx = perm[start:start + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        val = None
        if x_val is not None:
            model.eval()
            with torch.no_grad():
                val = F.cross_entropy(model(x_val), y_val).item()
        curve.append((total / len(x), val))
    return curve


def nnspec_initial_model(checked, seed):
    torch.manual_seed(seed)  # what train_spec does before building the model
    return build_model(checked)


def test_iris_mlp_matches_a_hand_written_model_and_loop(tmp_path):
    result = check_file(SPECS / "iris_mlp.nn")
    epochs = 20
    run = train_spec(result, out_dir=tmp_path, epochs=epochs)

    # The data, prepared independently: scikit-learn's split (stratified, seed 0), train-only scaling.
    x, y = load_iris(return_X_y=True)
    tr, va = train_test_split(np.arange(150), test_size=30, random_state=0, stratify=y)
    tr, va = np.sort(tr), np.sort(va)
    mean, std = x[tr].mean(0), x[tr].std(0)
    as_x = lambda rows: torch.tensor((x[rows] - mean) / std, dtype=torch.float32)
    as_y = lambda rows: torch.tensor(y[rows], dtype=torch.int64)

    hand = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    copy_weights(nnspec_initial_model(result.checked, 0), hand)
    optimizer = torch.optim.SGD(hand.parameters(), lr=0.05, momentum=0.9)
    curve = hand_loop(hand, optimizer, as_x(tr), as_y(tr), epochs, 16, 0, as_x(va), as_y(va))

    np.testing.assert_allclose([r["loss"] for r in run.history], [c[0] for c in curve], atol=1e-5)
    np.testing.assert_allclose([r["val_loss"] for r in run.history], [c[1] for c in curve], atol=1e-5)


@pytest.mark.parametrize("with_dropout", [False, True])
def test_mnist_convnet_matches_a_hand_written_model_and_loop(tmp_path, with_dropout):
    result = check_file(SPECS / "mnist_convnet.nn")
    if not with_dropout:
        from nnspec.pipeline import check_text

        result = check_text(result.source.replace("Dropout(0.5)", "Dropout(0.0)"), result.filename)
    data_source, epochs, batch = "synthetic(n=192, seed=1)", 2, 64
    run = train_spec(result, out_dir=tmp_path, epochs=epochs, batch_size=batch, data=data_source)

    data = load_data(result.checked, result.filename, data_source)
    hand = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5 if with_dropout else 0.0), nn.Linear(1600, 10))
    copy_weights(nnspec_initial_model(result.checked, 0), hand)
    optimizer = torch.optim.Adam(hand.parameters(), lr=0.001)
    curve = hand_loop(hand, optimizer, data.train.inputs[0], data.train.y, epochs, batch, 0)

    np.testing.assert_allclose([r["loss"] for r in run.history], [c[0] for c in curve], atol=1e-5)
