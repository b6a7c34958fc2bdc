"""How much memory a checked model needs, against what any device and this machine can hold.

One decision, `memory_problem`, serves `nnspec check` (E307 as an error, W307 as a warning) and
`nnspec train` (which refuses both, before it loads data or builds the model). The estimate is a
lower bound: float32 weights, their gradients and up to two optimizer moments (4 values per
parameter), plus every node's output and its gradient for one batch (2 values per element).
Nothing here imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .limits import memory_text, physical_memory

MAX_PARAM_BYTES = 32 * 2**30  # float32 weights beyond this fit on no single device
MAX_TRAIN_BYTES = 160 * 2**30  # above the largest single accelerator (141 GiB on an H200)


@dataclass(frozen=True)
class MemoryProblem:
    code: str  # "E307": more than any device holds; "W307": more than `available` (this machine)
    what: str  # "weights" | "training"
    message: str
    help: str
    needed: int  # bytes
    available: int | None  # bytes, for W307


def machine_memory() -> int | None:
    """Bytes of memory on this machine (limits.physical_memory: the physical memory, or what the
    container's cgroup leaves when that is less); None where the system does not say. Tests replace it."""
    return physical_memory()


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


def count_text(n: int) -> str:
    """1,234,567 for counts a reader can take in; 'about 10^400' beyond (and no 4300-digit str())."""
    if n < 10**18:
        return f"{n:,}"
    return f"about 10^{int((n.bit_length() - 1) * 0.30103)}"
