"""A checkpoint belongs to the meaning of a spec, not to its layout: comments, blank lines and
`nnspec fmt` keep its IR hash; changing a layer, the loss or a setting does not."""
from pathlib import Path

from nnspec.fmt import format_text
from nnspec.pipeline import check_text
from nnspec.train.checkpoint import ir_hash

SPECS = Path(__file__).resolve().parent.parent / "specs"


def digest(text: str) -> str:
    result = check_text(text, "spec.nn")
    assert result.ok, result.render()
    return ir_hash(result.checked)


def test_layout_keeps_the_hash_and_meaning_changes_it():
    text = (SPECS / "mnist_convnet.nn").read_text()
    original = digest(text)
    assert digest("# a note on top\n\n" + text) == original
    assert digest(format_text(text.replace("    ", "        "))) == original
    assert digest(text.replace("Dropout(0.5)", "Dropout(0.4)")) != original
    assert digest(text.replace("epochs 2", "epochs 3")) == original  # the length of training: --resume may change it
    assert digest(text.replace("batch_size 128", "batch_size 64")) != original
