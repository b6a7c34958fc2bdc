"""Speedups of CPU training that the spec makes possible, each against a reference we did not write:
relu applied after the max pool that reads it (every run: exact to the bit, against the spec's
order written in plain PyTorch), glibc keeping freed memory (every CPU run: counted in page
faults), and the faster dropout mask of `--amp` (its rate, scaling and gradient)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnspec.backends.torch_model import build_model, commuted_activations
from nnspec.pipeline import check_text
from nnspec.train import precision

CONVNET = (Path(__file__).resolve().parent.parent / "specs" / "mnist_convnet.nn").read_text()


def model_of(text: str):
    result = check_text(text, "net.nn")
    assert result.ok, result.render()
    return build_model(result), result.checked.graph


def test_training_pools_before_relu_and_every_number_matches_the_spec_order_in_plain_pytorch():
    torch.manual_seed(0)
    ours, _ = model_of(CONVNET)
    assert ours.fx_train.code.index("max_pool2d_1 = ") < ours.fx_train.code.index("relu_1 = ")
    reference = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    for mine, theirs in zip([ours.conv2d_1, ours.conv2d_2, ours.dense_1], [reference[0], reference[3], reference[8]]):
        theirs.load_state_dict(mine.state_dict())
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 1, 28, 28, generator=data), torch.randint(0, 10, (64,), generator=data)
    x[:8] = -x[:8].abs()  # windows whose values are all negative: relu's ties at 0
    losses = {}
    for name, model, forward in [("ours", ours, ours.forward_train), ("reference", reference, reference)]:
        torch.manual_seed(2)  # the same dropout masks
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        losses[name] = []
        for step in range(4):
            loss = F.cross_entropy(forward(x[step * 16:(step + 1) * 16]), y[step * 16:(step + 1) * 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(loss.detach())
    assert all(torch.equal(a, b) for a, b in zip(losses["ours"], losses["reference"]))
    assert torch.equal(ours.conv2d_1.weight, reference[0].weight)
    assert torch.equal(ours.dense_1.weight, reference[8].weight)


def test_the_spec_order_stays_in_forward_and_the_logits_graph_that_inspect_probes():
    model, _ = model_of(CONVNET)
    for module in (model.fx_forward, model.fx_logits):
        assert module.code.index("relu_1 = ") < module.code.index("max_pool2d_1 = ")


@pytest.mark.parametrize("layers", [
    "Conv2D(4, kernel=3) -> relu\n AvgPool2D(2)\n Flatten()\n Dense(10)",  # a mean does not commute
    "Conv2D(4, kernel=3) -> leaky_relu\n MaxPool2D(2)\n Flatten()\n Dense(10)",  # rounding makes ties
    "Conv2D(4, kernel=3) -> sigmoid\n MaxPool2D(2)\n Flatten()\n Dense(10)",
    "Flatten()\n Dense(4) -> relu",  # no pool reads it
])
def test_only_relu_read_by_a_max_pool_alone_is_moved(layers):
    spec = CONVNET.replace(CONVNET[CONVNET.index("        Conv2D"):CONVNET.index("    }\n    loss")], layers + "\n")
    model, graph = model_of(spec)
    assert commuted_activations(graph, {n.name: model.get_submodule(n.name) for n in graph.nodes if n.op == "layer"}) == set()


def test_relu_read_twice_is_not_moved():
    spec = """model Two {
    input image: [1, 12, 12]
    layers {
        h = image -> Conv2D(4, 3) -> relu
        p = h -> MaxPool2D(2) -> Flatten()
        q = h -> GlobalMaxPool()
        concat(p, q) -> Dense(1) -> sigmoid
    }
    loss      binary_crossentropy
    optimizer Adam(lr=0.001)
}
"""
    model, graph = model_of(spec)
    layers = {n.name: model.get_submodule(n.name) for n in graph.nodes if n.op == "layer"}
    assert commuted_activations(graph, layers) == set()
    assert model.fx_train.code.count("relu") == model.code.count("relu")


FAULTS = """
import json, resource, sys, torch
import torch.nn.functional as F
from torch import nn
from nnspec.train.precision import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
opt = torch.optim.Adam(model.parameters())
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():  # a training step of the MNIST convnet: activations of 11 MB and less, and a dropout mask
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(10):  # the first steps settle the heap's layout
    step()
before = faults()
for _ in range(10):
    step()
print(json.dumps({"faults": faults() - before, "applied": applied}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_stops_activations_from_page_faulting_in_every_step():
    def run(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    kept = run("keep")
    assert kept["applied"] is True
    # By default glibc gives 11 MB activations back to the kernel and faults them in again: measured
    # 5,000 to 6,300 faults a step in 3 runs of 4 (the 4th settled); kept, none to a few hundred
    assert kept["faults"] < 10 * 2700 / 2  # under half an 11 MB activation (2,700 pages of 4 KiB) a step


def test_fast_dropout_keeps_each_value_at_the_rate_asked_and_scales_it():
    for p in (0.1, 0.5, 0.9):
        drop = precision.FastDropout(p)
        x = torch.ones(1_000_000, requires_grad=True)
        y = drop(x)
        kept = y != 0
        assert abs(kept.float().mean().item() - (1 - p)) < 0.003
        torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
        y.sum().backward()
        assert torch.equal(x.grad, y.detach())  # d/dx of x * mask is the mask
    drop = precision.FastDropout(0.5).eval()
    x = torch.randn(100)
    assert drop(x) is x
    assert torch.equal(precision.FastDropout(1.0)(x), torch.zeros(100))


def test_fast_dropout_draws_from_torchs_seeded_generator():
    x = torch.ones(2, 3, 50)
    torch.manual_seed(3)
    a = precision.FastDropout(0.3)(x)
    torch.manual_seed(3)
    assert torch.equal(a, precision.FastDropout(0.3)(x)) and a.shape == x.shape


def test_amp_swaps_plain_dropout_on_the_cpu_only_and_keeps_the_state():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Linear(4, 2), nn.Dropout(0.1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert precision.use_fast_dropout(model, torch.device("meta")) == 0
    assert precision.use_fast_dropout(model, torch.device("cpu")) == 2
    assert type(model[1]) is precision.FastDropout and model[1].p == 0.2
    assert model.state_dict().keys() == state.keys()
