"""Loss and metrics fed batch by batch, keeping only what the final values need.

`MetricStream.add(probs, y)` takes one batch of the model's outputs (as written: probabilities for
softmax/sigmoid outputs) and its labels, in the forms `metrics.compute` takes; `values()` gives
what `metrics.compute` gives on the whole arrays, to rounding (tests/test_streaming_eval.py). Each
batch is seen through `metrics._Context`, so the views (class ids, predictions, one-hot targets)
have one definition. What is kept:

- accuracy, top-k accuracy: hit counts; precision, recall, f1 (binary, or macro over the labels
  present for multi-class), iou, mean_iou: per-class true-positive, predicted and true counts
  (positions labelled metrics.NOT_SCORED, padding, are not counted);
- mse, mae: sums of squared / absolute errors; kl_divergence: the sum of its terms;
- r2: per output, the target count, mean and sum of squared deviations (merged batch to batch by
  Chan et al.'s parallel formula, in float64) and the residual sum of squares;
- auc: exact, so each sample's score(s) are kept as float32 (what the model outputs, so nothing is
  lost) with its label in one byte: 5 bytes per output value for binary, 4 per class + 1 (2 with
  more than 256 classes) per sample for multi-class. No other metric keeps anything per sample.

`EvalStream` adds the loss: the batch losses weighted by batch size, summed in float64.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import metrics as M


class _Welford:
    """Count, mean and sum of squared deviations per column, merged batch by batch (Chan et al.)."""

    def __init__(self):
        self.n, self.mean, self.m2, self.low, self.high = 0, None, None, None, None

    def add(self, x: np.ndarray) -> None:
        n = len(x)
        if n == 0:
            return
        mean = x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        low, high = x.min(0), x.max(0)
        if self.n == 0:
            self.n, self.mean, self.m2, self.low, self.high = n, mean, m2, low, high
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.n * n / total)
        self.low, self.high, self.n = np.minimum(self.low, low), np.maximum(self.high, high), total

    def squared_deviations(self) -> np.ndarray:
        # a constant column deviates by exactly 0, whatever rounding the merged means carry
        return np.where(self.low == self.high, 0.0, self.m2)


class MetricStream:
    """Every metric of the spec over batches; `values()` == `metrics.compute` on all the batches at once."""

    def __init__(self, metrics: Sequence[tuple[str, Mapping[str, Any]]], kind: str, class_axis: int = 1):
        self.metrics = [(name, dict(args)) for name, args in metrics]
        self.kind, self.class_axis = kind, class_axis
        names = {name for name, _ in self.metrics}
        self.want_errors = bool(names & {"mse", "mae"})
        self.want_r2, self.want_kl, self.want_auc = "r2" in names, "kl_divergence" in names, "auc" in names
        self.topk = sorted({int(a.get("k", 5)) for n, a in self.metrics if n == "top_k_accuracy"})
        self.classes = None  # the output's classes (multi-class), from the first batch
        self.count = 0  # labelled elements (rows of class scores, or output values for binary)
        self.hits = 0
        self.topk_hits = {k: 0 for k in self.topk}
        self.true_pos = self.predicted = self.actual = np.zeros(0, np.int64)  # per class id
        self.both_positive = self.predicted_positive = self.actual_positive = 0  # id != 0 as the positive class
        self.sq_err = self.abs_err = 0.0
        self.error_count = 0
        self.kl_sum, self.kl_rows = 0.0, 0
        self.r2_targets, self.r2_residual = _Welford(), None
        self.auc_scores: list[np.ndarray] = []
        self.auc_labels: list[np.ndarray] = []

    # ---------------------------------------------------------------- feeding

    def add(self, probs: np.ndarray, y: np.ndarray) -> None:
        if len(probs) == 0:
            return
        c = M.MetricContext(probs, y, self.kind, self.class_axis)
        self.classes = getattr(c, "classes", None)
        if self.kind in ("multiclass", "binary"):
            self._add_classes(c)
            if self.want_auc:
                self._keep_scores(c, probs)
        if self.want_errors or self.want_r2 or self.want_kl:
            self._add_errors(c.targets(), c.outputs())

    def _add_classes(self, c) -> None:
        ids, pred = c.ids, c.pred
        if len(ids) == 0:  # every position of the batch is padding
            return
        self.count += len(ids)
        self.hits += int(np.sum(pred == ids))
        for k in self.topk:
            k_ = min(k, c.classes)  # the definition metrics.py uses, on this batch's rows
            top = np.argpartition(-c.scores, k_ - 1, axis=1)[:, :k_]
            self.topk_hits[k] += int((top == ids[:, None]).any(1).sum())
        self.both_positive += int(np.sum((ids != 0) & (pred != 0)))
        self.predicted_positive += int(np.sum(pred != 0))
        self.actual_positive += int(np.sum(ids != 0))
        size = max(len(self.actual), int(ids.max()) + 1, int(pred.max()) + 1)
        self.true_pos = _grow(self.true_pos, size) + np.bincount(ids[ids == pred], minlength=size)
        self.predicted = _grow(self.predicted, size) + np.bincount(pred, minlength=size)
        self.actual = _grow(self.actual, size) + np.bincount(ids, minlength=size)

    def _keep_scores(self, c, probs: np.ndarray) -> None:
        exact = np.float32 if probs.dtype.itemsize <= 4 else np.float64  # float32 outputs lose nothing
        self.auc_scores.append(c.scores.astype(exact))
        if self.kind == "binary":
            self.auc_labels.append(c.ids.astype(bool))
        else:
            self.auc_labels.append(c.ids.astype(np.uint8 if c.classes <= 256 else np.int32))

    def _add_errors(self, targets: np.ndarray, outputs: np.ndarray) -> None:
        diff = targets - outputs
        if self.want_errors:
            self.sq_err += float((diff ** 2).sum())
            self.abs_err += float(np.abs(diff).sum())
            self.error_count += diff.size
        if self.want_r2:
            rows_t, rows_d = targets.reshape(len(targets), -1), diff.reshape(len(diff), -1)
            self.r2_targets.add(rows_t)
            residual = (rows_d ** 2).sum(0)
            self.r2_residual = residual if self.r2_residual is None else self.r2_residual + residual
        if self.want_kl:
            terms = M.kl_terms(targets, outputs)
            self.kl_sum += float(terms.sum())
            self.kl_rows += terms.size // terms.shape[1]  # metrics.py sums over axis 1, averages the rest

    # ---------------------------------------------------------------- results

    def values(self) -> dict[str, float]:
        values = {M.metric_key(name, args): float(self._value(name, args)) for name, args in self.metrics}
        if any(name == "mean_iou" for name, _ in self.metrics):
            values.update(M.per_class_iou(self._ious()[0]))
        return values

    def _ious(self) -> tuple[np.ndarray, float]:
        classes = max(len(self.actual), self.classes or 0)
        return M.iou_of_counts(_grow(self.true_pos, classes), _grow(self.predicted, classes),
                               _grow(self.actual, classes))

    def _value(self, name: str, args: dict) -> float:
        if name == "accuracy":
            return self.hits / self.count
        if name == "top_k_accuracy":
            return self.topk_hits[int(args.get("k", 5))] / self.count
        if name in ("precision", "recall", "f1"):
            return self._prf()[("precision", "recall", "f1").index(name)]
        if name == "iou":
            tp, fp, fn = self._positive_counts()
            return M.safe_div(tp, tp + fp + fn)
        if name == "mean_iou":
            return self._ious()[1]
        if name == "mse":
            return self.sq_err / self.error_count
        if name == "mae":
            return self.abs_err / self.error_count
        if name == "r2":
            return self._r2()
        if name == "kl_divergence":
            return self.kl_sum / self.kl_rows
        if name == "auc":
            return self._auc()
        raise ValueError(f"no streaming form for the metric {name}")

    def _positive_counts(self) -> tuple[int, int, int]:
        """tp, fp, fn with every non-zero id as the positive class (metrics.binary_counts)."""
        tp = self.both_positive
        return tp, self.predicted_positive - tp, self.actual_positive - tp

    def _prf(self) -> tuple[float, float, float]:
        if self.kind == "binary":
            return M.prf_of_counts(*self._positive_counts())
        present = np.flatnonzero((self.actual + self.predicted) > 0)  # scikit-learn's labels: in y or predicted
        scores = []
        for k in present:
            tp = int(self.true_pos[k])
            scores.append(M.prf_of_counts(tp, int(self.predicted[k]) - tp, int(self.actual[k]) - tp))
        return tuple(float(v) for v in np.array(scores).mean(0))

    def _r2(self) -> float:
        return M.r2_of_sums(self.r2_residual, self.r2_targets.squared_deviations())

    def _auc(self) -> float:
        return M.auc(self.kind, np.concatenate(self.auc_labels), np.concatenate(self.auc_scores))


def _grow(counts: np.ndarray, size: int) -> np.ndarray:
    return counts if len(counts) >= size else np.concatenate([counts, np.zeros(size - len(counts), np.int64)])


class EvalStream:
    """The loss (batch means weighted by batch size, summed in float64) and every metric, batch by batch."""

    def __init__(self, metrics, kind: str, class_axis: int = 1):
        self.metrics = MetricStream(metrics, kind, class_axis)
        self.loss_sum, self.samples = 0.0, 0

    def add(self, loss: float, probs: np.ndarray, y: np.ndarray) -> None:
        self.loss_sum += float(loss) * len(y)
        self.samples += len(y)
        self.metrics.add(probs, y)

    def values(self) -> dict[str, float]:
        return {"loss": self.loss_sum / max(self.samples, 1), **self.metrics.values()}


def score(model, batches: Iterable[tuple[list, Any]], loss_fn, stream: EvalStream, device) -> EvalStream:
    """Run the model (eval mode, no gradients) over (inputs, labels) NumPy batches into `stream`;
    only one batch's outputs are alive at a time."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for inputs, y in batches:
                xb = [torch.from_numpy(np.ascontiguousarray(x)).to(device) for x in inputs]
                yb = torch.from_numpy(np.ascontiguousarray(y)).to(device)
                out = model.forward_train(*xb)
                loss = loss_fn(out, yb)
                probs = model.output_from_train(out.float())
                stream.add(float(loss), probs.cpu().numpy(), y)
    finally:
        model.train(was_training)
    return stream
