"""`--amp` on the CPU: bf16 autocast where the CPU has AMX (float32 elsewhere, said in a note),
channels-last for conv nets in either case, and nothing of either visible outside training
(checkpoints, ONNX, ejected source)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import nnspec.backends.torch_model as torch_model
import nnspec.train.losses as losses
from nnspec.pipeline import check_text
from nnspec.train import precision
from nnspec.train.run import train_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"
SMALL = "synthetic(n=256, seed=0)"


def result_of(name: str):
    result = check_text((SPECS / name).read_text(), str(SPECS / name))
    assert result.ok, result.render()
    return result


@pytest.fixture
def bf16_cpu(monkeypatch):
    """As on a CPU with AMX (bf16 autocast itself runs on any CPU, only slower)."""
    monkeypatch.setattr(precision, "cpu_bf16_pays", lambda: True)


def _watch_training(monkeypatch) -> dict:
    """Records, during train_spec, the last 2-D conv layer's output and weight, and the loss's dtype."""
    seen: dict = {}
    build = torch_model.build_model

    def build_and_watch(checked):
        model = build(checked)
        seen["model"] = model
        convs = [m for m in model.modules() if precision._conv_dims(m) == 2]
        if convs:
            def hook(module, inputs, out):
                seen.setdefault("conv_dtype", out.dtype)
                seen.setdefault("conv_channels_last", out.is_contiguous(memory_format=torch.channels_last)
                                and not out.is_contiguous())
                seen.setdefault("weight_channels_last", not module.weight.is_contiguous())
            convs[-1].register_forward_hook(hook)  # the second: a 1-channel weight is the same in both layouts
        return model

    call = losses.Loss.__call__

    def loss_and_watch(self, pred, y):
        value = call(self, pred, y)
        seen.setdefault("loss_dtype", value.dtype)
        return value

    monkeypatch.setattr(torch_model, "build_model", build_and_watch)
    monkeypatch.setattr(losses.Loss, "__call__", loss_and_watch)
    return seen


def test_amp_on_cpu_autocasts_convolutions_to_bf16_and_keeps_the_loss_in_fp32(bf16_cpu, monkeypatch, tmp_path):
    seen = _watch_training(monkeypatch)
    run = train_spec(result_of("mnist_convnet.nn"), out_dir=tmp_path, epochs=1, data=SMALL, amp=True)
    assert seen["conv_dtype"] == torch.bfloat16
    assert seen["loss_dtype"] == torch.float32
    assert seen["conv_channels_last"] and seen["weight_channels_last"]  # a 2-D conv net trains channels-last
    assert run.final["loss"] == run.final["loss"]  # finite, not NaN
    assert 0.0 <= run.final["accuracy"] <= 1.0


def test_without_amp_nothing_changes(monkeypatch, tmp_path):
    seen = _watch_training(monkeypatch)
    train_spec(result_of("mnist_convnet.nn"), out_dir=tmp_path, epochs=1, data=SMALL)
    assert seen["conv_dtype"] == torch.float32
    assert not seen["weight_channels_last"] and not seen["conv_channels_last"]
    assert type(seen["model"].dropout_1) is nn.Dropout  # torch's own draw: the hand loop's masks


def test_amp_checkpoint_is_fp32_contiguous_and_loads_into_a_plain_model(bf16_cpu, tmp_path):
    result = result_of("mnist_convnet.nn")
    train_spec(result, out_dir=tmp_path, epochs=1, data=SMALL, amp=True)
    state = torch.load(tmp_path / "last.pt", weights_only=False)["model"]
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in state.values() if v.is_floating_point())
    plain = torch_model.build_model(result.checked)
    plain.load_state_dict(state)  # strict: the same keys and shapes as a model never trained with --amp
    assert set(plain.state_dict()) == set(state)
    # resuming without --amp continues from that checkpoint
    resumed = train_spec(result, out_dir=tmp_path, epochs=2, data=SMALL, resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]


def test_channels_last_is_chosen_from_the_layers_and_only_under_amp():
    conv2d = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    conv3d = nn.Sequential(nn.Conv3d(1, 4, 3), nn.Flatten())
    mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    conv1d = nn.Sequential(nn.Conv1d(1, 4, 3))
    both = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv3d(1, 4, 3))
    assert precision.memory_format_for(conv2d, True) == torch.channels_last
    assert precision.memory_format_for(conv3d, True) == torch.channels_last_3d
    assert precision.memory_format_for(mlp, True) is None
    assert precision.memory_format_for(conv1d, True) is None
    assert precision.memory_format_for(both, True) is None
    assert precision.memory_format_for(conv2d, False) is None  # without --amp, exactly a hand-written loop


def test_standard_state_makes_channels_last_weights_contiguous_with_the_same_values():
    conv = nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    state = precision.standard_state(conv.state_dict())
    assert state["weight"].is_contiguous()
    assert torch.equal(state["weight"], conv.weight.detach())


def test_a_cpu_without_amx_trains_in_fp32_channels_last_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "cpu_bf16_pays", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    dtype, notes = precision.amp_dtype(True, torch.device("cpu"))
    assert dtype is None and "AVX-512 BF16 but no AMX" in notes[0] and "float32" in notes[0]
    seen = _watch_training(monkeypatch)
    run = train_spec(result_of("mnist_convnet.nn"), out_dir=tmp_path, epochs=1, data=SMALL, amp=True)
    assert any("no AMX" in note for note in run.notes)
    assert seen["conv_dtype"] == torch.float32
    assert seen["weight_channels_last"] and seen["conv_channels_last"]  # the layout speedup stays
    assert type(seen["model"].dropout_1) is precision.FastDropout  # and the 16-bit dropout mask
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    assert "no bfloat16 hardware" in precision.amp_dtype(True, torch.device("cpu"))[1][0]


def test_bf16_pays_only_on_a_cpu_with_amx(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "Path", lambda _: cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert not precision.cpu_bf16_pays()  # AVX-512 BF16 alone: bf16 convolutions were slower than fp32
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert precision.cpu_bf16_pays()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    cpuinfo.write_text("flags\t\t: fpu\n")
    assert precision.cpu_bf16_pays()  # torch's own probe


def test_no_amp_means_no_autocast():
    assert precision.amp_dtype(False, torch.device("cpu")) == (None, [])


@pytest.mark.slow
def test_amp_run_exports_to_onnx_and_python_as_a_plain_run(bf16_cpu, tmp_path):
    from nnspec.backends.trained_export import export

    train_spec(result_of("mnist_convnet.nn"), out_dir=tmp_path, epochs=1, data=SMALL, amp=True)
    onnx = export(tmp_path, "onnx", str(tmp_path / "model.onnx"))
    assert Path(onnx["path"]).is_file()
    source = Path(export(tmp_path, "python", str(tmp_path / "model.py"))["path"]).read_text()
    assert "channels_last" not in source and "autocast" not in source and "bfloat16" not in source


def test_amp_steps_with_torchs_fused_optimizer_and_resume_follows_the_flag(bf16_cpu, monkeypatch, tmp_path):
    from nnspec.train import optim  # train_spec imports build_optimizer from it at call time

    made = []
    build = optim.build_optimizer
    monkeypatch.setattr(optim, "build_optimizer", lambda *a, **k: made.append(build(*a, **k)) or made[-1])
    result = result_of("mnist_convnet.nn")
    train_spec(result, out_dir=tmp_path, epochs=1, data=SMALL, amp=True)
    assert made[-1].param_groups[0]["fused"] is True
    train_spec(result, out_dir=tmp_path, epochs=2, data=SMALL, resume=True)  # without --amp: torch's default kernel
    assert not made[-1].param_groups[0]["fused"]


def test_fused_adam_matches_torchs_default_adam_to_rounding():
    from nnspec.train.optim import build_optimizer

    def trained(fused: bool):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        opt = build_optimizer("Adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7}, model, fused=fused)
        assert type(opt) is torch.optim.Adam
        g = torch.Generator().manual_seed(1)
        for _ in range(10):
            loss = model(torch.randn(8, 4, generator=g)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    torch.testing.assert_close(trained(True), trained(False), rtol=1e-5, atol=1e-6)
