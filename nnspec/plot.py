"""`nnspec plot RUN_DIR [RUN_DIR ...]`: training curves redrawn from the runs' history.csv.

One panel per quantity (loss, then each metric); each run has its own colour, training as a
solid line and validation dashed. With one run the figure defaults to RUN_DIR/curves.png (the
file `nnspec train` writes); with several, to ./curves.png.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import UserError

NOT_PLOTTED = {"epoch", "lr", "seconds"}


@dataclass(frozen=True)
class History:
    label: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, float], ...]

    def series(self, key: str) -> tuple[list[float], list[float]]:
        pts = [(r["epoch"], r[key]) for r in self.rows if key in r and math.isfinite(r[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    @property
    def quantities(self) -> list[str]:
        return [c for c in self.columns if c not in NOT_PLOTTED and not c.startswith("val_")]


def read_history(run_dir: str | Path) -> History:
    """Read RUN_DIR/history.csv; every problem is a UserError naming the file, line and column."""
    run = Path(run_dir)
    path = run / "history.csv" if run.is_dir() or not run.suffix else run
    if not run.exists():
        raise UserError(f"no such run folder: {run}", help="give a folder made by nnspec train (runs/<Model>/<n>/)")
    if not path.is_file():
        raise UserError(f"{run} has no history.csv", help="give a folder made by nnspec train (runs/<Model>/<n>/)")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    reader = csv.DictReader(text.splitlines())
    columns = tuple(reader.fieldnames or ())
    missing = [c for c in ("epoch", "loss") if c not in columns]
    if missing:
        raise UserError(f"{path} is not a training history: no {' or '.join(repr(m) for m in missing)} column "
                        f"(received columns: {', '.join(columns) or 'none'})",
                        help="history.csv starts with: epoch,loss,<metrics>,val_loss,...,lr,seconds")
    rows = []
    for line_no, raw in enumerate(reader, start=2):
        row = {}
        for key, value in raw.items():
            if key is None:
                raise UserError(f"{path}:{line_no}: more values than the {len(columns)} columns of the header")
            if value is None or value == "":
                continue  # an empty cell (e.g. no validation that epoch) is a gap in the line
            try:
                row[key] = float(value)
            except ValueError:
                raise UserError(f"{path}:{line_no}: column '{key}' holds '{value}', which is not a number") from None
        if "epoch" not in row:
            raise UserError(f"{path}:{line_no}: the epoch is missing")
        rows.append(row)
    if not rows:
        raise UserError(f"{path} has a header but no epochs yet", help="plot again once an epoch has finished")
    return History(_label(run), columns, tuple(rows))


def _label(run: Path) -> str:
    parts = run.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(run)


def plot(run_dirs: list[str], output: str | None = None) -> Path:
    histories = [read_history(d) for d in run_dirs]
    labels = [h.label for h in histories]
    if len(set(labels)) < len(labels):  # same tail names: fall back to the paths as given
        histories = [History(str(d), h.columns, h.rows) for d, h in zip(run_dirs, histories)]
    path = Path(output) if output else (Path(run_dirs[0]) / "curves.png" if len(run_dirs) == 1 else Path("curves.png"))
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UserError(f"cannot write a figure to '{path.name}'", help="name it .png, .svg or .pdf")
    draw(histories, path)
    return path


def draw(histories: list[History], path: Path) -> None:
    import matplotlib.pyplot as plt

    from .fsutil import atomic_write

    fig = figure(histories)
    try:  # atomically: a failed write leaves the old figure, never a 0-byte or half file
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=100))
    finally:
        plt.close(fig)


def figure(histories: list[History]):
    """The matplotlib figure (Agg backend): one panel per quantity, one colour per run."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    quantities: list[str] = []
    for h in histories:
        quantities += [q for q in h.quantities if q not in quantities]
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.2 * len(quantities), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    several = len(histories) > 1
    for ax, key in zip(axes[0], quantities):
        for i, h in enumerate(histories):
            color = colors[i % len(colors)]
            prefix = f"{h.label} " if several else ""
            if key in h.columns:
                ax.plot(*h.series(key), marker=".", color=color, label=f"{prefix}train")
            if f"val_{key}" in h.columns:
                ax.plot(*h.series(f"val_{key}"), marker=".", linestyle="--", color=color if several else colors[1],
                        label=f"{prefix}validation")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(histories[0].label if not several else f"{len(histories)} runs")
    fig.tight_layout()
    return fig
