"""Experiment logs of a training run: TensorBoard event files and a local MLflow tracking store.

`nnspec train --log tensorboard --log mlflow` (and `train_spec(log=...)`) writes, besides the
run folder's own files:

- `RUN/tensorboard/`: per epoch every value of history.csv as a scalar (loss, metrics, val_*, lr,
  seconds), a histogram of each weight tensor, and once the model's graph (traced on two
  training examples in eval mode, so no BatchNorm statistic moves);
- `RUN/mlflow/`: a tracking store `mlflow.db` (SQLite: MLflow 3 refuses new file stores) and
  its `artifacts/`: one run with the spec's settings as params, the values per epoch as metrics
  and, at the end, the run folder's files (history.csv, metrics.json, spec.nn, curves.png, ...).

`nnspec tune --log ...` logs each trial the same way, side by side: `TUNE/tensorboard/trial-NNN/`
and one MLflow run per trial nested under a parent run of the study (`StudyLogs`).

Both packages come with the `logs` extra and are imported only through extras.require. MLflow is
only ever given a local SQLite URI (never the global tracking URI, never a server) and its
telemetry is switched off before it is imported.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..diagnostics import UserError, first_line
from ..extras import require
from ..fsutil import atomic_write_text

KINDS = ("tensorboard", "mlflow")
STATE_FILE = "logs.json"  # the MLflow run id of a run folder, so that --resume continues that run
ARTIFACTS = ("history.csv", "metrics.json", "spec.nn", "data.json", "curves.png", "reconstructions.png", "best.pt")


@dataclass(frozen=True)
class Plan:
    """What to log and where. A plain list of kinds means the run folder's defaults."""

    kinds: tuple[str, ...]
    tensorboard_dir: Path | None = None  # default RUN/tensorboard
    mlflow_dir: Path | None = None  # the store's folder; default RUN/mlflow
    run_name: str | None = None  # the MLflow run's name; default the run folder's path
    parent_run_id: str | None = None  # a tune study's MLflow run: this run is nested under it
    params: Mapping[str, Any] = field(default_factory=dict)  # more params (a trial's values)


def plan_of(log: Plan | Sequence[str] | str | None) -> Plan | None:
    """The Plan for `log` (None or empty: no logs); an unknown kind is a UserError."""
    if log is None or isinstance(log, Plan):
        return log if log is None or log.kinds else None
    kinds = (log,) if isinstance(log, str) else tuple(log)
    for kind in kinds:
        if kind not in KINDS:
            raise UserError(f"unknown log '{kind}'", help=f"use one of: {', '.join(KINDS)}")
    return Plan(tuple(dict.fromkeys(kinds))) if kinds else None


def ready(log: Plan | Sequence[str] | str | None) -> Plan | None:
    """`plan_of(log)`, with its packages imported: a missing one is the extra's one-line error
    before any data is read or folder made."""
    plan = plan_of(log)
    for kind in plan.kinds if plan else ():
        if kind == "mlflow":
            _mlflow()
        else:
            require("tensorboard")
    return plan


# ------------------------------------------------------------------ a run's logs


class RunLogs:
    """The loggers of one run: `.graph(model, split)` once, `.epoch(row, model)` after every
    epoch, `.close(run_dir, error)` at the end (also after an error or Ctrl-C)."""

    def __init__(self, loggers: list, notes: list[str]):
        self.loggers, self.notes = loggers, notes

    def graph(self, model, split) -> None:
        """The model's graph, traced on the first two examples of `split` (a data.Split)."""
        try:
            inputs = split.batch(slice(0, 2))[0]
        except Exception as exc:  # a split that cannot hand out examples: say so, train anyway
            self.notes.append(f"the model's graph is not logged: no example batch to trace ({first_line(exc)})")
            return
        for logger in self.loggers:
            note = logger.graph(model, inputs)
            if note:
                self.notes.append(note)

    def epoch(self, row: Mapping[str, Any], model, loggers: list | None = None) -> None:
        values = {k: float(v) for k, v in row.items() if k != "epoch" and _is_number(v)}
        for logger in self.loggers if loggers is None else loggers:
            logger.epoch(int(row["epoch"]), values, model)

    def backfill(self, history: Sequence[Mapping[str, Any]]) -> None:
        """A resumed run's earlier epochs, for the loggers that hold none of them (--log given
        only now, or a new MLflow run): their values, so the logs match history.csv (no
        histograms: those weights are gone)."""
        fresh = [logger for logger in self.loggers if logger.fresh]
        for row in history if fresh else ():
            self.epoch(row, None, fresh)

    def close(self, run_dir: Path, error: BaseException | None = None) -> None:
        files = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
        for logger in self.loggers:
            logger.close(files, error)


def open_logs(log: Plan | Sequence[str] | None, run_dir: Path, config, model, *, resume: bool = False,
              history: Sequence[Mapping[str, Any]] = ()) -> RunLogs | None:
    """The run's loggers (None without `log`). `config`: the run's RunConfig (its settings become
    MLflow params); `history`: the rows a resumed run already has (TensorBoard drops later steps;
    a logger that has none of them is given them: RunLogs.backfill)."""
    plan = plan_of(log)
    if plan is None:
        return None
    loggers: list = []
    done = int(history[-1]["epoch"]) if resume and history else 0
    if "tensorboard" in plan.kinds:
        loggers.append(TensorBoardLog(plan.tensorboard_dir or run_dir / "tensorboard", resume, done))
    if "mlflow" in plan.kinds:
        params = {**run_params(config, model), **{k: v for k, v in plan.params.items()}}
        loggers.append(MlflowLog.for_run(plan, run_dir, config.name, params, resume))
    logs = RunLogs(loggers, [f"logging to {logger.where}" for logger in loggers])
    if done:
        logs.backfill(history)
    return logs


def run_params(config, model) -> dict[str, Any]:
    """The spec's facts as MLflow params: optimizer, lr, loss, layer and parameter counts, and every
    train setting as the run resolved it (command-line overrides included)."""
    from ..catalog.settings import TRAIN_SETTINGS

    checked = config.checked
    optimizer, opt_args = checked.optimizer or ("none", {})
    params: dict[str, Any] = {"model": config.name, "optimizer": optimizer,
                              "lr": config.lr if config.lr is not None else opt_args.get("lr")}
    params.update({f"optimizer.{k}": v for k, v in opt_args.items() if k != "lr"})
    params["loss"] = " + ".join(name if w == 1 else f"{w:g} * {name}" for w, name, _ in checked.loss)
    params["layers"] = sum(1 for n in checked.graph.nodes if n.op == "layer")
    params["parameters"] = sum(p.numel() for p in model.parameters())
    for setting in TRAIN_SETTINGS:
        value = getattr(config, setting.name, checked.train.get(setting.name))
        if setting.name == "batch_size" and value is None:
            value = "full"
        if setting.name == "data":
            value = _source_text(value)
        params[setting.name] = value
    return params


def _source_text(data) -> str:
    name, args = data
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})" if args else name


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------ TensorBoard


class TensorBoardLog:
    def __init__(self, folder: Path, resume: bool, done: int):
        require("tensorboard")  # the extra's clear message when it is missing
        from torch.utils.tensorboard import SummaryWriter

        folder.mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh run in this folder: the old run's curves would mix with it
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
        self.fresh = not any(folder.glob("events.out.tfevents.*"))  # holds no epoch of this run
        # resumed: steps after the checkpoint's epoch (logged before a kill) are dropped, not doubled
        self.writer = SummaryWriter(str(folder), purge_step=done + 1 if resume else None)
        self.where = f"TensorBoard: tensorboard --logdir {folder}"

    def graph(self, model, inputs: list) -> str | None:
        import torch

        was_training = model.training
        model.eval()  # traced without updating BatchNorm statistics or drawing dropout masks
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's warnings (and jit's deprecation) are not the user's
                self.writer.add_graph(model, tuple(inputs))
        except Exception as exc:  # tracing refuses some models (data-dependent control flow)
            return f"TensorBoard: the model's graph could not be traced, so it is not logged ({first_line(exc)})"
        finally:
            model.train(was_training)
        return None

    def epoch(self, epoch: int, values: dict[str, float], model) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, epoch)
        for name, weights in model.named_parameters() if model is not None else ():
            self.writer.add_histogram(f"weights/{name}", weights.detach().float().cpu(), epoch)
        self.writer.flush()

    def close(self, files: list[Path], error: BaseException | None) -> None:
        self.writer.close()


# ------------------------------------------------------------------ MLflow


def _mlflow():
    """MLflow, imported with its telemetry off and its INFO lines (table creation) quiet."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # read when mlflow is imported: no network, ever
    mlflow = require("mlflow")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def open_store(folder: Path):
    """An MlflowClient on the SQLite store in `folder` (made if missing) and its experiment root."""
    _mlflow()
    from mlflow.tracking import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    try:
        return MlflowClient(tracking_uri=store_uri(folder))  # opens the store (and makes its tables)
    except Exception as exc:  # MlflowException and sqlalchemy's errors have many types
        raise _store_error(folder, exc) from None


def _store_error(folder: Path, exc: Exception) -> UserError:
    return UserError(f"cannot use the MLflow store {store_uri(folder)}: {first_line(exc)}",
                     help=f"remove {folder} to start a new store, or train into another --out")


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder.resolve() / 'mlflow.db'}"


def experiment_id(client, folder: Path, name: str) -> str:
    """The store's experiment of this model (made on first use). The store's first use: one that
    cannot be opened (not an MLflow database, read-only) is a UserError."""
    try:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(name, artifact_location=(folder.resolve() / "artifacts").as_uri())
    except Exception as exc:  # MlflowException and sqlalchemy's errors have many types
        raise _store_error(folder, exc) from None


class MlflowLog:
    def __init__(self, client, run_id: str, folder: Path, fresh: bool = True):
        self.client, self.run_id, self.fresh = client, run_id, fresh
        self.where = f"MLflow: run {run_id} in {store_uri(folder)}"

    @classmethod
    def for_run(cls, plan: Plan, run_dir: Path, model_name: str, params: dict, resume: bool) -> "MlflowLog":
        folder = plan.mlflow_dir or run_dir / "mlflow"
        client = open_store(folder)
        run_id = _previous_run(client, run_dir) if resume else None
        fresh = run_id is None
        if run_id is None:
            tags = {"nnspec.run_dir": str(run_dir)}
            if plan.parent_run_id:
                tags["mlflow.parentRunId"] = plan.parent_run_id
            run = client.create_run(experiment_id(client, folder, model_name),
                                    run_name=plan.run_name or str(run_dir), tags=tags)
            run_id = run.info.run_id
        else:
            client.update_run(run_id, status="RUNNING")
        atomic_write_text(run_dir / STATE_FILE, json.dumps({"mlflow_run_id": run_id, "mlflow_store": store_uri(folder)}) + "\n")
        log_params(client, run_id, params)
        return cls(client, run_id, folder, fresh)

    def graph(self, model, inputs: list) -> None:
        return None

    def epoch(self, epoch: int, values: dict[str, float], model) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(metric_key(k), v, now, epoch) for k, v in values.items()]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def close(self, files: list[Path], error: BaseException | None) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=run_status(error))


def _previous_run(client, run_dir: Path) -> str | None:
    """The MLflow run a resumed run folder logged to, if its store still has it."""
    try:
        run_id = json.loads((run_dir / STATE_FILE).read_text())["mlflow_run_id"]
        client.get_run(run_id)
        return run_id
    except Exception:  # no logs.json, or a store without that run: a new run
        return None


def log_params(client, run_id: str, params: Mapping[str, Any]) -> None:
    """Params not yet in the run (a resumed run keeps those it was started with: MLflow params are
    write-once), as text."""
    from mlflow.entities import Param

    have = client.get_run(run_id).data.params
    new = [Param(metric_key(k), str(v)[:6000]) for k, v in params.items() if metric_key(k) not in have]
    for start in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=new[start:start + 100])


def metric_key(key: str) -> str:
    """A name MLflow accepts (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)


def run_status(error: BaseException | None) -> str:
    if error is None:
        return "FINISHED"
    stopped = isinstance(error, KeyboardInterrupt) or type(error).__name__ == "TrialPruned"  # Ctrl-C, a pruner
    return "KILLED" if stopped else "FAILED"


# ------------------------------------------------------------------ tune: one run per trial


class StudyLogs:
    """A tune's logs: TensorBoard `OUT/tensorboard/trial-NNN/` per trial, and in the MLflow store
    `OUT/mlflow/` a parent run for this tune process with a nested run per trial."""

    def __init__(self, plan: Plan, out: Path, model_name: str, settings: Mapping[str, Any]):
        self.plan, self.out = plan, out
        self.parent = None
        if "mlflow" in plan.kinds:
            folder = out / "mlflow"
            client = open_store(folder)
            run = client.create_run(experiment_id(client, folder, model_name), run_name=f"tune {out}",
                                    tags={"nnspec.tune_dir": str(out)})
            log_params(client, run.info.run_id, settings)
            self.parent = MlflowLog(client, run.info.run_id, folder)
        where = [f"TensorBoard: tensorboard --logdir {out / 'tensorboard'} (a folder per trial)"
                 if "tensorboard" in plan.kinds else "",
                 f"MLflow: trials nested under run {self.parent.run_id} in {store_uri(out / 'mlflow')}"
                 if self.parent else ""]
        self.where = "logging to " + "; ".join(w for w in where if w)

    def trial(self, number: int, values: Mapping[str, Any]) -> Plan:
        """Where trial `number` logs; `values`: its point in the search space (MLflow params)."""
        return Plan(self.plan.kinds, tensorboard_dir=self.out / "tensorboard" / f"trial-{number:03d}",
                    mlflow_dir=self.out / "mlflow", run_name=f"trial {number}",
                    parent_run_id=self.parent.run_id if self.parent else None,
                    params={f"search.{k}": v for k, v in values.items()})

    def close(self, best: Mapping[str, float] | None, files: list[Path], error: BaseException | None) -> None:
        if self.parent is None:
            return
        if best:
            self.parent.epoch(0, {k: v for k, v in best.items() if math.isfinite(v)}, None)
        self.parent.close([f for f in files if f.is_file()], error)


def open_study_logs(log: Plan | Sequence[str] | None, out: Path, model_name: str,
                    settings: Mapping[str, Any]) -> StudyLogs | None:
    plan = plan_of(log)
    return StudyLogs(plan, out, model_name, settings) if plan else None
