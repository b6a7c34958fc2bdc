"""The PNGs of `nnspec inspect`, drawn with matplotlib's Agg backend and written atomically."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import fsutil

MAX_MAPS = 64  # feature maps (or filters) drawn per layer: the first ones, said in the title
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fsutil.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    _plt().close(fig)


def picture(row: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An input [C, H, W] as something imshow draws: RGB scaled to [0, 1] for 3 channels, else
    the first channel with a gray colormap."""
    if row.shape[0] == 3:
        rgb = np.moveaxis(row, 0, -1).astype(np.float64)
        span = rgb.max() - rgb.min()
        return (rgb - rgb.min()) / (span if span > 0 else 1.0), None
    return row[0], "gray"


def write_input(path: Path, row: np.ndarray, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3, 3))
    image, cmap = picture(row)
    ax.imshow(image, cmap=cmap)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    _save(fig, path)


def _grid(count: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def write_maps(path: Path, maps: np.ndarray, title: str) -> None:
    """One tile per channel of maps [C, H, W], all on the layer's one colour scale (a dark tile is
    a map that is small everywhere, not a rescaled one)."""
    shown = maps[:MAX_MAPS]
    if len(maps) > MAX_MAPS:
        title += f" (first {MAX_MAPS} of {len(maps)} maps)"
    rows, cols = _grid(len(shown))
    plt = _plt()
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.6), squeeze=False)
    low, high = float(shown.min()), float(shown.max())
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(shown):
            im = ax.imshow(shown[k], cmap="viridis", vmin=low, vmax=high)
            ax.set_title(str(k), fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def write_filters(path: Path, weight: np.ndarray, title: str) -> None:
    """A convolution's kernels [out, in, kh, kw]: RGB for 3 input channels, else the mean over the
    input channels on a blue-white-red scale centred at 0 (red: positive weights)."""
    shown = weight[:MAX_MAPS]
    if len(weight) > MAX_MAPS:
        title += f" (first {MAX_MAPS} of {len(weight)} filters)"
    if weight.shape[1] > 1 and weight.shape[1] != 3:
        title += f" (mean over {weight.shape[1]} input channels)"
    rows, cols = _grid(len(shown))
    plt = _plt()
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.6), squeeze=False)
    bound = float(np.abs(shown).max()) or 1.0
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(shown):
            continue
        if shown.shape[1] == 3:
            ax.imshow(picture(shown[k])[0])
        else:
            ax.imshow(shown[k].mean(0), cmap="bwr", vmin=-bound, vmax=bound)
        ax.set_title(str(k), fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def write_heatmap(path: Path, row: np.ndarray, heat: np.ndarray, title: str, coarse: np.ndarray | None = None) -> None:
    """The input, the heatmap [H, W] (and its coarse form, for Grad-CAM), and the heatmap over
    the input."""
    panels = ["input", *(["at the layer's resolution"] if coarse is not None else []), "map", "over the input"]
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.2), squeeze=False)
    image, cmap = picture(row)
    for ax, panel in zip(axes[0], panels):
        ax.axis("off")
        ax.set_title(panel, fontsize=9)
        if panel == "input":
            ax.imshow(image, cmap=cmap)
        elif panel == "map":
            fig.colorbar(ax.imshow(heat, cmap="jet"), ax=ax, shrink=0.8)
        elif panel == "over the input":
            ax.imshow(image, cmap=cmap)
            ax.imshow(heat, cmap="jet", alpha=0.5)
        else:
            ax.imshow(coarse, cmap="jet")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def write_bars(path: Path, values: np.ndarray, names: list[str], title: str) -> None:
    """One horizontal bar per feature (red: raises the score, blue: lowers it), in input order."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * len(values)))
    ys = np.arange(len(values))
    ax.barh(ys, values, color=["tab:red" if v > 0 else "tab:blue" for v in values])
    ax.set_yticks(ys, names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution (score units)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def write_matrix(path: Path, values: np.ndarray, title: str, axes_names: tuple[str, str]) -> None:
    """Attributions of a [T, F] input as a blue-white-red image centred at 0."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    bound = float(np.abs(values).max()) or 1.0
    fig.colorbar(ax.imshow(values, cmap="bwr", vmin=-bound, vmax=bound, aspect="auto"), ax=ax)
    ax.set_ylabel(axes_names[0])
    ax.set_xlabel(axes_names[1])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
