"""A training run from a checked spec: settings, device, data, model, loop, and the run folder.

`train_spec` is what `nnspec train` and `nnspec tune` call. The run folder holds:
history.csv, metrics.json, spec.nn (the exact source trained), data.json (the data's source, label
column and class names), last.pt, best.pt and curves.png;
every file is written atomically, so an interrupted run never leaves half a checkpoint.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import fsutil
from ..diagnostics import UserError
from ..runconfig import EVAL_BATCH, RunConfig
from ..runlock import FolderInUse, RunLock
from . import checkpoint as ckpt_io
from . import distributed as D
from . import transfer
from . import text
from . import logs
from .data import Data, Expect, load_data
from . import dense_labels as dense

RUNS_DIR = Path("runs")


@dataclass
class RunSummary:
    out_dir: Path
    history: list[dict[str, float]]
    final: dict[str, float]
    best: dict[str, float]
    monitor: str = "loss"
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ preparing a run


def as_run(run, **settings) -> RunConfig:
    """The RunConfig to use: `run` itself, or, for a pipeline Result, the one its front door resolves
    with these settings (`Result.run_config`: epochs, batch_size, lr, seed, data, folds, defaults).
    A RunConfig is already resolved: settings other than `defaults` are refused with it."""
    if isinstance(run, RunConfig):
        given = sorted(k for k, v in settings.items() if v is not None and k != "defaults")
        if given:
            raise TypeError(f"{', '.join(given)} given with a RunConfig: resolve them into it (pipeline.run_config)")
        return run
    return run.run_config(**{k: v for k, v in settings.items() if v is not None})


def resolve_device(name: str):
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise UserError(f"unknown device '{name}'", help="use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name} was asked for but CUDA is not available on this machine",
                            help="use --device cpu (or auto)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                            help=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return torch.device(name)


def next_run_dir(model_name: str) -> Path:
    base = RUNS_DIR / model_name
    taken = [int(p.name) for p in base.glob("*") if p.name.isdigit()] if base.is_dir() else []
    return base / str(max(taken, default=0) + 1)


def latest_run_dir(model_name: str) -> Path:
    base = RUNS_DIR / model_name
    taken = sorted((int(p.name) for p in base.glob("*") if p.name.isdigit()), reverse=True) if base.is_dir() else []
    for n in taken:
        if (base / str(n) / "last.pt").is_file():
            return base / str(n)
    raise UserError(f"--resume: no earlier run of {model_name} under {base}/",
                    help="give the run folder with --out DIR")


CHECKPOINTS = ("last.pt", "best.pt", "last.prev.pt")
RUN_FILES = (*CHECKPOINTS, "last.pt.corrupt", "history.csv", "metrics.json", "curves.png", "spec.nn",
             "reconstructions.png", "data.json", "init.json", "vocab.json")


def own_run_dir(out_dir, model_name: str, resume: bool, what: str = "nnspec train") -> RunLock:
    """The run folder, made and locked (the RunLock is held; release it when done): --out as given,
    refused while another process holds it; with --resume and no --out, the latest run; otherwise
    the next number under runs/<Model>/ (one that another process took meanwhile is skipped)."""
    if out_dir or resume:
        folder = Path(out_dir) if out_dir else latest_run_dir(model_name)
        ckpt_io.make_dir(folder)
        lock = RunLock(folder, what)
        lock.acquire()
        return lock
    for _ in range(1000):
        folder = ckpt_io.make_dir(next_run_dir(model_name))
        lock = RunLock(folder, what)
        try:
            lock.acquire()
        except FolderInUse:
            continue
        if not any((folder / f).exists() for f in RUN_FILES):
            return lock
        lock.release()  # another process ran in it meanwhile: the next number
    raise UserError(f"cannot find a free run folder under {RUNS_DIR / model_name}/", help="give one with --out DIR")


def previous_run(folder: Path, check_source=None) -> tuple[str, str] | None:
    """(IR hash, model name) of the run a folder holds (from a checkpoint, else its spec.nn, checked
    by `check_source`: RunConfig.check_source, the front end's check_text), or None when it holds
    none. A run that cannot be identified has the hash "?"."""
    from ..diagnostics import SpecError

    for name in CHECKPOINTS:
        if (folder / name).is_file():
            try:
                state = ckpt_io.load(folder / name)
            except UserError:
                continue
            return ckpt_io.spec_hash(state), str(state.get("spec_name", "another model"))  # as ir_hash is now
    if (folder / "spec.nn").is_file():
        if check_source is None:
            return "?", "a spec that is not checked here"
        try:
            checked = check_source((folder / "spec.nn").read_text(encoding="utf-8"), str(folder / "spec.nn"))
        except (OSError, UnicodeDecodeError, UserError, SpecError):
            return "?", "an unreadable spec"
        if checked.ok:
            return ckpt_io.ir_hash(checked.checked), checked.checked.spec.name
        return "?", "a spec that no longer checks"
    if any((folder / f).exists() for f in RUN_FILES):
        return "?", "an unknown model"
    return None


def start_over(folder: Path, digest: str, model_name: str, overwrite: bool, check_source=None) -> list[str]:
    """A fresh run in `folder`: refused when the folder holds a run of another spec (unless
    `overwrite`); otherwise the old run's files are removed so that no checkpoint of it (last.prev.pt)
    is mixed with the new run's. Returns notes. `check_source`: as for previous_run."""
    previous = previous_run(folder, check_source)
    if previous is None:
        return []
    old_hash, old_name = previous
    if old_hash != digest and not overwrite:
        what = f"{old_name}, IR hash {old_hash[:12]}" if old_hash != "?" else old_name
        raise UserError(f"{folder} holds a run of another spec ({what}); training {model_name} "
                        f"(IR hash {digest[:12]}) there would replace it",
                        help="choose another folder with --out, or pass --overwrite to replace that run")
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    if old_hash != digest:
        return [f"--overwrite: the run of {old_name} in {folder} was replaced"]
    return []


def class_weight_tensor(setting, data: Data, kind: str, classes: int | None):
    import torch

    if setting is None:
        return None
    if kind not in ("multiclass", "binary"):
        raise UserError("class_weights apply to classification; this model is a regressor",
                        help="remove class_weights from the train section")
    n_classes = classes if kind == "multiclass" else 2
    if setting == "balanced":  # scikit-learn's n_samples / (n_classes * count)
        y = data.train.y
        ids = y.long().reshape(-1) if kind == "binary" or y.dtype != torch.int64 else y.reshape(-1)
        ids = ids[ids >= 0]  # per-position labels: the positions not scored (-100) count for no class
        counts = torch.bincount(ids.cpu(), minlength=n_classes).float()
        return (len(ids) / (n_classes * counts.clamp(min=1))).tolist()
    weights = [float(w) for w in setting]
    if len(weights) != n_classes:
        raise UserError(f"class_weights has {len(weights)} value(s) but the model has {n_classes} classes",
                        help="give one weight per class, or `class_weights balanced`")
    return weights


# ------------------------------------------------------------------ training


def train_spec(run, *, out_dir=None, epochs=None, batch_size=None, lr=None, seed=None, device="auto", data=None,
               quiet=True, on_epoch: Callable[[int, dict], None] | None = None, defaults=False, resume=False,
               amp=False, compile=False, on_batch=None, on_start=None, fold: tuple[int, int] | None = None,
               overwrite=False, log=None) -> RunSummary:
    """One training run of `run`: a RunConfig (what `nnspec train` passes), or a pipeline Result with
    the settings to resolve it with (`as_run`: epochs, batch_size, lr, seed, data, defaults). A spec
    with `folds K` is cross-validated by `crossval.cross_validate`, which calls this once per fold
    with fold=(k, K).

    The run folder has one owner: it is locked (runlock.RunLock) from when it is chosen until this
    returns or raises. A fresh run (not `resume`) refuses a folder holding a run of another spec
    unless `overwrite`; it then starts the folder over (the old run's checkpoints are removed).

    `log`: experiment logs besides the run folder's files, e.g. ["tensorboard", "mlflow"] (logs.py)."""
    import torch

    from ..backends.torch_model import build_model
    from .loop import FitConfig, Progress, Task, fit, history_keys
    from .losses import build_loss
    from .optim import Schedule, build_optimizer
    from . import metrics as M
    from ..catalog.base import feature_axis

    config = as_run(run, defaults=defaults, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, data=data)
    checked = config.checked
    log = logs.ready(log)  # an unknown kind or a missing package: refused before anything is read
    if checked.networks:  # `adversarial { }`: two networks trained against each other (train/gan.py)
        if log:
            raise UserError("--log (TensorBoard, MLflow) is not supported for adversarial training yet",
                            help="train the GAN spec without --log; its run folder has history.csv and samples")
        asked = [flag for flag, on in (("--amp", amp), ("--compile", compile),
                                       (f"--device {device}", device not in ("auto", "cpu"))) if on]
        if asked:
            raise UserError(f"adversarial training runs in float32 on the CPU: {', '.join(asked)} is not supported "
                            "for it yet", help=f"train {config.name} without {', '.join(asked)}")
        from .gan import train_gan

        return train_gan(config, out_dir=out_dir, resume=resume, overwrite=overwrite, on_epoch=on_epoch,
                         on_batch=on_batch, on_start=on_start)
    notes = list(config.notes)
    if config.folds and fold is None:
        raise UserError(f"{config.name} is cross-validated (`folds {config.folds}`): each fold is a run",
                        help="`nnspec train` runs every fold; in Python use nnspec.train.crossval.cross_validate")
    if checked.optimizer is None:
        raise UserError(f"{config.name} has no optimizer, so it cannot be trained",
                        help="add e.g. `optimizer Adam(lr=0.001)` to the model")
    worker = D.worker_from_env()  # started by torchrun: this rank's device, and join the run
    dev = D.device_for(worker, device) if worker else resolve_device(device)
    if worker:
        D.start(worker, dev)
        workers = f"{worker.world_size} worker{'s' if worker.world_size > 1 else ''}"
        notes.append(f"data-parallel: {workers} ({D.backend_for(dev)}), rank 0 on {dev}; "
                     "the batch size is the global batch")
    from .precision import amp_dtype as autocast_for, apply_memory_format, keep_freed_memory, standard_state
    from .precision import use_fast_dropout

    autocast_dtype, amp_notes = autocast_for(amp, dev)  # bf16 on a CPU with AMX (precision.py)
    notes.extend(amp_notes)
    if dev.type == "cpu":
        keep_freed_memory()  # exact and faster: activations stop page-faulting in every step

    _refuse_absurd_memory(checked, 1, dev)  # before the data: weights and one example must fit
    dataset = load_data(config, fold=fold)
    batch = config.step_rows(len(dataset.train))
    _refuse_absurd_memory(checked, batch, dev)  # the loop's batch
    dataset.train, dataset.val = dataset.train.to(dev), dataset.val.to(dev) if dataset.val is not None else None
    torch.manual_seed(config.seed)
    model = build_model(checked).to(dev)
    initialised = None if resume else transfer.init_model(model, config)  # a resumed run has its own weights
    if initialised is not None:
        notes.extend(initialised.notes())
    task_kind = checked.task.kind if checked.task else "regression"
    weights = class_weight_tensor(config.class_weights, dataset, task_kind, checked.task and checked.task.classes)
    loss_fn = build_loss(checked, torch.tensor(weights) if weights is not None else None)
    if amp:  # the --amp speedups besides the dtype (precision.py); the layout before the optimizer
        apply_memory_format(model, amp)
        use_fast_dropout(model, dev)
    optimizer = build_optimizer(checked.optimizer[0], checked.optimizer[1], model, config.lr, fused=amp)

    out_rank = len(checked.graph.output_node.out.shape)
    task = Task(task_kind, tuple((n, dict(a)) for n, a in checked.metrics), 1 + feature_axis(out_rank))
    keys = history_keys(task, dataset.val is not None)
    monitor = config.monitor or ("val_loss" if dataset.val is not None else "loss")
    if monitor not in keys:
        raise UserError(f"monitor {monitor} is not recorded by this run; it records: "
                        + ", ".join(k for k in keys if k not in ("epoch", "lr", "seconds")),
                        help="val_* values need `validation` above 0 in the train section")
    schedule = Schedule(optimizer, config.schedule, config.warmup, config.epochs, M.higher_is_better(monitor))
    cfg = FitConfig(epochs=config.epochs, batch_size=batch, steps=config.steps, shuffle=config.shuffle,
                    clip_grad_norm=config.clip_grad_norm, clip_grad_value=config.clip_grad_value,
                    early_stopping=config.early_stopping, monitor=monitor, amp_dtype=autocast_dtype, amp_device=dev.type,
                    compile=compile, augment=_augmenter(config, checked))

    name = config.name
    digest = ckpt_io.ir_hash(checked)
    # rank 0 makes the folder (a read-only or misplaced --out is a clear error) and holds its lock
    lock = own_run_dir(out_dir, name, resume) if D.is_main() else RunLock(".", enabled=False)
    run_logs = None  # logs.RunLogs with `log`, on rank 0
    try:
        run_dir = Path(D.broadcast(str(lock.folder)))  # rank 0's choice on every rank; only rank 0 writes in it
        if lock.note:
            notes.append(lock.note)
        if D.is_main() and not resume:
            notes.extend(start_over(run_dir, digest, name, overwrite, config.check_source))
        generator = torch.Generator().manual_seed(config.seed)
        progress = Progress()
        if resume:
            state, resume_notes = ckpt_io.load_for_resume(run_dir, digest, name)  # last.pt, or last.prev.pt if damaged
            notes.extend(resume_notes)
            model.load_state_dict(state["model"])
            fused = [group.get("fused") for group in optimizer.param_groups]
            optimizer.load_state_dict(state["optimizer"])
            for group, kernel in zip(optimizer.param_groups, fused):  # this run's --amp decides, not the checkpoint's
                group["fused"] = kernel
            schedule.load_state_dict(state["schedule"])
            progress = Progress.from_state(state["progress"])
            ckpt_io.restore_rng(state["rng"], generator, cfg.augment)
            schedule.apply(progress.epoch)
            notes.append(f"resumed from {run_dir / 'last.pt'} after epoch {progress.epoch}")
            notes.extend(_length_notes(state, config))
            _refuse_finished(progress, cfg, config, run_dir)
        else:
            torch.manual_seed(config.seed)  # dropout & co. start from the seed, whatever initialisation drew
        if D.is_main():
            ckpt_io.write_text(run_dir / "spec.nn", config.source)
            if initialised is not None:
                transfer.write_report(run_dir, initialised)
            write_data_facts(run_dir / "data.json", dataset)
            text.write_vocab(run_dir, dataset.meta)  # a text run's vocabulary, also in data.json and the checkpoint

        def payload(progress: Progress) -> dict[str, Any]:
            return {"model": standard_state(model.state_dict()), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "rng": ckpt_io.rng_state(generator, cfg.augment), "progress": progress.state_dict(), "epoch": progress.epoch,
                    "spec_source": config.source, "spec_name": name, "ir_hash": digest,
                    "data_origin": dataset.origin, "data_target": dataset.target,
                    "data_stats": {k: dict(v) for k, v in dataset.stats.items()}, "data_meta": dataset.meta,
                    "seed": config.seed, "monitor": monitor,
                    "fold": list(fold) if fold is not None else None,
                    "length": {"epochs": config.epochs, "steps": config.steps}}

        def epoch_done(epoch: int, row: dict, improved: bool, progress: Progress) -> None:
            if not D.is_main():  # one run folder, written by rank 0
                return
            state = ckpt_io.encode(payload(progress))  # once: best.pt is the same state as last.pt
            ckpt_io.save_encoded(run_dir / "last.pt", state)
            if improved:
                ckpt_io.save_encoded(run_dir / "best.pt", state)
            write_history(run_dir / "history.csv", progress.history, keys)
            write_metrics(run_dir / "metrics.json", progress, monitor, dataset, dev, finished=False)
            if run_logs is not None:  # before on_epoch, which may stop the run (a pruned trial)
                run_logs.epoch(row, model)
            if on_epoch is not None:
                on_epoch(epoch, dict(row))

        if log and D.is_main():
            run_logs = logs.open_logs(log, run_dir, config, model, resume=resume, history=progress.history)
            run_logs.graph(model, dataset.train)  # traced on two training examples
            notes.extend(run_logs.notes)
        if on_start is not None and D.is_main():
            on_start(run_dir, dataset, notes, config.epochs, progress.epoch)
        try:
            progress = fit(model, loss_fn, optimizer, schedule, dataset, cfg, task, generator, progress,
                           on_epoch=epoch_done, on_batch=on_batch if D.is_main() else None)
        except KeyboardInterrupt:  # Ctrl-C: last.pt, history.csv and metrics.json are of the last finished epoch
            if D.is_main() and progress.history:
                write_curves(run_dir / "curves.png", progress.history, name, progress.best_epoch)
            raise TrainingInterrupted(run_dir, progress.epoch, config.epochs) from None
        if not progress.history:
            raise UserError("nothing was trained: the run had already reached its epochs or steps",
                            help="give more --epochs to continue a resumed run")
        if D.is_main():
            write_curves(run_dir / "curves.png", progress.history, name, progress.best_epoch)
            _write_reconstructions(run_dir, config, model, dataset)
            write_metrics(run_dir / "metrics.json", progress, monitor, dataset, dev, finished=True)  # the run is complete
        best = _best_row(progress)
        return RunSummary(run_dir, progress.history, dict(progress.history[-1]), best, monitor, notes)
    finally:
        if run_logs is not None:  # also after an error or Ctrl-C: the run's status says which
            run_logs.close(run_dir, sys.exc_info()[1])
        lock.release()


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the run folder was brought up to its last finished epoch
    (curves.png too): `nnspec train ... --resume` continues from `epoch`."""

    def __init__(self, run_dir: Path, epoch: int, epochs: int):
        super().__init__(f"interrupted after epoch {epoch} of {epochs}")
        self.run_dir, self.epoch, self.epochs = run_dir, epoch, epochs


def _length_notes(state: dict, config: RunConfig) -> list[str]:
    """What a resume says when the run's length changed since the checkpoint (LENGTH_SETTINGS may)."""
    before = state.get("length") or {}
    now = {"epochs": config.epochs, "steps": config.steps}
    changed = [f"{k} {before[k]} -> {now[k]}" for k in now if k in before and before[k] != now[k]]
    if not changed:
        return []
    notes = [f"the run now trains for {', '.join(changed)}"]
    if config.schedule and config.schedule[0] == "cosine" and before.get("epochs", config.epochs) != config.epochs:
        notes.append(f"the cosine schedule now spans {config.epochs} epochs: the rate follows the longer curve "
                     "from here on")
    return notes


def _refuse_finished(progress, cfg, config: RunConfig, run_dir: Path) -> None:
    """`--resume` of a run with nothing left to train: say so and how to train more, instead of
    reporting the old run as if it had trained."""
    done = f"{run_dir} is finished"
    if cfg.steps is not None and progress.steps >= cfg.steps:
        why, setting, done_so_far = f"it took {progress.steps} of {cfg.steps} steps", "steps", progress.steps
    elif progress.epoch >= cfg.epochs:
        why, setting, done_so_far = f"it trained {progress.epoch} of {cfg.epochs} epochs", "epochs", progress.epoch
    elif cfg.early_stopping is not None and progress.bad_epochs >= cfg.early_stopping:
        raise UserError(f"{done}: early stopping ended it after epoch {progress.epoch} ({cfg.monitor} did not "
                        f"improve for {cfg.early_stopping} epochs); nothing is left to train",
                        help="resuming would stop again at once; to train on, start a new run (another --out) "
                             "with a larger early_stopping")
    else:
        return
    spec = config.filename or "SPEC"
    flag = " (or add --epochs N to that command)" if setting == "epochs" else ""
    raise UserError(f"{done}: {why}; nothing is left to train",
                    help=f"to train more, raise `{setting}` above {done_so_far} in {spec} and run "
                         f"`nnspec train {spec} --out {run_dir} --resume`{flag}; only `epochs` and `steps` "
                         "may change when a run is resumed")


def write_data_facts(path: Path, dataset: Data) -> None:
    """What the run learnt about its data, readable without torch: the source, the label column,
    the class names and any fitted state a source keeps (a vocabulary); the checkpoint holds the same."""
    facts = {"origin": dataset.origin, "target": dataset.target, **dataset.meta}
    fsutil.atomic_write_text(path, json.dumps(facts, indent=2) + "\n")


def class_names_of(state: dict) -> list[str] | None:
    """The class names a checkpoint's run was trained with, or None (older checkpoints, regression)."""
    names = (state.get("data_meta") or {}).get("class_names")
    return [str(n) for n in names] if names else None


def _augmenter(config: RunConfig, checked):
    """The run's augment.Augmenter (its own seeded stream), or None without `augment`."""
    if not config.augment:
        return None
    from . import augment

    shapes = [tuple(checked.graph.node(n).out.shape) for n in checked.graph.inputs]
    return augment.build(config.augment, shapes, config.seed)


def _write_reconstructions(run_dir: Path, config: RunConfig, model, dataset: Data) -> None:
    """reconstructions.png for an autoencoder (`target input`) of images [C, H, W]: validation
    examples when there are some, else training ones."""
    from . import autoencoder

    shape = tuple(config.checked.graph.node(config.checked.graph.inputs[0]).out.shape)
    if config.target != "input" or not autoencoder.is_image(shape):
        return
    split = dataset.val if dataset.val is not None else dataset.train
    autoencoder.write_reconstructions(run_dir / "reconstructions.png", model, split, shape, config.name)


def _refuse_absurd_memory(checked, batch: int | None, device=None) -> None:
    """memory.require_model_fits for the batch this run really uses (None: the weights alone) and
    the memory it runs in: this machine's (the model is built there first) and, on a GPU, the GPU's."""
    from .. import memory

    gpu = gpu_memory = None
    if device is not None and device.type == "cuda":
        gpu = str(device)
        if batch is not None:
            import torch

            gpu_memory = torch.cuda.get_device_properties(device).total_memory
    memory.require_model_fits(checked.graph, batch, gpu, gpu_memory)


def _best_row(progress) -> dict:
    if progress.best_epoch is None:
        return dict(progress.history[-1])
    return dict(next(r for r in progress.history if r["epoch"] == progress.best_epoch))


def write_history(path: Path, history: list[dict], keys: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _fmt(row.get(k)) for k in keys})
    ckpt_io.write_text(path, buf.getvalue())


def _fmt(v):
    if isinstance(v, float):
        return repr(v)
    return v


def json_safe(row: dict) -> dict:
    """A row of values for a JSON file: NaN and infinities (which JSON cannot hold) become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def write_metrics(path: Path, progress, monitor: str, dataset: Data, device, finished: bool = True) -> None:
    best = _best_row(progress)
    # finished is false while the run is under way (or after it was killed): `--resume` completes it
    report = {"finished": finished, "final": json_safe(progress.history[-1]), "best": json_safe(best), "monitor": monitor,
              "best_epoch": progress.best_epoch, "epochs": progress.epoch, "steps": progress.steps,
              "data": dataset.origin, "train_samples": len(dataset.train),
              "validation_samples": len(dataset.val) if dataset.val is not None else 0, "device": str(device)}
    ckpt_io.write_text(path, json.dumps(report, indent=2) + "\n")


def write_curves(path: Path, history: list[dict], title: str, best_epoch: int | None = None) -> None:
    """curves.png: loss and each metric per epoch (train and validation) in a grid, the best epoch
    marked; drawn by plot.figure, the renderer of `nnspec plot`."""
    from .. import plot

    columns = tuple(history[0])  # plot leaves out the per-class values (metrics.json has them)
    rows = tuple({k: float(r[k]) for k in columns if r.get(k) is not None} for r in history)
    plot.draw([plot.History(title, columns, rows, best_epoch)], path)


# ------------------------------------------------------------------ evaluate and predict


def _load_for(config: RunConfig, checkpoint: str, device: str):
    from ..backends.torch_model import build_model

    checked = config.checked
    _refuse_absurd_memory(checked, None)  # the weights must fit before the checkpoint is read
    state = ckpt_io.load(checkpoint, ckpt_io.ir_hash(checked), config.name)
    dev = resolve_device(device)
    model = build_model(checked)
    model.load_state_dict(state["model"])
    return checked, state, model.to(dev), dev


def evaluate_spec(run, checkpoint: str, *, data=None, device="auto", batch_size: int = EVAL_BATCH) -> dict[str, Any]:
    """Loss and metrics of a checkpoint: on the validation split of the run's data (re-made with the
    run's seed), or on the whole of the data given for this run (RunConfig.data_override; for a
    Result, `data`); standardised with the run's training stats. `run`: as for train_spec (search
    spaces at their defaults). Scored batch by batch into a streaming.EvalStream, which keeps counts
    and sums, not outputs; a CSV or NPZ data file is read batch by batch too, so memory does not
    grow with its length."""
    from . import images
    from .data import load_arrays, resolve_path
    from .losses import build_loss
    from .row_files import row_batches
    from .streaming import EvalStream, score
    from ..catalog.base import feature_axis

    config = as_run(run, defaults=True, data=data)
    checked, state, model, dev = _load_for(config, checkpoint, device)
    expect = Expect.of(checked)
    out_rank = len(checked.graph.output_node.out.shape)
    stream = EvalStream(checked.metrics, expect.kind, 1 + feature_axis(out_rank))
    which = "whole data set"
    if not config.data_override:
        fold = tuple(state["fold"]) if state.get("fold") else None  # a cross-validation run: its own fold
        dataset = load_data(config, seed=state.get("seed"), fold=fold, fitted=state.get("data_meta"))
        split, which = (dataset.val, "validation split") if dataset.val is not None else (dataset.train, which)
        if fold is not None:
            which = f"validation fold {fold[0] + 1} of {fold[1]}"
        batches = (images.numpy_batches(split, batch_size) if isinstance(split, images.StreamedSplit)
                   else _array_batches([x.numpy() for x in split.inputs], split.y.numpy(), batch_size))
        origin = dataset.origin
    else:
        name, args = config.data
        if text.reads_text(state, name):  # raw text, encoded with the run's vocabulary as it is read
            batches, origin = text.eval_batches(config.data, config.base_dir, state, expect, batch_size)
        elif name in ("shards", "parquet"):  # bigger than memory: read from disk as scored
            from .shards import eval_batches

            batches, origin = eval_batches(config.data, config.base_dir, expect, state, batch_size)
        elif name in ("csv", "npz"):  # files of any length: read as they are scored
            path = resolve_path(args["path"], config.base_dir)
            rows = row_batches(path, expect, batch_size, labels=not expect.target_input, target=args.get("target"),
                               delimiter=args.get("delimiter", ","))
            batches, origin = ((_standardize(b.inputs, expect, state), b.y) for b in rows), str(path)
        else:  # bundled and synthetic sets are small: made whole, scored in batches
            arrays = load_arrays(config.data, expect, config.base_dir, where=config.data_where)
            batches = (images.arrays_batches(arrays, batch_size) if images.is_streamed(arrays)  # decoded as scored
                       else _array_batches(_standardize(arrays.inputs, expect, state), arrays.y, batch_size))
            origin = arrays.origin
        if expect.target_input:  # an autoencoder is scored against its inputs as it sees them
            from .autoencoder import labels_from_inputs

            batches = ((x, labels_from_inputs(x, expect.out_shape)) for x, _ in batches)
    score(model, batches, build_loss(checked), stream, dev)
    if stream.samples == 0:
        raise UserError(f"{origin} has no rows to evaluate")
    return {"data": origin, "split": which, "samples": stream.samples, "checkpoint": str(checkpoint),
            "epoch": state.get("epoch"), **json_safe(stream.values())}


def _array_batches(inputs: list, y, batch: int):
    for start in range(0, len(y), batch):
        yield [x[start:start + batch] for x in inputs], y[start:start + batch]


def _standardize(inputs: list, expect: Expect, state: dict) -> list:
    return standardize_inputs(inputs, [name for name, _, _ in expect.inputs], state)


def standardize_inputs(inputs: list, names: list[str], state: dict) -> list:
    """What predict does to rows before the model: (x - mean) / std with the run's training
    statistics (a checkpoint's data_stats), for each standardised input; the others as given."""
    stats = state.get("data_stats") or {}
    out = []
    for name, x in zip(names, inputs):
        if name in stats:
            x = ((x - stats[name]["mean"].numpy()) / stats[name]["std"].numpy()).astype(x.dtype)
        out.append(x)
    return out


def predict_spec(run, checkpoint: str, input_path: str, *, output=None, device="auto", batch_size: int = EVAL_BATCH,
                 tensor: str | None = None):
    """Predictions for the rows of a CSV or NPZ file -> (header, rows); written as CSV to `output` when given.
    Holds every row; `predict_batches` + `write_predictions` stream instead (what `nnspec predict` uses)."""
    header, rows = [], []
    for header, batch_rows in predict_batches(run, checkpoint, input_path, device=device, batch_size=batch_size,
                                              tensor=tensor):
        rows += batch_rows
    if output:
        write_predictions([(header, rows)], output)
    return header, rows


def predict_batches(run, checkpoint: str, input_path: str, *, device="auto", batch_size: int = EVAL_BATCH,
                    tensor: str | None = None):
    """Yields (header, rows) for each batch of input rows: the input rows (CSV, or each array of an
    .npz) are read batch by batch and the predictions made batch by batch (row_files.py), so inputs
    of any length stream through. `tensor`: the values of that named tensor instead of the output
    (tensors.py)."""
    import numpy as np
    import torch

    from . import images
    from .loop import predict
    from .row_files import row_batches

    config = as_run(run, defaults=True)
    checked, state, model, dev = _load_for(config, checkpoint, device)
    expect = Expect.of(checked)
    if tensor is not None:  # `--tensor code`: an inner tensor's values, plain output_i columns
        from .tensors import tensor_predictor

        model, checked = tensor_predictor(model, checked, tensor)
    if images.is_image_input(Path(input_path)):  # a folder of images (or one image): a `file` column first
        yield from images.prediction_tables(model, Path(input_path), expect, batch_size, dev,
                                            lambda probs: prediction_table(probs, checked, class_names_of(state)))
        return
    empty = True
    rows_read = (text.predict_rows(Path(input_path), state, expect, batch_size)  # raw text: the run's vocabulary
                 if text.vocabulary_meta(state) and Path(input_path).suffix.lower() == ".csv"
                 else row_batches(Path(input_path), expect, batch_size, target=state.get("data_target")))
    for rows in rows_read:
        inputs = _standardize(rows.inputs, expect, state)
        probs = predict(model, [torch.from_numpy(np.ascontiguousarray(x)).to(dev) for x in inputs], batch_size)
        empty = False
        yield prediction_table(probs.float().cpu().numpy(), checked, class_names_of(state),
                               dense.padding_positions(rows.inputs, expect))
    if empty:
        raise UserError(f"{input_path} has no rows to predict")


def write_predictions(batches, output) -> int:
    """Write (header, rows) batches as one CSV file, batch by batch, atomically; returns the row count."""
    count = 0

    def write(tmp):
        nonlocal count
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            for i, (header, rows) in enumerate(batches):
                if i == 0:
                    w.writerow(header)
                w.writerows(rows)
                count += len(rows)

    fsutil.atomic_write(output, write)  # -o FILE: its folder must exist
    return count


def prediction_table(probs, checked, class_names: list[str] | None = None, padding=None) -> tuple[list[str], list[list]]:
    """Rows of predictions: the probabilities (`p_<c>`; `logit_<c>` when the network ends without
    softmax: its outputs are logits, never named as probabilities), the predicted class id and,
    when the run knows its class names, the predicted `label`. A class per pixel or step: the
    predicted class (name) of each position (dense_labels.prediction_table; `padding`: steps to
    leave empty)."""
    kind = checked.task.kind if checked.task else "regression"
    flat = probs.reshape(len(probs), -1)
    if kind == "multiclass" and probs.ndim > 2:
        return dense.prediction_table(probs, class_names, padding)
    if kind == "multiclass" and probs.ndim == 2:
        names = class_names if class_names and len(class_names) == probs.shape[1] else None
        prefix = "logit" if checked.output_is == "logits" else "p"  # never probabilities-named logits
        header = [f"{prefix}_{c}" for c in range(probs.shape[1])] + ["predicted"] + (["label"] if names else [])
        ids = probs.argmax(1)
        return header, [[*map(_num, row), int(i), *([names[i]] if names else [])] for row, i in zip(probs, ids)]
    if kind == "binary" and flat.shape[1] == 1:
        names = class_names if class_names and len(class_names) == 2 else None
        header = ["p_1", "predicted"] + (["label"] if names else [])
        picked = [int(row[0] >= 0.5) for row in flat]
        return header, [[_num(row[0]), c, *([names[c]] if names else [])] for row, c in zip(flat, picked)]
    header = [f"output_{i}" for i in range(flat.shape[1])]
    return header, [list(map(_num, row)) for row in flat]


def _num(v) -> float:
    return float(f"{float(v):.6g}")
