"""The input rows to inspect, read as `nnspec predict` reads them: a CSV or .npz file (row by row,
batch by batch, up to the last row asked for; standardised with the run's training statistics),
or images (a folder, sorted, or one PNG/JPEG; pixels in [0, 1]). Rows are numbered from 0 in
file order (a CSV's header is not a row)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..diagnostics import UserError

BATCH = 256  # rows read at a time while looking for the ones asked for


@dataclass
class Rows:
    indices: list[int]
    names: list[str]  # "row 3", or an image's path below the folder
    raw: np.ndarray  # [n, *input shape] as given (what the pictures show)
    model_input: np.ndarray  # what the model reads (standardised)
    feature_names: list[str] | None = None  # a CSV's feature columns


def read_rows(run, input_path: str | Path, indices: list[int]) -> Rows:
    from ..backends.trained_export import standardize
    from ..train import images
    from ..train.data import Expect

    path = Path(input_path)
    expect = Expect.of(run.checked)
    if images.is_image_input(path):
        return _image_rows(path, expect, indices)
    raw = _file_rows(path, expect, indices, run.state.get("data_target"))
    names = [f"row {i}" for i in indices]
    features = _csv_features(path, run.state.get("data_target")) if path.suffix.lower() == ".csv" else None
    return Rows(indices, names, raw, standardize(run, [raw])[0], features)


def _image_rows(path: Path, expect, indices: list[int]) -> Rows:
    from ..train import images

    files, names = images.predict_files(path, expect)
    _require_in_range(indices, len(files), str(path), "image(s)")
    pixels = files.decode(indices)
    return Rows(indices, [names[i] for i in indices], pixels, pixels)


def _file_rows(path: Path, expect, indices: list[int], target: str | None) -> np.ndarray:
    from ..train.row_files import row_batches

    wanted, last, found, count = set(indices), max(indices), {}, 0
    for batch in row_batches(path, expect, BATCH, target=target):
        for i in wanted & set(range(batch.start, batch.start + len(batch))):
            found[i] = batch.inputs[0][i - batch.start]
        count = batch.start + len(batch)
        if count > last:
            break
    _require_in_range(indices, count, str(path), "row(s)")
    return np.stack([found[i] for i in indices])


def _require_in_range(indices: list[int], count: int, where: str, what: str) -> None:
    bad = [i for i in indices if i >= count]
    if bad:
        raise UserError(f"--index {bad[0]}: {where} has {count} {what}, numbered 0 to {count - 1}",
                        help=f"give --index between 0 and {count - 1}")


def _csv_features(path: Path, target: str | None) -> list[str]:
    """The CSV header's feature columns: the training label column, when present, is not one."""
    from ..train.data import csv_rows

    header = next(row for _, row in csv_rows(path, ","))
    return [name for name in header if name != target] if target in header else header
