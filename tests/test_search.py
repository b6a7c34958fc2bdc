"""Search spaces: collected once each as dimensions, and concretized into specs that check.

The concrete specs are checked by the ordinary pipeline and compared with the values chosen:
the elaborated graph must hold exactly the units, repetitions, rates and settings that were drawn.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from nnspec import search
from nnspec.diagnostics import UserError
from nnspec.pipeline import check_text

SPECS = Path(__file__).resolve().parent.parent / "specs"
TUNE_MLP = (SPECS / "tune_mlp.nn").read_text()


def dims_of(text: str) -> list[search.Dimension]:
    result = check_text(text)
    assert result.ok, result.render()
    return search.dimensions(result.checked.spec, text)


def test_tune_mlp_has_the_five_dimensions_written_in_it():
    dims = dims_of(TUNE_MLP)
    assert [(d.name, d.kind) for d in dims] == [
        ("Dense.units", "choice"), ("Dense.repeat", "int_range"), ("Dropout.rate", "uniform"),
        ("Adam.lr", "loguniform"), ("train.batch_size", "choice")]
    units, repeat, rate, lr, batch = dims
    assert units.choices == (16, 32, 64) and batch.choices == (16, 32, 64)
    assert (repeat.low, repeat.high) == (1, 3)
    assert (rate.low, rate.high) == (0.0, 0.5)
    assert (lr.low, lr.high) == (0.0001, 0.1)
    assert search.defaults(dims) == {"Dense.units": 16, "Dense.repeat": 1, "Dropout.rate": 0.0,
                                     "Adam.lr": 0.0001, "train.batch_size": 16}


BLOCK_SPEC = """\
model Blocks {
    input x: [8]
    block Unit(n) {
        Dense(n) -> choice(relu, elu)   # the activation: one dimension for every use
        Dropout(uniform(0.1, 0.3))
    }
    layers {
        Unit(choice(4, 8))
        Unit(16) * 2
        Dense(1) -> sigmoid
    }
    loss binary_crossentropy
    optimizer SGD(lr=0.1, momentum=choice(0.0, 0.9))
}
"""


def test_a_space_in_a_block_body_is_one_dimension_however_often_the_block_is_used():
    dims = dims_of(BLOCK_SPEC)
    assert [(d.name, d.kind) for d in dims] == [
        ("Unit.activation", "choice"), ("Unit.Dropout.rate", "uniform"), ("Unit.n", "choice"),
        ("SGD.momentum", "choice")]
    # the block is elaborated three times, each instance carrying the same Space
    graph = check_text(BLOCK_SPEC).checked.graph
    dropouts = [n for n in graph.nodes if n.kind == "Dropout"]
    assert len(dropouts) == 3 and len({n.searched["rate"].span for n in dropouts}) == 1


def test_concretizing_an_activation_choice_keeps_comments_and_layout():
    dims = dims_of(BLOCK_SPEC)
    text = search.concretize(BLOCK_SPEC, dims, {"Unit.activation": "elu", "Unit.Dropout.rate": 0.25,
                                                "Unit.n": 8, "SGD.momentum": 0.9})
    assert "Dense(n) -> elu   # the activation: one dimension for every use" in text
    assert "Unit(8)" in text and "momentum=0.9" in text and "Dropout(0.25)" in text
    result = check_text(text)
    assert result.ok and not search.dimensions(result.checked.spec, text)
    kinds = [n.kind for n in result.checked.graph.nodes]
    assert kinds.count("elu") == 3 and "relu" not in kinds


def test_a_value_outside_the_choices_is_refused():
    dims = dims_of(TUNE_MLP)
    with pytest.raises(UserError, match="not one of the choices"):
        search.concretize(TUNE_MLP, dims, {"Dense.units": 48})
    with pytest.raises(UserError, match="not one of the choices"):
        search.concretize(TUNE_MLP, dims, {"Dense.units": 16.0})  # 16.0 is not the integer 16


def test_a_space_inside_another_is_refused_with_where():
    text = TUNE_MLP.replace("uniform(0.0, 0.5)", "choice(0.1, uniform(0.2, 0.5))")
    result = check_text(text)
    assert result.ok  # the checker uses the defaults; tuning needs every space on its own
    with pytest.raises(UserError, match="inside another") as err:
        search.dimensions(result.checked.spec, text)
    assert err.value.where == "line 5, column 29"  # the inner uniform(...)


@st.composite
def assignments(draw, dims):
    values = {}
    for d in dims:
        if d.kind == "choice":
            values[d.name] = draw(st.sampled_from(d.choices))
        elif d.kind == "int_range":
            values[d.name] = draw(st.integers(int(d.low), int(d.high)))
        else:
            values[d.name] = draw(st.floats(d.low, d.high, allow_nan=False))
    return values


TUNE_DIMS = dims_of(TUNE_MLP)


@settings(max_examples=40, deadline=None)
@given(assignments(TUNE_DIMS))
def test_every_assignment_gives_a_spec_that_checks_and_holds_those_values(values):
    text = search.concretize(TUNE_MLP, TUNE_DIMS, values)
    result = check_text(text, "concrete.nn")
    assert result.ok, result.render()
    checked = result.checked
    assert not search.dimensions(checked.spec, text)
    dense = [n for n in checked.graph.nodes if n.kind == "Dense"]
    assert len(dense) == values["Dense.repeat"] + 1
    assert all(n.args["units"] == values["Dense.units"] for n in dense[:-1])
    (dropout,) = [n for n in checked.graph.nodes if n.kind == "Dropout"]
    assert dropout.args["rate"] == pytest.approx(values["Dropout.rate"], rel=1e-5, abs=1e-6)
    assert checked.optimizer[1]["lr"] == pytest.approx(values["Adam.lr"], rel=1e-5)
    assert checked.train["batch_size"] == values["train.batch_size"]
    # everything else is the source as written
    assert text.splitlines()[-2:] == TUNE_MLP.splitlines()[-2:]


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-12, 1e12, allow_nan=False))
def test_a_float_value_is_written_as_a_number_the_language_reads_back(value):
    dim = search.Dimension("x", "uniform", None, low=1e-12, high=1e12)
    text = TUNE_MLP.replace("loguniform(0.0001, 0.1)", dim.text(value))
    result = check_text(text)
    assert result.ok, result.render()
    assert result.checked.optimizer[1]["lr"] == search.round_float(value)
