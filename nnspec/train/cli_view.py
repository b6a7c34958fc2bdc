"""What `nnspec train / evaluate / predict` print: a rich progress bar per epoch and short summaries."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click

from ..runconfig import EVAL_BATCH, RunConfig
from .metrics import is_per_class
from .run import RunSummary, TrainingInterrupted, evaluate_spec, predict_batches, train_spec, write_predictions


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _row_text(row: dict) -> str:
    """`key=value` pairs: one word each, so a line wraps (if ever) between pairs and `grep -o
    'val_auc=[^ ]*'` finds every value."""
    shown = [(k, v) for k, v in row.items() if k not in ("epoch", "lr", "seconds") and not is_per_class(k)]
    return " ".join(f"{k}={_fmt(v)}" for k, v in shown)


def epoch_line(epoch: int, epochs: int, row: dict, rate: float) -> str:
    """The one line `train` prints per epoch (a terminal's and a log file's alike)."""
    lr = f" lr={row['lr']:.3g}" if "lr" in row else ""
    return (f"epoch={epoch}/{epochs} {_row_text(row)}{lr} seconds={row.get('seconds', 0.0):.2f} "
            f"samples_per_s={rate:.0f}")


def epoch_json(epoch: int, epochs: int, row: dict, rate: float) -> str:
    """`--log-format json`: the epoch as one JSON object (NaN and infinities as null: strict JSON)."""
    values = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}
    return json.dumps({**values, "epoch": epoch, "epochs": epochs, "samples_per_s": rate}, allow_nan=False)


def train_command(config: RunConfig, console, *, quiet: bool, log_format: str = "text", **options) -> RunSummary:
    """`log_format` json: each epoch is a JSON line on stdout and nothing else is (the console then
    writes to stderr, see cli.train); text: a progress bar and a key=value line per epoch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    state = {"epochs": 0, "t0": 0.0, "samples": 0}
    lines = not quiet and log_format == "text"  # a key=value line per epoch
    bar = None if not lines or not console.is_terminal else Progress(  # a file or pipe gets the lines only
        TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=console, transient=True)
    task_id = None

    def on_start(run_dir: Path, dataset, notes, epochs, done):
        nonlocal task_id
        state["epochs"], state["samples"] = epochs, len(dataset.train)
        for note in notes:
            console.print(note, soft_wrap=True)
        val = f", {len(dataset.val)} validation" if dataset.val is not None else ""
        console.print(f"training {config.name} on {dataset.origin} ({len(dataset.train)} train{val}) "
                      f"-> {run_dir}", soft_wrap=True)
        if bar is not None:
            bar.start()
            task_id = bar.add_task("train", total=len(dataset.train), epoch=f"{done + 1}/{epochs}", rate="")
        state["t0"] = time.perf_counter()

    def on_batch(seen: int, total: int):
        elapsed = time.perf_counter() - state["t0"]
        bar.update(task_id, completed=seen, rate=f"{seen / elapsed:,.0f} samples/s" if elapsed > 0 else "")

    def on_epoch(epoch: int, row: dict):
        rate = state["samples"] / row["seconds"] if row.get("seconds") else 0.0
        if log_format == "json":
            click.echo(epoch_json(epoch, state["epochs"], row, rate))
        if lines:  # soft_wrap: never hard-wrapped into a file or pipe, whatever its width
            console.print(epoch_line(epoch, state["epochs"], row, rate), soft_wrap=True)
        if bar is not None:
            bar.reset(task_id, total=state["samples"], epoch=f"{epoch + 1}/{state['epochs']}", rate="")
        state["t0"] = time.perf_counter()

    interrupted = None
    try:
        summary = train_spec(config, quiet=quiet, on_epoch=on_epoch, on_batch=on_batch if bar else None,
                             on_start=on_start, **options)
    except TrainingInterrupted as stop:
        interrupted = stop
    finally:
        if bar is not None:
            bar.stop()
    if interrupted is not None:  # Ctrl-C: where the run stands and the command that continues it
        console.print(interrupted_text(config, interrupted, options.get("fold")), soft_wrap=True)
        raise click.exceptions.Exit(130)
    best = summary.best
    which = "last" if "d_loss" in best else "best"  # no GAN loss says which epoch is best
    by = "" if which == "last" else f" by {summary.monitor}"
    console.print(f"{which} epoch={best['epoch']}{by}: {_row_text(best)}", soft_wrap=True)
    kept = [n for n in ("history.csv", "metrics.json", "best.pt", "last.pt") if (summary.out_dir / n).is_file()]
    console.print(f"run folder: {summary.out_dir}  ({', '.join(kept)}, "  # a GAN run keeps no best.pt
                  f"curves: {summary.out_dir / 'curves.png'})", soft_wrap=True)
    return summary


def interrupted_text(config: RunConfig, stop: TrainingInterrupted, fold=None) -> str:
    """What `train` prints on Ctrl-C: the files kept and the exact command that resumes the run."""
    if fold is not None:
        return (f"interrupted in fold {fold[0] + 1} of {fold[1]} after epoch {stop.epoch}: cross-validation does "
                "not resume; run the same command again to start it over")
    if stop.epoch == 0:
        return (f"interrupted in the first epoch of {stop.epochs}: nothing was saved in {stop.run_dir} yet; "
                "run the same command again to start over")
    return (f"interrupted after epoch {stop.epoch} of {stop.epochs}: {stop.run_dir} holds last.pt, history.csv, "
            f"metrics.json and curves.png as of epoch {stop.epoch}\n"
            f"resume with: {resume_command(config, stop.run_dir)}")


def resume_command(config: RunConfig, run_dir: Path) -> str:
    """This `nnspec train` call's own arguments and options (distributed.argv_from_click), with --out
    naming the run folder and --resume."""
    import shlex

    from . import distributed as D

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name == "train":
        argv = D.argv_from_click(ctx, skip=("out_dir", "resume", "overwrite"))
    else:  # called from Python, not the CLI
        argv = ["train", config.filename or "SPEC"]
    return shlex.join(["nnspec", *argv, "--out", str(run_dir), "--resume"])


def cross_validate_command(config: RunConfig, console, *, quiet: bool, folds: int | None, log_format: str = "text",
                           **options):
    """Every fold as `nnspec train` shows one run, then a table of the folds with their mean and spread."""
    from rich.table import Table

    from .crossval import cross_validate, replaced_validation

    def on_fold(k: int, count: int, fold_dir: Path) -> None:
        console.rule(f"fold {k + 1} of {count}")

    def run_fold(config, **kw):
        return train_command(config, console, quiet=quiet, log_format=log_format, **kw)

    note = replaced_validation(config, folds)
    if note:
        console.print(note)
    cv = cross_validate(config, folds=folds, run_fold=run_fold, on_fold=on_fold, **options)
    stats = cv.mean_std("best")
    table = Table(title=f"{len(cv.runs)}-fold cross-validation, best epoch of each fold by {cv.monitor}")
    for column in ("fold", "epoch", *stats):
        table.add_column(column, justify="right")
    for i, row in enumerate(cv.best_rows):
        table.add_row(str(i + 1), str(row["epoch"]), *(_fmt(row.get(k)) for k in stats))
    table.add_row("mean ± std", "", *(f"{_fmt(m)} ± {_fmt(s)}" for m, s in stats.values()), style="bold")
    console.print(table)
    final = "  ".join(f"{k} {_fmt(m)} ± {_fmt(s)}" for k, (m, s) in cv.mean_std("final").items())
    console.print(f"last epoch of each fold: {final}", soft_wrap=True)
    console.print(f"run folder: {cv.out_dir}  (cv.json, and fold_1 … fold_{len(cv.runs)}: one run folder each)",
                  soft_wrap=True)
    return cv


def evaluate_command(config: RunConfig, console, checkpoint: str, device: str, output: str | None,
                     batch_size: int = EVAL_BATCH) -> dict:
    values = evaluate_spec(config, checkpoint, device=device, batch_size=batch_size)
    console.print(f"{values['data']} ({values['split']}, {values['samples']} samples), checkpoint {checkpoint} "
                  f"(epoch {values['epoch']})")
    for k, v in values.items():
        if k not in ("data", "split", "samples", "checkpoint", "epoch"):
            console.print(f"  {k:<20} {_fmt(v)}")
    path = Path(output) if output else Path(checkpoint).with_name(Path(checkpoint).stem + "_evaluation.json")
    from ..fsutil import atomic_write_text

    atomic_write_text(path, json.dumps(values, indent=2) + "\n")  # -o FILE: its folder must exist
    console.print(f"wrote {path}")
    return values


def predict_command(config: RunConfig, checkpoint: str, input_path: str, output: str | None, device: str,
                    batch_size: int = EVAL_BATCH, tensor: str | None = None) -> None:
    # streamed: never all rows at once
    batches = predict_batches(config, checkpoint, input_path, device=device, batch_size=batch_size, tensor=tensor)
    note = None if tensor else logits_note(config.checked)
    if output:
        click.echo(f"wrote {write_predictions(batches, output)} predictions to {output}")
        if note:
            click.echo(note)
        return
    if note:  # on stderr: stdout is the CSV
        click.echo(note, err=True)
    for i, (header, rows) in enumerate(batches):
        if i == 0:
            click.echo(",".join(header))
        for row in rows:
            click.echo(",".join(str(v) for v in row))


def logits_note(checked) -> str | None:
    """What predict says when its class columns are logits (the network ends without softmax), or None."""
    out = checked.graph.output_node.out
    if checked.output_is != "logits" or len(out.shape) != 1:  # a class per position writes class ids only
        return None
    loss = checked.loss[0][1]
    return (f"note: {checked.spec.name} ends without softmax, so the columns logit_0..logit_{out.shape[0] - 1} are "
            f"its logits, not probabilities ({loss} applies the softmax in training); softmax over a row gives "
            "its probabilities, or end the network with `-> softmax` (the loss fuses it: training is the same)")
