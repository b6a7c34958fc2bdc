"""Activations, losses, metrics and optimizers: names, schemas, traits and documentation.

Traits tell the checker what an entry needs or gives:
- activations: `zero_grad` (no useful gradient), `probabilities` (outputs sum to 1 over the
  feature axis), `unit_interval` (outputs in [0, 1]), `commutes_with_max` (f(max x) = max f(x)
  with the same gradients, ties included: training may apply it after a following max pool, on
  a quarter of the values, and nothing changes by a bit);
- losses and metrics: the tasks they apply to: `multiclass`, `binary` (also multi-label and
  per-pixel), `regression`, `distribution`;
- losses: `fuses_softmax` / `fuses_sigmoid`: when the network ends in that activation, the loss
  absorbs it and works from its logits (log-sum-exp / log-sigmoid forms, never the log of a
  rounded 0). `fused_activation` reads these traits; the torch backend and the losses follow it.
"""
from __future__ import annotations

from typing import Iterable

from .base import FunctionEntry
from .schema import Param

F = FunctionEntry


def _t(*names: str) -> frozenset[str]:
    return frozenset(names)


ACTIVATIONS: tuple[FunctionEntry, ...] = (
    F("step", doc="Heaviside step: 1 if x >= 0 else 0 (the perceptron's activation; zero gradient).",
      traits=_t("zero_grad", "unit_interval")),
    F("sign", doc="-1, 0 or 1 by the sign of x (zero gradient).", traits=_t("zero_grad")),
    F("linear", doc="Identity.", aliases=("identity", "none")),
    F("relu", doc="max(0, x).", traits=_t("commutes_with_max")),
    F("sigmoid", doc="1 / (1 + e^-x), in (0, 1).", aliases=("logistic",), traits=_t("unit_interval")),
    F("tanh", doc="Hyperbolic tangent, in (-1, 1)."),
    F("scaled_tanh", (Param("a", "float", doc="lower end of the range"), Param("b", "float", doc="upper end of the range")),
      doc="(b - a)/2 * tanh(x) + (a + b)/2: a tanh stretched to the range [a, b]."),
    F("softmax", doc="e^x / sum(e^x) over the feature/channel axis.", traits=_t("probabilities", "unit_interval")),
    F("elu", (Param("alpha", "float", 1.0, min=0.0),), doc="x if x > 0 else alpha (e^x - 1)."),
    F("leaky_relu", (Param("alpha", "float", 0.01, min=0.0),), doc="x if x > 0 else alpha x.",
      aliases=("LeakyReLU",)),
    F("gelu", doc="x * Phi(x), Gaussian error linear unit."),
    F("selu", doc="Scaled ELU (self-normalizing)."),
    F("silu", doc="x * sigmoid(x).", aliases=("swish",)),
    F("softplus", doc="log(1 + e^x)."),
    F("mish", doc="x * tanh(softplus(x))."),
)

LOSSES: tuple[FunctionEntry, ...] = (
    F("binary_crossentropy", doc="-[y log p + (1 - y) log(1 - p)] on a sigmoid output (fused with it, on logits).",
      aliases=("bce", "binary_cross_entropy"), traits=_t("binary", "fuses_sigmoid")),
    F("categorical_crossentropy", (Param("label_smoothing", "float", 0.0, min=0.0, max=1.0),),
      doc="-sum y log p on a softmax output (fused with it, on logits) or on logits; labels are indices or one-hot.",
      aliases=("cross_entropy", "sparse_categorical_crossentropy", "crossentropy"),
      traits=_t("multiclass", "fuses_softmax")),
    F("mse", doc="Mean squared error.", aliases=("mean_squared_error",), traits=_t("regression")),
    F("mae", doc="Mean absolute error.", aliases=("mean_absolute_error",), traits=_t("regression")),
    F("huber", (Param("delta", "float", 1.0, min=0.0, min_exclusive=True),), doc="Quadratic below delta, linear above.",
      traits=_t("regression")),
    F("focal", (Param("gamma", "float", 2.0, min=0.0), Param("alpha", "float", 0.25, min=0.0, max=1.0)),
      doc="Focal loss: -alpha (1 - p_t)^gamma log p_t, down-weighting easy examples (binary).",
      aliases=("focal_loss",), traits=_t("binary", "fuses_sigmoid")),
    F("kl_divergence", doc="sum y log(y / p) between a target distribution and a softmax output.",
      aliases=("kld", "kullback_leibler_divergence"), traits=_t("distribution", "multiclass", "fuses_softmax")),
    F("cosine_similarity", doc="1 - cos(y, y_hat) over the feature axis.", aliases=("cosine",),
      traits=_t("regression")),
    F("iou", (Param("smooth", "float", 1.0, min=0.0),),
      doc="1 - soft Jaccard index |y ∩ p| / |y ∪ p| on a sigmoid output.", aliases=("jaccard",),
      traits=_t("binary", "fuses_sigmoid")),
)

FUSIBLE_ACTIVATIONS = ("softmax", "sigmoid")  # what a loss may absorb (trait `fuses_<activation>`)
_LOSS_BY_NAME = {e.name: e for e in LOSSES}


def fused_activation(output_activation: str | None, loss_names: Iterable[str]) -> str | None:
    """The output activation the loss absorbs ('softmax' | 'sigmoid'), or None: the network ends
    in it and a term of the loss (canonical names) has the trait `fuses_<activation>`."""
    if output_activation not in FUSIBLE_ACTIVATIONS:
        return None
    trait = f"fuses_{output_activation}"
    fuses = any(trait in _LOSS_BY_NAME[name].traits for name in loss_names if name in _LOSS_BY_NAME)
    return output_activation if fuses else None


METRICS: tuple[FunctionEntry, ...] = (
    F("accuracy", doc="Fraction of correct predictions (argmax for multi-class, p >= 0.5 for binary).",
      aliases=("acc",), traits=_t("multiclass", "binary")),
    F("top_k_accuracy", (Param("k", "int", 5, min=1),), doc="Fraction whose true class is among the k most likely.",
      aliases=("top_k",), traits=_t("multiclass")),
    F("precision", doc="TP / (TP + FP); macro-averaged over classes for multi-class.", traits=_t("multiclass", "binary")),
    F("recall", doc="TP / (TP + FN); macro-averaged over classes for multi-class.", traits=_t("multiclass", "binary")),
    F("f1", doc="Harmonic mean of precision and recall; macro-averaged for multi-class.", aliases=("f1_score",),
      traits=_t("multiclass", "binary")),
    F("auc", doc="Area under the ROC curve; one-vs-rest macro average for multi-class.", aliases=("roc_auc",),
      traits=_t("multiclass", "binary")),
    F("iou", doc="Jaccard index of thresholded predictions (p >= 0.5).", aliases=("jaccard",), traits=_t("binary")),
    F("mean_iou", doc="Jaccard index |y ∩ ŷ| / |y ∪ ŷ| of each class (argmax predictions), averaged over the classes "
      "in the labels or the predictions; also reports iou_class_K per class. Per pixel / per step for dense outputs.",
      aliases=("miou",), traits=_t("multiclass")),
    F("mse", doc="Mean squared error.", traits=_t("regression", "binary", "multiclass")),
    F("mae", doc="Mean absolute error.", traits=_t("regression", "binary", "multiclass")),
    F("r2", doc="Coefficient of determination 1 - SS_res / SS_tot.", aliases=("r2_score",), traits=_t("regression")),
    F("kl_divergence", doc="KL divergence between the target distribution (one-hot labels) and the predicted one.",
      aliases=("kld",), traits=_t("multiclass", "distribution")),
)

WEIGHT_DECAY = Param("weight_decay", "float", 0.0, min=0.0, doc="L2 penalty (decoupled for AdamW)")
LR = Param("lr", "float", 0.001, min=0.0, min_exclusive=True, doc="learning rate")

OPTIMIZERS: tuple[FunctionEntry, ...] = (
    F("SGD", (Param("lr", "float", 0.01, min=0.0, min_exclusive=True), Param("momentum", "float", 0.0, min=0.0, max=1.0),
              Param("nesterov", "bool", False), WEIGHT_DECAY),
      doc="Stochastic gradient descent: theta <- theta - lr * grad (with optional momentum, Nesterov)."),
    F("Adam", (LR, Param("beta1", "float", 0.9, min=0.0, max=1.0), Param("beta2", "float", 0.999, min=0.0, max=1.0),
               Param("eps", "float", 1e-8, min=0.0, min_exclusive=True), WEIGHT_DECAY, Param("amsgrad", "bool", False)),
      doc="Adaptive moment estimation."),
    F("AdamW", (LR, Param("beta1", "float", 0.9, min=0.0, max=1.0), Param("beta2", "float", 0.999, min=0.0, max=1.0),
                Param("eps", "float", 1e-8, min=0.0, min_exclusive=True), Param("weight_decay", "float", 0.01, min=0.0)),
      doc="Adam with decoupled weight decay."),
    F("RMSprop", (LR, Param("rho", "float", 0.9, min=0.0, max=1.0), Param("momentum", "float", 0.0, min=0.0, max=1.0),
                  Param("eps", "float", 1e-7, min=0.0, min_exclusive=True), WEIGHT_DECAY),
      doc="Divide the gradient by a running average of its magnitude."),
    F("Adadelta", (Param("lr", "float", 1.0, min=0.0, min_exclusive=True), Param("rho", "float", 0.9, min=0.0, max=1.0),
                   Param("eps", "float", 1e-6, min=0.0, min_exclusive=True), WEIGHT_DECAY),
      doc="Adadelta: per-parameter step sizes from running averages of updates."),
    F("Adagrad", (Param("lr", "float", 0.01, min=0.0, min_exclusive=True), Param("eps", "float", 1e-10, min=0.0, min_exclusive=True),
                  WEIGHT_DECAY),
      doc="Per-parameter learning rates scaled by accumulated squared gradients."),
    F("Perceptron", (Param("lr", "float", 0.1, min=0.0, min_exclusive=True), WEIGHT_DECAY),
      doc="Rosenblatt's rule theta <- theta + lr (y - y_hat) x, no gradients; a single Dense + step only.",
      traits=_t("no_gradient")),
)
