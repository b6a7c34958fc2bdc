"""How a run computes: the autocast dtype of `--amp` and the memory format of the network.

`--amp` is one flag on every device. On CUDA it is bf16 autocast where the GPU supports bf16,
else fp16 with loss scaling. On the CPU it is bf16 autocast where the CPU has native bf16
arithmetic (AVX-512 BF16 or AMX); on a CPU without it, bf16 is emulated and slower than fp32,
so the run trains in fp32 and says so in a note (nothing is dropped silently). Losses, metrics
and the final softmax/sigmoid are computed in fp32 either way (losses.Loss casts the logits,
loop._metrics the outputs), as torch's autocast op lists and Keras's `mixed_bfloat16` do.

Memory format: under `--amp` a network with 2-D convolutions is trained channels-last (3-D:
channels_last_3d), which is what oneDNN's bf16 convolutions are fastest in; it is decided by the
network's layers, never by the user. Outside autocast nothing changes (the fp32 path stays
numerically identical to a hand-written loop). The layout is invisible outside training:
checkpoints hold contiguous weights (`standard_state`), and ONNX export and ejected source are
built from checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..diagnostics import UserError

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (what oneDNN's bf16 kernels need)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None and probe() for probe in probes):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def amp_dtype(amp: bool, device: torch.device) -> tuple[torch.dtype | None, list[str]]:
    """(the autocast dtype of the run, or None for fp32; notes to print)."""
    if not amp:
        return None, []
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), []
    if device.type != "cpu":
        raise UserError(f"--amp is not supported on device {device}", help="use --device cpu or cuda, or drop --amp")
    if not cpu_has_bf16():
        return None, ["--amp: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16), where bf16 is slower "
                      "than float32; training in float32"]
    return torch.bfloat16, []


def memory_format_for(model: nn.Module, autocast: torch.dtype | None) -> torch.memory_format | None:
    """channels_last for a network with 2-D convolutions, channels_last_3d with 3-D ones, under autocast;
    None (leave it) otherwise."""
    if autocast is None:
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


def apply_memory_format(model: nn.Module, autocast: torch.dtype | None) -> torch.memory_format | None:
    """Convert the model's 4-D (5-D) weights to the format memory_format_for chooses; returns it."""
    fmt = memory_format_for(model, autocast)
    if fmt is not None:
        model.to(memory_format=fmt)
    return fmt


def standard_state(state: dict) -> dict:
    """A state_dict with every tensor contiguous: a checkpoint looks the same whatever the training layout."""
    return {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
