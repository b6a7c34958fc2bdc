"""nnspec's metrics agree with scikit-learn (and scipy) on random predictions."""
import numpy as np
import pytest
from scipy.stats import entropy
from sklearn import metrics as skm

from nnspec.train.metrics import compute

SEEDS = range(5)


def _multiclass(seed, n=200, c=5):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, rng.integers(0, c, n)


def _binary(seed, n=300):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 1))
    y = (rng.random((n, 1)) < 0.4 + 0.3 * probs).astype(np.float32)
    return probs, y


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_metrics_match_sklearn(seed):
    probs, y = _multiclass(seed)
    got = compute([("accuracy", {}), ("top_k_accuracy", {"k": 3}), ("precision", {}), ("recall", {}), ("f1", {}),
                   ("auc", {}), ("mse", {}), ("mae", {}), ("kl_divergence", {})], probs, y, "multiclass")
    pred = probs.argmax(1)
    onehot = np.eye(5)[y]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["top_3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=3))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert got["mse"] == pytest.approx(skm.mean_squared_error(onehot, probs))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(onehot, probs))
    assert got["kl_divergence"] == pytest.approx(np.mean([entropy(o, p) for o, p in zip(onehot, probs)]))


def test_multiclass_macro_counts_classes_never_predicted():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 0, 0, 1, 1, 1]]
    got = compute([("precision", {}), ("recall", {}), ("f1", {})], probs, y, "multiclass")
    pred = probs.argmax(1)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_metrics_match_sklearn(seed):
    probs, y = _binary(seed)
    got = compute([("accuracy", {}), ("precision", {}), ("recall", {}), ("f1", {}), ("auc", {}), ("iou", {}),
                   ("mse", {})], probs, y, "binary")
    yt, pred = y.ravel(), (probs.ravel() >= 0.5)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(yt, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(yt, pred, zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(yt, pred, zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(yt, pred, zero_division=0))
    assert got["auc"] == pytest.approx(skm.roc_auc_score(yt, probs.ravel()))
    assert got["iou"] == pytest.approx(skm.jaccard_score(yt, pred))
    assert got["mse"] == pytest.approx(skm.mean_squared_error(yt, probs.ravel()))


def test_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(1)
    probs = rng.integers(0, 4, (100, 1)) / 4.0  # many ties
    y = rng.integers(0, 2, (100, 1)).astype(np.float32)
    assert compute([("auc", {})], probs, y, "binary")["auc"] == pytest.approx(skm.roc_auc_score(y.ravel(), probs.ravel()))


def test_per_pixel_binary_metrics_flatten_every_element():
    rng = np.random.default_rng(2)
    probs = rng.random((4, 1, 8, 8))
    y = (rng.random((4, 1, 8, 8)) < probs).astype(np.float32)
    got = compute([("iou", {}), ("accuracy", {})], probs, y, "binary")
    assert got["iou"] == pytest.approx(skm.jaccard_score(y.ravel(), probs.ravel() >= 0.5))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y.ravel(), probs.ravel() >= 0.5))


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_match_sklearn(outputs):
    rng = np.random.default_rng(outputs)
    y = rng.standard_normal((150, outputs)).astype(np.float32)
    p = y + 0.5 * rng.standard_normal((150, outputs))
    got = compute([("mse", {}), ("mae", {}), ("r2", {})], p, y, "regression")
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert got["r2"] == pytest.approx(skm.r2_score(y, p))


def test_auc_of_a_single_class_is_undefined():
    assert np.isnan(compute([("auc", {})], np.array([[0.2], [0.7]]), np.ones((2, 1)), "binary")["auc"])


def test_multiclass_auc_of_logits_with_a_class_absent_is_sklearns_one_vs_rest():
    # logits (not probabilities, which multi_class="ovr" requires) and class 3 never the label:
    # the mean of scikit-learn's per-class AUCs over the classes present
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(300, 4))
    y = rng.integers(0, 3, 300)
    expected = np.mean([skm.roc_auc_score(y == k, logits[:, k]) for k in range(3)])
    assert compute([("auc", {})], logits, y, "multiclass")["auc"] == pytest.approx(expected, abs=1e-12)
