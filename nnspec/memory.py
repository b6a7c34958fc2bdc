"""Memory: how much a model, a data file or a data source may make nnspec allocate, against what
any device and this machine can hold. The one module for memory figures and their wording.

- The model (`memory_problem`): one decision serves `nnspec check` (E307 as an error, W307 as a
  warning) and `nnspec train` (which refuses both, before it loads data or builds the model, for
  its real batch and device: `require_model_fits`). The estimate is a lower bound: float32
  weights, their gradients and up to two optimizer moments (4 values per parameter), plus every
  node's output and its gradient for one batch (2 values per element).
- Data (docs/security.md, "Other inputs"): a data file's or data source's size is checked before
  anything is allocated for it, against the file's own sizes and this machine's memory, so that a
  small hostile file cannot make nnspec use gigabytes or run for minutes.

Pure Python: no torch, no NumPy (`nnspec check` uses it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import ir
from .diagnostics import UserError

MAX_PARAM_BYTES = 32 * 2**30  # float32 weights beyond this fit on no single device
MAX_TRAIN_BYTES = 160 * 2**30  # above the largest single accelerator (141 GiB on an H200)

MAX_LINE_CHARS = 1 << 20  # a CSV line longer than this (1 MiB of text) is refused, with its number
MAX_RECORD_CHARS = 16 << 20  # one CSV record (quoted fields may span lines) is at most 16 MiB of text
# an .npz member that would decompress to more than this must not be compressed more than
# MAX_NPZ_RATIO:1 (deflate tops out near 1032:1; only long runs of one byte get near it: a zip bomb)
NPZ_RATIO_ABOVE = 64 << 20
MAX_NPZ_RATIO = 200
SYNTHETIC_MAX_LEN = 24  # length of padded batches made for `int[?]` inputs (and of `?` dimensions)


# ---------------------------------------------------------------- figures in words
def memory_text(nbytes: int) -> str:
    """Bytes in binary units (GiB, TiB...), on integers so that 10^400 bytes cannot overflow."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    scale = 0
    while scale < len(units) - 1 and nbytes >= 1024 ** (scale + 1):
        scale += 1
    if nbytes >= 1024 ** (len(units) - 1) * 1024:
        return f"about 2^{nbytes.bit_length() - 1} bytes"
    if scale == 0:
        return f"{nbytes} bytes"
    return f"{nbytes / 1024 ** scale:,.1f} {units[scale]}"


def count_text(n: int) -> str:
    """1,234,567 for counts a reader can take in; 'about 10^400' beyond (and no 4300-digit str())."""
    if n < 10**18:
        return f"{n:,}"
    return f"about 10^{int((n.bit_length() - 1) * 0.30103)}"


# ---------------------------------------------------------------- this machine
def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What this process's cgroup (v2) still lets it allocate, when it is limited."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def machine_memory() -> int | None:
    """Bytes of memory on this machine: the physical memory, or what the container's cgroup leaves
    when that is less; None where the system does not say. The one source of the figure for E307/W307
    (the model) and W113 (synthetic data); tests replace it."""
    total = _meminfo("MemTotal")
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    room = _cgroup_room()
    return min(total, room) if room is not None else total


def available_memory() -> int | None:
    """Memory this process can still allocate without swapping, in bytes (None where unknown)."""
    free = _meminfo("MemAvailable")
    if free is None:
        free = machine_memory()
    room = _cgroup_room()
    if free is None:
        return room
    return min(free, room) if room is not None else free


def require_available_memory(nbytes: int, what: str, help: str) -> None:
    """Refuse, with the numbers, what would not fit in the memory this machine has free."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise UserError(f"{what} would need {memory_text(nbytes)} of memory; this machine has "
                        f"{memory_text(free)} available", help=help)


# ---------------------------------------------------------------- the model
@dataclass(frozen=True)
class MemoryProblem:
    code: str  # "E307": more than any device holds; "W307": more than `available` (this machine)
    what: str  # "weights" | "training"
    message: str
    help: str
    needed: int  # bytes
    available: int | None  # bytes, for W307


def training_bytes(graph: ir.Graph, batch: int) -> tuple[int, int]:
    """(activations and their gradients for `batch` examples, weights + gradients + optimizer state)."""
    per_example = sum(n.out.numel or 0 for n in graph.nodes if n.out is not None)
    return 2 * 4 * batch * per_example, 4 * 4 * graph.total_params


def memory_problem(graph: ir.Graph, batch: int | None, available: int | None = None,
                   where: str = "this machine") -> MemoryProblem | None:
    """The first reason the model cannot be held or trained, or None.

    `batch`: the examples of one training step (None: the model is not trained, only its weights
    count). `available`: the memory of the machine or device that would hold it (None: only the
    absolute limits, E307, apply)."""
    weights = 4 * graph.total_params
    if weights > MAX_PARAM_BYTES:
        return MemoryProblem("E307", "weights", f"the model has {count_text(graph.total_params)} parameters: it would "
                             f"need {memory_text(weights)} of memory for the weights alone in float32",
                             "reduce layer sizes; this cannot be allocated", weights, None)
    step = None
    if batch is not None:
        activations, state = training_bytes(graph, batch)
        step = activations + state
        detail = (f"training one batch of {batch} would need at least {memory_text(step)} of memory "
                  f"({memory_text(activations)} for activations and their gradients, "
                  f"{memory_text(state)} for weights, gradients and optimizer state)")
        if step > MAX_TRAIN_BYTES:
            return MemoryProblem("E307", "training", detail,
                                 f"more than any single device holds ({memory_text(MAX_TRAIN_BYTES)} is the limit "
                                 "here): reduce the input and layer sizes or the batch_size", step, None)
    if available is None:
        return None
    if weights > available:
        return MemoryProblem("W307", "weights", f"the model's {count_text(graph.total_params)} parameters need "
                             f"{memory_text(weights)} ({weights:,} bytes) for the weights alone in float32; "
                             f"{where} has {memory_text(available)} ({available:,} bytes) of memory",
                             "reduce layer sizes, or use a machine with more memory", weights, available)
    if step is not None and step > available:
        return MemoryProblem("W307", "training", f"training one batch of {batch} would need at least "
                             f"{memory_text(step)} ({step:,} bytes: {memory_text(activations)} for activations and "
                             f"their gradients, {memory_text(state)} for weights, gradients and optimizer state); "
                             f"{where} has {memory_text(available)} ({available:,} bytes) of memory",
                             "reduce the input and layer sizes or the batch_size, or use a machine with more memory",
                             step, available)
    return None


def require_model_fits(graph: ir.Graph, batch: int | None, gpu: str | None = None,
                       gpu_memory: int | None = None) -> None:
    """`nnspec train`, `evaluate`, `predict`: refuse (E307, with the numbers) a model that
    `memory_problem` says does not fit, for the batch a run really uses (None: the weights alone).
    The model is built in this machine's memory first; on a GPU (`gpu` names it; `gpu_memory`, its
    bytes, is needed when `batch` is given) the weights must fit here and one training step there."""
    problem = memory_problem(graph, None if gpu is not None else batch, machine_memory())
    if problem is None and gpu is not None and batch is not None:
        problem = memory_problem(graph, batch, gpu_memory, where=f"the GPU {gpu}")
    if problem is not None:
        help = problem.help
        if problem.what == "training":
            help += " (--batch-size sets the batch)"
        raise UserError(problem.message, code="E307", help=help)


# ---------------------------------------------------------------- data
def synthetic_bytes(inputs, outputs: int, n: int) -> int:
    """The bytes `synthetic(n=n)` makes: each input, (n, *shape) of float32 or int64 (`?` taken as
    SYNTHETIC_MAX_LEN), and the labels' scores (n, outputs) of float32. `inputs`: (shape, dtype)."""
    per_row = 4 * max(outputs, 1)
    for shape, dtype in inputs:
        values = 1
        for d in shape:
            values *= d if d else SYNTHETIC_MAX_LEN
        per_row += values * (8 if dtype == "int" else 4)
    return n * per_row
