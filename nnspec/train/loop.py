"""The training loop, top to bottom: shuffle, batch by indexing, step, record, validate, stop.
(A split of image files, images.StreamedSplit, is batched by a DataLoader's workers instead:
`Split.batches` is the one way the loop reads batches.)

Kept as close as possible to the loop a PyTorch user writes by hand, so that it is as fast and
gives the same numbers (tests/test_equivalence.py). Per batch it does what a hand-written loop
does and nothing more: no `.item()` (no device sync), no Python per sample, the loss's label
checks done once per split (losses.Loss.for_labels). The epoch's loss is the batch losses kept on
the device and weighted by batch size at the end of the epoch; training metrics come from the
epoch's (detached) outputs, also at the end (bench/README.md: what each of these costs).

Randomness: the caller seeds torch's global generator (initialisation, dropout); shuffling has
its own generator seeded with the run's seed, so the order of batches does not depend on how
many random numbers the model drew. Both are saved in checkpoints for an exact `--resume`.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..diagnostics import UserError
from ..runconfig import EVAL_BATCH
from . import distributed as D
from . import metrics as M
from .data import Data, Split
from .interrupts import epoch_commit
from .losses import Loss
from .optim import PerceptronRule, Schedule


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class FitConfig:
    epochs: int
    batch_size: int  # examples per step (RunConfig.step_rows resolves `full`)
    steps: int | None = None
    shuffle: bool = True
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    early_stopping: int | None = None
    monitor: str = "loss"
    amp_dtype: torch.dtype | None = None  # autocast dtype (precision.amp_dtype), or None
    amp_device: str = "cuda"  # the device type autocast applies to: "cuda" or "cpu"
    compile: bool = False
    augment: Any = None  # augment.Augmenter: applied to the inputs of training batches only, or None


@dataclass
class Progress:
    """Where a run stands; saved in checkpoints so `--resume` continues exactly."""

    epoch: int = 0  # epochs completed
    steps: int = 0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "steps": self.steps, "best": self.best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": [dict(r) for r in self.history]}

    @staticmethod
    def from_state(state: dict[str, Any]) -> "Progress":
        return Progress(**{k: state[k] for k in ("epoch", "steps", "best", "best_epoch", "bad_epochs")},
                        history=[dict(r) for r in state["history"]])


@dataclass
class Task:
    """What metrics need to know about the output."""

    kind: str
    metrics: tuple
    class_axis: int = 1


EpochHook = Callable[[int, dict, bool, Progress], None]  # (epoch, row, improved, progress)
BatchHook = Callable[[int, int], None]  # (samples done this epoch, samples in the epoch)


def fit(model, loss_fn: Loss, optimizer, schedule: Schedule, data: Data, cfg: FitConfig, task: Task,
        generator: torch.Generator, progress: Progress | None = None, *,
        on_epoch: EpochHook | None = None, on_batch: BatchHook | None = None) -> Progress:
    progress = progress or Progress()
    train = data.train
    device = train.y.device
    batch = min(cfg.batch_size, len(train))
    forward_train = torch.compile(model.forward_train) if cfg.compile else model.forward_train
    if D.active():  # a torchrun worker: the forward runs through DDP, whose backward all-reduces gradients
        if isinstance(optimizer, PerceptronRule):
            raise UserError("the Perceptron rule is not a gradient method, so it cannot be trained data-parallel",
                            help="train it in one process (drop --nproc-per-node), or use SGD")
        forward_train = D.ddp_forward(model, device, cfg.compile)
    # The loss with its per-batch shape checks done once for the training labels (a plain function
    # where it can be: losses.Loss.for_labels); evaluate() uses the general one.
    train_loss = loss_fn.for_labels(train.y, cfg.amp_dtype is None)
    step = _step_fn(model, forward_train, train_loss, optimizer, cfg)
    if cfg.augment is not None:  # training batches only: evaluate() and predict() never see it
        step = cfg.augment.wrap(step)
    run_epoch = _distributed_epoch if D.active() else _epoch

    for epoch in range(progress.epoch, cfg.epochs):
        if cfg.steps is not None and progress.steps >= cfg.steps:
            break
        started = time.perf_counter()
        lr = schedule.lr
        model.train()
        shuffled = getattr(train, "shuffled", None)  # shards: across and within blocks (train/shards.py)
        order = (shuffled(generator) if shuffled else torch.randperm(len(train), generator=generator)) \
            if cfg.shuffle else torch.arange(len(train))
        order = order.to(device)
        loss_sum, outputs, taken = run_epoch(train, order, batch, step, progress, cfg.steps, on_batch)

        loss_total, samples = D.all_sum([float(loss_sum), len(taken)])  # over all ranks
        row: dict[str, float] = {"epoch": epoch + 1, "loss": loss_total / samples}
        if not math.isfinite(row["loss"]):
            raise TrainingDiverged(
                f"the loss became {row['loss']} in epoch {epoch + 1}; training stopped",
                help="the last good checkpoint (last.pt, epoch {}) is kept; lower the learning rate (--lr), "
                     "add clip_grad_norm to the train section, or check the data for extreme values".format(epoch))
        row.update(_metrics(model, [D.gather_rows(torch.cat(outputs))], D.gather_rows(train.y[taken]), task, prefix=""))
        if data.val is not None:
            row.update(evaluate(model, data.val, loss_fn, task, prefix="val_", batch=max(batch, EVAL_BATCH),
                                amp_dtype=cfg.amp_dtype))
        row["lr"] = lr
        row["seconds"] = time.perf_counter() - started

        with epoch_commit():  # the progress and the run folder move to this epoch together
            improved = _track(progress, row, cfg.monitor, epoch)
            progress.epoch = epoch + 1
            progress.history.append(row)
            schedule.end_epoch(epoch, row.get(cfg.monitor))
            if on_epoch is not None:
                on_epoch(epoch + 1, row, improved, progress)
        if cfg.early_stopping is not None and progress.bad_epochs >= cfg.early_stopping:
            break
    return progress


def _epoch(train: Split, order, batch: int, step, progress: Progress, max_steps: int | None,
           on_batch: BatchHook | None):
    """One epoch in one process -> (the sum of the per-sample losses, a device scalar; the detached
    outputs; the rows of `train` they score, in order). Per batch it does what a hand-written loop
    does, and keeps the loss and output for the epoch's loss and training metrics: with a small
    model and batch, every statement here shows in the throughput (the batch losses are weighted
    by batch size once, at the end, not with two tensor operations a batch)."""
    losses, outputs, steps, n, start = [], [], progress.steps, len(train), 0
    starts = range(0, n, batch)
    for start, (xb, yb) in zip(starts, train.batches(order[s:s + batch] for s in starts)):
        loss, out = step(xb, yb)
        losses.append(loss.detach())
        outputs.append(out.detach())
        steps += 1
        if on_batch is not None:
            on_batch(min(start + batch, n), n)
        if max_steps is not None and steps >= max_steps:
            break
    progress.steps = steps
    seen = min(start + batch, n)
    sizes = torch.full((len(losses),), float(batch), device=order.device)
    sizes[-1] = seen - batch * (len(losses) - 1)  # every batch is full but maybe the last
    return (torch.stack(losses).float() * sizes).sum(), outputs, order[:seen]


def _distributed_epoch(train: Split, order, batch: int, step, progress: Progress, max_steps: int | None,
                       on_batch: BatchHook | None):
    """One epoch of a torchrun worker: each global batch is split over the ranks (distributed.shard)."""
    loss_sum = torch.zeros((), device=order.device)
    outputs, seen, taken = [], 0, []
    starts = range(0, len(train), batch)
    shards = [D.shard(order[start:start + batch]) for start in starts]  # this rank's chunk of each global batch
    for start, (index, weight), (xb, yb) in zip(starts, shards, train.batches(index for index, _ in shards)):
        seen += min(batch, len(train) - start)
        counted = len(index) if weight else 0
        loss, out = step(xb, yb, weight)
        loss_sum += loss.detach() * counted
        outputs.append(out.detach()[:counted])
        taken.append(index[:counted])
        progress.steps += 1
        if on_batch is not None:
            on_batch(seen, len(train))
        if max_steps is not None and progress.steps >= max_steps:
            break
    return loss_sum, outputs, torch.cat(taken)


def _step_fn(model, forward_train, loss_fn, optimizer, cfg: FitConfig):
    """One optimisation step on a batch -> (loss, forward_train output)."""
    if isinstance(optimizer, PerceptronRule):
        def perceptron_step(xb, yb, weight=1.0):
            with torch.no_grad():
                out = forward_train(*xb)
                loss = loss_fn(out, yb)
                optimizer.step_on(xb[0], yb, model.output_from_train(out))
            return loss, out
        return perceptron_step

    regularize = bool(model.regularization().requires_grad)
    if not (regularize or cfg.amp_dtype or cfg.clip_grad_norm is not None or cfg.clip_grad_value is not None):
        optimized = [p for group in optimizer.param_groups for p in group["params"]]

        def plain_step(xb, yb, weight=1.0):
            # The common case, written as a hand-written loop's body: no branch taken per batch.
            out = forward_train(*xb)
            loss = loss_fn(out, yb)
            for p in optimized:  # optimizer.zero_grad(set_to_none=True) without its profiler scope (10 µs)
                p.grad = None
            (loss if weight == 1.0 else loss * weight).backward()
            optimizer.step()
            return loss, out
        return plain_step

    params = [p for p in model.parameters() if p.requires_grad]
    autocast = (lambda: torch.autocast(cfg.amp_device, dtype=cfg.amp_dtype)) if cfg.amp_dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler("cuda") if cfg.amp_dtype == torch.float16 else None

    def gradient_step(xb, yb, weight=1.0):
        # weight: this rank's share of a global batch split unevenly over ranks (distributed.shard)
        with autocast():
            out = forward_train(*xb)
            loss = loss_fn(out, yb)
            if regularize:
                loss = loss + model.regularization()
        optimizer.zero_grad(set_to_none=True)
        weighted = loss if weight == 1.0 else loss * weight
        if scaler is not None:
            scaler.scale(weighted).backward()
            scaler.unscale_(optimizer)
        else:
            weighted.backward()
        if cfg.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
        if cfg.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(params, cfg.clip_grad_value)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return loss, out

    return gradient_step


def _metrics(model, outputs: list, y, task: Task, prefix: str) -> dict[str, float]:
    if not task.metrics:
        return {}
    with torch.no_grad():
        probs = model.output_from_train(torch.cat(outputs).float())
    values = M.compute(task.metrics, probs.cpu().numpy(), y.cpu().numpy(), task.kind, task.class_axis)
    return {prefix + k: v for k, v in values.items()}


@torch.no_grad()
def evaluate(model, split: Split, loss_fn, task: Task, prefix: str = "", batch: int = EVAL_BATCH,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Loss and metrics over a whole split, in eval mode (dropout off, BatchNorm running stats)."""
    was_training = model.training
    model.eval()
    autocast = torch.autocast(split.y.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    loss_sum = torch.zeros((), device=split.y.device)
    outputs = []
    first, stop, sharded = D.eval_range(len(split))  # a torchrun worker scores its contiguous chunk
    with autocast:
        ranges = [slice(start, min(start + batch, stop)) for start in range(first, stop, batch)]
        for xb, yb in split.batches(ranges):
            out = model.forward_train(*xb)
            loss_sum += loss_fn(out, yb).float() * len(yb)
            outputs.append(out)
    model.train(was_training)
    if sharded:  # the whole split's loss and outputs, in the split's order: metrics like AUC are not averages
        loss_sum, outputs = D.all_sum([float(loss_sum)])[0], [D.gather_rows(torch.cat(outputs))]
    row = {prefix + "loss": float(loss_sum) / max(len(split), 1)}
    row.update(_metrics(model, outputs, split.y, task, prefix))
    return row


@torch.no_grad()
def predict(model, inputs: list, batch: int = EVAL_BATCH) -> torch.Tensor:
    """The model's output as written (probabilities), batched, in eval mode."""
    model.eval()
    n = int(inputs[0].shape[0])
    return torch.cat([model(*[x[s:s + batch] for x in inputs]) for s in range(0, n, batch)]) if n else torch.empty(0)


def _track(progress: Progress, row: dict, monitor: str, epoch: int) -> bool:
    """Update best/bad-epoch counters from `monitor`; True when this epoch is the best so far."""
    value = row.get(monitor)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        progress.bad_epochs += 1
        return progress.best is None and epoch == 0
    higher = M.higher_is_better(monitor)
    better = progress.best is None or (value > progress.best if higher else value < progress.best)
    if better:
        progress.best, progress.best_epoch, progress.bad_epochs = float(value), epoch + 1, 0
    else:
        progress.bad_epochs += 1
    return better


def history_keys(task: Task, has_val: bool) -> list[str]:
    """The columns of history.csv, in order."""
    names = [M.metric_key(n, a) for n, a in task.metrics]
    keys = ["epoch", "loss", *names]
    if has_val:
        keys += ["val_loss", *(f"val_{n}" for n in names)]
    return keys + ["lr", "seconds"]
