"""`nnspec tune`: a hyperparameter search over the search spaces written in a spec, on Optuna.

Each trial: Optuna suggests a value per dimension -> the spec text with those values
(`search.concretize`) -> `check_text` -> `train_spec`, reporting the objective metric every epoch
to the pruner. A trial that cannot be checked or trained (an invalid shape for that combination,
a diverging loss, a metric missing from the logs) is marked FAIL with its reason in the user
attribute `failure`, and the search goes on.

The budget is counted in the study, not in the process: a study in a database (`--storage`)
runs until it holds `trials` finished trials (complete, pruned, or failed with a reason), so a
killed tune resumes where it stopped and several processes share one study without running
more trials than asked. A trial left RUNNING by a killed process is failed by Optuna's heartbeat
after `GRACE_S` seconds and does not count; it is queued once more with the same values, for the
next process that asks for a trial. `postgresql://` storages (several machines) use psycopg 3.

While it runs, a tune keeps `progress.json` in its output folder up to date (replaced atomically):
written once the study exists in its storage, when each trial starts and when it ends. Scripts (and
the tests) watch that file instead of opening a database that the tune may still be creating.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import search
from .diagnostics import UserError, first_line, suggest
from .extras import require
from .fsutil import atomic_write, atomic_write_text, make_dir
from .runlock import RunLock
from .pipeline import Result, check_text

HEARTBEAT_S = 5
GRACE_S = 30
MAX_RETRY = 1  # a trial whose worker died is run once more with the same values
POLL_S = 1.0
SQLITE_TIMEOUT_S = 120
STORAGE_ATTEMPTS = 5
PROGRESS = "progress.json"


class TrialFailed(Exception):
    """One trial could not be checked or trained; its reason is recorded and the search goes on."""


@dataclass(frozen=True)
class Settings:
    trials: int
    sampler: str
    direction: str  # minimize | maximize
    metric: str
    timeout: float | None
    pruner: str
    seed: int


@dataclass
class TuneSummary:
    out_dir: Path
    settings: Settings
    dimensions: list
    trials: list  # optuna FrozenTrial, by number
    best: Any  # the best FrozenTrial, or None when no trial completed
    best_spec: Path | None
    formatted: bool
    notes: list = field(default_factory=list)  # e.g. a search plot that could not be drawn


# ---------------------------------------------------------------- settings
def settings_of(result: Result, **flags: Any) -> Settings:
    """The `search { }` settings with the command-line flags (those not None) laid over them."""
    base = dict(result.checked.search)
    base.update({k: v for k, v in flags.items() if v is not None})
    direction, metric = base.get("objective") or ("minimize", "val_loss")
    return Settings(int(base["trials"]), base["sampler"], direction, metric, base["timeout"], base["pruner"],
                    int(base["seed"]))


def check_objective(result: Result, metric: str) -> None:
    """The objective must be a value the training run logs every epoch."""
    from .train.metrics import metric_key

    folds = result.checked.train.get("folds")
    if folds:  # a trial per fold set would multiply the search's cost by `folds`; not offered yet
        raise UserError(f"tune does not cross-validate: this spec has `folds {folds}`",
                        help="tune with `validation 0.2` instead, then cross-validate the best.nn it writes")
    names = ["loss", *(metric_key(n, a) for n, a in result.checked.metrics)]
    has_val = (result.checked.train.get("validation") or 0) > 0
    logged = names + ([f"val_{n}" for n in names] if has_val else [])
    if metric in logged:
        return
    if metric.startswith("val_") and metric[4:] in names:
        raise UserError(f"the objective {metric} needs a validation split, and this spec has none",
                        help="add e.g. `validation 0.2` to the train section")
    raise UserError(f"the objective {metric} is not logged by training; logged: {', '.join(logged)}",
                    help=suggest(metric, logged) or "add the metric to `metrics [...]`")


# ---------------------------------------------------------------- Optuna pieces
def make_sampler(name: str, seed: int):
    optuna = require("optuna")

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str):
    optuna = require("optuna")

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def make_storage(url: str | None, heartbeat: int | None = None):
    """None (in memory) or an RDB storage with a heartbeat, so killed trials are recognised: a trial
    without a heartbeat for the grace period is failed and queued once more with the same values."""
    if url is None:
        return None
    optuna = require("optuna")

    given, url = url, storage_url(url)
    interval, grace = heartbeat_and_grace(heartbeat)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        db = url.removeprefix("sqlite:///")
        if db and db != url and not Path(db).parent.exists():
            raise UserError(f"the folder of the study database does not exist: {Path(db).parent}",
                            help="create it, or give another --storage path")
    import warnings

    for attempt in range(STORAGE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna; study.optimize relies on it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=interval,
                                                  grace_period=grace, heartbeat_stale_trial_callback=retry)
        except Exception as exc:  # sqlalchemy's URL and connection errors have many types
            if attempt + 1 < STORAGE_ATTEMPTS and type(exc).__name__ in ("IntegrityError", "OperationalError", "ProgrammingError"):
                # processes starting together race to create the tables (or a server is starting): retry
                time.sleep(0.5 * (attempt + 1))
                continue
            raise storage_error(given, exc) from None


def storage_url(url: str) -> str:
    """The SQLAlchemy URL to open: `postgresql://` (and `postgres://`) mean psycopg 3, the driver of
    the `postgres` extra (SQLAlchemy's default for a bare `postgresql://` is psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        require("psycopg")
        return f"postgresql+psycopg://{rest}"
    return url


def heartbeat_and_grace(heartbeat: int | None) -> tuple[int, int]:
    """(seconds between heartbeats, seconds without one after which a trial is stale): the grace
    period is GRACE_S / HEARTBEAT_S (6) heartbeats, so a slow beat is not taken for a dead worker."""
    if heartbeat is None:
        return HEARTBEAT_S, GRACE_S
    return heartbeat, heartbeat * max(1, GRACE_S // HEARTBEAT_S)


def storage_error(url: str, exc: Exception) -> UserError:
    message = first_line(exc, limit=None)
    hint = ("check that the PostgreSQL server runs and accepts this user, and that the database exists "
            "(createdb -h HOST -U USER DB)" if url.startswith("postgres") else
            "use e.g. --storage sqlite:///study.db or postgresql://USER@HOST:5432/DB")
    return UserError(f"cannot open the study storage {hide_password(url)}: {message}", help=hint)


def hide_password(url: str) -> str:
    """The URL as shown in messages: a password in it is replaced by ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not (sep and at and ":" in credentials):
        return url
    return f"{scheme}://{credentials.partition(':')[0]}:***@{host}"


def suggest_value(trial, dim: search.Dimension) -> Any:
    if dim.kind == "choice":
        return trial.suggest_categorical(dim.name, list(dim.choices))
    if dim.kind == "int_range":
        return trial.suggest_int(dim.name, int(dim.low), int(dim.high))
    return trial.suggest_float(dim.name, float(dim.low), float(dim.high), log=dim.kind == "loguniform")


def space_signature(dims: list[search.Dimension]) -> str:
    """What a study in a database was made for: two specs with the same dimensions may share it."""
    text = json.dumps([[d.name, d.kind, list(map(str, d.choices)), d.low, d.high] for d in dims])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the budget, counted in the study
def counts(trial) -> bool:
    """A finished trial that uses up one of the study's trials (not one killed, not a surplus one)."""
    TrialState = require("optuna.trial").TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "failure" in trial.user_attrs and "surplus" not in trial.user_attrs


def budget(study) -> tuple[int, list[int]]:
    """(finished trials that count, numbers of the trials running now)."""
    TrialState = require("optuna.trial").TrialState

    trials = study.get_trials(deepcopy=False)
    return sum(counts(t) for t in trials), [t.number for t in trials if t.state == TrialState.RUNNING]


def fail_stale(study) -> None:
    import warnings

    optuna = require("optuna")

    is_heartbeat_enabled = require("optuna.storages._heartbeat").is_heartbeat_enabled  # what study.optimize itself asks

    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)


def wait_for_slot(study, total: int, deadline: float | None) -> bool:
    """True when a new trial may start: fewer than `total` trials finished or running.

    Waits while other processes run the last trials (one of them may fail and free a slot);
    False when the study is done or the time is up.
    """
    while True:
        done, running = budget(study)
        if done >= total or (deadline is not None and time.monotonic() >= deadline):
            return False
        if done + len(running) < total:
            return True
        time.sleep(POLL_S)
        fail_stale(study)


def is_surplus(study, trial, total: int) -> bool:
    """Two processes asked for the last slot at the same moment: the higher trial number yields."""
    done, running = budget(study)
    return done + sum(1 for n in running if n < trial.number) >= total


# ---------------------------------------------------------------- one trial
class Objective:
    def __init__(self, result: Result, dims: list[search.Dimension], settings: Settings, out_dir: Path,
                 train_options: dict, echo: Callable[[str], None]):
        self.result, self.dims, self.settings = result, dims, settings
        self.out_dir, self.train_options, self.echo = out_dir, train_options, echo
        self.last: int | None = None  # the number of the trial this process ran last
        self.study_logs = None  # train.logs.StudyLogs with `--log`: where each trial logs

    def __call__(self, trial) -> float:
        optuna = require("optuna")

        self.last = trial.number
        if is_surplus(trial.study, trial, self.settings.trials):
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("failure", "not run: the study already had its trials")
            raise TrialFailed("surplus")
        write_progress(self.out_dir, trial.study, self.settings)  # this trial is RUNNING in the study now
        values = {d.name: suggest_value(trial, d) for d in self.dims}
        try:
            return self.run(trial, values)
        except optuna.TrialPruned:
            raise
        except TrialFailed as exc:
            self.fail(trial, str(exc))
        except Exception as exc:  # a UserError from training, or torch refusing a combination
            from .diagnostics import SpecError

            if not isinstance(exc, (UserError, SpecError, RuntimeError, ValueError, ArithmeticError)):
                raise
            self.fail(trial, _reason(exc))

    def fail(self, trial, reason: str) -> None:
        trial.set_user_attr("failure", reason)
        raise TrialFailed(reason)

    def run(self, trial, values: dict[str, Any]) -> float:
        optuna = require("optuna")

        from .train.run import train_spec

        text = search.concretize(self.result.source, self.dims, values)
        concrete = check_text(text, self.result.filename)
        if not concrete.ok:
            first = next(d for d in concrete.diagnostics if d.is_error)
            raise TrialFailed(f"invalid spec for these values: {first.message} (line {first.span.line})")
        metric, maximize = self.settings.metric, self.settings.direction == "maximize"
        best: list[float] = []

        def on_epoch(epoch: int, logs: dict) -> None:
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise TrialFailed(f"the loss became {loss} in epoch {epoch}")
            value = logs.get(metric)
            if value is None:
                raise TrialFailed(f"training did not log {metric}; it logged {', '.join(logs)}")
            if not math.isfinite(value):
                raise TrialFailed(f"{metric} became {value} in epoch {epoch}")
            best.append(value if not best else (max if maximize else min)(best[-1], value))
            trial.report(best[-1], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}: {metric} = {best[-1]:.4g}")

        log = self.study_logs.trial(trial.number, values) if self.study_logs else None
        train_spec(concrete, out_dir=self.out_dir / "trials" / f"{trial.number:03d}", quiet=True,
                   on_epoch=on_epoch, overwrite=True, log=log, **self.train_options)  # trials/NNN belongs to the study
        if not best:
            raise TrialFailed("training ran no epoch")
        return best[-1]


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message.strip().splitlines()[0][:300]


# ---------------------------------------------------------------- the search
def tune(result: Result, *, trials: int | None = None, sampler: str | None = None, timeout: float | None = None,
         pruner: str | None = None, storage: str | None = None, study_name: str | None = None,
         out_dir: str | Path | None = None, seed: int | None = None, epochs: int | None = None,
         device: str = "auto", quiet: bool = False, echo: Callable[[str], None] = print, log=None,
         heartbeat: int | None = None) -> TuneSummary:
    """`log`: experiment logs of each trial, e.g. ["tensorboard", "mlflow"] (train/logs.py StudyLogs).
    `heartbeat`: seconds between a running trial's heartbeats in `storage` (default HEARTBEAT_S)."""
    from .train import logs

    optuna = require("optuna")
    log = logs.ready(log)  # a missing package is refused before the study starts

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own line per trial
    dims = search.dimensions(result.checked.spec, result.source)
    if not dims:
        raise UserError(f"{result.filename} has no search space, so there is nothing to tune",
                        help="write e.g. Dense(choice(16, 32, 64)) or lr=loguniform(1e-4, 1e-1); "
                             "or train it with `nnspec train`")
    settings = settings_of(result, trials=trials, sampler=sampler, timeout=timeout, pruner=pruner, seed=seed)
    check_objective(result, settings.metric)
    study = open_study(result, dims, settings, storage, study_name, heartbeat)
    out = Path(out_dir) if out_dir else next_tune_dir(result.checked.spec.name)
    make_dir(out)
    # A study in memory belongs to this process: its folder has one owner. With --storage several
    # tune processes share one folder by design (each trial has its own, locked by its run).
    with RunLock(out, "nnspec tune", enabled=storage is None) as lock:
        if lock.note and not quiet:
            echo(f"note: {lock.note}")
        write_progress(out, study, settings)  # the study exists (its tables too, in a database)
        if not quiet:
            echo(f"tuning {result.checked.spec.name}: {settings.trials} trials, {settings.sampler} sampler, "
                 f"{settings.direction} {settings.metric}, pruner {settings.pruner}; outputs in {out}/")
            echo(search.describe(dims))
        objective = Objective(result, dims, settings, out, {"epochs": epochs, "device": device}, echo)
        objective.study_logs = logs.open_study_logs(log, out, result.checked.spec.name, vars(settings))
        if objective.study_logs is not None and not quiet:
            echo(objective.study_logs.where)
        deadline = time.monotonic() + settings.timeout if settings.timeout else None
        try:
            while wait_for_slot(study, settings.trials, deadline):
                study.optimize(objective, n_trials=1, catch=(TrialFailed,))
                write_progress(out, study, settings)
                if not quiet and objective.last is not None:
                    echo(trial_line(_trial(study, objective.last), settings, study))
        finally:  # also after Ctrl-C: what has finished is written
            summary = write_outputs(result, dims, settings, study, out, {"epochs": epochs})
            write_progress(out, study, settings, done=True)
            if objective.study_logs is not None:
                best = {settings.metric: summary.best.value} if summary.best is not None else None
                files = [out / "trials.csv", out / "best.nn", *(out / f for f in SEARCH_PLOTS.values())]
                objective.study_logs.close(best, files, sys.exc_info()[1])  # close keeps those that exist
        if not quiet:
            echo(final_lines(summary))
        return summary


def _trial(study, number: int):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def open_study(result: Result, dims: list[search.Dimension], settings: Settings, storage: str | None,
               study_name: str | None, heartbeat: int | None = None):
    optuna = require("optuna")

    store = make_storage(storage, heartbeat)
    storage = hide_password(storage) if storage else storage  # as shown in messages
    name = study_name or result.checked.spec.name
    seed = settings.seed
    if store is not None:  # several processes (and resumed runs) must not draw the same points
        seed = int.from_bytes(hashlib.sha256(f"{settings.seed}:{os.getpid()}:{time.time_ns()}".encode()).digest()[:4],
                              "little")
    try:
        study = optuna.create_study(storage=store, study_name=name, direction=settings.direction,
                                    sampler=make_sampler(settings.sampler, seed), pruner=make_pruner(settings.pruner),
                                    load_if_exists=store is not None)
    except ValueError as exc:  # e.g. the stored study optimizes in the other direction
        raise UserError(f"cannot use study '{name}' in {storage}: {exc}",
                        help="give another --study name") from None
    signature = space_signature(dims)
    stored = study.user_attrs.get("space")
    if stored is None:
        study.set_user_attr("space", signature)
        study.set_user_attr("spec", result.checked.spec.name)
    elif stored != signature:
        raise UserError(f"study '{name}' in {storage} was made for other search spaces "
                        f"(of {study.user_attrs.get('spec', '?')})",
                        help="give another --study name, or the spec the study was made for")
    fail_stale(study)
    return study


def next_tune_dir(model: str) -> Path:
    from .train.run import RUNS_DIR

    base = RUNS_DIR / model
    taken = [int(p.name[5:]) for p in base.glob("tune-*") if p.name[5:].isdigit()] if base.is_dir() else []
    return base / f"tune-{max(taken, default=0) + 1}"


# ---------------------------------------------------------------- reporting
def trial_value(trial) -> float | None:
    """The objective of a trial: its value, or for a pruned one its last reported value."""
    if trial.value is not None:
        return trial.value
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def seconds(trial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def trial_line(trial, settings: Settings, study) -> str:
    shown = ", ".join(f"{k}={_show(v)}" for k, v in trial.params.items())
    value = trial_value(trial)
    state = trial.state.name.lower()
    what = f"{settings.metric}={value:.4f}" if value is not None and state != "fail" else \
        trial.user_attrs.get("failure", state)
    best = _best(study)
    tail = f"  (best {best.value:.4f}, trial {best.number})" if best is not None else ""
    took = seconds(trial)
    return f"trial {trial.number:>3} {state:<8} {what}  {shown}  {took or 0:.1f}s{tail}"


def _show(value: Any) -> str:
    return f"{search.round_float(value):g}" if isinstance(value, float) else str(value)


def _best(study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def write_outputs(result: Result, dims: list[search.Dimension], settings: Settings, study, out: Path,
                  overrides: dict[str, Any] | None = None) -> TuneSummary:
    """trials.csv, best.nn (with `overrides`: the train settings given on the command line) and the plots."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    write_trials_csv(out / "trials.csv", trials, dims, settings)
    best = _best(study)
    best_spec, formatted = None, False
    if best is not None:
        best_spec = out / "best.nn"
        formatted = write_best_spec(best_spec, result, dims, best, settings, len(trials), overrides)
    notes = plot_search(out, study, dims, settings)
    return TuneSummary(out, settings, dims, trials, best, best_spec, formatted, notes)


def write_progress(out: Path, study, settings: Settings, *, done: bool = False) -> None:
    """`progress.json`: where the study stands, as this process sees it. Written to a temporary file
    and renamed over the old one, so a reader never sees half a file.

    `trials` is the budget, `counted` the finished trials that use it up (as `counts`), `running` the
    numbers of the trials running now (in any process), `states` the trials by Optuna state, `best`
    the best trial so far, `done` whether this tune process has ended (finished or interrupted)."""
    from datetime import datetime, timezone

    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = _best(study)
    data = {"study": study.study_name, "trials": settings.trials, "counted": sum(counts(t) for t in trials),
            "running": [t.number for t in trials if t.state.name == "RUNNING"], "states": states,
            "best": None if best is None else {"number": best.number, settings.metric: best.value},
            "done": done, "pid": os.getpid(),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(out / PROGRESS, json.dumps(data, indent=1) + "\n")  # a unique temporary file per write


def write_trials_csv(path: Path, trials: list, dims: list[search.Dimension], settings: Settings) -> None:
    fields = ["number", *(d.name for d in dims), settings.metric, "state", "seconds", "failure"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for t in trials:
        value = trial_value(t)
        params = [d.text(t.params[d.name]) if d.name in t.params else "" for d in dims]
        took = seconds(t)
        writer.writerow([t.number, *params, "" if value is None else f"{value:.6g}", t.state.name,
                         "" if took is None else f"{took:.2f}", t.user_attrs.get("failure", "")])
    atomic_write_text(path, buf.getvalue())


def write_best_spec(path: Path, result: Result, dims: list[search.Dimension], best, settings: Settings,
                    n_trials: int, overrides: dict[str, Any] | None = None) -> bool:
    """The spec with the best trial's values and the train settings the command line overrode
    (`--epochs 3` becomes `epochs 3`), so `nnspec train best.nn` trains what the trial trained;
    formatted by `nnspec fmt` (comments kept). True if formatted."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    text = with_train_settings(search.concretize(result.source, dims, best.params), overrides, result.filename)
    given = "".join(f"; --{k.replace('_', '-')} {v} written as `{k} {v}`" for k, v in overrides.items())
    header = (f"# nnspec tune: the best of {n_trials} trials (trial {best.number}): "
              f"{settings.metric} = {best.value:.4f}{given}\n")
    text = header + text
    formatted = False
    try:
        from .fmt import format_checked

        text = format_checked(text, str(path))
        formatted = True
    except ImportError:
        pass
    atomic_write_text(path, text)
    return formatted


SEARCH_PLOTS = {"history": "search.png", "slice": "search_slice.png", "importances": "search_importances.png"}


def with_train_settings(text: str, settings: dict[str, Any], filename: str) -> str:
    """`text` (a spec that checks) with each train setting set to the given value: its value
    replaced where the spec writes it, else the setting added to the train section (or a train
    section added)."""
    for name, value in settings.items():
        checked = check_text(text, filename)
        if not checked.ok:  # the best trial's spec checked when it ran, so this is nnspec's fault
            raise UserError(f"cannot write `{name} {value}` into the best trial's spec: "
                            f"{checked.diagnostics[0].message}", help="please report this as a bug in nnspec")
        spec = checked.checked.spec
        starts = search._line_starts(text)
        written = spec.train_setting(name)
        if written is not None:
            start, end = search._offsets(text, written.span, starts)
            text = text[:start] + f"{name} {value}" + text[end:]
        elif "train" in spec.sections:
            brace = text.index("{", search._offsets(text, spec.sections["train"], starts)[1]) + 1
            text = text[:brace] + f" {name} {value};" + text[brace:]
        else:
            close = text.rstrip().rindex("}")
            text = text[:close] + f"    train {{ {name} {value} }}\n" + text[close:]
    return text


def plot_search(out: Path, study, dims: list[search.Dimension], settings: Settings) -> list[str]:
    """Optuna's own plots (optuna.visualization.matplotlib) of the study: the optimization history
    (search.png), the objective against each dimension (search_slice.png) and, with more than one
    dimension and two finished trials, the dimensions' importances (search_importances.png). Trial
    numbers and int_range values get whole-number ticks. Returns notes on plots not drawn."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization import matplotlib as optuna_plots

    integers = {d.name for d in dims if d.kind == "int_range"}
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        history = optuna_plots.plot_optimization_history(study, target_name=settings.metric)
        history.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers
        _save_plot(out / SEARCH_PLOTS["history"], history.figure)
        slices = optuna_plots.plot_slice(study, target_name=settings.metric)
        for ax in getattr(slices, "flat", [slices]):
            if ax.get_xlabel() in integers:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig = next(iter(getattr(slices, "flat", [slices]))).figure
        for ax in fig.axes:
            if ax.get_ylabel() == "Trial":  # the colour bar of trial numbers
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _save_plot(out / SEARCH_PLOTS["slice"], fig)
        (out / SEARCH_PLOTS["importances"]).unlink(missing_ok=True)  # never one of an earlier study
        if len(dims) > 1 and len(done) >= 2:
            try:
                importances = optuna_plots.plot_param_importances(study, target_name=settings.metric)
            except (RuntimeError, ValueError) as err:  # e.g. every trial scored the same
                notes.append(f"no {SEARCH_PLOTS['importances']}: Optuna could not rate the dimensions ({err})")
            else:
                _save_plot(out / SEARCH_PLOTS["importances"], importances.figure)
        else:
            notes.append(f"no {SEARCH_PLOTS['importances']}: it needs more than one dimension and two "
                         f"finished trials (this study: {len(dims)} and {len(done)})")
    return notes


def _save_plot(path: Path, fig) -> None:
    import matplotlib.pyplot as plt

    try:  # bbox "tight", not tight_layout, which would move the slice plot's colour bar over a panel
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def final_lines(summary: TuneSummary) -> str:
    states: dict[str, int] = {}
    for t in summary.trials:
        key = "surplus" if "surplus" in t.user_attrs else t.state.name.lower()
        states[key] = states.get(key, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in states.items())
    lines = [f"{len(summary.trials)} trials: {tally}"]
    if summary.best is None:
        lines.append("no trial completed; see trials.csv for the reasons")
    else:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in summary.best.params.items())
        lines.append(f"best: trial {summary.best.number}, {summary.settings.metric} = {summary.best.value:.4f}  {shown}")
        note = "" if summary.formatted else " (unformatted: nnspec fmt is not available)"
        lines.append(f"wrote {summary.best_spec}{note}")
    plots = [name for name in SEARCH_PLOTS.values() if (summary.out_dir / name).is_file()]
    lines.append(f"wrote {summary.out_dir / 'trials.csv'} and Optuna's plots {', '.join(plots)}")
    lines += [f"note: {note}" for note in summary.notes]
    return "\n".join(lines)
