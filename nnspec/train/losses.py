"""Losses: the spec's `loss` section as one callable (forward_train output, labels) -> scalar.

A final softmax (with categorical_crossentropy or kl_divergence) or sigmoid (with
binary_crossentropy, focal or iou) is *fused* into the loss: the model's `forward_train`
returns logits and every loss term works from them with log-sum-exp / log-sigmoid forms,
which never take the log of a rounded 0. Terms that want probabilities (mse on a sigmoid
output, say) apply the activation themselves, so a weighted sum may mix both kinds.

Labels: multiclass takes class indices (int64 [N] or [N, ...]) or probability rows (float,
the output's shape); binary takes 0/1 floats shaped like the output ([N] accepted for
[N, 1]); regression takes floats shaped like the output.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..catalog.base import feature_axis
from ..diagnostics import UserError

LossFn = Callable[[Tensor, Tensor], Tensor]


def fused_activation(checked) -> str | None:
    """The output activation the loss absorbs ('softmax' | 'sigmoid'), or None: `Checked.fused_activation`,
    from the loss entries' `fuses_*` traits in the catalog."""
    return checked.fused_activation


class _Ctx:
    """What every term needs to know about the output it scores."""

    def __init__(self, checked, class_weights: Tensor | None):
        out = checked.graph.output_node
        self.rank = len(out.out.shape)  # without batch
        self.class_dim = 1 + feature_axis(self.rank)
        self.fused = fused_activation(checked)
        # Before the loss sees it, a fused softmax's logits are the output's pre-activation;
        # without fusion, categorical_crossentropy reads the output as logits ("on logits").
        self.output_activation = out.kind if out.op == "activation" else None
        self.class_weights = class_weights

    def probabilities(self, pred: Tensor) -> Tensor:
        """What `forward` returns, from what `forward_train` returned."""
        if self.fused == "softmax":
            return torch.softmax(pred, dim=self.class_dim)
        if self.fused == "sigmoid":
            return torch.sigmoid(pred)
        return pred

    def weights_for(self, pred: Tensor) -> Tensor | None:
        w = self.class_weights
        return None if w is None else w.to(device=pred.device, dtype=pred.dtype)


# ---------------------------------------------------------------- label handling
def _like(y: Tensor, pred: Tensor) -> Tensor:
    """Float targets with the prediction's shape ([N] accepted for [N, 1])."""
    if y.shape != pred.shape:
        if y.numel() != pred.numel():
            raise UserError(f"labels of shape {list(y.shape)} do not match the model's output {list(pred.shape)}",
                            help="give one target per output value")
        y = y.reshape(pred.shape)
    return y.to(pred.dtype)


def _class_targets(y: Tensor, pred: Tensor, class_dim: int) -> Tensor:
    """Class indices (int64, the prediction without its class axis) or probability rows (float,
    the prediction's shape)."""
    index_shape = pred.shape[:class_dim] + pred.shape[class_dim + 1:]
    if y.shape == pred.shape and y.is_floating_point():
        return y.to(pred.dtype)
    if y.shape == index_shape or (y.dim() == len(index_shape) + 1 and y.shape[-1] == 1 and y.shape[:-1] == index_shape):
        return y.reshape(index_shape).long()
    raise UserError(f"labels of shape {list(y.shape)} do not fit an output of shape {list(pred.shape)}",
                    help=f"give class indices {list(index_shape)} or one-hot rows {list(pred.shape)}")


def _scored(pred: Tensor, y: Tensor, class_dim: int) -> tuple[Tensor, Tensor]:
    """Class ids with positions labelled NOT_SCORED (-100, per-step padding): the scored positions
    alone, as [M, C] (with classes still on `class_dim`: [1, M, C] for class_dim 2) and their ids.
    Any other labels: as given. (cross_entropy skips -100 itself: its ignore_index.)"""
    if y.is_floating_point() or y.dim() < 2 or not bool((y < 0).any()):
        return pred, y
    ids = _class_targets(y, pred, class_dim)
    keep = ids >= 0
    rows = pred.movedim(class_dim, -1)[keep]
    return rows.reshape(*([1] * (class_dim - 1)), *rows.shape), ids[keep].reshape(*([1] * (class_dim - 1)), -1)


def _one_hot(y: Tensor, pred: Tensor, class_dim: int) -> Tensor:
    t = _class_targets(y, pred, class_dim)
    if t.is_floating_point():
        return t
    return F.one_hot(t, pred.shape[class_dim]).movedim(-1, class_dim).to(pred.dtype)


def _binary_weights(y: Tensor, w: Tensor | None) -> Tensor | None:
    """Per-element weights from class weights [w0, w1] (negatives, positives)."""
    if w is None:
        return None
    if w.numel() != 2:
        raise UserError(f"a binary output takes 2 class weights (negative, positive); received {w.numel()}")
    return w[0] * (1 - y) + w[1] * y


# ---------------------------------------------------------------- terms
def categorical_crossentropy(ctx: _Ctx, args: Mapping[str, Any]) -> LossFn:
    smoothing = args.get("label_smoothing", 0.0)

    def checked_loss(pred: Tensor, y: Tensor) -> Tensor:
        target = _class_targets(y, pred, ctx.class_dim)
        # pred holds logits: fused softmax, or an output written without one ("on logits").
        logits = pred if ctx.class_dim == 1 else pred.movedim(ctx.class_dim, 1)
        if target.is_floating_point() and ctx.class_dim != 1:
            target = target.movedim(ctx.class_dim, 1)
        return F.cross_entropy(logits, target, weight=ctx.weights_for(pred), label_smoothing=smoothing)

    if ctx.class_dim != 1:
        return checked_loss

    def loss(pred: Tensor, y: Tensor) -> Tensor:
        # The common case, [N, K] logits and int64 indices [N], goes straight to PyTorch (per-batch
        # overhead matters for small models); anything else is shaped, or explained, by checked_loss.
        if y.dtype == torch.int64 and y.dim() == 1 and pred.dim() == 2 and y.shape[0] == pred.shape[0]:
            return F.cross_entropy(pred, y, weight=ctx.weights_for(pred), label_smoothing=smoothing)
        return checked_loss(pred, y)

    def on_class_indices(device) -> LossFn:
        """`loss` for float32 [N, K] logits and int64 [N] indices, known to be so for every batch."""
        weight = None if ctx.class_weights is None else ctx.class_weights.to(device=device, dtype=torch.float32)
        return functools.partial(F.cross_entropy, weight=weight, label_smoothing=smoothing)

    loss.on_class_indices = on_class_indices
    return loss


def kl_divergence(ctx: _Ctx, args: Mapping[str, Any]) -> LossFn:
    def loss(pred: Tensor, y: Tensor) -> Tensor:
        pred, y = _scored(pred, y, ctx.class_dim)
        target = _one_hot(y, pred, ctx.class_dim)
        logp = torch.log_softmax(pred, dim=ctx.class_dim) if ctx.fused else torch.log(pred.clamp_min(1e-12))
        # sum over classes of y log(y / p), 0 log 0 = 0; mean over the other axes
        kl = torch.xlogy(target, target) - target * logp
        return kl.sum(ctx.class_dim).mean()
    return loss


def binary_crossentropy(ctx: _Ctx, args: Mapping[str, Any]) -> LossFn:
    def loss(pred: Tensor, y: Tensor) -> Tensor:
        t = _like(y, pred)
        w = _binary_weights(t, ctx.weights_for(pred))
        if ctx.fused == "sigmoid":
            return F.binary_cross_entropy_with_logits(pred, t, weight=w)
        eps = torch.finfo(pred.dtype).eps  # a step output is exactly 0 or 1
        return F.binary_cross_entropy(pred.clamp(eps, 1 - eps), t, weight=w)
    return loss


def focal(ctx: _Ctx, args: Mapping[str, Any]) -> LossFn:
    gamma, alpha = args.get("gamma", 2.0), args.get("alpha", 0.25)

    def loss(pred: Tensor, y: Tensor) -> Tensor:
        t = _like(y, pred)
        if ctx.fused == "sigmoid":
            p = torch.sigmoid(pred)
            ce = F.binary_cross_entropy_with_logits(pred, t, reduction="none")
        else:
            p = pred.clamp(1e-7, 1 - 1e-7)
            ce = F.binary_cross_entropy(p, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        fl = alpha_t * (1 - p_t) ** gamma * ce
        w = _binary_weights(t, ctx.weights_for(pred))
        return (fl if w is None else fl * w).mean()
    return loss


def iou(ctx: _Ctx, args: Mapping[str, Any]) -> LossFn:
    smooth = args.get("smooth", 1.0)

    def loss(pred: Tensor, y: Tensor) -> Tensor:
        t = _like(y, pred)
        p = ctx.probabilities(pred)
        dims = tuple(range(1, p.dim()))
        inter = (p * t).sum(dims)
        union = p.sum(dims) + t.sum(dims) - inter
        return (1 - (inter + smooth) / (union + smooth)).mean()
    return loss


def _regression(fn: Callable[[Tensor, Tensor], Tensor]):
    def term(ctx: _Ctx, args: Mapping[str, Any]) -> LossFn:
        def loss(pred: Tensor, y: Tensor) -> Tensor:
            p = ctx.probabilities(pred)
            if ctx.output_activation == "softmax":
                p, y = _scored(p, y, ctx.class_dim)
            # a softmax output scored by mse against class indices: compare with one-hot rows
            t = _one_hot(y, p, ctx.class_dim) if ctx.output_activation == "softmax" and not y.is_floating_point() \
                else _like(y, p)
            return fn(p, t, **args)
        return loss
    return term


def _cosine(p: Tensor, t: Tensor, dim: int) -> Tensor:
    return (1 - F.cosine_similarity(p, t, dim=dim, eps=1e-8)).mean()


def cosine_similarity(ctx: _Ctx, args: Mapping[str, Any]) -> LossFn:
    dim = ctx.class_dim if ctx.rank else -1
    return _regression(lambda p, t: _cosine(p, t, dim))(ctx, {})


TERMS: dict[str, Callable[[_Ctx, Mapping[str, Any]], LossFn]] = {
    "categorical_crossentropy": categorical_crossentropy,
    "kl_divergence": kl_divergence,
    "binary_crossentropy": binary_crossentropy,
    "focal": focal,
    "iou": iou,
    "mse": _regression(lambda p, t: F.mse_loss(p, t)),
    "mae": _regression(lambda p, t: F.l1_loss(p, t)),
    "huber": _regression(lambda p, t, delta=1.0: F.huber_loss(p, t, delta=delta)),
    "cosine_similarity": cosine_similarity,
}

WEIGHTED = ("categorical_crossentropy", "binary_crossentropy", "focal")  # terms class weights apply to


class Loss:
    """A weighted sum of loss terms; call it as loss(forward_train output, labels)."""

    def __init__(self, terms: list[tuple[float, str, LossFn]], ctx: _Ctx):
        self.terms = terms
        self.ctx = ctx
        self._single = terms[0][2] if len(terms) == 1 and terms[0][0] == 1.0 else None

    def __call__(self, pred: Tensor, y: Tensor) -> Tensor:
        if pred.dtype in (torch.float16, torch.bfloat16):
            pred = pred.float()  # under autocast: sums and logs of the loss in float32
        if self._single is not None:
            return self._single(pred, y)
        total = None
        for weight, _, fn in self.terms:
            value = weight * fn(pred, y)
            total = value if total is None else total + value
        return total

    def for_labels(self, labels: Tensor, float32: bool = True) -> LossFn:
        """This loss for batches of `labels` (rows of it) and float32 predictions: the shape checks that
        hold for all of them done once, here. A single categorical cross-entropy on [N, K] logits with
        int64 class indices is then PyTorch's own function, nothing around it (what a hand-written loop
        calls; per batch that is most of a small model's overhead). Anything else: the loss itself."""
        fast = getattr(self._single, "on_class_indices", None)
        if fast is None or not float32 or self.ctx.rank != 1 or labels.dtype != torch.int64 or labels.dim() != 1:
            return self
        return fast(labels.device)

    def __repr__(self) -> str:
        return " + ".join(f"{w:g} * {name}" for w, name, _ in self.terms)


def build_loss(checked, class_weights: Tensor | None = None) -> Loss:
    """The spec's loss as a callable (forward_train output, labels) -> scalar mean loss."""
    if not checked.loss:
        raise UserError("the model has no `loss`, so it cannot be trained",
                        help="add e.g. `loss categorical_crossentropy` to the model")
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
        names = [name for _, name, _ in checked.loss]
        if not any(n in WEIGHTED for n in names):
            raise UserError(f"class_weights apply to {', '.join(WEIGHTED)}; this loss is {' + '.join(names)}",
                            help="remove class_weights, or use a classification loss")
    ctx = _Ctx(checked, class_weights)
    terms = []
    for weight, name, args in checked.loss:
        term_ctx = ctx if name in WEIGHTED or class_weights is None else _Ctx(checked, None)
        terms.append((float(weight), name, TERMS[name](term_ctx, dict(args))))
    return Loss(terms, ctx)
