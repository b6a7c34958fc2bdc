"""Data sources, the split and standardisation, and clear errors for data that does not fit the spec."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression

from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.train.data import load_data, parse_source

# Tiny models: one thread is faster than several contending for two cores.
torch.set_num_threads(1)

SPECS = Path(__file__).resolve().parent.parent / "specs"


def spec(inputs: str, layers: str, loss: str = "categorical_crossentropy", train: str = "validation 0.2",
         optimizer: str = "Adam(lr=0.01)") -> str:
    return (f"model M {{\n {inputs}\n layers {{\n {layers}\n }}\n loss {loss}\n optimizer {optimizer}\n"
            f" train {{ {train} }}\n}}\n")


def checked(text: str, filename: str = "<spec>"):
    result = check_text(text, filename)
    assert result.ok, result.render()
    return result.checked


IRIS = spec("input x: [4]", "Dense(8) -> relu\n Dense(3) -> softmax", train="data sklearn.iris; validation 0.2; seed 0")


@pytest.mark.parametrize("source, expected", [
    ("sklearn.wine", ("sklearn.wine", {})),
    ("logic.and", ("logic.and", {})),  # `and` is a word of the spec's grammar, not Python's keyword
    ("synthetic(n=64, seed=3)", ("synthetic", {"n": 64, "seed": 3})),
    ('csv("a.csv", target="y")', ("csv", {"path": "a.csv", "target": "y", "delimiter": ","})),
    ("data/train.csv", ("csv", {"path": "data/train.csv", "target": None, "delimiter": ","})),
    ('"my data.csv"', ("csv", {"path": "my data.csv", "target": None, "delimiter": ","})),
    ("x.npz", ("npz", {"path": "x.npz"})),
])
def test_data_option_uses_the_spec_syntax(source, expected):
    assert parse_source(source) == expected


@pytest.mark.parametrize("source, code, column, words", [
    ("csv(5)", "E107", 5, "must be a string"),
    ("synthetic(n=0)", "E108", 11, "out of range"),
    ("synthetic(n=1e400)", "E107", 13, "too large"),
    ("logic.andd", "E112", 1, "did you mean 'logic.and'"),
    ("sklearn.iris 5", "E112", 1, "expected one data source"),
    ('csv("f.csv"', "E005", None, "'(' at column 4 is never closed"),
    ("csv('f.csv')", "E003", 5, "strings use double quotes"),
    ('__import__("os")', "E112", 1, "unknown data source '__import__'"),
    ('__import__("os").system("x")', "E003", 17, "unexpected '.'"),
])
def test_a_bad_data_option_is_located_in_the_text_typed(source, code, column, words):
    """The same reader and the same catalog bounds as a spec's `data` setting, so `--data`
    errors carry the spec's codes, located by column in the option's own text."""
    with pytest.raises(UserError) as err:
        parse_source(source)
    shown = err.value.render()
    assert err.value.code == code and words in shown, shown
    assert err.value.where.startswith(f"--data {source!r}")
    assert (f"column {column}" in err.value.where) if column else "column" not in err.value.where


def test_unknown_data_source_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown data source 'sklearn.mnist'") as err:
        parse_source("sklearn.mnist")
    assert "sklearn.iris" in err.value.help


def test_iris_split_is_stratified_and_standardised_on_the_training_split_only():
    data = load_data(checked(IRIS), "<spec>")
    assert len(data.train) == 120 and len(data.val) == 30
    assert np.bincount(data.val.y.numpy()).tolist() == [10, 10, 10]  # 1/3 of each class held out
    x_train = data.train.inputs[0].numpy()
    np.testing.assert_allclose(x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(0), 1, atol=1e-4)
    raw = load_iris().data.astype(np.float32)
    stats = data.stats["x"]
    # The validation rows are the raw rows scaled with the training statistics.
    val_raw = data.val.inputs[0].numpy() * stats["std"].numpy() + stats["mean"].numpy()
    assert all(np.isclose(raw, row, atol=1e-4).all(1).any() for row in val_raw)


def test_same_seed_same_split_other_seed_other_split():
    a, b = load_data(checked(IRIS), "<spec>"), load_data(checked(IRIS), "<spec>")
    c = load_data(checked(IRIS), "<spec>", seed=1)
    assert np.array_equal(a.val.inputs[0].numpy(), b.val.inputs[0].numpy())
    assert not np.array_equal(a.val.inputs[0].numpy(), c.val.inputs[0].numpy())


def test_digits_as_image_or_vector_scaled_to_unit_interval():
    image = load_data(checked(spec("input x: [1, 8, 8]", "Flatten()\n Dense(10) -> softmax",
                                   train="data sklearn.digits; validation 0")), "<spec>")
    flat = load_data(checked(spec("input x: [64]", "Dense(10) -> softmax",
                                  train="data sklearn.digits; validation 0; standardize false")), "<spec>")
    assert tuple(image.train.inputs[0].shape) == (1797, 1, 8, 8)
    assert tuple(flat.train.inputs[0].shape) == (1797, 64)
    np.testing.assert_allclose(image.train.inputs[0].numpy().reshape(-1, 64), load_digits().data / 16.0, atol=1e-6)
    assert image.stats == {}  # images are scaled, not standardised


def test_override_replaces_the_spec_source():
    wine = checked(spec("input x: [13]", "Dense(3) -> softmax", train="data sklearn.iris"))
    assert load_data(wine, "<spec>", "sklearn.wine").origin == "sklearn.wine"


@pytest.mark.parametrize("layers, loss, message", [
    ("Dense(4) -> softmax", "categorical_crossentropy", "sklearn.iris has 3 classes but the model's output has 4"),
    ("Dense(1)", "mse", "classification data set (3 classes) but the model is a regressor"),
    ("Dense(1) -> sigmoid", "binary_crossentropy", "3 classes but the model is a binary classifier"),
])
def test_class_count_and_task_mismatches_are_named(layers, loss, message):
    c = checked(spec("input x: [4]", layers, loss, train="data sklearn.iris"))
    with pytest.raises(UserError, match=re.escape(message)):
        load_data(c, "<spec>")


def test_feature_count_mismatch_names_expected_and_received():
    c = checked(spec("input x: [5]", "Dense(3) -> softmax", train="data sklearn.iris"))
    with pytest.raises(UserError, match=r"sklearn.iris has 4 features per row but input 'x' expects \[5\]"):
        load_data(c, "<spec>")


@pytest.mark.parametrize("op, truth", [("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]), ("xor", [0, 1, 1, 0]),
                                       ("nand", [1, 1, 1, 0]), ("nor", [1, 0, 0, 0])])
def test_logic_tables(op, truth):
    c = checked(spec("input x: [2]", "Dense(1) -> sigmoid", "binary_crossentropy", train=f"data logic.{op}"))
    data = load_data(c, "<spec>")
    assert data.train.inputs[0].numpy().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert data.train.y.numpy().ravel().tolist() == truth
    assert data.stats == {}


def _write_csv(path: Path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


def test_csv_relative_to_the_spec_with_text_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    labels = np.where(x[:, 0] > 0, "yes", "no")
    _write_csv(tmp_path / "d.csv", ["a", "label", "b", "c"], [[r[0], l, r[1], r[2]] for r, l in zip(x, labels)])
    text = spec("input x: [3]", "Dense(1) -> sigmoid", "binary_crossentropy",
                train='data csv("d.csv", target="label"); validation 0.25')
    data = load_data(checked(text, str(tmp_path / "m.nn")), tmp_path / "m.nn")
    assert len(data.train) == 30 and data.target == "label"
    y = np.concatenate([data.train.y.numpy().ravel(), data.val.y.numpy().ravel()])
    assert sorted(y.tolist()) == sorted((labels == "yes").astype(float).tolist())  # 'no' -> 0, 'yes' -> 1


def test_csv_errors_name_the_file_and_the_problem(tmp_path):
    _write_csv(tmp_path / "d.csv", ["a", "b", "y"], [[1, 2, 0], [3, 4, 1]])
    c = checked(spec("input x: [3]", "Dense(2) -> softmax", train='data csv("d.csv", target="y")'))
    with pytest.raises(UserError, match=r"d.csv has 2 features per row but input 'x' expects \[3\]"):
        load_data(c, tmp_path / "m.nn")
    with pytest.raises(UserError, match="no column named 'label'"):
        load_data(c, tmp_path / "m.nn", 'csv("%s", target="label")' % (tmp_path / "d.csv"))
    with pytest.raises(UserError, match="data file not found"):
        load_data(c, tmp_path / "m.nn", str(tmp_path / "missing.csv"))
    _write_csv(tmp_path / "bad.csv", ["a", "b", "c", "y"], [[1, "x", 2, 0]])
    with pytest.raises(UserError, match=r"bad.csv:2: column 2 holds text, not a number"):
        load_data(c, tmp_path / "m.nn", str(tmp_path / "bad.csv"))
    # blank lines are skipped, and the line named is still the file's own
    (tmp_path / "gaps.csv").write_text("a,b,c,y\n1,2,3,0\n\n1,2,3,1\n\n1,nan,3,0\n")
    with pytest.raises(UserError, match=r"gaps.csv:6: column 2 holds nan"):
        load_data(c, tmp_path / "m.nn", str(tmp_path / "gaps.csv"))
    (tmp_path / "gaps.csv").write_text("a,b,c,y\n1,2,3,0\n\n1,2,3,1\n\n1,2,3\n")
    with pytest.raises(UserError, match=r"gaps.csv:6: 3 values but the header has 4 columns"):
        load_data(c, tmp_path / "m.nn", str(tmp_path / "gaps.csv"))
    _write_csv(tmp_path / "many.csv", ["a", "b", "c", "y"], [[1, 2, 3, 0], [1, 2, 3, 5]])
    with pytest.raises(UserError, match=r"many.csv:3: class labels must be integers 0..1 \(the model has 2 classes\); received a class label above 1"):
        load_data(c, tmp_path / "m.nn", str(tmp_path / "many.csv"))


def test_npz_named_per_input_and_one_hot_labels(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", numeric=rng.standard_normal((20, 13)).astype(np.float32),
             image=rng.standard_normal((20, 1, 28, 28)).astype(np.float32), y=np.eye(3)[rng.integers(0, 3, 20)])
    text = (SPECS / "two_tower.nn").read_text().replace("Dense(1) -> sigmoid", "Dense(3) -> softmax") \
        .replace("binary_crossentropy", "categorical_crossentropy").replace("accuracy, auc", "accuracy")
    data = load_data(checked(text), tmp_path / "m.nn", str(tmp_path / "d.npz"))
    assert [tuple(x.shape[1:]) for x in data.train.inputs] == [(13,), (1, 28, 28)]
    assert data.train.y.dtype.is_floating_point is False  # one-hot rows became class indices


def test_npz_shape_and_dtype_errors(tmp_path):
    c = checked((SPECS / "mnist_convnet.nn").read_text())
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 1, 20, 20), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(UserError, match=r"bad.npz: input 'image' expects \[1, 28, 28\] per sample; received \[1, 20, 20\]"):
        load_data(c, tmp_path / "m.nn", str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "noy.npz", x=np.zeros((4, 1, 28, 28), np.float32))
    with pytest.raises(UserError, match="has no array 'y'"):
        load_data(c, tmp_path / "m.nn", str(tmp_path / "noy.npz"))
    tokens = checked((SPECS / "tiny_transformer.nn").read_text())
    np.savez(tmp_path / "float_tokens.npz", x=np.zeros((4, 64), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(UserError, match="expects integer token ids"):
        load_data(tokens, tmp_path / "m.nn", str(tmp_path / "float_tokens.npz"))


def test_synthetic_tokens_are_ids_in_vocab_with_padding_for_unknown_lengths():
    c = checked((SPECS / "sentiment_lstm.nn").read_text())
    x = load_data(c, "<spec>", "synthetic(n=200)").train.inputs[0].numpy()
    assert x.dtype == np.int64 and x.min() == 0 and x.max() < 20000
    lengths = (x != 0).sum(1)
    assert lengths.min() < x.shape[1] and (x[:, 0] != 0).all()  # padded at the end, never empty
    assert all((row[n:] == 0).all() for row, n in zip(x, lengths))


def test_synthetic_labels_carry_a_learnable_signal():
    c = checked(spec("input x: [20]", "Dense(4) -> softmax", train="data synthetic(n=2000); validation 0.2"))
    data = load_data(c, "<spec>")
    model = LogisticRegression(max_iter=500).fit(data.train.inputs[0].numpy(), data.train.y.numpy())
    assert model.score(data.val.inputs[0].numpy(), data.val.y.numpy()) > 0.8  # chance is 0.25
