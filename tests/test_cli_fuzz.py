"""Fuzzing command-line values: every value of every option that reaches a spec value or a
data source is either accepted within the catalog's bounds or refused as a usage error / a
located UserError, never anything else (no value may reach torch, numpy or the filesystem
unchecked). Options are parsed by click exactly as `nnspec` parses them (make_context), without
running the command, so thousands of values take seconds.

CI runs NNSPEC_FUZZ_HYPOTHESIS examples per test (default 400); `make fuzz` runs 5,000.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import click
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnspec.catalog.settings import DATA_SOURCES, SEARCH_SETTINGS, TRAIN_SETTINGS
from nnspec.cli import main
from nnspec.diagnostics import UserError
from nnspec.pipeline import data_option

ROOT = Path(__file__).resolve().parent.parent
IRIS = str(ROOT / "specs" / "iris_mlp.nn")
FUZZ = settings(max_examples=int(os.environ.get("NNSPEC_FUZZ_HYPOTHESIS", "400")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

NUMBERISH = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "-inf", "inf", "1e400", "-0", "0x10", "1_000", " 7 ", "١٢", "", "+5", "4294967296",
                     "4294967295", "1e-400", "5.", ".5", "1e3"]),
    st.text(max_size=12),
)


def parse_options(command: str, argv: list[str]):
    """The option values click gives the command, or the usage error it raises."""
    cmd = main.commands[command]
    return cmd.make_context(command, [IRIS, *argv], parent=click.Context(main, info_name="nnspec"))


def param(params, name):
    return next(p for p in params if p.name == name)


def within(p, value) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    low = p.min is None or (value > p.min if p.min_exclusive else value >= p.min)
    return low and (p.max is None or value <= p.max)


OPTIONS = [("train", "--seed", "seed", param(TRAIN_SETTINGS, "seed")),
           ("train", "--epochs", "epochs", param(TRAIN_SETTINGS, "epochs")),
           ("train", "--lr", "lr", None),
           ("tune", "--seed", "seed", param(SEARCH_SETTINGS, "seed")),
           ("tune", "--timeout", "timeout", param(SEARCH_SETTINGS, "timeout"))]


@FUZZ
@given(st.sampled_from(OPTIONS), NUMBERISH)
def test_numeric_overrides_are_within_the_catalog_or_refused(option, value):
    command, flag, key, p = option
    try:
        ctx = parse_options(command, [flag, value])
    except click.UsageError:  # BadParameter is one: exit 2 with the option's name
        return
    got = ctx.params[key]
    if p is None:  # --lr: any finite positive number
        assert isinstance(got, float) and math.isfinite(got) and got > 0, (value, got)
    else:
        assert within(p, got), (flag, value, got)


SOURCE_WORDS = [e.name for e in DATA_SOURCES] + ["sklearn", "logic", "and", "iris", "csv", "n", "seed", "path",
                                                  "target", "delimiter", "__import__", "os", "x.csv", "y.npz"]
TOKENS = st.one_of(st.sampled_from(SOURCE_WORDS + ["(", ")", ",", "=", ".", '"', '"f.csv"', "[", "]", "-", "1e400",
                                                   "0", "-1", "10000000000", "1.5", "true", "\\", "#", "\n", " "]),
                   st.text(max_size=4))


@FUZZ
@given(st.lists(TOKENS, max_size=12).map("".join))
def test_any_data_option_is_a_catalog_source_or_a_located_user_error(text):
    try:
        name, args = data_option(text)
    except UserError as err:
        assert err.where and err.where.startswith(f"--data {text!r}") and err.code.startswith("E"), err.render()
        return
    assert name in {e.name for e in DATA_SOURCES}, (text, name)
    entry = next(e for e in DATA_SOURCES if e.name == name)
    for p in entry.params:
        if p.type in ("int", "float") and args.get(p.name) is not None:
            assert within(p, args[p.name]), (text, p.name, args[p.name])
