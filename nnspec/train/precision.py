"""How a run computes: the autocast dtype of `--amp`, the memory format of the network, and the
CPU's memory allocator.

`--amp` is one flag on every device: "the fastest arithmetic this device does well, with the
quality kept". On CUDA it is bf16 autocast where the GPU supports bf16, else fp16 with loss
scaling. On the CPU it is bf16 autocast where the CPU multiplies bf16 matrices in hardware
(AMX); on a CPU with only AVX-512 BF16 (or none), bf16 convolutions, matmuls and LSTMs run
slower than float32 (measured 1.1-2.3x slower on such a CPU, bench/README.md), so the run keeps
float32 arithmetic and says so in a note; the other `--amp` speedups still apply. Losses,
metrics and the final softmax/sigmoid are computed in fp32 either way (losses.Loss casts the
logits, loop._metrics the outputs), as torch's autocast op lists and Keras's `mixed_bfloat16` do.

What `--amp` changes besides the dtype, each measured to win (bench/README.md), none exact to
the bit, so none without the flag:
- memory format: a network with 2-D convolutions trains channels-last (3-D: channels_last_3d),
  decided by the network's layers, never by the user. Checkpoints hold contiguous weights
  (`standard_state`); ONNX export and ejected source are built from checkpoints.
- optimizers: torch's fused SGD/Adam/AdamW step (optim.build_optimizer).
- dropout on the CPU: masks drawn from 16-bit random integers (`FastDropout`), half the time of
  torch's per-element Bernoulli draw; the rate is rounded to a multiple of 1/65536.

What every CPU run gets, because it is faster and changes no number: glibc keeps freed memory
for reuse (`keep_freed_memory`) instead of returning each large activation to the kernel and
page-faulting it back in on the next step.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from pathlib import Path

import torch
from torch import nn

from ..diagnostics import UserError


def cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text(errors="replace").split())
    except OSError:
        return set()


def cpu_bf16_pays() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX), where bf16 autocast is faster
    than float32. AVX-512 BF16 alone only converts and dot-products: oneDNN's bf16 convolutions
    and matmuls there were slower than its float32 ones."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None and probe():
        return True
    return "amx_bf16" in cpu_flags()


def _no_bf16_note() -> str:
    why = ("this CPU has AVX-512 BF16 but no AMX, where bfloat16 convolutions and matmuls run slower than float32"
           if "avx512_bf16" in cpu_flags() else
           "this CPU has no bfloat16 hardware (AMX), where bfloat16 is slower than float32")
    return (f"--amp: {why}; training in float32 with the other --amp speedups (channels-last, fused optimizer, "
            "faster dropout)")


def amp_dtype(amp: bool, device: torch.device) -> tuple[torch.dtype | None, list[str]]:
    """(the autocast dtype of the run, or None for fp32; notes to print)."""
    if not amp:
        return None, []
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), []
    if device.type != "cpu":
        raise UserError(f"--amp is not supported on device {device}", help="use --device cpu or cuda, or drop --amp")
    if not cpu_bf16_pays():
        return None, [_no_bf16_note()]
    return torch.bfloat16, []


def memory_format_for(model: nn.Module, amp: bool) -> torch.memory_format | None:
    """channels_last for a network with 2-D convolutions, channels_last_3d with 3-D ones, under --amp;
    None (leave it) otherwise."""
    if not amp:
        return None
    dims = {_conv_dims(m) for m in model.modules()} - {None}
    if dims == {2}:
        return torch.channels_last
    if dims == {3}:
        return torch.channels_last_3d
    return None  # no convolution, 1-D ones (sequences, features last), or 2-D and 3-D mixed


def _conv_dims(module: nn.Module) -> int | None:
    """The spatial dimensions of a convolution (nnspec's own layers or torch's, e.g. a pretrained
    backbone), else None."""
    from ..backends import torch_layers as tl

    if isinstance(module, (tl.Conv, tl.ConvTranspose)):
        return module.dims
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return 2
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        return 3
    return None


def apply_memory_format(model: nn.Module, amp: bool) -> torch.memory_format | None:
    """Convert the model's 4-D (5-D) weights to the format memory_format_for chooses; returns it."""
    fmt = memory_format_for(model, amp)
    if fmt is not None:
        model.to(memory_format=fmt)
    return fmt


def standard_state(state: dict) -> dict:
    """A state_dict with every tensor contiguous: a checkpoint looks the same whatever the training layout."""
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


class FastDropout(nn.Dropout):
    """nn.Dropout whose mask comes from 16-bit random integers, four to each 64-bit draw of torch's
    generator, instead of one Bernoulli draw per element (twice as fast on the CPU). The rate is
    rounded to a multiple of 1/65536; the state, the seed's role and eval mode are nn.Dropout's."""

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, 2**63 - 1)
        draws = words.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
        keep = draws >= round(self.p * 65536) - 32768
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


def use_fast_dropout(model: nn.Module, device: torch.device) -> int:
    """Under --amp on the CPU, every nn.Dropout of the model draws its masks as FastDropout; -> how many."""
    if device.type != "cpu":
        return 0  # CUDA's Bernoulli draw is already fast
    found = [m for m in model.modules() if type(m) is nn.Dropout]
    for module in found:
        module.__class__ = FastDropout  # same module, same place in the model: only its forward changes
    return len(found)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's own ceiling for its adaptive threshold
TRIM_THRESHOLD = 256 * 2**20


def keep_freed_memory() -> bool:
    """Ask glibc to serve allocations under 32 MiB from its heap and to keep up to 256 MiB freed
    at the top of it. By default glibc maps each large tensor fresh and unmaps it when freed, so a
    training step page-faults its activations in again every time (about 17 MB of faults a step
    for the MNIST convnet, a third of its time). Memory held stays within the run's peak. -> whether
    it applied (glibc only: elsewhere the allocator is left as it is)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
