"""Raw text as data: text("file.csv", text=..., target=..., vocab=N, max_len=L).

The tokenizer and vocabulary are checked by hand computation; the vocabulary is fitted on the
training rows only; masks are checked against torch's own LSTM on each sequence alone; a run
saves its vocabulary (vocab.json, the checkpoint) and evaluate/predict read raw text with it."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.train.data import PaddedSplit, load_data
from nnspec.train.run import evaluate_spec, predict_spec, train_spec
from nnspec.train.text import OOV, Vocabulary, tokenize

torch.set_num_threads(1)

SPEC = """model Reviews {{
    input tokens: {input}
    layers {{
        Embedding(vocab={embedding}, dim=8, padding_idx=0)
        Bidirectional(LSTM(8, return_sequences=true))
        Bidirectional(LSTM(8))
        Dense(1) -> sigmoid
    }}
    loss binary_crossentropy
    optimizer Adam(lr=0.01)
    metrics [accuracy]
    train {{
        data {data}
        epochs 2
        batch_size 8
        validation {validation}
    }}
}}
"""

GOOD = ["a great film", "truly wonderful acting", "great fun", "a moving story", "wonderful and clever"]
BAD = ["a dull film", "truly awful acting", "boring and dull", "a weak story", "awful and clumsy"]


def write_csv(path: Path, rows, header=("review", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def reviews(n: int = 40):
    return [(GOOD[i % 5], "pos") if i % 2 == 0 else (BAD[i % 5], "neg") for i in range(n)]


def checked(tmp_path, data='text("r.csv", text="review", target="label")', *, input="int[?]", embedding=50,
            validation=0.25):
    spec = tmp_path / "reviews.nn"
    spec.write_text(SPEC.format(input=input, embedding=embedding, data=data, validation=validation), encoding="utf-8")
    return check_text(spec.read_text(encoding="utf-8"), str(spec))


# ------------------------------------------------------------------ tokenizer and vocabulary


def test_tokenizer_lowercases_and_keeps_inner_apostrophes():
    assert tokenize("Don't STOP, it's 2 good!!  _x_") == ["don't", "stop", "it's", "2", "good", "_x_"]
    assert tokenize("Don't STOP", lowercase=False) == ["Don't", "STOP"]
    assert tokenize("... !!! ---") == []


def test_vocabulary_ids_frequency_then_alphabetical_and_capped():
    texts = [["b", "a", "c"], ["c", "a"], ["d", "c"]]  # c: 3, a: 2, b: 1, d: 1
    vocab = Vocabulary.fit(texts, size=5, max_len=3, lowercase=True, column="review")
    assert vocab.words == ("c", "a", "b")  # ids 2, 3, 4; d ties with b and loses alphabetically, past the cap
    x = vocab.encode([["a", "d", "c", "b"], ["c"]])
    assert x.tolist() == [[3, OOV, 2], [2, 0, 0]]  # cut at max_len 3, unknown -> 1, padded with 0
    assert Vocabulary.from_meta(vocab.meta()) == vocab


def test_vocabulary_fitted_on_training_rows_only(tmp_path):
    # every row has its own word: the training rows' words are in the vocabulary, the validation rows' are not
    rows = [(f"{'good' if i % 2 else 'bad'} film unique{i}", "pos" if i % 2 else "neg") for i in range(40)]
    write_csv(tmp_path / "r.csv", rows)
    data = load_data(checked(tmp_path).run_config())
    words = data.meta["text"]["words"]
    assert isinstance(data.train, PaddedSplit)
    train_x, val_x = data.train.inputs[0], data.val.inputs[0]
    assert len(val_x) == 10 and (train_x != OOV).all()
    assert ((val_x == OOV).sum(1) == 1).all()  # each validation row's own word is out of vocabulary
    assert sum(w.startswith("unique") for w in words) == 30


# ------------------------------------------------------------------ padding and masks


def test_batches_are_cut_to_their_longest_row():
    x = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 0, 0, 0], [2, 3, 4, 0, 0]])
    split = PaddedSplit([x], torch.zeros(3))
    (xb,), _ = split.batch(torch.tensor([0, 1]))
    assert xb.tolist() == [[5, 6], [7, 0]]
    (xb,), _ = split.batch(slice(1, 3))
    assert xb.shape == (2, 3)


def test_padding_does_not_change_the_output(tmp_path):
    """The model on a padded batch equals torch's LSTM on each sequence alone (no padding at all)."""
    from nnspec.backends.torch_model import build_model

    write_csv(tmp_path / "r.csv", reviews())
    model = build_model(checked(tmp_path).checked).eval()
    seqs = [[4, 9, 2, 7, 3], [5, 1], [8, 8, 6]]
    padded = torch.zeros(3, 8, dtype=torch.int64)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = torch.tensor(s)
    with torch.no_grad():
        batch = model(padded)
        longer = model(torch.cat([padded, torch.zeros(3, 5, dtype=torch.int64)], 1))
        alone = torch.cat([model(torch.tensor([s])) for s in seqs])
        reference = torch.cat([_reference(model, torch.tensor([s])) for s in seqs])
    assert torch.allclose(batch, alone, atol=1e-6) and torch.allclose(longer, alone, atol=1e-6)
    assert torch.allclose(alone, reference, atol=1e-6)


def _reference(model, x):
    """The same weights through plain torch.nn modules (no masks: one unpadded sequence)."""
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Embedding, torch.nn.LSTM, torch.nn.Linear))]
    emb, lstm1, lstm2, dense = layers
    h = emb(x)
    h, _ = torch.nn.LSTM.forward(lstm1, h)
    _, (last, _) = torch.nn.LSTM.forward(lstm2, h)
    return torch.sigmoid(dense(torch.cat([last[-2], last[-1]], 1)))


# ------------------------------------------------------------------ a run: vocab.json, evaluate, predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_run")
    write_csv(folder / "r.csv", reviews())
    result = checked(folder)
    train_spec(result, out_dir=folder / "run")
    return folder, result


def test_run_saves_vocabulary_and_class_names(trained):
    folder, _ = trained
    vocab = json.loads((folder / "run" / "vocab.json").read_text(encoding="utf-8"))
    state = torch.load(folder / "run" / "best.pt", weights_only=True)
    assert state["data_meta"]["text"] == vocab
    assert state["data_meta"]["class_names"] == ["neg", "pos"]  # text labels, in sorted order
    assert vocab["column"] == "review" and vocab["vocab"] == 50 and "great" in vocab["words"]


def test_predict_on_raw_text_writes_label_names(trained):
    folder, result = trained
    rows = [("1", "A GREAT film!"), ("2", "boring, dull and clumsy"), ("3", "words never seen before")]
    write_csv(folder / "new.csv", rows, header=("id", "review"))
    header, table = predict_spec(result, str(folder / "run" / "best.pt"), str(folder / "new.csv"), device="cpu")
    assert header == ["p_1", "predicted", "label"] and len(table) == 3
    assert all(row[2] == ("pos" if row[1] == 1 else "neg") for row in table)


def test_predict_matches_the_model_on_the_saved_vocabulary(trained):
    from nnspec.backends.torch_model import build_model

    folder, result = trained
    write_csv(folder / "one.csv", [("a great film",)], header=("review",))
    _, table = predict_spec(result, str(folder / "run" / "best.pt"), str(folder / "one.csv"), device="cpu")
    state = torch.load(folder / "run" / "best.pt", weights_only=True)
    ids = {w: 2 + i for i, w in enumerate(state["data_meta"]["text"]["words"])}
    model = build_model(result.checked)
    model.load_state_dict(state["model"])
    with torch.no_grad():
        p = model.eval()(torch.tensor([[ids["a"], ids["great"], ids["film"]]]))
    assert table[0][0] == pytest.approx(float(p), abs=1e-5)


def test_evaluate_on_raw_text(trained):
    folder, result = trained
    checkpoint = str(folder / "run" / "best.pt")
    split = evaluate_spec(result, checkpoint, device="cpu")  # the run's validation split, with the run's vocabulary
    assert split["split"] == "validation split" and split["samples"] == 10
    write_csv(folder / "test.csv", reviews(12)[::-1])
    for data in (f'text("{folder / "test.csv"}", text="review", target="label")', str(folder / "test.csv")):
        scores = evaluate_spec(result.run_config(defaults=True, data=data), checkpoint, device="cpu")
        assert scores["samples"] == 12 and 0 <= scores["accuracy"] <= 1
    write_csv(folder / "other.csv", reviews(6), header=("body", "y"))  # other column names, the run's vocabulary
    other = f'text("{folder / "other.csv"}", text="body", target="y")'
    assert evaluate_spec(result.run_config(defaults=True, data=other), checkpoint, device="cpu")["samples"] == 6


def test_evaluate_refuses_a_class_the_run_never_saw(trained):
    folder, result = trained
    write_csv(folder / "odd.csv", [("great", "pos"), ("dull", "meh")])
    with pytest.raises(UserError, match=r"odd.csv:3: .*class the run was not trained on"):
        evaluate_spec(result.run_config(defaults=True, data=str(folder / "odd.csv")), str(folder / "run" / "best.pt"),
                      device="cpu")


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("rows, data, message", [
    ([("good", "pos")], 'text("r.csv", text="body", target="label")', r"r.csv: no column named 'body'.*text from"),
    ([("good", "pos")], 'text("r.csv", text="review", target="y")', r"r.csv: no column named 'y'"),
    ([("good", "pos"), ("  ", "neg")], 'text("r.csv", text="review", target="label")',
     r"r.csv:3: the text column 'review' is empty"),
    ([("good", "pos"), ("?!", "neg")], 'text("r.csv", text="review", target="label")',
     r"r.csv:3: the text column 'review' holds no word"),
    ([("good", "pos"), ("bad", "")], 'text("r.csv", text="review", target="label")',
     r"r.csv:3: the label column 'label' is empty"),
    ([("good", "pos")], 'text("r.csv", text="review", target="review")', r"also the label column"),
])
def test_bad_files_are_named_with_their_line(tmp_path, rows, data, message):
    write_csv(tmp_path / "r.csv", rows)
    with pytest.raises(UserError, match=message):
        load_data(checked(tmp_path, data, validation=0).run_config())


@pytest.mark.parametrize("kwargs, code, message", [
    (dict(data='text("r.csv", text="review", vocab=60)'), "E130", "vocab=60 is larger than the vocab=50"),
    (dict(data='text("r.csv", text="review", max_len=30)', input="int[20]"), "E131", "max_len=30 is longer"),
])
def test_checker_refuses_a_source_that_does_not_fit(tmp_path, kwargs, code, message):
    result = check_text(SPEC.format(**{"input": "int[?]", "embedding": 50, "validation": 0, **kwargs}))
    assert [(d.code, message in d.message) for d in result.diagnostics] == [(code, True)]


def test_text_for_a_model_without_token_ids_is_refused(tmp_path):
    spec = 'model M {\n input x: [4]\n layers { Dense(1) -> sigmoid }\n loss binary_crossentropy\n' \
           ' optimizer SGD(lr=0.1)\n train { data text("r.csv", text="review") }\n}\n'
    result = check_text(spec)
    assert [d.code for d in result.diagnostics] == ["E129"]
    # the same rule for --data: the source is located where it was written
    plain = check_text(spec.replace('text("r.csv", text="review")', "logic.and"))
    with pytest.raises(UserError, match="one `int\\[\\?\\]` input") as err:
        load_data(plain.run_config(data='text("r.csv", text="review")'))
    assert err.value.code == "E129" and "--data" in err.value.where


# ------------------------------------------------------------------ the proof, small


@pytest.mark.slow
def test_lstm_on_raw_text_is_not_worse_than_bag_of_words(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import text_sentiment as bench

    data = bench.reviews(1400, seed=3)
    train, test = data[:1000], data[1000:]
    bow = bench.bag_of_words(train, test)
    net = bench.lstm(train, test, tmp_path, epochs=5, seed=0)
    assert net["accuracy"] >= bow - 0.02, (net, bow)
