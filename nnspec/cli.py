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

from .diagnostics import SpecError, UserError

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
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
        except SpecError as err:
            from .diagnostics import render

            spec_file = getattr(err, "filename", "<spec>")
            source = getattr(err, "source", "")
            echo_err("\n\n".join(render(d, spec_file, source) for d in err.diagnostics))
            sys.exit(EXIT_SPEC)
        except UserError as err:
            echo_err(err.render())
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


class _Group(click.Group):
    def main(self, *args, **kwargs):
        kwargs.setdefault("standalone_mode", True)
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.UsageError as err:  # pragma: no cover - click exits itself
            err.show()
            sys.exit(EXIT_USAGE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(package_name="nnspec")
def main(debug: bool) -> None:
    """nnspec: declare a neural network in a few lines; check, draw, compile, train and tune it."""


def load_or_exit(path: str):
    """Check a spec file; print its diagnostics; exit 1 on errors. Returns the pipeline Result."""
    from .pipeline import check_file

    result = check_file(path)
    if result.diagnostics:
        echo_err(result.render())
    if not result.ok:
        sys.exit(EXIT_SPEC)
    return result


SPEC_FILE = click.Path(dir_okay=False, path_type=str)


@main.command()
@click.argument("files", nargs=-1, required=True, type=SPEC_FILE)
@click.option("--quiet", "-q", is_flag=True, help="Print only diagnostics.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Diagnostics as text or JSON.")
@guarded
def check(files: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """Check specs: names, arguments, shapes, losses and metrics."""
    from .pipeline import check_file

    failed = False
    reports = []
    for path in files:
        try:
            result = check_file(path)
        except UserError as err:
            echo_err(err.render())
            failed = True
            continue
        failed |= not result.ok
        if fmt == "json":
            reports.append({"file": path, "ok": result.ok, "diagnostics": [
                {"severity": d.severity, "code": d.code, "message": d.message, "line": d.span.line,
                 "col": d.span.col, "end_line": d.span.end_line, "end_col": d.span.end_col, "help": d.help,
                 "notes": list(d.notes)} for d in result.diagnostics]})
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


EMIT_TARGETS = ("json", "onnx", "python")


@main.command(name="compile")
@click.argument("file", type=SPEC_FILE)
@click.option("--emit", default="onnx", show_default=True, help=f"What to produce: {', '.join(EMIT_TARGETS)}.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (default: beside the spec; json: stdout).")
@guarded
def compile_(file: str, emit: str, output: str | None) -> None:
    """Compile a spec: the checked IR as JSON, an ONNX model, or standalone PyTorch source."""
    if emit not in EMIT_TARGETS:
        raise click.BadParameter(f"unknown target '{emit}'; expected one of: {', '.join(EMIT_TARGETS)}",
                                 param_hint="--emit")
    result = load_or_exit(file)
    if emit == "json":
        from .backends.json_ir import as_json

        text = json.dumps(as_json(result.checked), indent=2)
        if output:
            Path(output).write_text(text + "\n", encoding="utf-8")
            click.echo(f"wrote {output}")
        else:
            click.echo(text)
        return
    emitter = EMITTERS.get(emit)
    if emitter is None:
        raise UserError(f"--emit {emit} is not available in this build of nnspec",
                        help="use --emit json")
    emitter(result, output)


# Other issues register emitters here: name -> fn(result, output_path_or_None).
EMITTERS: dict = {}


# ---- commands added by later issues register below this line ----


@main.command(name="fmt")
@click.argument("file", type=SPEC_FILE)
@click.option("--check", "check_only", is_flag=True, help="Change nothing; exit 1 (with a diff) if FILE is not formatted.")
@click.option("--write", is_flag=True, help="Rewrite FILE in place (atomically).")
@guarded
def fmt_(file: str, check_only: bool, write: bool) -> None:
    """Print a spec in the canonical layout, comments kept (see docs/language.md)."""
    from .fmt import run

    if check_only and write:
        raise click.UsageError("--check and --write cannot be used together")
    sys.exit(run(file, check_only=check_only, write=write))


def run() -> None:  # pragma: no cover - console entry
    main()


if __name__ == "__main__":  # pragma: no cover
    main()
