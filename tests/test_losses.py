"""Losses against PyTorch's unfused functions, scikit-learn and the formulas written out."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error

from nnspec.backends.torch_model import build_model
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.train.losses import build_loss, fused_activation


def spec(layers: str, loss: str, shape: str = "[5]"):
    result = check_text(f"model L {{\n  input x: {shape}\n  layers {{ {layers} }}\n  loss {loss}\n}}\n")
    assert result.ok, result.render()
    return result.checked


def model_and_loss(layers, loss, shape="[5]", **kw):
    checked = spec(layers, loss, shape)
    torch.manual_seed(0)
    return checked, build_model(checked), build_loss(checked, **kw)


def _rows(probs: torch.Tensor) -> np.ndarray:
    p = probs.detach().double().numpy()
    return p / p.sum(1, keepdims=True)  # exactly 1 in float64, as scikit-learn checks


# ---------------------------------------------------------------- multiclass
def test_fused_cross_entropy_equals_softmax_then_nll():
    checked, model, loss = model_and_loss("Dense(4) -> softmax", "categorical_crossentropy")
    assert fused_activation(checked) == "softmax"
    x, y = torch.randn(16, 5) * 3, torch.randint(0, 4, (16,))
    probs = model(x)
    expected = F.nll_loss(torch.log(probs), y)
    torch.testing.assert_close(loss(model.forward_train(x), y), expected, rtol=1e-5, atol=1e-6)
    # scikit-learn's log loss on the same probabilities
    assert loss(model.forward_train(x), y).item() == pytest.approx(
        log_loss(y.numpy(), _rows(probs), labels=range(4)), rel=1e-5)


def test_cross_entropy_accepts_indices_and_one_hot_rows():
    _, model, loss = model_and_loss("Dense(4) -> softmax", "categorical_crossentropy")
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    logits = model.forward_train(x)
    torch.testing.assert_close(loss(logits, y), loss(logits, F.one_hot(y, 4).float()))
    torch.testing.assert_close(loss(logits, y), loss(logits, y[:, None]))  # a label column [N, 1]


def test_fused_cross_entropy_is_stable_where_probabilities_round_to_zero():
    checked = spec("Dense(3) -> softmax", "categorical_crossentropy")
    loss = build_loss(checked)
    logits = torch.tensor([[200.0, 0.0, -200.0]])
    value = loss(logits, torch.tensor([2]))
    assert torch.isfinite(value) and value.item() == pytest.approx(400.0)


def test_label_smoothing_formula():
    _, model, loss = model_and_loss("Dense(4) -> softmax", "categorical_crossentropy(label_smoothing=0.2)")
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    logp = torch.log(model(x))
    eps = 0.2
    expected = ((1 - eps) * -logp.gather(1, y[:, None]).squeeze(1) + eps * -logp.mean(1)).mean()
    torch.testing.assert_close(loss(model.forward_train(x), y), expected, rtol=1e-5, atol=1e-6)


def test_cross_entropy_on_logits_output_without_softmax():
    checked, model, loss = model_and_loss("Dense(3)", "cross_entropy")
    assert fused_activation(checked) is None
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    torch.testing.assert_close(loss(model.forward_train(x), y), F.cross_entropy(model(x), y))


def test_class_weights_match_sklearn_weighted_log_loss():
    w = torch.tensor([1.0, 3.0, 0.5])
    _, model, loss = model_and_loss("Dense(3) -> softmax", "categorical_crossentropy", class_weights=w)
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    probs = _rows(model(x))
    expected = log_loss(y.numpy(), probs, sample_weight=w[y].numpy(), labels=range(3))
    assert loss(model.forward_train(x), y).item() == pytest.approx(expected, rel=1e-5)


def test_per_step_cross_entropy_on_sequences():
    _, model, loss = model_and_loss("Dense(4) -> softmax", "categorical_crossentropy", shape="[6, 5]")
    x, y = torch.randn(3, 6, 5), torch.randint(0, 4, (3, 6))
    expected = F.nll_loss(torch.log(model(x)).reshape(-1, 4), y.reshape(-1))
    torch.testing.assert_close(loss(model.forward_train(x), y), expected, rtol=1e-5, atol=1e-6)


def test_kl_divergence_formula():
    _, model, loss = model_and_loss("Dense(4) -> softmax", "kl_divergence")
    x = torch.randn(8, 5)
    target = torch.softmax(torch.randn(8, 4), dim=1)
    target[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # 0 log 0 = 0
    p = model(x).detach().double().numpy()
    t = target.double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t > 0, t * np.log(t / p), 0.0)
    expected = terms.sum(1).mean()
    assert loss(model.forward_train(x), target).item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(loss(model.forward_train(x), target),
                               F.kl_div(torch.log(model(x)), target, reduction="batchmean"), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- binary
def test_fused_binary_crossentropy_equals_bce_on_probabilities():
    checked, model, loss = model_and_loss("Dense(1) -> sigmoid", "binary_crossentropy")
    assert fused_activation(checked) == "sigmoid"
    x, y = torch.randn(16, 5), torch.randint(0, 2, (16,)).float()
    expected = log_loss(y.numpy(), model(x).detach().double().numpy().ravel(), labels=[0, 1])
    assert loss(model.forward_train(x), y).item() == pytest.approx(expected, rel=1e-5)  # [N] labels for [N, 1]
    assert loss(model.forward_train(x), y[:, None]).item() == pytest.approx(expected, rel=1e-5)


def test_binary_class_weights_weight_each_element():
    w = torch.tensor([0.25, 4.0])
    _, model, loss = model_and_loss("Dense(1) -> sigmoid", "binary_crossentropy", class_weights=w)
    x, y = torch.randn(16, 5), torch.randint(0, 2, (16, 1)).float()
    p = model(x)
    expected = (-(y * torch.log(p) * w[1] + (1 - y) * torch.log(1 - p) * w[0])).mean()
    torch.testing.assert_close(loss(model.forward_train(x), y), expected, rtol=1e-5, atol=1e-6)


def test_focal_formula():
    gamma, alpha = 2.0, 0.25
    _, model, loss = model_and_loss("Dense(3) -> sigmoid", f"focal(gamma={gamma}, alpha={alpha})")
    x, y = torch.randn(10, 5), torch.randint(0, 2, (10, 3)).float()
    p = model(x).detach().double().numpy()
    t = y.double().numpy()
    p_t = np.where(t == 1, p, 1 - p)
    alpha_t = np.where(t == 1, alpha, 1 - alpha)
    expected = np.mean(-alpha_t * (1 - p_t) ** gamma * np.log(p_t))
    assert loss(model.forward_train(x), y).item() == pytest.approx(expected, rel=1e-5)


def test_focal_with_gamma_zero_and_half_alpha_is_half_bce():
    _, model, focal = model_and_loss("Dense(1) -> sigmoid", "focal(gamma=0.0, alpha=0.5)")
    bce = build_loss(spec("Dense(1) -> sigmoid", "binary_crossentropy"))
    x, y = torch.randn(10, 5), torch.randint(0, 2, (10, 1)).float()
    z = model.forward_train(x)
    torch.testing.assert_close(focal(z, y), 0.5 * bce(z, y))


def test_soft_iou_formula_per_sample():
    checked = spec("Conv2D(1, 1) -> sigmoid", "iou(smooth=1.0)", shape="[2, 4, 4]")
    torch.manual_seed(0)
    model, loss = build_model(checked), build_loss(checked)
    x, y = torch.randn(3, 2, 4, 4), torch.randint(0, 2, (3, 1, 4, 4)).float()
    p = model(x).detach().double().numpy().reshape(3, -1)
    t = y.double().numpy().reshape(3, -1)
    inter = (p * t).sum(1)
    union = p.sum(1) + t.sum(1) - inter
    expected = np.mean(1 - (inter + 1) / (union + 1))
    assert loss(model.forward_train(x), y).item() == pytest.approx(expected, rel=1e-5)


def test_weighted_sum_of_losses():
    checked = spec("Conv2D(1, 1) -> sigmoid", "0.5 * binary_crossentropy + 0.5 * iou", shape="[1, 4, 4]")
    torch.manual_seed(0)
    model, loss = build_model(checked), build_loss(checked)
    x, y = torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 1, 4, 4)).float()
    z = model.forward_train(x)
    bce = build_loss(spec("Conv2D(1, 1) -> sigmoid", "binary_crossentropy", shape="[1, 4, 4]"))
    iou = build_loss(spec("Conv2D(1, 1) -> sigmoid", "iou", shape="[1, 4, 4]"))
    torch.testing.assert_close(loss(z, y), 0.5 * bce(z, y) + 0.5 * iou(z, y))
    torch.testing.assert_close(bce(z, y), F.binary_cross_entropy(model(x), y), rtol=1e-5, atol=1e-6)


def test_step_output_trains_with_mse_unfused():
    checked, model, loss = model_and_loss("Dense(1) -> step", "mse", shape="[2]")
    assert fused_activation(checked) is None
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,)).float()
    out = model(x)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(loss(model.forward_train(x), y), ((out.squeeze(1) - y) ** 2).mean())


# ---------------------------------------------------------------- regression
@pytest.mark.parametrize("name, reference", [
    ("mse", lambda p, t: mean_squared_error(t, p)),
    ("mae", lambda p, t: mean_absolute_error(t, p)),
])
def test_regression_losses_match_sklearn(name, reference):
    _, model, loss = model_and_loss("Dense(2)", name)
    x, y = torch.randn(12, 5), torch.randn(12, 2)
    expected = reference(model(x).detach().double().numpy(), y.double().numpy())
    assert loss(model.forward_train(x), y).item() == pytest.approx(expected, rel=1e-5)


def test_huber_formula():
    delta = 0.7
    _, model, loss = model_and_loss("Dense(1)", f"huber(delta={delta})")
    x, y = torch.randn(12, 5), torch.randn(12) * 2  # [N] targets for an [N, 1] output
    err = np.abs(model(x).detach().double().numpy().ravel() - y.double().numpy())
    expected = np.mean(np.where(err <= delta, 0.5 * err ** 2, delta * (err - 0.5 * delta)))
    assert loss(model.forward_train(x), y).item() == pytest.approx(expected, rel=1e-5)


def test_cosine_similarity_formula():
    _, model, loss = model_and_loss("Dense(3)", "cosine_similarity")
    x, y = torch.randn(6, 5), torch.randn(6, 3)
    p, t = model(x).detach().double().numpy(), y.double().numpy()
    cos = (p * t).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1))
    assert loss(model.forward_train(x), y).item() == pytest.approx(np.mean(1 - cos), rel=1e-5)


def test_mse_on_a_softmax_output_reads_index_labels_as_one_hot():
    checked, model, loss = model_and_loss("Dense(3) -> softmax", "mse")
    assert fused_activation(checked) is None
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    torch.testing.assert_close(loss(model.forward_train(x), y), F.mse_loss(model(x), F.one_hot(y, 3).float()))


# ---------------------------------------------------------------- errors
def test_mismatched_labels_are_a_user_error():
    _, model, loss = model_and_loss("Dense(1) -> sigmoid", "binary_crossentropy")
    with pytest.raises(UserError, match="do not match"):
        loss(model.forward_train(torch.randn(4, 5)), torch.zeros(4, 3))
    _, model, loss = model_and_loss("Dense(3) -> softmax", "categorical_crossentropy")
    with pytest.raises(UserError, match="do not fit"):
        loss(model.forward_train(torch.randn(4, 5)), torch.zeros(4, 2))


def test_class_weights_on_a_regression_loss_are_refused():
    with pytest.raises(UserError, match="class_weights"):
        build_loss(spec("Dense(1)", "mse"), class_weights=torch.ones(2))


def test_gradient_of_fused_loss_is_finite_at_extreme_logits():
    loss = build_loss(spec("Dense(1) -> sigmoid", "0.5 * binary_crossentropy + 0.5 * focal"))
    z = torch.tensor([[80.0], [-80.0]], requires_grad=True)
    value = loss(z, torch.tensor([[0.0], [1.0]]))
    value.backward()
    assert math.isfinite(value.item()) and torch.isfinite(z.grad).all()


def test_loss_under_bfloat16_autocast_is_computed_in_float32():
    _, model, loss = model_and_loss("Dense(4) -> softmax", "categorical_crossentropy")
    x, y = torch.randn(16, 5), torch.randint(0, 4, (16,))
    reference = loss(model.forward_train(x), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model.forward_train(x)
        value = loss(z, y)
    assert z.dtype == torch.bfloat16 and value.dtype == torch.float32
    torch.testing.assert_close(value, reference, rtol=2e-2, atol=2e-2)
