"""k-fold cross-validation: `folds K` (or `nnspec train --folds K`) trains K runs, run k validated
on fold k, and reports the mean and spread of their metrics.

One split of a small data set is a noisy measure: on scikit-learn's diabetes set, R² of the same
model on a 25 % hold-out ranges from 0.35 to 0.59 with the seed of the split alone. K folds use
every row for validation exactly once, which is the usual way to report a small-data model.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..diagnostics import UserError
from . import checkpoint as ckpt_io
from ..runconfig import RunConfig
from .run import RunSummary, as_run, json_safe, own_run_dir, previous_run, start_over, train_spec

NOT_METRICS = ("epoch", "lr", "seconds")


@dataclass
class CrossValidation:
    out_dir: Path
    runs: list[RunSummary]
    monitor: str
    notes: list[str] = field(default_factory=list)

    @property
    def best_rows(self) -> list[dict]:
        return [run.best for run in self.runs]

    @property
    def final_rows(self) -> list[dict]:
        return [run.final for run in self.runs]

    def mean_std(self, which: str = "best") -> dict[str, tuple[float, float]]:
        """Each metric's mean and (population) standard deviation over the folds."""
        rows = self.best_rows if which == "best" else self.final_rows
        keys = [k for k in rows[0] if k not in NOT_METRICS]
        return {k: _mean_std([float(row[k]) for row in rows if k in row]) for k in keys}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def fold_count(config: RunConfig) -> int:
    """The number of folds (--folds, else the spec's `folds`: RunConfig.folds); refused when neither
    asks for them."""
    count = config.folds
    if not count:
        raise UserError(f"{config.name} is not cross-validated",
                        help="add `folds 5` to its train section, or pass --folds 5")
    if count < 2:
        raise UserError(f"--folds {count}: cross-validation needs at least 2 folds", help="e.g. --folds 5")
    return int(count)


def replaced_validation(config: RunConfig, folds: int | None) -> str | None:
    """The note for `--folds` given over a spec that holds out a validation fraction."""
    if folds is not None and config.validation:
        return f"--folds {folds} replaces the spec's `validation {config.validation}`"
    return None


SETTINGS = ("epochs", "batch_size", "lr", "seed", "data", "defaults")  # what as_run resolves a Result with


def cross_validate(run, *, folds: int | None = None, out_dir=None, resume: bool = False,
                   run_fold: Callable[..., RunSummary] | None = None,
                   on_fold: Callable[[int, int, Path], None] | None = None, overwrite: bool = False,
                   **options: Any) -> CrossValidation:
    """Train one run per fold into `out_dir/fold_<k>/` and write `cv.json` beside them. `run`: a
    RunConfig (what `nnspec train` passes; its `folds` counts them), or a pipeline Result with the
    settings to resolve it with (`folds` and the SETTINGS in `options`). `run_fold` (default
    train_spec) trains one fold; `nnspec train` passes one that draws progress.

    The folder is locked for the whole cross-validation (each fold's folder by its run too), and
    one holding a run of another spec is refused unless `overwrite`, as by `nnspec train`."""
    from . import distributed as D

    settings = {k: options.pop(k) for k in SETTINGS if k in options}
    if not isinstance(run, RunConfig):
        settings["folds"] = folds  # a RunConfig has its folds resolved; `folds` then only words the note
    config = as_run(run, **settings)
    count = fold_count(config)
    if resume:
        raise UserError("--resume does not apply to a cross-validated run",
                        help="start it again, or resume one fold's run: it is an ordinary run folder")
    if D.worker_from_env() is not None:
        raise UserError("cross-validation runs its folds one after another in one process",
                        help="drop --nproc-per-node (or torchrun), or train without folds")
    notes = [note] if (note := replaced_validation(config, folds)) else []
    name = config.name
    with own_run_dir(out_dir, name, resume=False, what="nnspec train --folds") as lock:
        run_dir = lock.folder
        if lock.note:
            notes.append(lock.note)
        previous = previous_run(run_dir, config.check_source)
        digest = ckpt_io.ir_hash(config.checked)
        if previous is not None and previous[0] != digest and not overwrite:
            start_over(run_dir, digest, name, overwrite, config.check_source)  # raises: a run of another spec is there
        ckpt_io.write_text(run_dir / "spec.nn", config.source)
        run_fold = run_fold or train_spec
        runs = []
        for k in range(count):
            fold_dir = run_dir / f"fold_{k + 1}"
            if on_fold is not None:
                on_fold(k, count, fold_dir)
            runs.append(run_fold(config, out_dir=fold_dir, fold=(k, count), overwrite=overwrite, **options))
        cv = CrossValidation(run_dir, runs, runs[0].monitor, notes)
        write_summary(run_dir / "cv.json", cv)
    return cv


def write_summary(path: Path, cv: CrossValidation) -> None:
    summary = {
        "folds": len(cv.runs), "monitor": cv.monitor,
        "best": {k: json_safe({"mean": m, "std": s}) for k, (m, s) in cv.mean_std("best").items()},
        "final": {k: json_safe({"mean": m, "std": s}) for k, (m, s) in cv.mean_std("final").items()},
        "runs": [{"fold": i + 1, "folder": str(run.out_dir), "best": json_safe(run.best),
                  "final": json_safe(run.final)} for i, run in enumerate(cv.runs)],
    }
    ckpt_io.write_text(path, json.dumps(summary, indent=2) + "\n")
