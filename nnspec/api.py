"""nnspec's public Python API: a spec (`Spec`) and a trained run folder (`Run`).

    spec = nnspec.Spec.load("model.nn")      # or Spec.from_text(text)
    spec.ok, spec.diagnostics, spec.summary()
    module = spec.module()                   # a torch.nn.Module; refused while the spec has errors
    run = spec.train(epochs=5, out_dir="runs/m")
    run.history, run.metrics, run.data, run.module(), run.predict("rows.csv"), run.evaluate()

Each method wraps what the CLI command of the same name calls (pipeline.check_text,
pipeline.run_config, train.run.train_spec / evaluate_spec / predict_spec), with the CLI's
options as keyword arguments. Importing this module does not import torch: training and the
module builder load on first use.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from . import fsutil, pipeline
from .diagnostics import Diagnostic, SpecError, UserError

if TYPE_CHECKING:  # pragma: no cover - types only; torch loads on use
    import numpy as np
    import torch

    from .checked import Checked
    from .runconfig import RunConfig

CHECKPOINTS = ("best", "last")


class Spec:
    """A spec checked once: its diagnostics, summary, torch module, and the runs trained from it."""

    def __init__(self, result: pipeline.Result):
        self._result = result

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path) -> "Spec":
        """Read and check a `.nn` file (a missing or unreadable file is a UserError)."""
        return cls(pipeline.check_file(path))

    @classmethod
    def from_text(cls, text: str, filename: str = "<spec>") -> "Spec":
        """Check spec source text; `filename` is what diagnostics and run folders name it by."""
        return cls(pipeline.check_text(text, filename))

    # ---------------------------------------------------------------- what the checker found
    @property
    def result(self) -> pipeline.Result:
        """The front door's Result (what the CLI and the backends take)."""
        return self._result

    @property
    def filename(self) -> str:
        return self._result.filename

    @property
    def source(self) -> str:
        return self._result.source

    @property
    def name(self) -> str | None:
        """The model's name (`model NAME { }`), or None when the spec did not parse."""
        checked = self._result.checked
        return checked.spec.name if checked is not None else None

    @property
    def ok(self) -> bool:
        """True when the spec has no errors (warnings allowed)."""
        return self._result.ok

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Every error and warning, each with its code, message, span (line, col) and help."""
        return self._result.diagnostics

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def checked(self) -> "Checked":
        """The checker's result (graph, shapes, task, settings); refused while the spec has errors."""
        self.check()
        return self._result.checked

    def render(self) -> str:
        """The diagnostics as `nnspec check` prints them (file:line:col, source excerpt, help)."""
        return self._result.render()

    def check(self) -> "Spec":
        """This spec, or a SpecError carrying its diagnostics when it has errors."""
        if not self.ok:
            err = SpecError(self.diagnostics)
            err.filename, err.source = self.filename, self.source  # what the CLI renders them with
            raise err
        return self

    def report(self) -> dict[str, Any]:
        """What `nnspec check --format json` prints for this file: file, ok, and each diagnostic as
        severity, code, message, line, col, end_line, end_col, help, notes."""
        return {"file": self.filename, "ok": self.ok, "diagnostics": [diagnostic_record(d) for d in self.diagnostics]}

    def summary(self) -> dict[str, Any]:
        """What `nnspec summary --json` prints: model, layers (name, type, output_shape, params...), params."""
        from .backends.summary import as_json

        return as_json(self.checked)

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.errors)} error(s)"
        return f"Spec({self.name or self.filename!r}, {state})"

    # ---------------------------------------------------------------- the network
    def module(self, network: str | None = None) -> "torch.nn.Module":
        """The network as a torch.nn.Module (PyTorch's default initialisation, training mode):
        forward(*inputs) with batch-first tensors, in the order of `input_names`. A spec of
        `network`s (a GAN) names the one to build: module(network="G")."""
        from .backends.torch_model import build_model

        checked = self.checked
        names = list(checked.networks)
        if network is None and names:
            raise UserError(f"{self.name} declares networks ({', '.join(names)}): say which one to build",
                            help=f"e.g. spec.module(network={names[0]!r})")
        if network is not None and network not in names:
            has = f"its networks are {', '.join(names)}" if names else "it is a single network"
            raise UserError(f"{self.name} has no network {network!r}: {has}",
                            help="give one of its network names" if names else "call spec.module() without network=")
        return build_model(checked.networks[network] if network else checked)

    # ---------------------------------------------------------------- training
    def run_config(self, **settings: Any) -> "RunConfig":
        """The run's settings resolved as `nnspec train` resolves them (epochs, batch_size, lr, seed,
        data, folds, defaults)."""
        return pipeline.run_config(self.check()._result, **settings)

    def train(self, *, out_dir: str | Path | None = None, epochs: int | None = None,
              batch_size: int | str | None = None, lr: float | None = None, seed: int | None = None,
              data: str | None = None, device: str = "auto", defaults: bool = False, resume: bool = False,
              overwrite: bool = False, amp: bool = False, compile: bool = False,
              log: str | Sequence[str] | None = None,
              on_epoch: Callable[[int, dict], None] | None = None) -> "Run":
        """Train as `nnspec train` does, with its options; returns the run folder as a Run.
        `out_dir` defaults to runs/<Model>/<n>/ under the current folder. A cross-validated spec
        (`folds K`) is trained with `cross_validate`."""
        from .train.run import train_spec

        config = self.run_config(defaults=defaults, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, data=data)
        if config.folds:
            raise UserError(f"{config.name} is cross-validated (`folds {config.folds}`): each fold is a run",
                            help="call spec.cross_validate(), which returns one Run per fold")
        summary = train_spec(config, out_dir=out_dir, device=device, resume=resume, overwrite=overwrite, amp=amp,
                             compile=compile, on_epoch=on_epoch, log=log)
        return Run.open(summary.out_dir)

    def cross_validate(self, *, folds: int | None = None, out_dir: str | Path | None = None,
                       epochs: int | None = None, batch_size: int | str | None = None, lr: float | None = None,
                       seed: int | None = None, data: str | None = None, device: str = "auto",
                       defaults: bool = False, overwrite: bool = False,
                       log: str | Sequence[str] | None = None) -> list["Run"]:
        """`nnspec train --folds K`: one run per fold (out_dir/fold_<k>/, cv.json beside them)."""
        from .train.crossval import cross_validate

        config = self.run_config(defaults=defaults, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                 data=data, folds=folds)
        cv = cross_validate(config, folds=folds, out_dir=out_dir, overwrite=overwrite, device=device, log=log)
        return [Run.open(run.out_dir) for run in cv.runs]

    def evaluate(self, checkpoint: str | Path, *, data: str | None = None, device: str = "auto",
                 batch_size: int | None = None) -> dict[str, Any]:
        """`nnspec evaluate SPEC --checkpoint C [--data D]`: loss and metrics of the checkpoint."""
        from .train.run import evaluate_spec

        config = self.run_config(defaults=True, data=data)
        return evaluate_spec(config, str(checkpoint), device=device, **_batch(batch_size))

    def predict(self, checkpoint: str | Path, rows: "str | Path | np.ndarray | Mapping[str, np.ndarray]", *,
                output: str | Path | None = None, tensor: str | None = None, device: str = "auto",
                batch_size: int | None = None) -> "Predictions":
        """`nnspec predict SPEC --checkpoint C --input ROWS`: ROWS a .csv/.npz file, an image folder,
        or arrays (one array for a one-input network, else {input name: array})."""
        from .train.run import predict_spec

        config = self.run_config(defaults=True)
        with _rows_file(rows, list(config.checked.graph.inputs)) as path:
            header, table = predict_spec(config, str(checkpoint), str(path), output=output, device=device,
                                         tensor=tensor, **_batch(batch_size))
        return Predictions(header, table)


@dataclass(frozen=True)
class Predictions:
    """predict's table: `header` (e.g. p_0.., predicted, label) and one row per input row."""

    header: list[str]
    rows: list[list]

    def column(self, name: str) -> list:
        if name not in self.header:
            raise UserError(f"no column {name!r} in the predictions", help=f"columns: {', '.join(self.header)}")
        i = self.header.index(name)
        return [row[i] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Run:
    """A run folder written by `nnspec train` (or Spec.train): its files, read when asked for."""

    folder: Path
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folder: str | Path) -> "Run":
        """A run folder (it holds spec.nn; a cross-validation folder holds fold_<k>/ runs)."""
        path = Path(folder)
        if not path.is_dir():
            raise UserError(f"{folder} is not a folder", help="give a run folder of `nnspec train`, e.g. runs/<Model>/1")
        if not (path / "spec.nn").is_file():
            raise UserError(f"{folder} is a folder but not a run folder of `nnspec train` (it has no spec.nn)",
                            help="give a run folder such as runs/<Model>/1")
        return cls(path)

    @property
    def spec(self) -> Spec:
        """The exact source the run trained (spec.nn), checked."""
        if "spec" not in self._cache:
            self._cache["spec"] = Spec.load(self.folder / "spec.nn")
        return self._cache["spec"]

    @property
    def history(self) -> list[dict[str, float]]:
        """history.csv: one row per epoch (epoch, loss, val_loss, metrics, lr, seconds), numbers as floats."""
        import csv

        path = self._file("history.csv")
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json: finished, final and best rows, monitor, best_epoch, epochs, data, samples, device."""
        return json.loads(self._file("metrics.json").read_text(encoding="utf-8"))

    @property
    def data(self) -> dict[str, Any]:
        """data.json: the data's origin, label column, class names and fitted state (e.g. a vocabulary)."""
        return json.loads(self._file("data.json").read_text(encoding="utf-8"))

    @property
    def class_names(self) -> list[str] | None:
        names = self.data.get("class_names")
        return [str(n) for n in names] if names else None

    def checkpoint(self, which: str = "best") -> Path:
        """best.pt (else last.pt when the run has none, e.g. no validation split) or last.pt."""
        if which not in CHECKPOINTS:
            raise UserError(f"checkpoint {which!r}: expected one of {', '.join(CHECKPOINTS)}")
        found = fsutil.run_checkpoint(self.folder, which)
        if found is not None:
            return found
        order = [which] if which == "last" else ["best", "last"]
        raise UserError(f"{self.folder} holds no {' or '.join(n + '.pt' for n in order)}: the run has not finished an epoch",
                        help="train it first (or resume it with Spec.train(resume=True, out_dir=...))")

    def module(self, which: str = "best") -> "torch.nn.Module":
        """The trained network (eval mode, CPU) with the checkpoint's weights. Its inputs are the
        standardised rows; `predict` takes rows as they come and standardises them itself."""
        from .backends.trained_export import open_run

        return open_run(self.checkpoint(which)).model

    def evaluate(self, *, data: str | None = None, which: str = "best", device: str = "auto",
                 batch_size: int | None = None) -> dict[str, Any]:
        """Loss and metrics on the run's validation split (re-made with its seed), or on `data`."""
        return self.spec.evaluate(self.checkpoint(which), data=data, device=device, batch_size=batch_size)

    def predict(self, rows: "str | Path | np.ndarray | Mapping[str, np.ndarray]", *,
                output: str | Path | None = None, which: str = "best", tensor: str | None = None,
                device: str = "auto", batch_size: int | None = None) -> Predictions:
        """`nnspec predict RUN --input ROWS`: ROWS a .csv/.npz file, an image folder, or arrays."""
        return self.spec.predict(self.checkpoint(which), rows, output=output, tensor=tensor, device=device,
                                 batch_size=batch_size)

    def _file(self, name: str) -> Path:
        path = self.folder / name
        if not path.is_file():
            raise UserError(f"{self.folder} has no {name}", help="is the run still starting, or was it cut short?")
        return path


def diagnostic_record(d: Diagnostic) -> dict[str, Any]:
    """One diagnostic as JSON-safe data (1-based lines and columns; the end is exclusive)."""
    return {"severity": d.severity, "code": d.code, "message": d.message, "line": d.span.line, "col": d.span.col,
            "end_line": d.span.end_line, "end_col": d.span.end_col, "help": d.help, "notes": list(d.notes)}


def _batch(batch_size: int | None) -> dict[str, int]:
    return {} if batch_size is None else {"batch_size": int(batch_size)}


def _number(text: str | None) -> float | str | None:
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        return text


class _rows_file:
    """A path to predict from: the path given, or arrays written to a temporary .npz (one array per
    input name, as `nnspec predict` reads an .npz)."""

    def __init__(self, rows, input_names: Sequence[str]):
        self.rows, self.input_names, self._tmp = rows, list(input_names), None

    def __enter__(self) -> Path:
        if isinstance(self.rows, (str, Path)):
            return Path(self.rows)
        import numpy as np

        arrays = dict(self.rows) if isinstance(self.rows, Mapping) else {self._only_input(): self.rows}
        self._tmp = tempfile.TemporaryDirectory(prefix="nnspec-predict-")
        path = Path(self._tmp.name) / "rows.npz"
        np.savez(path, **{name: np.asarray(a) for name, a in arrays.items()})
        return path

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def _only_input(self) -> str:
        if len(self.input_names) != 1:
            raise UserError(f"the network has {len(self.input_names)} inputs ({', '.join(self.input_names)}): "
                            "one array cannot feed them", help="pass {input name: array} for each input")
        return self.input_names[0]
