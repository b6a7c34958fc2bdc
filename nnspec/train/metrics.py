"""Metrics over a whole epoch's predictions, with scikit-learn's definitions (NumPy, no torch).

`probs` is what the model outputs as written (probabilities for softmax/sigmoid outputs), `y` the
labels as the data module makes them: class indices (or distributions) for multi-class, 0/1
floats shaped like the output for binary (every element counts: multi-label and per-pixel
outputs are flattened), targets for regression. Undefined values (AUC with one class present)
are NaN, as scikit-learn would raise or warn there; zero divisions are 0, as its default.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

LOWER_IS_BETTER = frozenset({"loss", "mse", "mae", "kl_divergence"})
NOT_SCORED = -100  # a class label that counts in no loss or metric (padding): PyTorch's ignore_index
PER_CLASS_IOU = "iou_class_"  # mean_iou also reports iou_class_0, iou_class_1, ... (one per class)


def metric_key(name: str, args: Mapping[str, Any]) -> str:
    """The column name in history.csv: the metric's name, `top_3_accuracy` for top_k_accuracy(k=3)."""
    if name == "top_k_accuracy":
        return f"top_{args.get('k', 5)}_accuracy"
    return name


def is_per_class(key: str) -> bool:
    """A per-class value (iou_class_2, val_iou_class_2): in metrics.json and evaluate's output, not
    a column of history.csv or a line of the epoch's progress."""
    return key.removeprefix("val_").startswith(PER_CLASS_IOU)


def higher_is_better(key: str) -> bool:
    base = key[4:] if key.startswith("val_") else key
    return base not in LOWER_IS_BETTER


def _classes_last(p: np.ndarray, axis: int) -> np.ndarray:
    """[N, C, ...] or [N, T, C] -> [M, C] rows of class scores."""
    p = np.moveaxis(p, axis, -1)
    return p.reshape(-1, p.shape[-1])


def _class_ids(y: np.ndarray, classes: int) -> np.ndarray:
    if y.dtype.kind == "f" and y.ndim >= 2 and y.shape[-1] == classes:  # distributions / one-hot
        return y.reshape(-1, classes).argmax(1)
    return y.reshape(-1).astype(np.int64)


def _one_hot(ids: np.ndarray, classes: int) -> np.ndarray:
    out = np.zeros((len(ids), classes), np.float64)
    out[np.arange(len(ids)), ids] = 1.0
    return out


def safe_div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def binary_counts(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    y, pred = y.astype(bool), pred.astype(bool)
    tp = int(np.sum(y & pred))
    fp = int(np.sum(~y & pred))
    fn = int(np.sum(y & ~pred))
    tn = int(np.sum(~y & ~pred))
    return tp, fp, fn, tn


def prf(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    tp, fp, fn, _ = binary_counts(y, pred)
    return prf_of_counts(tp, fp, fn)


def prf_of_counts(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from true-positive, false-positive and false-negative counts."""
    return safe_div(tp, tp + fp), safe_div(tp, tp + fn), safe_div(2 * tp, 2 * tp + fp + fn)


def macro_prf(ids: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Macro average over the labels present in y or in the predictions (scikit-learn's `labels`)."""
    labels = np.union1d(ids, pred)
    scores = np.array([prf(ids == c, pred == c) for c in labels])
    return tuple(float(v) for v in scores.mean(0))


def class_counts(ids: np.ndarray, pred: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class id: true positives, predictions and true labels (what the IoUs need)."""
    return (np.bincount(ids[ids == pred], minlength=classes), np.bincount(pred, minlength=classes),
            np.bincount(ids, minlength=classes))


def iou_of_counts(true_pos: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, float]:
    """(Jaccard index per class, 0 for a class neither in the labels nor predicted; their mean over
    the classes that are: scikit-learn's jaccard_score with average=None and 'macro')."""
    union = predicted + actual - true_pos
    per_class = np.where(union > 0, true_pos / np.maximum(union, 1), 0.0)
    present = union > 0
    return per_class, float(per_class[present].mean()) if present.any() else 0.0


def binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC: scikit-learn's roc_auc_score (ties count 1/2); NaN when one class is absent,
    where scikit-learn raises."""
    from sklearn.metrics import roc_auc_score

    y = y.astype(bool).reshape(-1)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, score.reshape(-1).astype(np.float64)))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    """Per-output R², averaged (scikit-learn's uniform_average, force_finite)."""
    y = y.reshape(len(y), -1).astype(np.float64)
    p = p.reshape(len(p), -1).astype(np.float64)
    return r2_of_sums(((y - p) ** 2).sum(0), ((y - y.mean(0)) ** 2).sum(0))


def r2_of_sums(ss_res: np.ndarray, ss_tot: np.ndarray) -> float:
    """R² per output from its residual and total sums of squares, averaged; a constant target
    scores 1 if predicted exactly, else 0 (scikit-learn's force_finite)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return float(scores.mean())


def compute(metrics: Sequence[tuple[str, Mapping[str, Any]]], probs: np.ndarray, y: np.ndarray, kind: str,
            class_axis: int = 1) -> dict[str, float]:
    """Every metric of the spec -> value, keyed by `metric_key`."""
    ctx = MetricContext(probs, y, kind, class_axis)
    values = {metric_key(name, args): float(METRIC_FUNCTIONS[name](ctx, **args)) for name, args in metrics}
    if any(name == "mean_iou" for name, _ in metrics):
        values.update(per_class_iou(iou_of_counts(*class_counts(ctx.ids, ctx.pred, ctx.classes))[0]))
    return values


def per_class_iou(per_class: np.ndarray) -> dict[str, float]:
    return {f"{PER_CLASS_IOU}{k}": float(v) for k, v in enumerate(per_class)}


class MetricContext:
    """The predictions seen the ways metrics need them, each computed once."""

    def __init__(self, probs: np.ndarray, y: np.ndarray, kind: str, class_axis: int):
        self.kind, self.probs, self.y = kind, probs.astype(np.float64), y
        if kind == "multiclass":
            self.scores = _classes_last(self.probs, class_axis)
            self.classes = self.scores.shape[1]
            self.ids = _class_ids(y, self.classes)
            scored = self.ids != NOT_SCORED  # padded positions count in no metric
            if not scored.all():
                self.scores, self.ids = self.scores[scored], self.ids[scored]  # (ids: distributions have none)
            self.pred = self.scores.argmax(1)
        elif kind == "binary":
            self.scores = self.probs.reshape(-1)
            self.ids = y.reshape(-1).astype(np.int64)
            self.pred = (self.scores >= 0.5).astype(np.int64)

    def targets(self) -> np.ndarray:
        """Labels in the output's form: one-hot rows for multi-class, as given otherwise."""
        if self.kind == "multiclass":
            if self.y.dtype.kind == "f" and self.y.ndim >= 2:
                return self.y.reshape(-1, self.classes).astype(np.float64)
            return _one_hot(self.ids, self.classes)
        return self.y.reshape(self.probs.shape).astype(np.float64)

    def outputs(self) -> np.ndarray:
        return self.scores if self.kind == "multiclass" else self.probs


def _accuracy(c: MetricContext) -> float:
    return float(np.mean(c.pred == c.ids))


def _top_k(c: MetricContext, k: int = 5) -> float:
    k = min(k, c.classes)
    top = np.argpartition(-c.scores, k - 1, axis=1)[:, :k]
    return float(np.mean((top == c.ids[:, None]).any(1)))


def _prf_at(index: int) -> Callable[[MetricContext], float]:
    def metric(c: MetricContext) -> float:
        if c.kind == "multiclass":
            return macro_prf(c.ids, c.pred)[index]
        return prf(c.ids, c.pred)[index]
    return metric


def _auc(c: MetricContext) -> float:
    return auc(c.kind, c.ids, c.scores)


def auc(kind: str, ids: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC, or for multi-class (scores [N, classes]) the one-vs-rest AUC averaged over
    the classes present (and absent somewhere): scikit-learn's roc_auc_score on the one-hot labels,
    which, unlike its multi_class="ovr", also takes scores that are not probabilities (logits)."""
    if kind == "binary":
        return binary_auc(ids, scores)
    from sklearn.metrics import roc_auc_score

    onehot = ids.reshape(-1, 1) == np.arange(scores.shape[1])
    defined = onehot.any(0) & ~onehot.all(0)
    if not defined.any():
        return float("nan")
    per_class = roc_auc_score(onehot[:, defined], scores[:, defined].astype(np.float64), average=None)
    return float(np.mean(per_class))


def _iou(c: MetricContext) -> float:
    tp, fp, fn, _ = binary_counts(c.ids, c.pred)
    return safe_div(tp, tp + fp + fn)


def _mean_iou(c: MetricContext) -> float:
    return iou_of_counts(*class_counts(c.ids, c.pred, c.classes))[1]


def _mse(c: MetricContext) -> float:
    return float(np.mean((c.targets() - c.outputs()) ** 2))


def _mae(c: MetricContext) -> float:
    return float(np.mean(np.abs(c.targets() - c.outputs())))


def _r2(c: MetricContext) -> float:
    return r2(c.targets(), c.outputs())


def _kl(c: MetricContext) -> float:
    """Mean over rows of sum y log(y / p), terms with y = 0 counting 0 (scipy.stats.entropy)."""
    return float(kl_terms(c.targets(), c.outputs()).sum(1).mean())


def kl_terms(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """y log(y / p) element by element, 0 where y = 0, with p clipped away from 0."""
    p = np.clip(p, 1e-12, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / p), 0.0)


METRIC_FUNCTIONS: dict[str, Callable[..., float]] = {
    "accuracy": _accuracy,
    "top_k_accuracy": _top_k,
    "precision": _prf_at(0),
    "recall": _prf_at(1),
    "f1": _prf_at(2),
    "auc": _auc,
    "iou": _iou,
    "mean_iou": _mean_iou,
    "mse": _mse,
    "mae": _mae,
    "r2": _r2,
    "kl_divergence": _kl,
}
