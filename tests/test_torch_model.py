"""The lowered model: counts for every spec, the graph structure, equivalence with hand-written
PyTorch, L1/L2 penalties, and padding invariance of variable-length sequences."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from nnspec.backends.torch_model import build_model, parameter_counts
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_file, check_text

SPECS = sorted(Path(__file__).resolve().parent.parent.glob("specs/*.nn"))


def checked_text(text: str):
    result = check_text(text)
    assert result.ok, result.render()
    return result.checked


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_parameter_count_matches_the_checker(path):
    checked = check_file(path).checked
    for net in list(checked.networks.values()) or [checked]:  # a GAN: each network is a model
        model = build_model(net)
        trainable, buffers = parameter_counts(model)
        assert trainable + buffers == net.graph.total_params
        assert buffers == net.graph.non_trainable_params


def test_build_model_refuses_a_spec_of_networks():
    """A GAN's networks side by side are no one model: refused by name, each network builds."""
    checked = check_file(Path(__file__).resolve().parent.parent / "specs/digits_gan.nn").checked
    with pytest.raises(UserError, match=r"declares networks \(generator, discriminator\): build each one"):
        build_model(checked)


def test_mnist_convnet_has_keras_parameter_count():
    model = build_model(check_file(Path(__file__).resolve().parent.parent / "specs/mnist_convnet.nn").checked)
    assert sum(p.numel() for p in model.parameters()) == 34_826  # Keras's "simple MNIST convnet"


def _hand_written_iris() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def test_iris_matches_a_hand_written_model_with_the_same_seed():
    checked = check_file(Path(__file__).resolve().parent.parent / "specs/iris_mlp.nn").checked
    torch.manual_seed(3)
    model = build_model(checked)
    torch.manual_seed(3)
    hand = _hand_written_iris()
    assert list(model.state_dict()) == ["dense_1.weight", "dense_1.bias", "dense_2.weight", "dense_2.bias",
                                        "dense_3.weight", "dense_3.bias"]
    for ours, theirs in zip(model.state_dict().values(), hand.state_dict().values()):
        assert torch.equal(ours, theirs)  # same construction order, same default initialisation
    x = torch.randn(5, 4)
    assert torch.equal(model.forward_train(x), hand(x))  # logits: the softmax is fused into the loss
    assert torch.equal(model(x), torch.softmax(hand(x), dim=1))
    assert torch.equal(model.output_from_train(model.forward_train(x)), model(x))


def test_mnist_convnet_matches_a_hand_written_model_with_the_same_seed():
    checked = check_file(Path(__file__).resolve().parent.parent / "specs/mnist_convnet.nn").checked
    torch.manual_seed(0)
    model = build_model(checked).eval()
    torch.manual_seed(0)
    hand = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10)).eval()
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(model.forward_train(x), hand(x), rtol=0, atol=0)


def test_blocks_repetition_and_names():
    checked = check_file(Path(__file__).resolve().parent.parent / "specs/tiny_resnet.nn").checked
    model = build_model(checked)
    keys = list(model.state_dict())
    assert "residual_3.conv2d_2.weight" in keys and "residual_1.batch_norm_1.running_mean" in keys
    # the generated forward is straight-line code: one call per node, no loop over the graph
    code = model.code
    assert "for " not in code and code.count("self.residual_2.conv2d_1(") == 1
    assert code.count(" + ") == 3  # the three residual additions
    # no fused activation: training output is the forward output
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model.forward_train(x))


def test_two_inputs_in_spec_order_and_concat_on_features():
    checked = check_file(Path(__file__).resolve().parent.parent / "specs/two_tower.nn").checked
    model = build_model(checked)
    assert model.input_names == ["numeric", "image"]
    numeric, image = torch.randn(4, 13), torch.randn(4, 1, 28, 28)
    a = torch.relu(model.dense_1(numeric))
    b = torch.relu(model.conv2d_1(image)).amax((2, 3))
    expected = torch.sigmoid(model.dense_2(torch.cat([a, b], dim=1)))
    torch.testing.assert_close(model(numeric, image), expected)


def test_concat_of_sequences_joins_features():
    checked = checked_text("""model C {
  input x: [5, 3]
  layers {
    a = x -> Dense(4)
    b = x -> Conv1D(2, 3, padding=same)
    concat(a, b) -> LayerNorm()
  }
}""")
    model = build_model(checked)
    x = torch.randn(2, 5, 3)
    expected = model.layer_norm_1(torch.cat([model.dense_1(x), model.conv1d_1(x)], dim=-1))
    torch.testing.assert_close(model(x), expected)
    assert model(x).shape == (2, 5, 6)


def test_regularization_is_l1_plus_squared_l2_of_weights():
    checked = checked_text("""model R {
  input x: [4]
  layers {
    Dense(8, l2=0.01) -> relu
    Dense(3, l1=0.001, l2=0.1)
    Dense(2)
  }
}""")
    model = build_model(checked)
    w1, w2 = model.dense_1.weight, model.dense_2.weight
    expected = 0.01 * (w1 ** 2).sum() + 0.001 * w2.abs().sum() + 0.1 * (w2 ** 2).sum()
    torch.testing.assert_close(model.regularization(), expected)
    model.regularization().backward()
    assert model.dense_3.weight.grad is None and model.dense_1.bias.grad is None


def test_no_regularization_is_a_zero_scalar():
    model = build_model(check_file(Path(__file__).resolve().parent.parent / "specs/iris_mlp.nn").checked)
    r = model.regularization()
    assert r.dim() == 0 and float(r) == 0.0


def test_deepcopy_keeps_generated_code_on_the_copied_weights():
    model = build_model(check_file(Path(__file__).resolve().parent.parent / "specs/iris_mlp.nn").checked)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.dense_3.bias += 1.0
    x = torch.randn(2, 4)
    torch.testing.assert_close(twin.forward_train(x), model.forward_train(x) + 1.0)


# ---------------------------------------------------------------- variable-length sequences
PADDED_SPECS = {
    "bidirectional_rnns": """model S {
  input tokens: int[?]
  layers {
    Embedding(vocab=30, dim=6, padding_idx=0)
    Bidirectional(LSTM(5, return_sequences=true))
    Bidirectional(GRU(4, layers=2))
    Dense(1) -> sigmoid
  }
}""",
    "rnn_last_step_and_pools": """model P {
  input tokens: int[?]
  layers {
    e = tokens -> Embedding(vocab=30, dim=6, padding_idx=0)
    a = e -> SimpleRNN(4, return_sequences=true) -> GlobalAvgPool()
    b = e -> Conv1D(4, 3) -> MaxPool1D(2) -> GlobalMaxPool()
    c = e -> GRU(3)
    concat(a, b, c) -> Dense(2) -> softmax
  }
}""",
    "windows_over_time": """model W {
  input tokens: int[?]
  layers {
    Embedding(vocab=30, dim=6, padding_idx=0)
    Conv1D(5, 3, stride=2, padding=1)
    MaxPool1D(2)
    Upsample(3, mode=linear)
    AvgPool1D(3, stride=1, padding=same)
    MaxPool1D(3, stride=1, padding=same)
    Conv1D(4, 3, padding=same)
    LSTM(3)
  }
}""",
    "transposed_and_upsampled_over_time": """model U {
  input tokens: int[?]
  layers {
    Embedding(vocab=30, dim=6, padding_idx=0)
    Dense(6) -> tanh
    ConvTranspose1D(5, 3, stride=2, padding=1, output_padding=1)
    Upsample1D(2, mode=linear)
    ConvTranspose1D(4, 2, stride=3)
    Upsample1D(3)
    LSTM(3)
  }
}""",
    "attention": """model A {
  input tokens: int[?]
  layers {
    Embedding(vocab=30, dim=8, padding_idx=0)
    PositionalEncoding()
    MultiHeadAttention(heads=2)
    TransformerEncoder(heads=2, ff=16, layers=2, dropout=0.0)
    Upsample(2)
    GlobalAvgPool()
    Dense(3)
  }
}""",
}


@pytest.mark.parametrize("name", list(PADDED_SPECS))
def test_padded_batch_equals_each_sequence_alone(name):
    torch.manual_seed(0)
    model = build_model(checked_text(PADDED_SPECS[name])).eval()
    lengths = [9, 6, 8, 7]
    seqs = [torch.randint(1, 30, (n,)) for n in lengths]
    batch = torch.zeros(len(seqs), max(lengths), dtype=torch.long)  # 0 = padding_idx
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = s
    with torch.no_grad():
        padded = model(batch)
        alone = torch.cat([model(s[None, :]) for s in seqs])
        assert torch.isfinite(padded).all()
        torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)


def test_sequence_batchnorm_learns_statistics_from_real_steps_only():
    checked = checked_text("""model B {
  input tokens: int[?]
  layers {
    Embedding(vocab=20, dim=4, padding_idx=0)
    BatchNorm()
    GlobalAvgPool()
  }
}""")
    torch.manual_seed(0)
    model = build_model(checked).train()
    batch = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 1]])
    real = model.embedding_1(batch)[batch != 0]  # [8, 4]: the real steps
    reference = nn.BatchNorm1d(4)
    expected_steps = reference(real)
    out = model(batch)
    torch.testing.assert_close(model.batch_norm_1.running_mean, reference.running_mean)
    torch.testing.assert_close(model.batch_norm_1.running_var, reference.running_var)
    torch.testing.assert_close(out[0], expected_steps[:3].mean(0))
    torch.testing.assert_close(out[1], expected_steps[3:].mean(0))


@pytest.mark.parametrize("name", list(PADDED_SPECS))
def test_padded_training_step_has_finite_gradients(name):
    torch.manual_seed(0)
    model = build_model(checked_text(PADDED_SPECS[name])).train()
    batch = torch.randint(1, 30, (3, 9))
    batch[1, 6:] = 0
    batch[2, 1:] = 0  # a single real step
    y = model(batch)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(y).all()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(PADDED_SPECS))
def test_cuda_matches_cpu_on_padded_batches(name):
    torch.manual_seed(0)
    model = build_model(checked_text(PADDED_SPECS[name])).eval()
    batch = torch.randint(1, 30, (4, 9))
    batch[1, 5:] = 0
    batch[2, 7:] = 0
    with torch.no_grad():
        cpu = model(batch)
        gpu = model.to("cuda")(batch.to("cuda"))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
