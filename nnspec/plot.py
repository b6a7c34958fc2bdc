"""`nnspec plot RUN_DIR [RUN_DIR ...]`: training curves redrawn from the runs' history.csv.

One panel per quantity (loss, then each metric) in a grid of up to three columns, whole epochs
on the x axis, the best epoch (metrics.json's, by the run's monitor) marked by a dotted line; each
run has its own colour, training as a solid line and validation dashed. `nnspec train` draws its
curves.png with the same `figure`. The figure goes to ./curves.png (or -o); a run's own
curves.png is replaced only when -o names it, and the CLI says when a file was replaced.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

from .diagnostics import UserError
from .train.metrics import is_per_class  # numpy only, no torch

NOT_PLOTTED = {"epoch", "lr", "seconds"}
MAX_COLUMNS = 3


@dataclass(frozen=True)
class History:
    label: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, float], ...]
    best_epoch: int | None = None  # marked on every panel

    def series(self, key: str) -> tuple[list[float], list[float]]:
        pts = [(r["epoch"], r[key]) for r in self.rows if key in r and math.isfinite(r[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    @property
    def quantities(self) -> list[str]:
        return [c for c in self.columns
                if c not in NOT_PLOTTED and not c.startswith("val_") and not is_per_class(c)]  # those: metrics.json


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
    return History(_label(run), columns, tuple(rows), _best_epoch(path.parent / "metrics.json"))


def _best_epoch(metrics_json: Path) -> int | None:
    """The run's best epoch from its metrics.json, or None (no file, or not one nnspec wrote)."""
    import json

    try:
        best = json.loads(metrics_json.read_text(encoding="utf-8")).get("best_epoch")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return best if isinstance(best, int) else None


def _label(run: Path) -> str:
    parts = run.resolve().parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(run)


def plot(run_dirs: list[str], output: str | None = None) -> Path:
    histories = [read_history(d) for d in run_dirs]
    labels = [h.label for h in histories]
    if len(set(labels)) < len(labels):  # same tail names: fall back to the paths as given
        histories = [replace(h, label=str(d)) for d, h in zip(run_dirs, histories)]
    path = Path(output) if output else Path("curves.png")
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
    columns = min(MAX_COLUMNS, len(quantities))
    rows = math.ceil(len(quantities) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(quantities):]:  # the grid's empty cells
        ax.remove()
    several = len(histories) > 1
    for ax, key in zip(axes.flat, quantities):
        _panel(ax, key, histories, several)
    fig.suptitle(histories[0].label if not several else f"{len(histories)} runs")
    fig.tight_layout()
    return fig


def _panel(ax, key: str, histories: list[History], several: bool) -> None:
    """One quantity: each run's training (solid) and validation (dashed) line and its best epoch."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, h in enumerate(histories):
        color = colors[i % len(colors)]
        prefix = f"{h.label} " if several else ""
        if key in h.columns:
            ax.plot(*h.series(key), marker=".", color=color, label=f"{prefix}train")
        if f"val_{key}" in h.columns:
            ax.plot(*h.series(f"val_{key}"), marker=".", linestyle="--", color=color if several else colors[1],
                    label=f"{prefix}validation")
        if h.best_epoch is not None:
            ax.axvline(h.best_epoch, color=color if several else "0.4", linestyle=":", linewidth=1.2,
                       label=f"{prefix}best epoch {h.best_epoch}")
    ax.set_title(key)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
