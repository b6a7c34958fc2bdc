"""Generated from the catalog: every layer's examples (its entry's example and variants),
lowered to PyTorch, must have the shape the checker infers, the parameter count it counts (equal
to torch's own sum of numel), and gradients reaching every parameter; every activation must equal
PyTorch's own function; `padding=same` with any stride must equal an independent reference."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from catalog_examples import EXAMPLES, IDS, LAYER_ENTRIES, one_layer
from nnspec import catalog
from nnspec.backends.torch_model import build_model, parameter_counts


def _random_input(t, batch: int = 3, steps: int = 6) -> torch.Tensor:
    shape = [batch] + [steps if d is None else d for d in t.shape]
    if t.dtype == "int":
        return torch.randint(1, 9, shape)
    return torch.randn(shape)


@pytest.mark.parametrize("entry", LAYER_ENTRIES, ids=lambda e: e.name)
def test_every_layer_has_an_example_and_a_torch_module(entry):
    assert entry.example and entry.example_input, f"{entry.name} has no example for the generated tests"
    checked = one_layer(entry.example, entry.example_input[0])
    kinds = {n.kind for n in checked.graph.nodes if n.op == "layer"}
    if entry.name in kinds:  # not elaborated into another kind by the checker (Bidirectional is)
        assert entry.build is not None, f"{entry.name} has no torch module (`build` in its catalog entry)"


@pytest.mark.parametrize("entry, call, shape", EXAMPLES, ids=IDS)
def test_layer_example_lowers_faithfully(entry, call, shape):
    torch.manual_seed(0)
    checked = one_layer(call, shape)
    model = build_model(checked)
    graph = checked.graph
    x = _random_input(graph.node(graph.inputs[0]).out)
    if x.is_floating_point():
        x.requires_grad_(True)
    y = model(x)
    expected = graph.output_node.out.shape  # a `?` dimension (None) takes any length
    assert len(y.shape) == 1 + len(expected) and all(d in (None, n) for d, n in zip(expected, y.shape[1:]))

    layer = next(n for n in graph.nodes if n.op == "layer")
    trainable, buffers = parameter_counts(model)
    assert trainable == sum(p.numel() for p in model.parameters()) == layer.params - layer.non_trainable
    assert trainable + buffers == graph.total_params
    assert buffers == layer.non_trainable

    # a random projection of the output: every parameter (and a float input) gets a non-zero gradient
    (y * torch.randn_like(y)).sum().backward()
    if x.is_floating_point():
        assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"zero gradient at {name}"


# ---------------------------------------------------------------- activations
def _heaviside(x):
    return torch.heaviside(x, torch.ones(()))


REFERENCES = {
    "step": lambda a: _heaviside,
    "sign": lambda a: torch.sign,
    "linear": lambda a: nn.Identity(),
    "relu": lambda a: nn.ReLU(),
    "sigmoid": lambda a: nn.Sigmoid(),
    "tanh": lambda a: nn.Tanh(),
    # a + (b - a) * sigmoid(2x) is the same curve written another way
    "scaled_tanh": lambda a: (lambda x: a["a"] + (a["b"] - a["a"]) * torch.sigmoid(2 * x)),
    "softmax": lambda a: nn.Softmax(dim=-1),  # the feature axis of [N, T, F]
    "elu": lambda a: nn.ELU(alpha=a["alpha"]),
    "leaky_relu": lambda a: nn.LeakyReLU(a["alpha"]),
    "gelu": lambda a: nn.GELU(),
    "selu": lambda a: nn.SELU(),
    "silu": lambda a: nn.SiLU(),
    "softplus": lambda a: nn.Softplus(),
    "mish": lambda a: nn.Mish(),
}
CALLS = {"scaled_tanh": ("scaled_tanh(-5, 35)", {"a": -5.0, "b": 35.0}),
         "elu": ("elu(0.7)", {"alpha": 0.7}), "leaky_relu": ("leaky_relu(0.2)", {"alpha": 0.2})}


def test_every_activation_has_a_reference():
    assert {e.name for e in catalog.activations} == set(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_activation_matches_pytorch(name):
    call, args = CALLS.get(name, (name, {}))
    model = build_model(one_layer(call, "[3, 5]"))
    x = torch.randn(2, 3, 5) * 3
    x[0, 0, :4] = torch.tensor([0.0, -0.0, 1e-30, -1e-30])  # step and sign at and around 0
    got, ref = model(x), REFERENCES[name](args)(x)
    if name in ("step", "sign"):
        assert torch.equal(got, ref)  # exact, not approximately
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decl, dim", [("[6]", 1), ("[3, 6]", 2), ("[4, 3, 3]", 1)])
def test_softmax_acts_on_the_feature_axis(decl, dim):
    checked = one_layer("softmax", decl)
    x = torch.randn([2] + [int(d) for d in decl.strip("[]").split(",")])
    torch.testing.assert_close(build_model(checked)(x), torch.softmax(x, dim=dim))


def _windows_reference(x: torch.Tensor, size: int, stride: int, reduce) -> torch.Tensor:
    """Pooling with padding=same written out window by window, padding left out of each window."""
    n, t, f = x.shape
    out_len = -(-t // stride)
    total = max((out_len - 1) * stride + size - t, 0)
    start = -(total // 2)
    rows = []
    for i in range(out_len):
        lo, hi = start + i * stride, start + i * stride + size
        rows.append(reduce(x[:, max(lo, 0):min(hi, t)]))
    return torch.stack(rows, dim=1)


@pytest.mark.parametrize("kind", ["Max", "Avg"])
def test_same_padding_pools_leave_padding_out(kind):
    model = build_model(one_layer(f"{kind}Pool1D(3, stride=2, padding=same)", "[8, 2]"))
    x = torch.randn(2, 8, 2)
    reduce = (lambda w: w.amax(1)) if kind == "Max" else (lambda w: w.mean(1))
    torch.testing.assert_close(model(x), _windows_reference(x, 3, 2, reduce))


# padding=same with any stride: TensorFlow's rule, written out here from its documentation
# (out = ceil(in / stride); total padding max((out - 1) * stride + dilation * (kernel - 1) + 1 - in, 0),
# the odd one at the end), applied by F.pad before PyTorch's own unpadded convolution.
SAME_CASES = [  # call, input, (kernel, stride, dilation) per axis
    ("Conv1D(3, 4, stride=3, padding=same, dilation=2)", (10, 2), ((4,), (3,), (2,))),
    ("Conv1D(2, 5, stride=2, padding=same)", (7, 3), ((5,), (2,), (1,))),
    ("Conv2D(3, [4, 3], stride=[2, 3], padding=same, dilation=[1, 2])", (2, 9, 10), ((4, 3), (2, 3), (1, 2))),
    ("Conv2D(2, 3, stride=2, padding=same, groups=2)", (2, 8, 7), ((3, 3), (2, 2), (1, 1))),
    ("Conv3D(2, [3, 2, 4], stride=[2, 3, 1], padding=same, dilation=[2, 1, 1])", (2, 7, 5, 6),
     ((3, 2, 4), (2, 3, 1), (2, 1, 1))),
]


def _tf_same_padded(x: torch.Tensor, kernel, stride, dilation) -> torch.Tensor:
    pads = []
    for axis in reversed(range(len(kernel))):
        n = x.shape[2 + axis]
        out = math.ceil(n / stride[axis])
        total = max((out - 1) * stride[axis] + dilation[axis] * (kernel[axis] - 1) + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


@pytest.mark.parametrize("call, shape, geometry", SAME_CASES, ids=[c[0] for c in SAME_CASES])
def test_same_padding_with_any_stride_matches_tensorflows_rule(call, shape, geometry):
    kernel, stride, dilation = geometry
    torch.manual_seed(0)
    model = build_model(one_layer(call, shape)).eval()
    layer = next(m for name, m in model.named_children())
    dims = len(kernel)
    channels = shape[-1] if dims == 1 else shape[0]
    reference = getattr(nn, f"Conv{dims}d")(channels, layer.weight.shape[0], kernel, stride=stride, dilation=dilation,
                                             groups=channels // layer.weight.shape[1])
    with torch.no_grad():
        reference.weight.copy_(layer.weight)
        reference.bias.copy_(layer.bias)
    x = torch.randn(2, *shape)
    channels_first = x.transpose(1, 2) if dims == 1 else x
    with torch.no_grad():
        expected = reference(_tf_same_padded(channels_first, kernel, stride, dilation))
        got = model(x)
    spatial = channels_first.shape[2:]
    assert tuple(expected.shape[2:]) == tuple(math.ceil(n / s) for n, s in zip(spatial, stride))
    torch.testing.assert_close(got, expected.transpose(1, 2) if dims == 1 else expected, rtol=1e-6, atol=1e-6)
