"""Generated from the catalog: every layer's example, lowered to PyTorch, must have the shape
the checker infers, the parameter count it counts, and gradients reaching every parameter;
every activation must equal PyTorch's own function."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnspec import catalog
from nnspec.backends import torch_layers
from nnspec.backends.torch_model import build_model, parameter_counts
from nnspec.pipeline import check_text


def _input_decl(example_input) -> str:
    (shape,) = example_input  # ("int", 7): int token ids of length 7
    if shape[0] == "int":
        return f"int[{shape[1]}]"
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _random_input(t, batch: int = 2) -> torch.Tensor:
    shape = [batch] + list(t.shape)
    if t.dtype == "int":
        return torch.randint(0, 10, shape)
    return torch.randn(shape)


def one_layer(call: str, decl: str):
    result = check_text(f"model T {{\n  input x: {decl}\n  layers {{ {call} }}\n}}\n")
    assert result.ok, result.render()
    return result.checked


LAYER_ENTRIES = list(catalog.layers)


def test_every_layer_has_a_builder_and_an_example():
    for entry in LAYER_ENTRIES:
        assert entry.name in torch_layers.BUILDERS or entry.name in torch_layers.ELABORATED, \
            f"{entry.name} has no torch builder in nnspec/backends/torch_layers.py"
        assert entry.example and entry.example_input, f"{entry.name} has no example for the generated tests"


@pytest.mark.parametrize("entry", LAYER_ENTRIES, ids=lambda e: e.name)
def test_layer_example_lowers_faithfully(entry):
    torch.manual_seed(0)
    checked = one_layer(entry.example, _input_decl(entry.example_input))
    model = build_model(checked)
    graph = checked.graph
    x = _random_input(graph.node(graph.inputs[0]).out)
    if x.is_floating_point():
        x.requires_grad_(True)
    y = model(x)
    assert tuple(y.shape[1:]) == graph.output_node.out.shape

    layer = next(n for n in graph.nodes if n.op == "layer")
    trainable, buffers = parameter_counts(model)
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


# More arguments and layouts than the one example per entry, checked the same way.
VARIANTS = [
    ("Dense(3, bias=false)", "[4, 6]"),
    ("BatchNorm()", "[5]"),
    ("BatchNorm(momentum=0.01)", "[6, 4]"),
    ("Conv1D(6, 3, padding=same, dilation=2, groups=3)", "[9, 3]"),
    ("Conv1D(2, 3, stride=2, padding=1)", "[9, 4]"),
    ("Conv2D(4, [3, 2], stride=2, groups=2)", "[2, 9, 8]"),
    ("ConvTranspose2D(2, 3, stride=2, padding=1, output_padding=1)", "[3, 4, 5]"),
    ("MaxPool1D(3, stride=2, padding=same)", "[10, 2]"),
    ("MaxPool2D(3, stride=2, padding=same)", "[2, 7, 6]"),
    ("AvgPool2D(3, stride=2, padding=1)", "[2, 7, 6]"),
    ("AvgPool1D(2, padding=same)", "[7, 3]"),
    ("GlobalAvgPool()", "[6, 3]"),
    ("GlobalMaxPool()", "[3, 4, 4]"),
    ("Upsample(3, mode=linear)", "[4, 2]"),
    ("Upsample(2, mode=bilinear)", "[2, 3, 3]"),
    ("SimpleRNN(4, layers=2)", "[5, 3]"),
    ("LSTM(4, bidirectional=true, layers=2)", "[5, 3]"),
    ("GRU(4, return_sequences=true, layers=2, dropout=0.2)", "[5, 3]"),
    ("Bidirectional(GRU(3))", "[5, 2]"),
    ("MultiHeadAttention(heads=4, dropout=0.1)", "[5, 8]"),
    ("TransformerEncoder(heads=2, ff=8, activation=gelu, norm_first=true)", "[4, 6]"),
    ("PositionalEncoding(max_len=10, kind=learned)", "[5, 4]"),
    ("Reshape([-1, 3])", "[4, 3, 2]"),
    ("Embedding(vocab=9, dim=3, padding_idx=0)", "int[?]"),
]


@pytest.mark.parametrize("call, decl", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_layer_variant_lowers_faithfully(call, decl):
    torch.manual_seed(0)
    checked = one_layer(call, decl)
    model = build_model(checked)
    graph = checked.graph
    t = graph.node(graph.inputs[0]).out
    shape = [3] + [d if d is not None else 6 for d in t.shape]
    x = torch.randint(1, 9, shape) if t.dtype == "int" else torch.randn(shape, requires_grad=True)
    y = model(x)
    expected = tuple(6 if d is None else d for d in graph.output_node.out.shape)
    assert tuple(y.shape[1:]) == expected
    assert sum(parameter_counts(model)) == graph.total_params
    (y * torch.randn_like(y)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient at {name}"


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
