"""`nnspec evaluate` and `nnspec predict` on inputs of any length: rows read batch by batch (CSV and
the members of an .npz), metrics accumulated batch by batch (nnspec/train/streaming.py).

References: `metrics.compute` and scikit-learn on the whole arrays, the torch model run on all rows
at once, and `np.load` reading an .npz whole."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn import metrics as skm

from nnspec.backends.torch_model import build_model
from nnspec.cli import main
from nnspec.pipeline import check_file
from nnspec.train import metrics as M
from nnspec.train.losses import build_loss
from nnspec.train.run import prediction_table, evaluate_spec, predict_batches, train_spec, write_predictions
from nnspec.train.streaming import EvalStream, MetricStream

torch.set_num_threads(1)

BAD = Path(__file__).parent / "bad_data"
MULTICLASS = [("accuracy", {}), ("top_k_accuracy", {"k": 3}), ("top_k_accuracy", {"k": 1}), ("precision", {}),
              ("recall", {}), ("f1", {}), ("auc", {}), ("iou", {}), ("mse", {}), ("mae", {}), ("r2", {}),
              ("kl_divergence", {})]
BINARY = [m for m in MULTICLASS if m[0] != "top_k_accuracy"]
REGRESSION = [("mse", {}), ("mae", {}), ("r2", {}), ("kl_divergence", {})]


def nnspec(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---- the accumulator against metrics.compute and scikit-learn -----------------------------------


def _uneven_batches(n: int, rng) -> list[slice]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=9, replace=False))
    return [slice(a, b) for a, b in zip([0, *cuts], [*cuts, n])]


def _streamed(metrics, probs, y, kind, axis=1, seed=1) -> dict:
    stream = MetricStream(metrics, kind, axis)
    for part in _uneven_batches(len(probs), np.random.default_rng(seed)):
        stream.add(probs[part], y[part])
    return stream.values()


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - z.max(axis, keepdims=True))
    return (e / e.sum(axis, keepdims=True)).astype(np.float32)


def _cases():
    rng = np.random.default_rng(0)
    probs = _softmax(2 * rng.standard_normal((1200, 6)), 1)
    yield "multiclass", MULTICLASS, probs, rng.integers(0, 6, 1200), 1
    yield "multiclass, a class never seen", MULTICLASS, probs, rng.integers(0, 4, 1200), 1
    yield "multiclass per step [N, T, C]", MULTICLASS, _softmax(rng.standard_normal((300, 5, 4)), 2), \
        rng.integers(0, 4, (300, 5)), 2
    yield "multiclass, target distributions", MULTICLASS, probs, _softmax(rng.standard_normal((1200, 6)), 1), 1
    binary = (1 / (1 + np.exp(-rng.standard_normal((900, 3))))).astype(np.float32)
    binary[:200] = np.round(binary[:200], 1)  # ties, which AUC counts as halves
    yield "binary multi-label", BINARY, binary, (rng.random((900, 3)) < 0.4).astype(np.float32), 1
    out = rng.standard_normal((700, 2, 3)).astype(np.float32)
    yield "regression", REGRESSION, out, (out + 0.5 * rng.standard_normal(out.shape) + 50).astype(np.float32), 1


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c[0])
def test_streamed_metrics_equal_metrics_compute_on_the_whole_arrays(case):
    name, metrics, probs, y, axis = case
    kind = name.split(" ")[0].rstrip(",")
    whole = M.compute(metrics, probs, y, kind, axis)
    streamed = _streamed(metrics, probs, y, kind, axis)
    assert streamed.keys() == whole.keys()
    for key in whole:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-9, abs=1e-12), key


def test_streamed_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    probs = _softmax(rng.standard_normal((2000, 5)), 1)
    y = rng.integers(0, 5, 2000)
    got = _streamed(MULTICLASS, probs, y, "multiclass")
    pred = probs.argmax(1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"), abs=1e-12)
    assert got["top_3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=3), abs=1e-12)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"), abs=1e-9)

    scores = (rng.random(3000) ** 2).astype(np.float32)
    labels = (rng.random(3000) < scores).astype(np.float32)
    got = _streamed(BINARY, scores[:, None], labels[:, None], "binary")
    assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-9)
    assert got["f1"] == pytest.approx(skm.f1_score(labels, scores >= 0.5), abs=1e-12)
    assert got["iou"] == pytest.approx(skm.jaccard_score(labels, scores >= 0.5), abs=1e-12)

    target = rng.standard_normal((1500, 3)) * [1, 10, 1000] + [0, -5, 1e4]  # r2 with a large offset
    out = target + rng.standard_normal(target.shape)
    got = _streamed(REGRESSION, out, target, "regression")
    assert got["r2"] == pytest.approx(skm.r2_score(target, out), rel=1e-9)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(target, out), rel=1e-9)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(target, out), rel=1e-9)


def test_the_streamed_loss_is_the_mean_over_all_samples():
    rng = np.random.default_rng(4)
    logits, y = torch.from_numpy(rng.standard_normal((1000, 4))), torch.from_numpy(rng.integers(0, 4, 1000))
    stream = EvalStream([("accuracy", {})], "multiclass")
    for part in _uneven_batches(1000, rng):
        stream.add(float(torch.nn.functional.cross_entropy(logits[part], y[part])),
                   torch.softmax(logits[part], 1).numpy(), y[part].numpy())
    assert stream.values()["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-12)


# ---- evaluate: a CSV or NPZ file streamed == the model on all rows at once ----------------------

MULTI_SPEC = """model IrisAll {
    input features: [4]
    layers { Dense(8) -> relu
             Dense(3) -> softmax }
    loss categorical_crossentropy
    optimizer Adam(lr=0.02)
    metrics [accuracy, top_k_accuracy(k=2), precision, recall, f1, auc, mse, mae, kl_divergence]
    train { data sklearn.iris; epochs 3; batch_size 16; validation 0.2; seed 0 }
}
"""
BINARY_SPEC = """model Cancer {
    input features: [30]
    layers { Dense(8) -> relu
             Dense(1) -> sigmoid }
    loss binary_crossentropy
    optimizer Adam(lr=0.01)
    metrics [accuracy, precision, recall, f1, auc, iou, mse, mae]
    train { data sklearn.breast_cancer; epochs 2; batch_size 32; validation 0.2; seed 0 }
}
"""
REGRESSION_SPEC = """model Diabetes {
    input features: [10]
    layers { Dense(8) -> relu
             Dense(1) }
    loss mse
    optimizer Adam(lr=0.01)
    metrics [mae, r2]
    train { data sklearn.diabetes; epochs 2; batch_size 32; validation 0.2; seed 0 }
}
"""


def _trained(text: str, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.nn"
    spec.write_text(text)
    result = check_file(str(spec))
    assert result.ok, result.render()
    train_spec(result, out_dir=folder / "run", device="cpu")
    return result, folder / "run" / "last.pt"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {name: _trained(text, base / name) for name, text in
            [("multiclass", MULTI_SPEC), ("binary", BINARY_SPEC), ("regression", REGRESSION_SPEC)]}


def _whole_reference(result, checkpoint, x: np.ndarray, y: np.ndarray) -> dict:
    """The model on every row at once: the loss over all, metrics.compute over all."""
    checked = result.checked
    state = torch.load(checkpoint, weights_only=True)
    model = build_model(checked)
    model.load_state_dict(state["model"])
    model.eval()
    stats = state["data_stats"]["features"]
    xs = torch.from_numpy((x - stats["mean"].numpy()) / stats["std"].numpy()).float()
    with torch.no_grad():
        out = model.forward_train(xs)
        loss = float(build_loss(checked)(out, torch.from_numpy(y)))
        probs = model.output_from_train(out).numpy()
    return {"loss": loss, **M.compute(checked.metrics, probs, y, checked.task.kind)}


def _sklearn_set(kind: str):
    from sklearn import datasets

    loaded = {"multiclass": datasets.load_iris, "binary": datasets.load_breast_cancer,
              "regression": datasets.load_diabetes}[kind]()
    x = loaded.data.astype(np.float32)
    if kind == "multiclass":
        return x, loaded.target.astype(np.int64)
    return x, loaded.target.astype(np.float32).reshape(-1, 1)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_evaluate_streams_csv_and_npz_files_to_the_numbers_of_all_rows_at_once(runs, kind, tmp_path):
    result, checkpoint = runs[kind]
    x, y = _sklearn_set(kind)
    expected = _whole_reference(result, checkpoint, x, y)
    csv_file, npz_file = tmp_path / "rows.csv", tmp_path / "rows.npz"
    columns = [f"f{i}" for i in range(x.shape[1])]
    labels = y.reshape(len(y)).tolist()
    csv_file.write_text(",".join([*columns, "label"]) + "\n"
                        + "".join(",".join([*map(repr, row.tolist()), repr(t)]) + "\n" for row, t in zip(x, labels)))
    np.savez(npz_file, x=x, y=y.reshape(len(y)))
    for source in (f'csv("{csv_file}", target="label")', str(npz_file)):
        got = evaluate_spec(result, str(checkpoint), data=source, device="cpu", batch_size=37)  # uneven last batch
        assert got["samples"] == len(x) and got["split"] == "whole data set"
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        for key, value in expected.items():
            if key != "loss":
                assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (source, key)
    bundled = evaluate_spec(result, str(checkpoint), data=f"sklearn.{ {'multiclass': 'iris', 'binary': 'breast_cancer', 'regression': 'diabetes'}[kind]}",
                            device="cpu", batch_size=50)
    assert bundled["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_the_default_split_goes_through_the_same_stream(runs):
    result, checkpoint = runs["multiclass"]
    got = evaluate_spec(result, str(checkpoint), device="cpu", batch_size=7)
    from nnspec.train.data import load_data

    state = torch.load(checkpoint, weights_only=True)
    data = load_data(result.checked, result.filename, seed=state["seed"])
    val = data.val
    stats = state["data_stats"]["features"]
    raw = val.inputs[0].numpy() * stats["std"].numpy() + stats["mean"].numpy()  # back to the file's values
    expected = _whole_reference(result, checkpoint, raw, val.y.numpy())
    assert got["split"] == "validation split" and got["samples"] == len(val)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_a_cross_validation_fold_is_evaluated_on_its_own_fold(tmp_path):
    from nnspec.train.data import load_data

    spec = tmp_path / "cv.nn"
    spec.write_text(MULTI_SPEC.replace("validation 0.2", "folds 3"))
    result = check_file(str(spec))
    train_spec(result, out_dir=tmp_path / "fold2", device="cpu", fold=(1, 3))
    checkpoint = tmp_path / "fold2" / "last.pt"
    got = evaluate_spec(result, str(checkpoint), device="cpu", batch_size=16)
    val = load_data(result.checked, result.filename, seed=0, fold=(1, 3)).val
    stats = torch.load(checkpoint, weights_only=True)["data_stats"]["features"]
    raw = val.inputs[0].numpy() * stats["std"].numpy() + stats["mean"].numpy()
    expected = _whole_reference(result, checkpoint, raw, val.y.numpy())
    assert got["split"] == "validation fold 2 of 3" and got["samples"] == len(val) == 50
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)


def test_text_class_names_are_numbered_over_the_whole_column(runs, tmp_path):
    """Training numbers text classes in sorted order over all rows; batches must not renumber them."""
    result, checkpoint = runs["multiclass"]
    x, y = _sklearn_set("multiclass")
    names = np.array(["setosa", "versicolor", "virginica"])
    order = np.random.default_rng(5).permutation(len(x))  # the first batch lacks no class by chance alone
    rows = tmp_path / "named.csv"
    rows.write_text("a,b,c,d,species\n" + "".join(",".join([*map(repr, x[i].tolist()), names[y[i]]]) + "\n"
                                                  for i in order))
    np.savez(tmp_path / "named.npz", x=x[order], y=names[y[order]])
    numeric = evaluate_spec(result, str(checkpoint), data="sklearn.iris", device="cpu")
    for source in (f'csv("{rows}", target="species")', str(tmp_path / "named.npz")):
        got = evaluate_spec(result, str(checkpoint), data=source, device="cpu", batch_size=4)
        assert got["accuracy"] == numeric["accuracy"] and got["f1"] == pytest.approx(numeric["f1"], abs=1e-12)


# ---- predict: .npz members streamed == the array read whole ------------------------------------


def test_npz_predictions_streamed_equal_a_whole_read_in_every_layout(runs, tmp_path):
    result, checkpoint = runs["multiclass"]
    x, _ = _sklearn_set("multiclass")
    state = torch.load(checkpoint, weights_only=True)
    model = build_model(result.checked)
    model.load_state_dict(state["model"])
    model.eval()
    stats = state["data_stats"]["features"]
    with torch.no_grad():
        probs = model(torch.from_numpy((x - stats["mean"].numpy()) / stats["std"].numpy()).float()).numpy()
    from nnspec.train.run import class_names_of

    header, rows = prediction_table(probs, result.checked, class_names_of(state))  # ids and names
    layouts = {"plain.npz": (np.savez, x), "compressed.npz": (np.savez_compressed, x),
               "fortran.npz": (np.savez, np.asfortranarray(x)), "float64.npz": (np.savez, x.astype(np.float64)),
               "flat_named.npz": (np.savez, x)}
    for name, (save, array) in layouts.items():
        save(tmp_path / name, **({"features": array, "y": np.zeros(len(x))} if name == "flat_named.npz" else {"x": array}))
        batches = list(predict_batches(result, str(checkpoint), str(tmp_path / name), device="cpu", batch_size=40))
        assert [len(r) for _, r in batches] == [40, 40, 40, 30], name
        assert batches[0][0] == header
        got = [row for _, r in batches for row in r]
        numbers = lambda table: np.array([row[:-1] for row in table], dtype=float)  # noqa: E731 (the label is text)
        np.testing.assert_allclose(numbers(got), numbers(rows), rtol=2e-5, atol=2e-6, err_msg=name)
        assert [row[-2:] for row in got] == [row[-2:] for row in rows], name


def test_two_input_npz_streams_each_member_in_lockstep(tmp_path):
    result, checkpoint = _trained((Path(__file__).parent.parent / "specs" / "two_tower.nn").read_text()
                                  .replace("metrics   [accuracy, auc]",
                                           "metrics   [accuracy, auc]\n    train { data synthetic(n=64); epochs 1 }"),
                                  tmp_path / "tt")
    rng = np.random.default_rng(6)
    numeric, image = rng.standard_normal((70, 13)).astype(np.float32), rng.random((70, 1, 28, 28)).astype(np.float32)
    np.savez_compressed(tmp_path / "two.npz", numeric=numeric, image=image)
    model = build_model(result.checked)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(numeric), torch.from_numpy(image)).numpy().reshape(-1)
    out = tmp_path / "p.csv"
    assert write_predictions(predict_batches(result, str(checkpoint), str(tmp_path / "two.npz"), device="cpu",
                                             batch_size=16), out) == 70
    got = np.array([float(line.split(",")[0]) for line in out.read_text().splitlines()[1:]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    np.savez(tmp_path / "uneven.npz", numeric=numeric, image=image[:60])
    r = nnspec("predict", tmp_path / "tt" / "spec.nn", "--checkpoint", checkpoint, "--input", tmp_path / "uneven.npz")
    assert r.exit_code == 1 and "different numbers of rows ('numeric' 70, 'image' 60)" in r.output, r.output


# ---- bad files: clear errors, exit 1, the messages training gives -------------------------------


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """tests/bad_data/tabular.nn trained on its good.csv: the spec every bad data file is made for."""
    out = tmp_path_factory.mktemp("tabular")
    result = check_file(str(BAD / "tabular.nn"))
    train_spec(result, out_dir=out, device="cpu")
    return out / "last.pt"


def _bad_cases():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bad_data_cases", Path(__file__).parent / "test_bad_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


@pytest.mark.parametrize("name", sorted(_bad_cases()))
def test_every_bad_data_file_is_refused_by_evaluate_as_by_train(tabular, name):
    data_file = BAD / name
    source = f'csv("{data_file}", target="label")' if data_file.suffix == ".csv" else f'npz("{data_file}")'
    r = nnspec("evaluate", BAD / "tabular.nn", "--checkpoint", tabular, "--data", source, "--batch-size", 3)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    assert str(data_file) in r.output
    for fragment in _bad_cases()[name]:
        assert fragment in r.output, f"{fragment!r} missing from: {r.output}"


def test_bad_npz_inputs_to_predict_and_evaluate_exit_1_with_clear_messages(tabular, tmp_path):
    spec = BAD / "tabular.nn"
    x = np.random.default_rng(7).standard_normal((3000, 4)).astype(np.float32)
    y = np.arange(3000) % 3

    def run(command: str, **arrays):
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.npz"
        np.savez(path, **arrays)
        flag = "--input" if command == "predict" else "--data"
        r = nnspec(command, spec, "--checkpoint", tabular, flag, path, "-o", tmp_path / "out.csv")
        assert r.exit_code == 1 and "Traceback" not in r.output and str(path) in r.output, r.output
        return r.output

    assert "Object arrays cannot be loaded" in run("predict", x=np.array([{"a": 1}] * 5, dtype=object))
    assert "needs an array 'x'" in run("predict", features_wrong=x)
    assert "expects [4] per sample; received [4, 2]" in run("predict", x=np.zeros((10, 4, 2), np.float32))
    assert "expects numbers" in run("evaluate", x=x.astype(str), y=y)
    assert "3000 labels but the inputs have [2999] rows" in run("evaluate", x=x[:-1], y=y)
    assert "no array 'y'" in run("evaluate", x=x)
    bad = x.copy()
    bad[2500, 1] = np.inf
    text = run("evaluate", x=bad, y=y)  # found in the third batch of 1024 rows: the index is the array's
    assert "array 'x' holds inf at index (2500, 1)" in text and "in this batch of rows" in text

    import zipfile

    cut = tmp_path / "cut.npz"  # a member holding fewer bytes than its header announces
    with zipfile.ZipFile(cut, "w") as archive:
        archive.writestr("x.npy", _npy_bytes(x)[:2000])
    r = nnspec("predict", spec, "--checkpoint", tabular, "--input", cut)
    assert r.exit_code == 1 and "truncated" in r.output and "Traceback" not in r.output, r.output


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ---- memory: neither the rows nor the predictions are all held ----------------------------------

WIDE_SPEC = """model Wide {
    input features: [8]
    layers { Dense(16) -> relu
             Dense(8) -> softmax }
    loss categorical_crossentropy
    optimizer Adam(lr=0.01)
    metrics [accuracy, f1, mse]
    train { data synthetic(n=256); epochs 1; batch_size 64; validation 0.25 }
}
"""


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_evaluate_and_predict_hold_far_less_than_the_whole_input_and_predictions(tmp_path):
    """200,000 rows in an .npz: tracemalloc (NumPy arrays and Python objects; torch's own allocator is
    not traced) peaks far below the size of the whole input array, and of the whole prediction array.
    A CSV file: the peak does not grow with the file's length (10,000 rows, then 40,000)."""
    result, checkpoint = _trained(WIDE_SPEC, tmp_path / "wide")
    n = 200_000
    rng = np.random.default_rng(8)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    y = rng.integers(0, 8, n)
    np.savez(tmp_path / "big.npz", x=x, y=y)
    for rows in (10_000, 40_000):
        with open(tmp_path / f"{rows}.csv", "w") as f:
            f.write("a,b,c,d,e,f,g,h,label\n")
            np.savetxt(f, np.column_stack([x[:rows], y[:rows]]), fmt=["%.4f"] * 8 + ["%d"], delimiter=",")
    input_bytes, prediction_bytes = x.nbytes, n * 8 * 4  # float32 inputs, and float32 class scores
    del x, y
    evaluate_spec(result, str(checkpoint), data=str(tmp_path / "big.npz"), device="cpu", batch_size=n)  # warm up

    def predict_all():
        assert sum(len(rows) for _, rows in predict_batches(result, str(checkpoint), str(tmp_path / "big.npz"),
                                                            device="cpu", batch_size=1024)) == n

    def evaluate(name: str):
        return lambda: evaluate_spec(result, str(checkpoint), data=str(tmp_path / name), device="cpu", batch_size=1024)

    peaks = {"predict big.npz": _peak_bytes(predict_all), "evaluate big.npz": _peak_bytes(evaluate("big.npz"))}
    csv_peaks = [_peak_bytes(evaluate(f"{rows}.csv")) for rows in (10_000, 40_000)]
    print({k: f"{v / 2**20:.2f} MB" for k, v in peaks.items()}, f"CSV 10k / 40k rows: {csv_peaks[0] / 2**20:.2f} / "
          f"{csv_peaks[1] / 2**20:.2f} MB; inputs {input_bytes / 2**20:.2f} MB, predictions {prediction_bytes / 2**20:.2f} MB")
    for what, peak in peaks.items():
        assert peak < min(input_bytes, prediction_bytes) / 6, (what, peak)
    assert csv_peaks[1] < 1.25 * csv_peaks[0], csv_peaks  # 4 times the rows, not 4 times the memory
