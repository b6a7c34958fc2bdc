"""The training loop's fast paths give what the general code gives.

- `Loss.for_labels`: the checks that hold for every batch of a split done once; a single
  categorical cross-entropy on [N, K] logits with class indices becomes PyTorch's own function.
  Its values are scikit-learn's log loss; in every other case the general loss (and its clear
  errors) is kept.
- The single-process epoch keeps each batch's output for the training metrics and pairs it with
  the rows the shuffled order took (order[:seen]): with the weights frozen (SGD with lr 0), the
  epoch's loss and metrics equal scikit-learn's on the model's predictions for those rows, for a
  whole epoch and for one cut short by `steps`; `on_batch` sees the samples done so far.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score

from nnspec.backends.torch_model import build_model
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.train import loop as L
from nnspec.train.data import Data, Split
from nnspec.train.losses import build_loss
from nnspec.train.optim import Schedule


def checked_spec(layers: str, loss: str, shape: str = "[5]", metrics: str = "[accuracy]"):
    result = check_text(f"model F {{\n  input x: {shape}\n  layers {{ {layers} }}\n  loss {loss}\n"
                        f"  optimizer SGD(lr=0.1)\n  metrics {metrics}\n}}\n")
    assert result.ok, result.render()
    return result.checked


def _probs(model, x) -> np.ndarray:
    p = model(x).detach().double().numpy()
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("smoothing, weights", [(0.0, None), (0.0, [1.0, 3.0, 0.5]), (0.1, [2.0, 1.0, 1.0])])
def test_specialised_cross_entropy_is_the_general_loss(smoothing, weights):
    checked = checked_spec("Dense(3) -> softmax", f"categorical_crossentropy(label_smoothing={smoothing})")
    w = torch.tensor(weights) if weights else None
    loss = build_loss(checked, w)
    torch.manual_seed(0)
    model = build_model(checked)
    x, y = torch.randn(40, 5) * 2, torch.randint(0, 3, (40,))
    fast = loss.for_labels(y)
    assert fast is not loss  # the direct path is taken
    logits = model.forward_train(x)
    assert torch.equal(fast(logits, y), loss(logits, y))  # bit for bit: the same call
    if smoothing == 0.0:  # scikit-learn's (weighted) log loss on the probabilities
        sample_weight = None if w is None else w[y].numpy()
        expected = log_loss(y.numpy(), _probs(model, x), sample_weight=sample_weight, labels=range(3))
        assert fast(logits, y).item() == pytest.approx(expected, rel=1e-5)


def test_other_labels_outputs_and_losses_keep_the_general_loss():
    ce = checked_spec("Dense(3) -> softmax", "categorical_crossentropy")
    loss = build_loss(ce)
    indices = torch.randint(0, 3, (10,))
    assert loss.for_labels(torch.eye(3)[indices]) is loss  # one-hot rows
    assert loss.for_labels(indices[:, None]) is loss  # a label column
    assert loss.for_labels(indices, float32=False) is loss  # autocast: logits in half precision
    per_step = build_loss(checked_spec("Dense(3) -> softmax", "categorical_crossentropy", shape="[6, 5]"))
    assert per_step.for_labels(torch.randint(0, 3, (10,))) is per_step  # [N, T, K] output
    mixed = build_loss(checked_spec("Dense(3) -> softmax", "0.5 * categorical_crossentropy + 0.5 * mse"))
    assert mixed.for_labels(indices) is mixed
    binary = build_loss(checked_spec("Dense(1) -> sigmoid", "binary_crossentropy"))
    assert binary.for_labels(torch.ones(10)) is binary
    # the general loss still explains labels that do not fit
    with pytest.raises(UserError, match="do not fit"):
        per_step.for_labels(indices)(torch.randn(2, 6, 3), torch.zeros(2, 5, dtype=torch.int64))


@pytest.mark.parametrize("steps", [None, 5])
def test_epoch_metrics_pair_outputs_with_the_shuffled_rows(steps):
    checked = checked_spec("Dense(4) -> softmax", "categorical_crossentropy",
                           metrics="[accuracy, top_k_accuracy(k=2)]")
    torch.manual_seed(0)
    model = build_model(checked)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # frozen weights: outputs are the model's
    x, y = torch.randn(200, 5) * 2, torch.randint(0, 4, (200,))
    data = Data(Split([x], y), None, "random")
    task = L.Task("multiclass", (("accuracy", {}), ("top_k_accuracy", {"k": 2})))
    cfg = L.FitConfig(epochs=1, batch_size=32, steps=steps, monitor="loss")
    seen: list[tuple[int, int]] = []
    progress = L.fit(model, build_loss(checked), optimizer, Schedule(optimizer, None, 0, 1, False), data, cfg, task,
                     torch.Generator().manual_seed(3), on_batch=lambda done, total: seen.append((done, total)))

    rows = torch.randperm(200, generator=torch.Generator().manual_seed(3))[:160 if steps else 200]
    assert seen == [(min(32 * (i + 1), 200), 200) for i in range(steps or 7)]
    assert progress.steps == (steps or 7)
    probs, labels = _probs(model, x[rows]), y[rows].numpy()
    row = progress.history[0]
    assert row["loss"] == pytest.approx(log_loss(labels, probs, labels=range(4)), rel=1e-5)
    assert row["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert row["top_2_accuracy"] == pytest.approx(top_k_accuracy_score(labels, probs, k=2, labels=range(4)))
