"""Image folders: `images("dir/", size=[H, W], color=gray|rgb)`, decoded from disk batch by batch.

A training folder holds one subfolder per class (the subfolder names, sorted, are the class
names); every file in a class folder (and its subfolders) is a PNG or JPEG image. Loading reads
only each image's header (Pillow opens lazily), so a file that is not an image, or is not H x W,
is refused by name before training starts; the pixels are decoded later, by DataLoader worker
processes, in the batches the loop asks for. So the labels and the file list are in memory, the
images never are all at once.

Pixels become float32 in [0, 1] (value / 255), channels first: [1, H, W] for gray, [3, H, W] for
rgb (Pillow's convert("L") / convert("RGB"), whatever the file's own mode).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ..catalog.images import CHANNELS, image_source_problem
from ..diagnostics import UserError, first_line

SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {"gray": "L", "rgb": "RGB"}
DEFAULT_WORKERS = 2  # decoding processes, at most one per CPU core


@dataclass(frozen=True)
class ImageFiles:
    """Images on disk, not decoded: their paths, the size they must have and the colour to read."""

    paths: tuple[str, ...]
    size: tuple[int, int]  # (H, W)
    color: str  # gray | rgb
    help = "give PNG or JPEG files of the one size; remove or replace this one"  # StreamedSplit's, when a worker cannot decode one

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        """What an array of these images would be: [N, C, H, W] (for messages and memory sums)."""
        return (len(self.paths), CHANNELS[self.color], *self.size)

    def take(self, idx) -> "ImageFiles":
        return ImageFiles(tuple(self.paths[int(i)] for i in idx), self.size, self.color)

    def decode(self, indices: Iterable[int]) -> np.ndarray:
        """The images at `indices` as one float32 array [n, C, H, W] in [0, 1]."""
        indices = list(indices)
        out = np.empty((len(indices), CHANNELS[self.color], *self.size), np.float32)
        for row, i in enumerate(indices):
            out[row] = decode_image(self.paths[i], self.size, self.color)
        return out


def decode_image(path: str, size: tuple[int, int], color: str) -> np.ndarray:
    """One image as float32 [C, H, W] in [0, 1]; a UserError naming the file if it cannot be."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            _require_size(path, image.size, size)
            pixels = np.asarray(image.convert(MODES[color]), dtype=np.uint8)
    except UserError:
        raise
    except Exception as err:  # Pillow raises many kinds for a damaged file: all mean "unreadable"
        raise _unreadable(path, err) from None
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return pixels.astype(np.float32) / np.float32(255)


def _require_size(path: str, got_wh: tuple[int, int], size: tuple[int, int]) -> None:
    height, width = size
    if tuple(got_wh) != (width, height):
        raise UserError(f"{path}: the image is {got_wh[1]} x {got_wh[0]} (H x W) but the data source reads "
                        f"{height} x {width} (size=[{height}, {width}])",
                        help="resize the images to the one size, or change `size` (and the spec's input) to theirs")


def _unreadable(path: str, err: Exception) -> UserError:
    return UserError(f"{path}: cannot read it as an image ({first_line(err)})",
                     help="give PNG or JPEG files; remove or replace this one")


def _check_header(path: str, size: tuple[int, int]) -> None:
    """Open the file (Pillow reads only the header) to refuse a non-image or a wrong size by name."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            got = image.size
    except Exception as err:
        raise _unreadable(path, err) from None
    _require_size(path, got, size)


# ------------------------------------------------------------------ finding the files


def _image_files(folder: Path, where: str) -> list[Path]:
    """Every image under `folder`, sorted by path; hidden files (.DS_Store) are skipped, any other
    file that is not a PNG or JPEG is refused by name (never dropped silently)."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(parent) / name
            if path.suffix.lower() not in SUFFIXES:
                raise UserError(f"{path}: not a PNG or JPEG file ({where} holds only images)",
                                help="move other files out of the image folder")
            found.append(path)
    return found


def _require_folder(path: Path) -> None:
    if not path.exists():
        raise UserError(f"image folder {path} does not exist", help='give the folder of class subfolders, e.g. images("data/train/", size=[28, 28])')
    if not path.is_dir():
        raise UserError(f"{path} is a file; images(...) reads a folder with one subfolder per class",
                        help="give the folder that holds the class subfolders")


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of a training folder, sorted by name; loose images beside them are refused."""
    _require_folder(root)
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    loose = next((p for p in entries if p.is_file() and p.suffix.lower() in SUFFIXES), None)
    if loose is not None:
        raise UserError(f"{loose} is not in a class subfolder; images(...) takes the class from the subfolder's name",
                        help=f"move it into {root}/<class name>/")
    classes = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if not classes:
        raise UserError(f"{root} has no class subfolders; images(...) reads one subfolder per class",
                        help=f"put each class's images in a folder named after it: {root}/cat/1.png, {root}/dog/2.png")
    return classes


# ------------------------------------------------------------------ the data source


def image_input(expect) -> tuple[str, tuple[int, int]]:
    """(color, (H, W)) of the spec's one image input [1|3, H, W]; a UserError for any other spec."""
    shapes = [shape for _, shape, _ in expect.inputs]
    if len(shapes) == 1 and len(shapes[0]) == 3 and shapes[0][0] in (1, 3) and None not in shapes[0] \
            and expect.inputs[0][2] != "int":
        c, h, w = shapes[0]
        return ("gray" if c == 1 else "rgb"), (h, w)
    shown = ", ".join(f"{n}: {expect.shape_text(i)}" for i, (n, _, _) in enumerate(expect.inputs))
    raise UserError(f"images need a model with one image input [1, H, W] (gray) or [3, H, W] (rgb); this one has {shown}",
                    help="declare e.g. `input image: [1, 28, 28]`")


def load_images(args: Mapping[str, Any], expect, base_dir: Path) -> "Any":
    """`images(path, size, color)` -> Arrays whose one input is an ImageFiles (decoded later, in
    batches) and whose labels are the class folders' indices; meta["class_names"] names them."""
    from .data import Arrays, class_labels, resolve_path

    problem = image_source_problem(args, expect.inputs)  # the checker's E123, for a `--data` source
    if problem is not None:
        err = UserError(problem[0], help=problem[1], code="E123")
        err.about_source = True  # load_arrays says where the source is written
        raise err
    root = resolve_path(args["path"], base_dir)
    color, size = image_input(expect)
    folders = class_folders(root)
    paths, ids = [], []
    for k, folder in enumerate(folders):
        found = _image_files(folder, f"the class folder {folder}")
        if not found:
            raise UserError(f"the class folder {folder} holds no images", help="add PNG or JPEG files, or remove the folder")
        paths += found
        ids += [k] * len(found)
    for path in paths:
        _check_header(str(path), size)
    names = [f.name for f in folders]
    y = class_labels(np.array(ids, np.int64), len(names), expect, str(root))
    files = ImageFiles(tuple(str(p) for p in paths), size, color)
    meta = {"class_names": names, "images": {"size": list(size), "color": color, "workers": args.get("workers")}}
    arrays = Arrays([files], y, f'images("{args["path"]}")')
    arrays.meta = meta
    return arrays


def is_streamed(arrays) -> bool:
    return any(isinstance(x, ImageFiles) for x in arrays.inputs)


# ------------------------------------------------------------------ the streamed split


class _Plan:
    """The batch sampler the DataLoader iterates: this epoch's batches of indices, set before each pass."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Decoder:
    """The DataLoader's data set: indices -> a decoded batch, or the error text (a worker's
    exception would reach the main process as a traceback; the text becomes a UserError there)."""

    def __init__(self, files: ImageFiles):
        self.files = files

    def __getitem__(self, indices):
        import torch

        try:
            return torch.from_numpy(self.files.decode(indices))
        except UserError as err:
            return err.message


def worker_count(workers: int | None) -> int:
    """Decoding processes: `workers` as given, else up to DEFAULT_WORKERS, one per CPU core."""
    if workers is not None:
        return int(workers)
    return min(DEFAULT_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class StreamedSplit:
    """A split whose labels `y` are a tensor in memory (so the loop's `y[taken]`, the loss's label
    checks and stratification work as for any split) and whose images are decoded by a torch
    DataLoader with worker processes, in the order the loop gives (`batches`)."""

    def __init__(self, files: ImageFiles, y, workers: int | None = None, device=None):
        self.files, self.y = files, y
        self.workers = worker_count(workers)
        self.device = device if device is not None else y.device
        self._plan = _Plan()
        self._loader = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def inputs(self) -> list:
        raise TypeError("a StreamedSplit has no inputs in memory: read them with batches()")

    def to(self, device) -> "StreamedSplit":
        """This split with its labels (and batches) on `device`; of this split's own class (a ShardedSplit stays one)."""
        return type(self)(self.files, self.y.to(device), self.workers, device)

    def batch(self, index) -> tuple[list[Any], Any]:
        (out,) = self.batches([index])
        return out

    def batches(self, indices: Iterable) -> Iterator[tuple[list[Any], Any]]:
        """([images], labels) for each index tensor, slice or list of `indices`, in order; the workers
        decode ahead of the loop (the whole plan is known before the first batch)."""
        plan = [_as_list(i, len(self)) for i in indices]
        self._plan.batches = plan
        for index, images in zip(plan, self._loader_for()):
            if isinstance(images, str):
                raise UserError(images, help=self.files.help)
            yield [images.to(self.device, non_blocking=True)], self.y[index]

    def _loader_for(self):
        import torch
        from torch.utils.data import DataLoader

        if self._loader is None:
            workers = self.workers
            self._loader = DataLoader(
                _Decoder(self.files), batch_size=None, sampler=self._plan, num_workers=workers,
                persistent_workers=workers > 0, pin_memory=self.device.type == "cuda",
                prefetch_factor=4 if workers > 0 else None,
                # its own generator: making an iterator draws a seed, which must not come from (and
                # so change) the global generator that dropout and initialisation use
                generator=torch.Generator().manual_seed(0))
        return self._loader


def _as_list(index, n: int) -> list[int]:
    if isinstance(index, slice):
        return list(range(*index.indices(n)))
    if hasattr(index, "tolist"):
        return index.tolist()
    return [int(i) for i in index]


def streamed_split(arrays, idx, torch_module):
    """prepare's split for image data: the files at `idx` and their labels."""
    files = next(x for x in arrays.inputs if isinstance(x, ImageFiles))
    y = torch_module.from_numpy(np.ascontiguousarray(arrays.y[idx]))
    return StreamedSplit(files.take(idx), y, arrays.meta.get("images", {}).get("workers"))


# ------------------------------------------------------------------ evaluate and predict


def numpy_batches(split: StreamedSplit, batch: int) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
    """The split in order, batch by batch, as NumPy (what streaming.score takes)."""
    cpu = split.to(_cpu())
    ranges = (slice(s, s + batch) for s in range(0, len(cpu), batch))
    for (images,), y in cpu.batches(ranges):
        yield [images.numpy()], y.numpy()


def _cpu():
    import torch

    return torch.device("cpu")


def arrays_batches(arrays, batch: int):
    """An images(...) source given to evaluate (`--data`): its files in order, batch by batch."""
    import torch

    idx = np.arange(len(arrays.y))
    return numpy_batches(streamed_split(arrays, idx, torch), batch)


def is_image_input(path: Path) -> bool:
    """`nnspec predict --input PATH` names images: a folder, or one PNG/JPEG file."""
    return path.is_dir() or path.suffix.lower() in SUFFIXES


def predict_files(path: Path, expect) -> tuple[ImageFiles, list[str]]:
    """The images to predict (a folder: every image under it, sorted; or one file) and their names
    as the output's `file` column (the path below the folder)."""
    color, size = image_input(expect)
    if path.is_dir():
        found = _image_files(path, f"the folder {path}")
        if not found:
            raise UserError(f"{path} holds no images to predict", help="give a folder of PNG or JPEG files")
        names = [p.relative_to(path).as_posix() for p in found]
    else:
        if not path.is_file():
            raise UserError(f"{path} does not exist", help="give an image file or a folder of images")
        found, names = [path], [path.name]
    for p in found:
        _check_header(str(p), size)
    return ImageFiles(tuple(str(p) for p in found), size, color), names


def predict_batches(path: Path, expect, batch: int, workers: int | None = None):
    """(names, [images tensor]) for each batch of the images at `path`, in order."""
    import torch

    files, names = predict_files(path, expect)
    split = StreamedSplit(files, torch.zeros(len(files)), workers)
    ranges = [slice(s, s + batch) for s in range(0, len(files), batch)]
    for r, (inputs, _) in zip(ranges, split.batches(ranges)):
        yield names[r], inputs


def prediction_tables(model, path: Path, expect, batch: int, device, table: Callable):
    """(header, rows) for each batch of the images at `path`: the `file` column, then what
    `table(probabilities)` makes of the model's outputs (run.prediction_table: p_*, predicted, label)."""
    from .loop import predict

    for names, inputs in predict_batches(path, expect, batch):
        probs = predict(model, [x.to(device) for x in inputs], batch)
        header, rows = table(probs.float().cpu().numpy())
        yield ["file", *header], [[name, *row] for name, row in zip(names, rows)]
