"""Dense multi-class targets: a class per pixel (segmentation) or per step (tagging), and the rule
that the output activation decides the task of mse/mae. References: PyTorch's cross_entropy,
scikit-learn's metrics on the flattened positions, hand-written masked cross-entropy."""
import math
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
import torch.nn.functional as F

from nnspec.diagnostics import UserError
from nnspec.pipeline import check_file, check_text
from nnspec.train import dense_labels as dense
from nnspec.train.data import Expect, load_arrays, load_data
from nnspec.train.losses import build_loss
from nnspec.train.metrics import NOT_SCORED, compute
from nnspec.train.run import evaluate_spec, predict_spec, train_spec
from nnspec.train.streaming import MetricStream

torch.set_num_threads(1)
SPECS = Path(__file__).resolve().parent.parent / "specs"

SEGMENT = """model Seg {
    input image: [1, 8, 8]
    layers {
        Conv2D(8, 3, padding=same) -> relu
        Conv2D(3, 1) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    metrics [accuracy, f1, mean_iou]
}
"""

TAGGER = """model Tag {
    input tokens: int[?]
    layers {
        Embedding(vocab=20, dim=8, padding_idx=0)
        GRU(8, return_sequences=true)
        Dense(4) -> softmax
    }
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    metrics [accuracy, precision, recall, f1, mean_iou]
}
"""


def checked_of(text: str):
    result = check_text(text, "t.nn")
    assert result.ok, result.diagnostics
    return result.checked


def save_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def tokens_with_padding(rng, n: int, steps: int, vocab: int = 20) -> np.ndarray:
    x = rng.integers(1, vocab, size=(n, steps))
    lengths = rng.integers(2, steps + 1, size=n)
    x[np.arange(steps)[None, :] >= lengths[:, None]] = 0
    return x


# ------------------------------------------------------------------ labels


def test_per_pixel_ids_and_one_hot_labels_read_the_same(tmp_path):
    checked = checked_of(SEGMENT)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 1, 8, 8)).astype(np.float32)
    ids = rng.integers(0, 3, size=(10, 8, 8))
    one_hot = np.moveaxis(np.eye(3, dtype=np.float32)[ids], -1, 1)  # [N, 3, 8, 8], channels first
    expect = Expect.of(checked)
    from_ids = load_arrays(("npz", {"path": str(save_npz(tmp_path / "a.npz", x=x, y=ids))}), expect, tmp_path)
    from_one_hot = load_arrays(("npz", {"path": str(save_npz(tmp_path / "b.npz", x=x, y=one_hot))}), expect, tmp_path)
    assert from_ids.y.dtype == np.int64 and from_ids.y.shape == (10, 8, 8)
    from_masks = load_arrays(("npz", {"path": str(save_npz(tmp_path / "c.npz", x=x, y=ids[:, None]))}), expect, tmp_path)
    np.testing.assert_array_equal(from_ids.y, ids)
    np.testing.assert_array_equal(from_one_hot.y, ids)
    np.testing.assert_array_equal(from_masks.y, ids)  # [N, 1, H, W]: a mask image of class ids


def test_per_step_one_hot_labels_are_features_last_and_all_zero_is_not_scored(tmp_path):
    checked = checked_of(TAGGER.replace(", padding_idx=0", ""))
    ids = np.array([[1, 2, 3], [0, 1, 2]])
    one_hot = np.eye(4, dtype=np.float32)[ids]  # [N, T, 4]
    one_hot[1, 2] = 0  # not scored
    x = np.ones((2, 3), np.int64)
    arrays = load_arrays(("npz", {"path": str(save_npz(tmp_path / "t.npz", x=x, y=one_hot))}), Expect.of(checked),
                         tmp_path)
    np.testing.assert_array_equal(arrays.y, [[1, 2, 3], [0, 1, NOT_SCORED]])


@pytest.mark.parametrize("y, words", [
    (np.zeros((4, 7, 8), np.int64), ["labels of shape [7, 8] per sample", "[8, 8]", "[3, 8, 8]"]),
    (np.full((4, 8, 8), 3), ["class label above 2", "index 0"]),
    (np.full((4, 8, 8), 0.5), ["fractional label"]),
    (np.full((4, 8, 8), -2), ["negative label", "-100"]),
    (np.full((4, 3, 8, 8), 0.5, np.float32), ["not one-hot", "probabilities per position are not supported"]),
    (np.array([["a"] * 8] * 8 * 4).reshape(4, 8, 8), ["hold text"]),
])
def test_bad_per_pixel_labels_say_what_was_expected_and_received(tmp_path, y, words):
    x = np.zeros((4, 1, 8, 8), np.float32)
    path = save_npz(tmp_path / "bad.npz", x=x, y=y)
    with pytest.raises(UserError) as err:
        load_arrays(("npz", {"path": str(path)}), Expect.of(checked_of(SEGMENT)), tmp_path)
    text = str(err.value) + (err.value.help or "")
    assert all(w in text for w in words), text


def test_one_label_per_sample_for_a_per_pixel_output_is_refused(tmp_path):
    with pytest.raises(UserError, match="one class per sample but the output .* has a class per position"):
        load_arrays(("npz", {"path": str(save_npz(tmp_path / "a.npz", x=np.zeros((4, 1, 8, 8)), y=np.zeros(4)))}),
                    Expect.of(checked_of(SEGMENT)), tmp_path)


def test_per_step_labels_must_be_as_long_as_the_input(tmp_path):
    x, y = np.ones((3, 5), np.int64), np.zeros((3, 4), np.int64)
    with pytest.raises(UserError, match="labels have 4 steps per sample but input 'tokens' has 5"):
        load_arrays(("npz", {"path": str(save_npz(tmp_path / "a.npz", x=x, y=y))}), Expect.of(checked_of(TAGGER)),
                    tmp_path)


def test_padding_tokens_are_labelled_not_scored(tmp_path):
    rng = np.random.default_rng(1)
    x = tokens_with_padding(rng, 30, 6)
    y = rng.integers(0, 4, size=x.shape)
    arrays = load_arrays(("npz", {"path": str(save_npz(tmp_path / "a.npz", x=x, y=y))}), Expect.of(checked_of(TAGGER)),
                         tmp_path)
    np.testing.assert_array_equal(arrays.y, np.where(x == 0, NOT_SCORED, y))


def test_synthetic_data_makes_per_position_labels():
    for text, rank in ((SEGMENT, 3), (TAGGER, 2)):  # [N, H, W] and [N, T]
        arrays = load_arrays(("synthetic", {"n": 40}), Expect.of(checked_of(text)), Path("."))
        assert arrays.y.dtype == np.int64 and arrays.y.shape[0] == 40 and arrays.y.ndim == rank
        scored = arrays.y[arrays.y != NOT_SCORED]
        assert set(np.unique(scored)) <= set(range(4)) and len(np.unique(scored)) >= 3
    tagged = load_arrays(("synthetic", {"n": 40}), Expect.of(checked_of(TAGGER)), Path("."))
    np.testing.assert_array_equal(tagged.y == NOT_SCORED, tagged.inputs[0] == 0)  # padding is not scored


# ------------------------------------------------------------------ loss


def test_per_pixel_loss_is_torch_cross_entropy_on_class_ids():
    checked = checked_of(SEGMENT)
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 8, 8)
    y = torch.randint(0, 3, (5, 8, 8))
    torch.testing.assert_close(build_loss(checked)(logits, y), F.cross_entropy(logits, y))


def test_masked_per_step_loss_equals_a_hand_written_masked_cross_entropy(tmp_path):
    """forward_train gives logits [N, T, C]; padding steps (label -100) count for nothing."""
    from nnspec.backends.torch_model import build_model

    checked = checked_of(TAGGER)
    rng = np.random.default_rng(2)
    x = tokens_with_padding(rng, 16, 7)
    y = rng.integers(0, 4, size=x.shape)
    data = load_data(checked, tmp_path / "t.nn", ("npz", {"path": str(save_npz(tmp_path / "a.npz", x=x, y=y))}),
                     validation=0.0)
    torch.manual_seed(0)
    model = build_model(checked)
    logits = model.forward_train(data.train.inputs[0])
    labels, tokens = data.train.y, data.train.inputs[0]
    keep = tokens != 0
    log_p = torch.log_softmax(logits, dim=-1)
    picked = log_p[keep].gather(1, labels[keep].unsqueeze(1)).squeeze(1)
    hand = -picked.sum() / keep.sum()
    torch.testing.assert_close(build_loss(checked)(logits, labels), hand)
    assert int((labels == NOT_SCORED).sum()) == int((~keep).sum()) > 0


@pytest.mark.parametrize("loss", ["mse", "kl_divergence"])
def test_other_losses_skip_positions_that_are_not_scored(loss):
    checked = checked_of(TAGGER.replace("categorical_crossentropy", loss).replace(
        "metrics [accuracy, precision, recall, f1, mean_iou]", "metrics [accuracy]"))
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4)
    y = torch.randint(0, 4, (3, 5))
    y[:, 3:] = NOT_SCORED
    got = build_loss(checked)(logits, y)
    kept_logits, kept_y = logits[:, :3], y[:, :3]
    torch.testing.assert_close(got, build_loss(checked)(kept_logits, kept_y))


# ------------------------------------------------------------------ metrics


def _sklearn_reference(probs: np.ndarray, y: np.ndarray, class_axis: int) -> dict:
    pred = probs.argmax(class_axis).reshape(-1)
    true = y.reshape(-1)
    keep = true != NOT_SCORED
    pred, true = pred[keep], true[keep]
    classes = probs.shape[class_axis]
    per_class = skm.jaccard_score(true, pred, labels=list(range(classes)), average=None, zero_division=0)
    return {"accuracy": skm.accuracy_score(true, pred), "f1": skm.f1_score(true, pred, average="macro"),
            "precision": skm.precision_score(true, pred, average="macro", zero_division=0),
            "recall": skm.recall_score(true, pred, average="macro", zero_division=0),
            "mean_iou": skm.jaccard_score(true, pred, average="macro"),
            **{f"iou_class_{k}": v for k, v in enumerate(per_class)}}


METRICS = [("accuracy", {}), ("precision", {}), ("recall", {}), ("f1", {}), ("mean_iou", {})]


@pytest.mark.parametrize("layout", ["pixels", "steps"])
def test_per_position_metrics_equal_sklearn_whole_and_streamed(layout):
    rng = np.random.default_rng(3)
    if layout == "pixels":  # [N, C, H, W], classes on axis 1
        probs, axis = rng.random((12, 4, 5, 6)), 1
        y = rng.integers(0, 4, size=(12, 5, 6))
    else:  # [N, T, C], classes on axis 2; some steps are padding
        probs, axis = rng.random((12, 9, 4)), 2
        y = rng.integers(0, 3, size=(12, 9))  # class 3 never labelled: predicted only
        y[:, 6:] = NOT_SCORED
    want = _sklearn_reference(probs, y, axis)
    whole = compute(METRICS, probs, y, "multiclass", axis)
    stream = MetricStream(METRICS, "multiclass", axis)
    for start in range(0, 12, 5):
        stream.add(probs[start:start + 5], y[start:start + 5])
    for got in (whole, stream.values()):
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key] == pytest.approx(value), key


def test_a_batch_of_padding_only_counts_for_nothing():
    stream = MetricStream(METRICS, "multiclass", 2)
    probs = np.random.default_rng(4).random((4, 3, 2))
    y = np.array([[0, 1, 1]] * 4)
    stream.add(probs[:2], np.full((2, 3), NOT_SCORED))
    stream.add(probs[2:], y[2:])
    assert stream.values() == pytest.approx(compute(METRICS, probs[2:], y[2:], "multiclass", 2))


# ------------------------------------------------------------------ predict and evaluate


@pytest.mark.slow
def test_predict_writes_a_class_per_step_and_leaves_padding_empty(tmp_path):
    checked = checked_of(TAGGER)
    rng = np.random.default_rng(5)
    x = tokens_with_padding(rng, 40, 6)
    y = np.where(x % 2 == 0, 1, 2)
    data = save_npz(tmp_path / "d.npz", x=x, y=y)
    spec = tmp_path / "tag.nn"
    spec.write_text(TAGGER.replace("metrics", f'train {{ data npz("{data.name}"); epochs 2; batch_size 8 }}\n'
                                              "    metrics"))
    result = check_file(spec)
    train_spec(result, out_dir=tmp_path / "run")
    header, rows = predict_spec(result, str(tmp_path / "run" / "last.pt"), str(data))
    assert header == [f"pred_{t}" for t in range(6)] and len(rows) == 40
    for tokens, row in zip(x, rows):
        assert all((cell == "") == (token == 0) for token, cell in zip(tokens, row))
        assert all(cell in range(4) for cell, token in zip(row, tokens) if token != 0)
    values = evaluate_spec(result, str(tmp_path / "run" / "last.pt"), data=f'npz("{data}")')
    predicted = np.array([[c if c != "" else -1 for c in row] for row in rows])
    keep = x != 0
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(y[keep], predicted[keep]))
    assert "iou_class_3" in values


def test_prediction_table_of_pixels_names_each_position_and_uses_class_names():
    probs = np.zeros((2, 3, 2, 2))
    probs[0, 2] = 1
    probs[1, 1, 0, 1] = 1
    header, rows = dense.prediction_table(probs, ["sky", "road", "car"])
    assert header == ["pred_0_0", "pred_0_1", "pred_1_0", "pred_1_1"]
    assert rows == [["car"] * 4, ["sky", "road", "sky", "sky"]]


# ------------------------------------------------------------------ the output activation decides the task


@pytest.mark.parametrize("ending, loss, kind", [
    ("Dense(1) -> sigmoid", "mse", "binary"),
    ("Dense(1) -> step", "mse", "binary"),
    ("Dense(1) -> sigmoid", "mae", "binary"),
    ("Dense(3) -> softmax", "mse", "multiclass"),
    ("Dense(1)", "mse", "regression"),
    ("Dense(1) -> tanh", "huber", "regression"),
    ("Dense(1) -> scaled_tanh(0, 1)", "mse", "regression"),
])
def test_the_output_activation_decides_the_task_of_a_regression_loss(ending, loss, kind):
    result = check_text(f"model M {{\n    input x: [2]\n    layers {{\n        {ending}\n    }}\n    loss {loss}\n}}\n")
    assert result.ok and result.checked.task.kind == kind


@pytest.mark.slow
def test_a_sigmoid_neuron_trained_with_squared_error_reports_accuracy(tmp_path):
    spec = tmp_path / "neuron.nn"
    spec.write_text("model Neuron {\n    input x: [2]\n    layers {\n        Dense(1) -> sigmoid\n    }\n"
                    "    loss mse\n    optimizer Adam(lr=0.5)\n    metrics [accuracy, mse]\n"
                    "    train { data logic.or; epochs 20; batch_size 4 }\n}\n")
    result = check_file(spec)
    assert result.ok, result.diagnostics
    run = train_spec(result, out_dir=tmp_path / "run")
    assert run.final["accuracy"] == 1.0 and run.final["mse"] < 0.1


# ------------------------------------------------------------------ the example specs learn


@pytest.mark.slow
@pytest.mark.parametrize("name, chance", [("segment_classes.nn", 1 / 3), ("tagger_gru.nn", 1 / 4)])
def test_example_specs_learn_well_above_chance(tmp_path, name, chance):
    result = check_file(SPECS / name)
    run = train_spec(result, out_dir=tmp_path, data="synthetic(n=256, seed=1)", epochs=6)
    final = run.final
    assert math.isfinite(final["loss"]) and final["accuracy"] > chance + 0.25, final
    assert final["mean_iou"] > 0.3 and all(f"iou_class_{k}" in final for k in range(3))
