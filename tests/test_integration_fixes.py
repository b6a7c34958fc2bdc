"""Regressions found while integrating: step under a gradient optimizer, unsafe checkpoints."""
from __future__ import annotations

import torch

from nnspec.backends.torch_layers import step
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.train import checkpoint
from nnspec.train.run import train_spec

STEP_SGD = """
model S {
    input x: [2]
    layers {
        Dense(1) -> step
    }
    loss mse
    optimizer SGD(lr=0.1)
    train { data logic.and; epochs 2; batch_size 1 }
}
"""


def test_step_is_exact_and_its_gradient_is_zero_not_missing():
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0], requires_grad=True)
    y = step(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]  # torch.heaviside(x, 1) agrees
    assert torch.equal(y, torch.heaviside(x.detach(), torch.tensor(1.0)))
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_step_under_sgd_trains_with_a_warning_and_leaves_the_weights_unchanged(tmp_path):
    result = check_text(STEP_SGD, "s.nn")
    assert result.ok and [d.code for d in result.diagnostics] == ["W403"]
    summary = train_spec(result, out_dir=tmp_path / "run", quiet=True)
    assert len(summary.history) == 2
    first, last = summary.history[0]["loss"], summary.history[-1]["loss"]
    assert first == last  # zero gradient: nothing moves, exactly as W403 says


class _NotATensor:
    pass


def test_a_checkpoint_holding_code_objects_is_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "ir_hash": "x", "payload": _NotATensor()}, path)
    try:
        checkpoint.load(path)
    except UserError as err:
        assert "never unpickles" in err.message
        assert "weights_only=False" not in err.render()
    else:
        raise AssertionError("an unsafe checkpoint was loaded")


def test_run_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os

    target = tmp_path / "history.csv"
    checkpoint.write_text(target, "epoch,loss\n")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
