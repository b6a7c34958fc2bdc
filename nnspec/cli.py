"""The `nnspec` command: a thin click layer over the pipeline and the backends.

Exit codes: 0 ok, 1 the spec (or a data file, checkpoint...) has errors, 2 bad command-line
usage, 70 internal error (a bug: printed as such; the traceback only under --debug).
Commands that need no torch (check, fmt, viz, summary, compile --emit json) never import it.
"""
from __future__ import annotations

import functools
import json
import sys
import traceback
from pathlib import Path

import click

from .catalog.functions import LR
from .catalog.settings import SEARCH_SETTINGS, TRAIN_SETTINGS
from .cli_help import add_examples, format_commands
from .diagnostics import SpecError, UserError
from .runconfig import EVAL_BATCH

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


def _console(stderr: bool = False, silent: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, quiet=silent)
    if not console.is_terminal:
        console.width = 160  # files and pipes get the whole table, not 80 columns
    return console


def echo_err(text: str) -> None:
    click.echo(text, err=True)


def guarded(fn):
    """Turn every failure into a message and an exit code; never a traceback unless --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = (ctx.find_root().params or {}).get("debug", False)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (SpecError, UserError) as err:
            echo_err(error_text(err))
            sys.exit(EXIT_SPEC)
        except KeyboardInterrupt:
            echo_err("interrupted")
            sys.exit(130)
        except Exception as exc:  # a bug in nnspec, said as such
            if debug:
                traceback.print_exc()
            else:
                echo_err(f"internal error: {type(exc).__name__}: {exc}\n"
                         "  = note: this is a bug in nnspec, not in your spec; run with --debug for the traceback "
                         "and please report it")
            sys.exit(EXIT_INTERNAL)

    return wrapper


def error_text(err: SpecError | UserError, filename: str = "<spec>") -> str:
    """What the user reads of a spec's diagnostics or of another clear error (`filename`: the
    spec's, when the error does not carry it)."""
    if isinstance(err, SpecError):
        from .diagnostics import render_all

        return render_all(err.diagnostics, getattr(err, "filename", filename), getattr(err, "source", ""))
    return err.render()


class _Group(click.Group):
    def main(self, *args, **kwargs):
        kwargs.setdefault("standalone_mode", True)
        add_examples(self)  # here, once every command (of any module) is registered
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.UsageError as err:  # pragma: no cover - click exits itself
            err.show()
            sys.exit(EXIT_USAGE)

    def format_commands(self, ctx, formatter):
        format_commands(self, ctx, formatter)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="nnspec")
def main(debug: bool) -> None:
    """nnspec: declare a neural network in a few lines; check, draw, compile, train and tune it."""


def load_or_exit(path: str):
    """Check a spec file; print its diagnostics; exit 1 on errors. Returns the pipeline Result."""
    from .api import Spec

    spec = Spec.load(path)
    if spec.diagnostics:
        echo_err(spec.render())
    if not spec.ok:
        sys.exit(EXIT_SPEC)
    return spec.result


SPEC_FILE = click.Path(dir_okay=False, path_type=str)


class CatalogValue(click.ParamType):
    """An option that overrides a spec value takes that value's bounds from its catalog entry
    (one source of truth): `--seed` is a seed in [0, 2**32), `--lr` a finite number > 0.
    NaN and infinities are refused for every float, as in a spec."""

    def __init__(self, param):
        self.param = param
        self.name = param.type

    def convert(self, value, option, ctx):
        if not isinstance(value, str):
            return value
        p = self.param
        try:
            number = int(value) if p.type == "int" else float(value)
        except ValueError:
            self.fail(f"{value!r} is not {'a whole number' if p.type == 'int' else 'a number'}", option, ctx)
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not a finite number", option, ctx)
        low_ok = p.min is None or (number > p.min if p.min_exclusive else number >= p.min)
        if not low_ok or (p.max is not None and number > p.max):
            self.fail(f"{value} is out of range: it must be {p.describe()}", option, ctx)
        return number


def _setting(params, name: str):
    return next(p for p in params if p.name == name)


@main.command()
@click.argument("files", nargs=-1, required=True, type=SPEC_FILE)
@click.option("--quiet", "-q", is_flag=True, help="Print only diagnostics.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Diagnostics as text or JSON.")
@guarded
def check(files: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """Check specs: names, arguments, shapes, losses and metrics."""
    from .api import Spec

    failed = False
    reports = []
    for path in files:
        try:
            spec = Spec.load(path)
        except UserError as err:
            echo_err(err.render())
            failed = True
            continue
        result = spec.result
        failed |= not result.ok
        if fmt == "json":
            reports.append(spec.report())
            continue
        if result.diagnostics:
            echo_err(result.render())
        if result.ok and not quiet:
            g = result.checked.graph
            warnings = sum(1 for d in result.diagnostics if not d.is_error)
            extra = f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""
            click.echo(f"{path}: ok ({result.checked.spec.name}: {len(g.nodes) - len(g.inputs)} layers, "
                       f"{g.total_params:,} parameters{extra})")
    if fmt == "json":
        click.echo(json.dumps(reports, indent=2))
    sys.exit(EXIT_SPEC if failed else EXIT_OK)


@main.command()
@click.argument("file", type=SPEC_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@guarded
def summary(file: str, as_json: bool) -> None:
    """A Keras-style table: layers, output shapes, parameter counts."""
    from .backends import summary as backend

    result = load_or_exit(file)
    if as_json:
        click.echo(json.dumps(backend.as_json(result.checked), indent=2))
    else:
        backend.render_table(result.checked, _console())


def _emit_onnx(result, output):  # lazy: torch and onnx load only when asked for
    from .backends.onnx_export import emit

    emit(result, output)


def _emit_python(result, output):
    from .backends.python_source import emit

    emit(result, output)


# `compile --emit` targets besides json (which the command prints itself): name -> fn(result, output or None)
EMITTERS = {"onnx": _emit_onnx, "python": _emit_python}
RUN_TARGETS = ("onnx", "torchscript", "safetensors", "python")  # a trained run's (backends/trained_export.py)
EMIT_TARGETS = ("json", *EMITTERS, *(t for t in RUN_TARGETS if t not in EMITTERS))


@main.command(name="compile")
@click.argument("file", type=click.Path(path_type=str))
@click.option("--emit", type=click.Choice(EMIT_TARGETS), default="onnx", show_default=True,
              help="What to produce (onnx, torchscript, safetensors: also a trained run's weights).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (default: beside the spec or checkpoint; json: stdout).")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]),
              help="With a run folder: export best.pt (the default) or last.pt.")
@click.option("--data", "data_source", help="With a run: verify the export on these rows instead of the run's validation split.")
@guarded
def compile_(file: str, emit: str, output: str | None, which: str | None, data_source: str | None) -> None:
    """Compile a spec (the checked IR as JSON, an ONNX model, PyTorch source) or export a trained
    run: FILE a run folder or checkpoint gives its trained weights in ONNX, TorchScript or safetensors."""
    from .backends import trained_export

    if trained_export.is_run(file):
        if emit not in RUN_TARGETS:
            raise click.BadParameter(f"a trained run exports as {', '.join(RUN_TARGETS)}; '{emit}' is for a spec",
                                     param_hint="--emit")
        trained_export.emit(file, emit, output, which, data_source)
        return
    if emit not in ("json", *EMITTERS) or which or data_source:
        what = f"--emit {emit}" if emit not in ("json", *EMITTERS) else ("--checkpoint" if which else "--data")
        raise UserError(f"{what} needs trained weights; {file} is a spec",
                        help="give the run folder of `nnspec train` (runs/<Model>/<n>) or one of its checkpoints")
    result = load_or_exit(file)
    if emit != "json":
        refuse_networks(result, f"compile --emit {emit}")
    if emit == "json":
        from .backends.json_ir import as_json

        text = json.dumps(as_json(result.checked), indent=2)
        if output:
            from .fsutil import atomic_write_text

            atomic_write_text(output, text + "\n")
            click.echo(f"wrote {output}")
        else:
            click.echo(text)
        return
    EMITTERS[emit](result, output)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Figure file, .png, .svg or .pdf (default: ./curves.png).")
@guarded
def plot(run_dirs: tuple[str, ...], output: str | None) -> None:
    """Redraw training curves from runs' history.csv (several runs on one figure to compare)."""
    from .plot import plot as draw_runs

    replaced = Path(output or "curves.png").exists()
    path = draw_runs(list(run_dirs), output)
    click.echo(f"wrote {path}" + (" (replaced the figure that was there)" if replaced else ""))



@main.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("-o", "--output", help="Output file: .svg, .png, .pdf or .dot (default: <spec>.svg).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for the output (default: beside the spec).")
@click.option("--rankdir", type=click.Choice(["TB", "LR"]), default="TB", show_default=True, help="Top-to-bottom or left-to-right.")
@click.option("--detail", type=click.Choice(["compact", "full"]), default="compact", show_default=True,
              help="compact: required and non-default arguments; full: every argument.")
@click.option("--collapse-blocks", is_flag=True, help="Draw each block instance as one box.")
@click.option("--netron", is_flag=True, help="Export ONNX and open it in Netron (served on 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Netron's port (with --netron); 0: any free port. When the default is in use, a free one is taken.")
@click.option("--no-browser", is_flag=True, help="With --netron: print the URL, do not open a browser.")
@guarded
def viz(file, output, out_dir, rankdir, detail, collapse_blocks, netron, port, no_browser):
    """Draw the network with Graphviz (or, with --netron, open its ONNX export in Netron; FILE a run
    folder or checkpoint: the trained model)."""
    from .backends.trained_export import is_run

    given = click.get_current_context().get_parameter_source("port") != click.core.ParameterSource.DEFAULT
    if is_run(file):
        if not netron:
            raise UserError(f"{file} is a trained run; the diagram is drawn from a spec",
                            help="draw the run's spec.nn, or open the trained model with --netron")
        from .backends.trained_export import serve_run

        serve_run(file, port=port, browse=not no_browser, out_dir=out_dir, port_given=given)
        return
    result = load_or_exit(file)
    if netron:
        refuse_networks(result, "viz --netron")
        from .backends.onnx_export import serve_netron

        serve_netron(result, port=port, browse=not no_browser, out_dir=out_dir, port_given=given)
        return
    from .backends import dot
    from .fsutil import make_dir

    path = dot.output_path(file, output, out_dir)
    if out_dir:  # a folder option: made if missing (the folder of -o FILE must exist)
        make_dir(out_dir)
    source = dot.to_dot(result.checked, rankdir=rankdir, detail=detail, collapse_blocks=collapse_blocks)
    dot.render(source, path)
    click.echo(f"wrote {path}")


# experiment logs (train/logs.py); given twice for both
LOG_OPTION = click.option("--log", type=click.Choice(["tensorboard", "mlflow"]), multiple=True,
                          help="Also log to TensorBoard (RUN/tensorboard) or MLflow (RUN/mlflow); repeat for both.")


@main.command()
@click.argument("file", type=SPEC_FILE)
@click.option("--trials", type=click.IntRange(min=1), help="Trials in the study (default: the spec's search section, or 20).")
@click.option("--sampler", type=click.Choice(["random", "tpe"]), help="How trials are chosen.")
@click.option("--timeout", type=CatalogValue(_setting(SEARCH_SETTINGS, "timeout")), help="Start no trial after this many seconds.")
@click.option("--pruner", type=click.Choice(["none", "median", "successive_halving"]), help="Stop unpromising trials early.")
@click.option("--storage", help="Keep the study in a database, e.g. sqlite:///study.db or "
              "postgresql://USER@HOST:5432/DB (resumable, shareable by processes and machines).")
@click.option("--study", "study_name", help="The study's name in --storage (default: the model's name).")
@click.option("--heartbeat", type=click.IntRange(min=1), help="Seconds between a running trial's heartbeats in "
              "--storage (default 5); a trial silent for 6 of them is failed and run again.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default runs/<Model>/tune-<n>/).")
@click.option("--seed", type=CatalogValue(_setting(SEARCH_SETTINGS, "seed")), help="Seed of the sampler.")
@click.option("--epochs", type=CatalogValue(_setting(TRAIN_SETTINGS, "epochs")), help="Epochs of every trial (default: the spec's).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@LOG_OPTION
@guarded
def tune(file, trials, sampler, timeout, pruner, storage, study_name, heartbeat, out_dir, seed, epochs, device, quiet,
         log):
    """Search the spec's search spaces: writes trials.csv, best.nn and Optuna's plots (search*.png)."""
    from .tune import final_lines, tune as run_tune

    result = load_or_exit(file)
    refuse_networks(result, "tune")
    summary = run_tune(result, trials=trials, sampler=sampler, timeout=timeout, pruner=pruner, storage=storage,
                       study_name=study_name, out_dir=out_dir, seed=seed, epochs=epochs, device=device,
                       quiet=quiet, echo=click.echo, log=log, heartbeat=heartbeat)
    if quiet:
        click.echo(final_lines(summary))
    sys.exit(EXIT_OK if summary.best is not None else EXIT_SPEC)


@main.command()
@click.argument("file", type=SPEC_FILE)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--epochs", type=CatalogValue(_setting(TRAIN_SETTINGS, "epochs")), help="Override the spec's epochs.")
@click.option("--batch-size", help="Override the spec's batch size: a number, or full.")
@click.option("--lr", type=CatalogValue(LR), help="Override the optimizer's learning rate.")
@click.option("--seed", type=CatalogValue(_setting(TRAIN_SETTINGS, "seed")), help="Override the spec's seed.")
@click.option("--data", "data_source", help="Data source, as in the spec (sklearn.wine, 'csv(\"f.csv\", target=\"y\")') or a .csv/.npz path.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default runs/<Model>/<n>/).")
@click.option("--resume", is_flag=True, help="Continue from last.pt in the run folder (--out, or the latest run).")
@click.option("--overwrite", is_flag=True, help="Replace the run of another spec that the --out folder holds "
              "(refused without it).")
@click.option("--amp", is_flag=True, help="Fastest arithmetic with the quality kept: bf16 autocast on a CPU with AMX "
              "(else fp32, with a note), bf16 or fp16 with loss scaling on CUDA; channels-last conv nets, fused "
              "optimizer, faster dropout masks.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only where the run is.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a key=value line per epoch; json: one JSON object per epoch on stdout (the rest on stderr).")
@click.option("--defaults", is_flag=True, help="Train a spec with search spaces at each space's default value.")
@click.option("--folds", type=click.IntRange(min=2), help="k-fold cross-validation: K runs, run k validated on fold k "
              "(as the train setting `folds`; replaces `validation`).")
@click.option("--nproc-per-node", type=click.IntRange(min=1), help="Data-parallel: worker processes on this machine "
              "(one per GPU); --batch-size is then the global batch. See docs/distributed.md.")
@click.option("--nnodes", type=click.IntRange(min=1), help="Data-parallel: number of machines (default 1).")
@click.option("--node-rank", type=click.IntRange(min=0), help="Data-parallel: this machine's number, 0..nnodes-1.")
@click.option("--master-addr", help="Data-parallel: address of the machine with --node-rank 0.")
@click.option("--master-port", type=click.IntRange(min=1, max=65535), help="Data-parallel: TCP port on that machine.")
@LOG_OPTION
@guarded
def train(file, device, epochs, batch_size, lr, seed, data_source, out_dir, resume, overwrite, amp, compile_, quiet,
          log_format, defaults, folds, nproc_per_node, nnodes, node_rank, master_addr, master_port, log):
    """Train a spec; writes history.csv, metrics.json, checkpoints and curves.png to the run folder."""
    from .pipeline import run_config
    from .runconfig import parse_batch_size
    from .train.cli_view import cross_validate_command, train_command

    if batch_size is not None:
        try:
            batch_size = parse_batch_size(batch_size)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--batch-size") from None
    config = run_config(load_or_exit(file), defaults=defaults, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                        data=data_source, folds=folds)  # the run's settings, resolved once
    from .train import distributed as D

    launch = (nproc_per_node, nnodes, node_rank, master_addr, master_port)
    if config.checked.networks and (config.folds or any(v is not None for v in launch)):
        raise UserError("adversarial training (a spec with networks) runs in one process without folds",
                        help="drop --folds / --nproc-per-node / --nnodes")
    if config.folds:
        if any(v is not None for v in launch):
            raise click.UsageError("cross-validation trains its folds one after another in one process; "
                                   "drop --nproc-per-node/--nnodes, or train without folds")
        cross_validate_command(config, _console(stderr=log_format == "json"), folds=folds, device=device,
                               out_dir=out_dir, resume=resume, overwrite=overwrite, amp=amp, compile=compile_,
                               quiet=quiet, log_format=log_format, log=log)
        return
    worker = D.worker_from_env()  # set when torchrun (or the launch below) started this process
    if worker is None and any(v is not None for v in launch):  # start the workers, each runs this command
        D.check_launch(config.checked, device, nproc_per_node or 1)
        argv = D.argv_from_click(click.get_current_context(), skip=D.LAUNCH_PARAMS)
        D.launch(argv, nproc_per_node or 1, nnodes or 1, node_rank or 0, master_addr, master_port)
        return
    speaks = worker is None or worker.is_main  # of several workers, only rank 0 prints
    with D.session(worker, D.device_for(worker, device) if worker else None):
        train_command(config, _console(stderr=log_format == "json", silent=not speaks), device=device,
                      out_dir=out_dir, resume=resume, overwrite=overwrite, amp=amp, compile=compile_,
                      quiet=quiet or not speaks, log_format=log_format if speaks else "text", log=log)


# evaluate and predict: how many rows are read and scored at a time
rows_per_batch = click.option("--batch-size", type=click.IntRange(min=1), default=EVAL_BATCH, show_default=True,
                              help="Rows read and scored at a time: memory grows with it, not with the data's length.")


@main.command()
@click.argument("file", type=SPEC_FILE)
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="A last.pt or best.pt of a run.")
@click.option("--data", "data_source", help="Evaluate on this data instead (whole set); default: the run's validation split.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write the metrics JSON (default: beside the checkpoint).")
@rows_per_batch
@guarded
def evaluate(file, checkpoint, data_source, device, output, batch_size):
    """Loss and metrics of a trained checkpoint."""
    from .pipeline import run_config
    from .train.cli_view import evaluate_command

    result = load_or_exit(file)
    refuse_networks(result, "evaluate")
    config = run_config(result, defaults=True, data=data_source)
    evaluate_command(config, _console(), checkpoint, device, output, batch_size)


@main.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="A last.pt or best.pt of a run (default for a run folder: its best.pt).")
@click.option("--input", "input_path", required=True, type=click.Path(),
              help="Rows to predict: .csv or .npz; for an image model, a folder of images (or one PNG/JPEG).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write predictions as CSV here (default: print).")
@click.option("--tensor", metavar="NAME", help="Predict this named tensor (`code = ...` in layers) instead of the output.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@rows_per_batch
@guarded
def predict(file, checkpoint, input_path, output, tensor, device, batch_size):
    """Predictions of a trained checkpoint: probabilities and the predicted class, or the outputs.

    FILE is the spec (with --checkpoint), or a run folder of `nnspec train` (its spec.nn and
    best.pt): `nnspec predict runs/Model/1 --input rows.csv`."""
    from .pipeline import run_config
    from .train.cli_view import predict_command

    file, checkpoint = spec_and_checkpoint(file, checkpoint)
    result = load_or_exit(file)
    refuse_networks(result, "predict")
    predict_command(run_config(result, defaults=True), checkpoint, input_path, output, device, batch_size,
                    tensor)


def spec_and_checkpoint(file: str, checkpoint: str | None) -> tuple[str, str]:
    """(spec, checkpoint) of `predict FILE [--checkpoint C]`: FILE a spec and C given, or FILE a run
    folder, whose spec.nn is the source it trained and whose best.pt (else last.pt) is the default."""
    folder = Path(file)
    if not folder.is_dir():
        if checkpoint is None:
            raise UserError(f"{file} is a spec: say which trained weights to use with --checkpoint",
                            help="give --checkpoint runs/<Model>/<n>/best.pt, or the run folder instead of the spec")
        return file, checkpoint
    from .api import Run  # the API's run folder: its spec.nn, best.pt else last.pt

    run = Run.open(folder)
    return str(run.folder / "spec.nn"), checkpoint or str(run.checkpoint())


@main.command()
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("-n", "count", type=click.IntRange(1, 1_000_000), default=64, show_default=True, help="Samples to generate.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="samples.npz", show_default=True,
              help="The .npz to write (array x: the samples in the data's own units).")
@click.option("--seed", type=CatalogValue(_setting(TRAIN_SETTINGS, "seed")), default=0, show_default=True,
              help="Seed of the noise: the same seed gives the same samples.")
@guarded
def sample(run_dir: str, count: int, output: str, seed: int) -> None:
    """Generate samples from a trained GAN run (a spec with `adversarial { }`): RUN_DIR its folder or last.pt."""
    from .pipeline import check_text
    from .train.gan import sample_run

    path, shape = sample_run(run_dir, count, output, int(seed), check_text)
    click.echo(f"wrote {path}: x {list(shape)} in the data's units")


def refuse_networks(result, what: str) -> None:
    """Commands made for one network refuse a spec of `network`s (a GAN) by name, never half-serve it."""
    if result.checked is not None and result.checked.networks:
        raise UserError(f"{what} works on a single-network spec; {result.filename} declares networks "
                        f"({', '.join(result.checked.networks)}) trained adversarially",
                        help="a GAN supports check, fmt, summary, viz, train and sample")


@main.command(name="inspect")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--input", "input_path", required=True, type=click.Path(),
              help="Rows to inspect: .csv or .npz; for an image model, a folder of images (or one PNG/JPEG).")
@click.option("--index", "indices", type=click.IntRange(min=0), multiple=True,
              help="Row to inspect, from 0 (repeat for several; default: 0).")
@click.option("--target", "target_class", metavar="CLASS",
              help="Attribute this class (id or name) instead of the predicted one; a regression output's number.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: RUN_DIR/inspect).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), help="Which checkpoint of the run folder (default best).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@guarded
def inspect_(run_dir, input_path, indices, target_class, out_dir, checkpoint, device):
    """Feature maps, filters, saliency, Grad-CAM and integrated gradients of a trained run, as PNGs and an index.html.

    RUN_DIR is a run folder of `nnspec train` (or one of its checkpoints). See docs/inspect.md."""
    from .inspect import inspect_run

    report = inspect_run(run_dir, input_path, indices or (0,), target_class=target_class, out_dir=out_dir,
                         checkpoint=checkpoint, device=device)
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {len(report.files) - 1} pictures; open {report.out_dir / 'index.html'}")


@main.command()
@guarded
def lsp() -> None:
    """Run the language server on stdin/stdout, for editors (see docs/editors.md).

    Diagnostics as you type, hover, completion, go-to-definition, formatting and the outline
    of .nn files; needs the `lsp` extra: pip install 'nnspec[lsp]'."""
    from .lsp.server import serve

    serve()


@main.command(name="fmt")
@click.argument("files", nargs=-1, required=True, type=SPEC_FILE)
@click.option("--check", "check_only", is_flag=True, help="Change nothing; exit 1 (with a diff) if any FILE is not formatted.")
@click.option("--write", is_flag=True, help="Rewrite each FILE in place (atomically).")
@guarded
def fmt_(files: tuple[str, ...], check_only: bool, write: bool) -> None:
    """Print a spec in the canonical layout, comments kept (see docs/language.md).

    With --check or --write it takes many files (as a pre-commit hook does) and exits 1 if
    any is unformatted (--check) or has errors."""
    from .fmt import run

    if check_only and write:
        raise click.UsageError("--check and --write cannot be used together")
    if len(files) > 1 and not (check_only or write):
        raise click.UsageError("several files need --check or --write (printing is for one file)")
    sys.exit(max(_fmt_one(run, path, check_only, write) for path in files))


def _fmt_one(run, path: str, check_only: bool, write: bool) -> int:
    """One file of `fmt`: its exit code; a file with errors is reported and the others still run."""
    try:
        return run(path, check_only=check_only, write=write)
    except (SpecError, UserError) as err:
        echo_err(error_text(err, path))
    return EXIT_SPEC


def run() -> None:  # pragma: no cover - console entry
    main()


if __name__ == "__main__":  # pragma: no cover
    main()
