"""A run's settings, resolved once: what training, evaluation and prediction read.

The front door (`pipeline.run_config`) makes a RunConfig from a checked spec and what the command
line overrides (`--epochs`, `--batch-size`, `--seed`, `--lr`, `--data`, `--folds`, `--defaults`):
search spaces at their defaults, `--data` text read by the spec's grammar, every train setting with
its default filled in. Training consumes it and never reads the spec's text or its `train`
section again, and imports nothing of the front end (parse, lower, check, pipeline).

Pure Python: no torch, no front end. `batch_value` is the one place `full` is read; EVAL_BATCH the
one default of the rows scored at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .catalog.settings import DATA_SOURCES, TRAIN_SETTINGS
from .checked import Checked

EVAL_BATCH = 1024  # rows read and scored at a time by evaluate and predict (and validation, at least)
# `batch_size full`: one step per epoch over the whole training split (the catalog's one word for it)
(FULL_BATCH,) = next(p for p in TRAIN_SETTINGS if p.name == "batch_size").choices
# a spec without a `data` setting trains on synthetic data, with the catalog's default arguments
DEFAULT_DATA = ("synthetic", {p.name: p.default for p in next(e for e in DATA_SOURCES if e.name == "synthetic").params})


def batch_value(value: Any) -> int | None:
    """A batch size as the spec or `--batch-size` gives it -> examples per step, or None for `full`
    (the whole training split, known once the data is loaded: RunConfig.step_rows). A value that is
    neither (a setting already reported as wrong) is None too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def parse_batch_size(text: str) -> int | str:
    """`--batch-size`: a whole number >= 1, or `full`; ValueError (with the message) otherwise."""
    if text == FULL_BATCH:
        return FULL_BATCH
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"'{text}' is not a batch size; use a number >= 1 or {FULL_BATCH}")
    return int(text)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run takes from the spec and the command line, resolved."""

    checked: Checked  # the spec to train (search spaces at their defaults with --defaults)
    source: str  # its text: what the run folder's spec.nn holds
    filename: str  # the spec's file: data paths in the spec are relative to its folder
    epochs: int
    batch_size: int | None  # examples per step; None: `full` (RunConfig.step_rows)
    seed: int
    lr: float | None  # --lr: overrides the optimizer's
    data: tuple[str, Mapping[str, Any]]  # the data source (name, arguments)
    data_where: str | None  # where the source is written (`file:line:col`, `--data '...'`), for its errors
    data_override: bool  # the data was given for this run (`--data`), not by the spec
    validation: float
    folds: int | None  # cross-validation: --folds, else the spec's `folds`
    steps: int | None
    shuffle: bool
    standardize: bool
    schedule: tuple[str, Mapping[str, Any]] | None
    warmup: int
    early_stopping: int | None
    monitor: str | None  # None: val_loss when there is a validation split, else loss
    clip_grad_norm: float | None
    clip_grad_value: float | None
    class_weights: Any  # "balanced", a list of weights, or None
    notes: tuple[str, ...] = ()  # what resolving did that a user should hear (--defaults)
    eval_batch: int = EVAL_BATCH
    init: str | None = None  # `init "PATH"`: the run folder or checkpoint whose weights the model starts from
    init_where: str | None = None  # where `init` is written (`file:line:col`), for its errors
    augment: tuple = ()  # ((augmentation, arguments), ...) for training batches (train/augment.py)
    target: str | None = None  # "input": the label is the model's input (an autoencoder)
    # The front end's check_text, for a spec.nn found in a run folder (train.run.previous_run names
    # the run it holds). Passed in, so that training never imports the front end.
    check_source: Callable[[str, str], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.checked.spec.name

    @property
    def base_dir(self) -> Path:
        """The folder the spec's data paths are relative to."""
        return Path(self.filename).parent if self.filename else Path(".")

    def step_rows(self, n_train: int) -> int:
        """Examples in one step once the training split has `n_train` rows (`full`: all of them)."""
        return n_train if self.batch_size is None else min(self.batch_size, n_train)


def resolve(checked: Checked, source: str, filename: str, *, data: tuple[str, Mapping[str, Any]] | None = None,
            data_where: str | None = None, epochs: int | None = None, batch_size: int | str | None = None,
            seed: int | None = None, lr: float | None = None, folds: int | None = None,
            notes: tuple[str, ...] = (), check_source: Callable[[str, str], Any] | None = None) -> RunConfig:
    """A RunConfig from a checked spec and the overrides (None: the spec's value). `data`: an
    override already bound against the data-source catalog (pipeline.data_option reads `--data`)."""
    train = checked.train
    if data is None:
        data_override = False
        setting = train.get("data")
        data = (setting[0], dict(setting[1])) if setting is not None else (DEFAULT_DATA[0], dict(DEFAULT_DATA[1]))
        data_where = _setting_where(checked, filename)
    else:
        data_override = True
        data = (data[0], dict(data[1]))
    batch = train["batch_size"] if batch_size is None else batch_size
    if isinstance(batch, str):  # `full`, or a number given as text
        batch = parse_batch_size(batch)
    return RunConfig(
        checked=checked, source=source, filename=filename,
        epochs=train["epochs"] if epochs is None else int(epochs),
        batch_size=batch_value(batch), seed=train["seed"] if seed is None else int(seed), lr=lr,
        data=data, data_where=data_where, data_override=data_override,
        validation=train["validation"], folds=folds if folds is not None else train["folds"],
        steps=train["steps"], shuffle=train["shuffle"], standardize=train["standardize"],
        schedule=train["schedule"], warmup=train["warmup"], early_stopping=train["early_stopping"],
        monitor=train["monitor"], clip_grad_norm=train["clip_grad_norm"], clip_grad_value=train["clip_grad_value"],
        class_weights=train["class_weights"], notes=tuple(notes), check_source=check_source,
        init=train.get("init"), init_where=_setting_where(checked, filename, "init"),
        augment=tuple(train.get("augment") or ()), target=train.get("target"))


def _setting_where(checked: Checked, filename: str, name: str = "data") -> str | None:
    """Where the spec writes a setting (its data source), for errors about its value: `file:line:col`
    of the setting's value (the file alone when the spec has none)."""
    setting = checked.spec.train_setting(name)
    if setting is None or not setting.values:
        return f"{filename}" if filename else None
    span = setting.values[0].span
    return f"{filename}:{span.line}:{span.col}" if filename else None
