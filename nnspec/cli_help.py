"""What `nnspec --help` and `nnspec COMMAND --help` show besides the docstrings: an example block per
command (the epilog) and the command list with each summary whole (click cuts it with '…')."""
from __future__ import annotations

import click

EXAMPLES: dict[str, tuple[str, ...]] = {
    "check": ("nnspec check specs/iris_mlp.nn", "nnspec check specs/*.nn --quiet",
              "nnspec check model.nn --format json"),
    "summary": ("nnspec summary specs/iris_mlp.nn", "nnspec summary specs/iris_mlp.nn --json"),
    "compile": ("nnspec compile specs/iris_mlp.nn --emit python -o iris.py",
                "nnspec compile specs/iris_mlp.nn --emit json", "nnspec compile runs/IrisMLP/1 --emit onnx"),
    "plot": ("nnspec plot runs/IrisMLP/1", "nnspec plot runs/IrisMLP/1 runs/IrisMLP/2 -o compare.png"),
    "viz": ("nnspec viz specs/iris_mlp.nn -o iris.svg", "nnspec viz specs/iris_mlp.nn --rankdir LR --detail full",
            "nnspec viz runs/IrisMLP/1 --netron --no-browser"),
    "tune": ("nnspec tune specs/tune_mlp.nn --trials 20", "nnspec tune model.nn --storage sqlite:///study.db"),
    "train": ("nnspec train specs/iris_mlp.nn", "nnspec train specs/iris_mlp.nn --epochs 5 --out runs/try",
              "nnspec train specs/iris_mlp.nn --resume", "nnspec train model.nn --log-format json > epochs.jsonl"),
    "evaluate": ("nnspec evaluate specs/iris_mlp.nn --checkpoint runs/IrisMLP/1/best.pt",
                 "nnspec evaluate model.nn --checkpoint runs/Model/1/best.pt --data test.csv"),
    "predict": ("nnspec predict runs/IrisMLP/1 --input rows.csv",
                "nnspec predict specs/iris_mlp.nn --checkpoint runs/IrisMLP/1/best.pt --input rows.csv -o out.csv"),
    "sample": ("nnspec sample runs/DigitsGAN/1 -n 16 -o samples.npz",),
    "inspect": ("nnspec inspect runs/DigitsCNN/1 --input images/ --index 0 --index 3",),
    "fmt": ("nnspec fmt specs/iris_mlp.nn", "nnspec fmt --check specs/*.nn", "nnspec fmt --write specs/*.nn"),
    "lsp": ("nnspec lsp   (started by the editor, which talks to it on stdin/stdout)",),
}


def add_examples(group: click.Group) -> None:
    """Each command's --help ends with its examples (kept as written: `\\b` stops click's rewrap)."""
    for name, command in group.commands.items():
        lines = EXAMPLES.get(name)
        if lines and not command.epilog:
            command.epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def format_commands(group: click.Group, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """The command list, each command's first sentence whole (wrapped, never cut off)."""
    rows = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            rows.append((name, command.get_short_help_str(limit=10_000)))
    if rows:
        with formatter.section("Commands"):
            formatter.write_dl(rows)
