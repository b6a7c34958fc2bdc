"""Optimizers (the spec's arguments mapped onto torch.optim), the Perceptron rule, and LR schedules.

Schedules are a small per-epoch function of our own rather than torch.optim.lr_scheduler: the
learning rate of epoch e is base_lr * factor(e), the whole state is a dict of numbers (so a
checkpoint loads with weights_only=True), and warm-up composes with every schedule.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from ..diagnostics import UserError


def build_optimizer(name: str, args: Mapping[str, Any], model: nn.Module, lr: float | None = None,
                    fused: bool = False):
    """The spec's optimizer over the model's parameters; `lr` overrides the spec's learning rate.
    `fused`: torch's fused kernel for SGD, Adam and AdamW (3x faster a step on the CPU, equal to
    rounding but not bit for bit, so only `--amp` runs ask for it: precision.py)."""
    a = dict(args)
    if lr is not None:
        a["lr"] = lr
    params = [p for p in model.parameters() if p.requires_grad]  # frozen (trainable=false) ones never reach it
    if not params and any(True for _ in model.parameters()):
        raise UserError("every layer with weights is frozen (trainable=false): there is nothing to train",
                        help="set trainable=true (or remove trainable=false) on the layers to fine-tune")
    if name == "Perceptron":
        return PerceptronRule(model, a["lr"], a.get("weight_decay", 0.0))
    wd = a.get("weight_decay", 0.0)
    if name == "SGD":
        if a["nesterov"] and a["momentum"] <= 0:
            raise UserError("SGD(nesterov=true) needs a momentum above 0", help="e.g. SGD(lr=0.1, momentum=0.9, nesterov=true)")
        return torch.optim.SGD(params, lr=a["lr"], momentum=a["momentum"], nesterov=a["nesterov"], weight_decay=wd,
                               **({"fused": True} if fused else {}))
    if name in ("Adam", "AdamW"):
        cls = torch.optim.Adam if name == "Adam" else torch.optim.AdamW
        extra = {"amsgrad": a["amsgrad"]} if "amsgrad" in a else {}
        extra.update({"fused": True} if fused else {})
        return cls(params, lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"], weight_decay=wd, **extra)
    if name == "RMSprop":
        return torch.optim.RMSprop(params, lr=a["lr"], alpha=a["rho"], eps=a["eps"], momentum=a["momentum"],
                                   weight_decay=wd)
    if name == "Adadelta":
        return torch.optim.Adadelta(params, lr=a["lr"], rho=a["rho"], eps=a["eps"], weight_decay=wd)
    if name == "Adagrad":
        return torch.optim.Adagrad(params, lr=a["lr"], eps=a["eps"], weight_decay=wd)
    raise UserError(f"the optimizer {name} has no PyTorch implementation in nnspec")


class PerceptronRule:
    """Rosenblatt's rule on the model's single Linear layer: θ ← θ + lr · Σ_batch (y − ŷ) x.

    No gradients: ŷ is the model's own output (a step), x the layer's input. It quacks like a
    torch optimizer where the loop needs it (param_groups for the learning rate, state_dict).
    """

    def __init__(self, model: nn.Module, lr: float, weight_decay: float = 0.0):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        others = [n for n, p in model.named_parameters() if not any(p is q for m in linears for q in m.parameters())]
        if len(linears) != 1 or others:
            raise UserError("the Perceptron optimizer trains a single Dense layer followed by `step`; "
                            f"this model has {len(linears)} Dense layer(s)" + (f" and other parameters ({others[0]})" if others else ""),
                            help="use a gradient optimizer such as SGD or Adam for multi-layer networks")
        self.linear = linears[0]
        self.param_groups = [{"lr": lr, "weight_decay": weight_decay}]

    @torch.no_grad()
    def step_on(self, x: torch.Tensor, y: torch.Tensor, y_hat: torch.Tensor) -> None:
        group = self.param_groups[0]
        error = (y.reshape(y_hat.shape).to(y_hat.dtype) - y_hat).reshape(len(x), -1)  # [B, out]
        x = x.reshape(len(x), -1).to(error.dtype)
        w = self.linear.weight
        if group["weight_decay"]:
            w.mul_(1 - group["lr"] * group["weight_decay"])
        w.add_(group["lr"] * error.T @ x)
        if self.linear.bias is not None:
            self.linear.bias.add_(group["lr"] * error.sum(0))

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"param_groups": [dict(g) for g in self.param_groups]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.param_groups = [dict(g) for g in state["param_groups"]]


class Schedule:
    """Learning rate per epoch: warm-up, then step / cosine / exponential / reduce_on_plateau."""

    def __init__(self, optimizer, schedule: tuple[str, Mapping[str, Any]] | None, warmup: int, epochs: int,
                 monitor_higher_is_better: bool = False):
        self.optimizer = optimizer
        self.kind, self.args = (schedule[0], dict(schedule[1])) if schedule else (None, {})
        self.warmup, self.epochs = warmup, epochs
        self.higher = monitor_higher_is_better
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.plateau = {"scale": 1.0, "best": None, "bad": 0}
        self.apply(0)

    def factor(self, epoch: int) -> float:
        """Multiplier of the base learning rate during `epoch` (0-based)."""
        if epoch < self.warmup:
            return (epoch + 1) / (self.warmup + 1)
        e = epoch - self.warmup
        a = self.args
        if self.kind == "step":
            return a["gamma"] ** (e // a["every"])
        if self.kind == "exponential":
            return a["gamma"] ** e
        if self.kind == "cosine":
            span = max(1, self.epochs - self.warmup)
            return math.cos(math.pi * min(e, span) / span) * 0.5 + 0.5
        if self.kind == "reduce_on_plateau":
            return self.plateau["scale"]
        return 1.0

    def apply(self, epoch: int) -> None:
        f = self.factor(epoch)
        min_lr = self.args.get("min_lr", 0.0)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            lr = base * f
            if self.kind == "cosine" and epoch >= self.warmup:
                lr = min_lr + (base - min_lr) * f
            group["lr"] = max(lr, min_lr) if self.kind == "reduce_on_plateau" else lr

    def end_epoch(self, epoch: int, monitored: float | None) -> None:
        """After `epoch`: update the plateau state and set the rate of the next epoch."""
        if self.kind == "reduce_on_plateau" and monitored is not None and epoch >= self.warmup:
            p = self.plateau
            better = p["best"] is None or (monitored > p["best"] if self.higher else monitored < p["best"])
            if better:
                p["best"], p["bad"] = monitored, 0
            else:
                p["bad"] += 1
                if p["bad"] > self.args["patience"]:
                    p["scale"] *= self.args["factor"]
                    p["bad"] = 0
        self.apply(epoch + 1)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": list(self.base_lrs), "plateau": dict(self.plateau)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base_lrs = list(state["base_lrs"])
        self.plateau = dict(state["plateau"])
