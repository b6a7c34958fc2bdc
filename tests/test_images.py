"""Image folders: `images("dir/", size=[H, W], color=gray|rgb)`, one subfolder per class, decoded
from disk by DataLoader workers. Pixels are checked against Pillow's own decoding, the streamed
training against the same pixels trained from memory, and every refusal names its file."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from sklearn.datasets import load_digits

from nnspec.cli import main
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text
from nnspec.train.images import ImageFiles, decode_image
from nnspec.train.run import evaluate_spec, predict_spec, train_spec

torch.set_num_threads(1)  # tiny models: one thread is faster than several contending for two cores

CLASSES = ("one", "two", "zero")  # digits 1, 2, 0: the folder names, sorted, are the class ids 0, 1, 2
DIGIT = {"zero": 0, "one": 1, "two": 2}

SPEC = """model Digits {{
    input image: [{c}, 8, 8]
    layers {{
        Conv2D(8, kernel=3, padding=same) -> relu
        Flatten()
        Dense(3) -> softmax
    }}
    loss      categorical_crossentropy
    optimizer Adam(lr=0.01)
    metrics   [accuracy]
    train {{ data {data}; epochs {epochs}; batch_size 8; validation {validation}; seed 0 }}
}}
"""


def digit_pngs(root: Path, per_class: int = 12, color: str = "gray") -> Path:
    """root/<one|two|zero>/NNN.png: 8 x 8 digits from scikit-learn, as PNG files."""
    digits = load_digits()
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(np.flatnonzero(digits.target == DIGIT[name])[:per_class]):
            pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
            image = Image.fromarray(pixels)
            if color == "rgb":  # three different channels, so that their order is tested
                image = Image.merge("RGB", [image, image.transpose(Image.FLIP_LEFT_RIGHT), image.transpose(Image.FLIP_TOP_BOTTOM)])
            image.save(root / name / f"{j:03d}.png")
    return root


def spec_for(tmp_path: Path, data: str, *, epochs: int = 1, validation: float = 0.25, c: int = 1):
    path = tmp_path / "digits.nn"
    path.write_text(SPEC.format(data=data, epochs=epochs, validation=validation, c=c))
    result = check_text(path.read_text(), str(path))
    assert result.ok, result.render()
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained on a folder of 36 digit PNGs (3 classes), decoded by 2 worker processes."""
    tmp = tmp_path_factory.mktemp("images")
    digit_pngs(tmp / "digits")
    result = spec_for(tmp, 'images("digits", size=[8, 8], workers=2)', epochs=5)
    summary = train_spec(result, out_dir=tmp / "run")
    return tmp, result, summary


# ------------------------------------------------------------------ decoding


def test_gray_pixels_are_pillows_divided_by_255(tmp_path):
    digit_pngs(tmp_path, per_class=1)
    path = tmp_path / "two" / "000.png"
    reference = np.asarray(Image.open(path).convert("L"), np.float32) / 255
    got = decode_image(str(path), (8, 8), "gray")
    assert got.dtype == np.float32 and got.shape == (1, 8, 8)
    assert np.array_equal(got[0], reference)


def test_rgb_is_channels_first(tmp_path):
    digit_pngs(tmp_path, per_class=1, color="rgb")
    path = tmp_path / "zero" / "000.png"
    image = Image.open(path)
    got = decode_image(str(path), (8, 8), "rgb")
    assert got.shape == (3, 8, 8)
    for c, h, w in [(0, 1, 2), (1, 1, 2), (2, 6, 3), (1, 7, 0)]:
        assert got[c, h, w] == np.float32(image.getpixel((w, h))[c]) / np.float32(255)


def test_a_non_square_image_is_read_as_h_by_w(tmp_path):
    Image.fromarray(np.arange(6 * 4, dtype=np.uint8).reshape(6, 4)).save(tmp_path / "tall.png")  # H 6, W 4
    got = ImageFiles((str(tmp_path / "tall.png"),), (6, 4), "gray").decode([0])
    assert got.shape == (1, 1, 6, 4) and got[0, 0, 5, 3] == np.float32(23) / np.float32(255)


# ------------------------------------------------------------------ training, evaluate, predict


def test_a_folder_trains_and_remembers_the_folder_names(trained):
    tmp, _, summary = trained
    assert summary.final["accuracy"] > 0.6  # 3 classes: chance is 1/3
    facts = json.loads((summary.out_dir / "data.json").read_text())
    assert facts["class_names"] == list(CLASSES)
    assert facts["images"]["size"] == [8, 8] and facts["images"]["color"] == "gray"


def test_evaluate_scores_the_validation_images(trained):
    tmp, result, summary = trained
    values = evaluate_spec(result, str(summary.out_dir / "last.pt"))
    assert values["split"] == "validation split" and values["samples"] == 9  # 36 * 0.25
    assert values["loss"] == pytest.approx(summary.final["val_loss"], rel=1e-5)
    assert values["accuracy"] == pytest.approx(summary.final["val_accuracy"])


def test_evaluate_on_another_image_folder(trained, tmp_path):
    tmp, result, summary = trained
    digit_pngs(tmp_path / "more", per_class=5)
    values = evaluate_spec(result, str(summary.out_dir / "last.pt"), data=f'images("{tmp_path / "more"}", size=[8, 8])')
    assert values["samples"] == 15 and values["split"] == "whole data set"


def test_predict_a_folder_of_unlabelled_images(trained, tmp_path):
    tmp, result, summary = trained
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name in CLASSES:  # one image of each class, loose in one folder
        Image.open(tmp / "digits" / name / "011.png").save(folder / f"{name}.png")
    header, rows = predict_spec(result, str(summary.out_dir / "last.pt"), str(folder))
    assert header == ["file", "p_0", "p_1", "p_2", "predicted", "label"]
    assert [r[0] for r in rows] == ["one.png", "two.png", "zero.png"]
    for row in rows:
        probs = np.array(row[1:4])
        assert probs.sum() == pytest.approx(1, abs=1e-4)
        assert row[4] == int(probs.argmax()) and row[5] == CLASSES[row[4]]


def test_predict_command_takes_a_folder(trained, tmp_path):
    tmp, result, summary = trained
    out = tmp_path / "predictions.csv"
    cli = CliRunner().invoke(main, ["predict", str(tmp / "digits.nn"), "--checkpoint", str(summary.out_dir / "last.pt"),
                                    "--input", str(tmp / "digits" / "zero"), "-o", str(out)])
    assert cli.exit_code == 0, cli.output
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0][0] == "file" and rows[0][-1] == "label" and len(rows) == 1 + 12
    assert sum(r[-1] == "zero" for r in rows[1:]) >= 8  # the model learnt zeros


@pytest.mark.slow
def test_streamed_training_equals_training_on_the_same_pixels_in_memory(tmp_path):
    """Same split, same batches in the same order, same numbers: the disk path changes only where
    the pixels come from (2 decoding workers here)."""
    digit_pngs(tmp_path / "digits")
    disk = train_spec(spec_for(tmp_path, 'images("digits", size=[8, 8], workers=2)', epochs=3), out_dir=tmp_path / "a")
    paths = sorted((tmp_path / "digits").rglob("*.png"), key=lambda p: (p.parent.name, p.name))
    x = np.stack([np.asarray(Image.open(p), np.float32)[None] / 255 for p in paths])
    y = np.array([CLASSES.index(p.parent.name) for p in paths])
    np.savez(tmp_path / "same.npz", x=x, y=y)
    memory = train_spec(spec_for(tmp_path, 'npz("same.npz")', epochs=3), out_dir=tmp_path / "b")
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in disk.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in memory.history]


# ------------------------------------------------------------------ refusals, each naming what is wrong


def load(tmp_path, folder: str, **kw):
    return train_spec(spec_for(tmp_path, f'images("{folder}", size=[8, 8], workers=0)', **kw), out_dir=tmp_path / "run")


def test_a_file_that_is_not_an_image_is_named(tmp_path):
    digit_pngs(tmp_path / "digits", per_class=3)
    (tmp_path / "digits" / "two" / "broken.png").write_bytes(b"not a png at all \x00\x01\x02")
    with pytest.raises(UserError, match=r"broken\.png: cannot read it as an image"):
        load(tmp_path, "digits")


def test_a_truncated_image_is_named_when_its_pixels_are_decoded(tmp_path):
    """The header reads, the pixels do not: found by a worker process, said in the main one."""
    digit_pngs(tmp_path / "digits", per_class=3)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    (tmp_path / "digits" / "one" / "cut.png").write_bytes(buffer.getvalue()[:60])
    result = spec_for(tmp_path, 'images("digits", size=[8, 8], workers=1)', validation=0)
    with pytest.raises(UserError, match=r"cut\.png: cannot read it as an image"):
        train_spec(result, out_dir=tmp_path / "run")


def test_a_wrongly_sized_image_is_named_with_both_sizes(tmp_path):
    digit_pngs(tmp_path / "digits", per_class=3)
    Image.new("L", (9, 7)).save(tmp_path / "digits" / "zero" / "odd.png")  # W 9, H 7
    with pytest.raises(UserError, match=r"odd\.png: the image is 7 x 9 \(H x W\) but the data source reads 8 x 8"):
        load(tmp_path, "digits")


def test_folder_without_class_subfolders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no class subfolders"):
        load(tmp_path, "empty")


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(tmp_path, "nowhere")


def test_empty_class_folder_is_named(tmp_path):
    digit_pngs(tmp_path / "digits", per_class=3)
    for p in (tmp_path / "digits" / "two").iterdir():
        p.unlink()
    with pytest.raises(UserError, match=r"the class folder .*two holds no images"):
        load(tmp_path, "digits")


def test_loose_images_and_other_files_are_refused_by_name(tmp_path):
    digit_pngs(tmp_path / "digits", per_class=3)
    (tmp_path / "digits" / "one" / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"notes\.txt: not a PNG or JPEG file"):
        load(tmp_path, "digits")
    (tmp_path / "digits" / "one" / "notes.txt").unlink()
    Image.new("L", (8, 8)).save(tmp_path / "digits" / "loose.png")
    with pytest.raises(UserError, match=r"loose\.png is not in a class subfolder"):
        load(tmp_path, "digits")


def test_class_count_must_match_the_output(tmp_path):
    digit_pngs(tmp_path / "digits", per_class=3)
    (tmp_path / "digits" / "four").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "digits" / "four" / "a.png")
    with pytest.raises(UserError, match="has 4 classes but the model's output has 3"):
        load(tmp_path, "digits")


def test_data_option_that_does_not_fit_the_input(trained, tmp_path):
    tmp, result, summary = trained
    with pytest.raises(UserError, match=r"reads \[3, 8, 8\] \(rgb, size=\[8, 8\]\) but input 'image' is \[1, 8, 8\]") as err:
        evaluate_spec(result, str(summary.out_dir / "last.pt"), data=f'images("{tmp / "digits"}", size=[8, 8], color=rgb)')
    assert "--data" in str(err.value.where)


def test_predict_on_images_needs_an_image_model(tmp_path):
    from nnspec.train.images import predict_files
    from nnspec.train.data import Expect

    expect = Expect((("x", (4,), "float"),), "multiclass", 3, (3,), {})
    with pytest.raises(UserError, match=r"images need a model with one image input"):
        predict_files(tmp_path, expect)


# ------------------------------------------------------------------ the checker


def check(data: str, c: int = 1):
    return check_text(SPEC.format(data=data, epochs=1, validation=0, c=c), "digits.nn")


def test_checker_compares_the_source_with_the_input():
    result = check('images("d", size=[8, 8], color=rgb)')
    (diag,) = [d for d in result.diagnostics if d.is_error]
    assert diag.code == "E123" and "[3, 8, 8]" in diag.message and "[1, 8, 8]" in diag.message
    assert "color=gray" in diag.help
    assert check('images("d", size=[8, 8], color=rgb)', c=3).ok
    result = check('images("d", size=[28, 28])')
    assert [d.code for d in result.diagnostics if d.is_error] == ["E123"]


def test_size_is_two_whole_numbers():
    for size in ("8", "[8, 8, 8]", "[8, 0]"):
        result = check(f'images("d", size={size})')
        assert [d.code for d in result.diagnostics if d.is_error] == ["E108"], size
