"""Property-based tests (hypothesis).

1. Random *valid* specs (vectors, images and sequences; Dense/activation/Dropout chains,
   Conv2D/MaxPool2D, blocks with parameters, repetition, named tensors joined by `+` and
   `concat`, weighted loss sums, optimizers, metrics, search spaces, train settings; random
   spacing, `;` separators and comments) check cleanly and survive `fmt`: the output means the
   same spec IR, formatting it again changes nothing, and every comment is still there.
2. Random byte strings and random token-level mutations of the example specs never raise:
   the front end answers with diagnostics, each pointing at a line and column inside the file.

The budget is modest on purpose (a few seconds); the long fuzz campaign lives elsewhere.
"""
from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nnspec.fmt import format_text, spec_ir
from nnspec.parse import decode, parse_text, source_lines
from nnspec.pipeline import Result, check_text

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.nn"))
EXAMPLES = [p.read_text(encoding="utf-8") for p in SPECS]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- random valid specs

ACTIVATIONS = ["relu", "tanh", "gelu", "selu", "silu", "softplus", "elu(alpha=1.0)", "leaky_relu(0.2)",
               "sigmoid", "linear"]
SIZES = st.sampled_from([2, 4, 8, 16, 32])
RATES = st.sampled_from(["0.1", "0.25", ".5", "0.0", "5e-1", "2.5E-1"])
LEARNING_RATES = st.sampled_from(["0.001", "1e-3", "1E-3", "0.01", "5e-4", "0.1"])


class Writer:
    """Collects statements; names tensors uniquely."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def name(self) -> str:
        self.count += 1
        return f"t{self.count}"


@st.composite
def activation_suffix(draw) -> str:
    return draw(st.sampled_from(["", f" -> {draw(st.sampled_from(ACTIVATIONS))}"]))


@st.composite
def vector_step(draw, w: Writer, width: int) -> int:
    """One statement on a vector [width]; returns the new width."""
    kind = draw(st.sampled_from(["dense", "dense_kw", "dropout", "norm", "residual", "concat", "repeat",
                                 "search"]))
    if kind == "dense":
        units = draw(SIZES)
        w.lines.append(f"Dense({units}){draw(activation_suffix())}")
        return units
    if kind == "dense_kw":
        units = draw(SIZES)
        act = draw(st.sampled_from(["relu", "tanh", "sigmoid"]))
        w.lines.append(f"Dense(units={units}, activation={act}, l2=1e-4)")
        return units
    if kind == "dropout":
        w.lines.append(f"Dropout({draw(RATES)})")
        return width
    if kind == "norm":
        w.lines.append(draw(st.sampled_from(["BatchNorm()", "LayerNorm()"])))
        return width
    if kind in ("residual", "concat"):
        a, b = w.name(), w.name()
        units = draw(SIZES)
        w.lines.append(f"{a} = Dense({units}) -> relu")
        w.lines.append(f"{b} = {a} -> Dense({units}){draw(activation_suffix())}")
        if kind == "residual":
            w.lines.append(f"{a} + {b}")
            return units
        w.lines.append(f"concat({a}, {b})")
        return 2 * units
    if kind == "repeat":
        units, times = draw(SIZES), draw(st.integers(1, 3))
        w.lines.append(draw(st.sampled_from([f"(Dense({units}) -> relu) * {times}", f"Dense({units}) * {times}"])))
        return units
    w.lines.append("Dense(choice(8, 16)) -> relu")  # a search space: checked at its first choice
    return 8


@st.composite
def image_steps(draw, w: Writer, channels: int, side: int) -> None:
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()) and side >= 4:
            w.lines.append(draw(st.sampled_from(["MaxPool2D(2)", "AvgPool2D(2)", "MaxPool2D(size=2, stride=2)"])))
            side //= 2
        else:
            channels = draw(SIZES)
            w.lines.append(f"Conv2D({channels}, kernel=3, padding=same){draw(activation_suffix())}")
    w.lines.append(draw(st.sampled_from(["Flatten()", "GlobalAvgPool()", "GlobalMaxPool()"])))


HEADS = {  # task -> (output statement, losses, metrics)
    "multiclass": ("Dense({k}) -> softmax", ["categorical_crossentropy", "cross_entropy",
                                             "categorical_crossentropy(label_smoothing=0.1)"],
                   ["accuracy", "top_k_accuracy(k=2)", "f1", "precision"]),
    "binary": ("Dense(1) -> sigmoid", ["binary_crossentropy", "0.5 * binary_crossentropy + 0.5 * iou",
                                       "focal(gamma=2.0)"], ["accuracy", "auc", "recall"]),
    "regression": ("Dense(1)", ["mse", "mae", "huber(delta=1.0)", "0.7 * mse + 0.3 * mae"], ["mae", "mse", "r2"]),
}
OPTIMIZERS = ["SGD(lr={lr}, momentum=0.9)", "Adam(lr={lr})", "AdamW(lr={lr}, weight_decay=0.01)",
              "RMSprop(lr={lr})", "Adagrad(lr={lr})", "Adam(lr=loguniform(0.0001, 0.1))"]
TRAIN_SETTINGS = ["epochs {n}", "batch_size {n}", "batch_size full", "validation 0.2", "seed {n}",
                  "shuffle false", "data synthetic(n=64)", "schedule cosine", "early_stopping 3",
                  "clip_grad_norm 1.0"]


@st.composite
def valid_spec(draw) -> str:
    w = Writer()
    kind = draw(st.sampled_from(["vector", "image", "sequence"]))
    use_block = kind == "vector" and draw(st.booleans())
    header = ["model Random {"]
    if kind == "vector":
        header.append(f"input x: [{draw(SIZES)}]")
    elif kind == "image":
        header.append(f"input x: [{draw(st.integers(1, 3))}, 8, 8]")
        draw(image_steps(w, 1, 8))
    else:
        header.append(f"input x: [{draw(st.sampled_from(['6', '?']))}, 4]")
        w.lines.append(draw(st.sampled_from(["GRU(8)", "LSTM(8)", "Bidirectional(LSTM(4))", "GlobalAvgPool()"])))
    if use_block:
        header += ["block Stage(n, times) {", "h = in -> Dense(n) -> relu", "(Dense(n) -> relu) * times",
                   "}"]
        w.lines.append(f"Stage({draw(SIZES)}, {draw(st.integers(1, 2))}){draw(st.sampled_from(['', ' * 2']))}")
    width = 4
    for _ in range(draw(st.integers(0, 4))):
        width = draw(vector_step(w, width))
    task = draw(st.sampled_from(sorted(HEADS)))
    head, losses, metrics = HEADS[task]
    w.lines.append(head.format(k=draw(st.integers(3, 6))))  # top_k_accuracy(k=2) needs > 2 classes
    body = header + ["layers {"] + w.lines + ["}"]
    body.append(f"loss {draw(st.sampled_from(losses))}")
    body.append(f"optimizer {draw(st.sampled_from(OPTIMIZERS)).format(lr=draw(LEARNING_RATES))}")
    chosen = draw(st.lists(st.sampled_from(metrics), min_size=1, max_size=3, unique=True))
    body.append(f"metrics [{', '.join(chosen)}]")
    settings_ = draw(st.lists(st.sampled_from(TRAIN_SETTINGS), max_size=4, unique_by=lambda s: s.split()[0]))
    settings_ = [s.format(n=draw(st.integers(1, 64))) for s in settings_]
    if settings_:
        body += (["train { " + "; ".join(settings_) + " }"] if draw(st.booleans())
                 else ["train {"] + settings_ + ["}"])
    if draw(st.booleans()):
        body.append("search { trials 3; sampler random; objective maximize val_loss }")
    body.append("}")
    return draw(laid_out(body))


@st.composite
def laid_out(draw, lines: list[str]) -> str:
    """Random but valid layout: indentation, blank lines, comments, spaces around tokens."""
    out = []
    for i, line in enumerate(lines):
        if draw(st.integers(0, 6)) == 0:
            out.append(draw(st.sampled_from(["", "    ", "\t"])) + f"# note {i}")
        if draw(st.integers(0, 8)) == 0:
            out.append("")
        if draw(st.booleans()):
            line = line.replace(", ", ",").replace(" -> ", "->")
        if draw(st.integers(0, 5)) == 0:
            line = line.replace("(", "( ").replace(")", " )")
        comment = f"   # c{i}" if draw(st.integers(0, 5)) == 0 else ""
        out.append(" " * draw(st.integers(0, 6)) + line + comment)
    return "\n".join(out) + draw(st.sampled_from(["\n", "", "\n\n"]))


def comments_of(text: str) -> list[str]:
    return [str(c).rstrip() for c in parse_text(text).comments]


@FAST
@given(valid_spec())
def test_random_valid_specs_check_and_round_trip_through_fmt(text):
    result = check_text(text)
    assert result.ok, result.render() + "\n\n" + text
    formatted = format_text(text)
    assert spec_ir(formatted) == spec_ir(text)
    assert format_text(formatted) == formatted
    assert comments_of(formatted) == comments_of(text)
    assert check_text(formatted).ok


# ---------------------------------------------------------------- never a traceback


def assert_well_formed(result: Result) -> None:
    lines = source_lines(result.source) if result.source else [""]
    assert result.diagnostics or result.ok
    for d in result.diagnostics:
        assert d.code and d.message
        assert 1 <= d.span.line <= max(len(lines), 1), (d, result.source)
        assert 1 <= d.span.col <= len(lines[d.span.line - 1]) + 1, (d, result.source)
    result.render()


def front_end(data: bytes) -> Result:
    text, diag = decode(data)
    if diag is not None:
        # The bytes' own lines, NULs shown as U+FFFD, so that spans are checked against the file.
        return Result("<bytes>", data.decode("utf-8", "replace").replace("\x00", "\ufffd"), None, (diag,))
    return check_text(text, "<bytes>")


@FAST
@given(st.binary(max_size=300))
@example(b"\n\x00")  # a NUL on line 2: its diagnostic points at line 2 of the bytes
def test_random_bytes_never_raise(data):
    assert_well_formed(front_end(data))


@FAST
@given(st.text(alphabet=st.sampled_from(list("model{}[]()->+*=,:;?#\"\n \t.0123456789eEabxyzDense_")), max_size=200))
def test_random_spec_like_text_never_raises(text):
    assert_well_formed(check_text(text))


TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|->|[A-Za-z_][A-Za-z_0-9]*|[0-9.]+(?:[eE][+-]?[0-9]+)?|\s+|.', re.S)
POOL = ["(", ")", "[", "]", "{", "}", ",", "=", "->", "+", "*", "-", "?", ";", "\n", "#", '"', "0", "-1", "1e999",
        "2.5", "true", "Dense", "relu", "in", "model", "layers", "choice(1)", "concat", "x", "int", "Conv2D(8, 3)"]


@st.composite
def mutated_example(draw) -> str:
    tokens = TOKEN.findall(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "swap"]))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "replace":
            tokens[i] = draw(st.sampled_from(POOL))
        elif op == "insert":
            tokens.insert(i, draw(st.sampled_from(POOL)))
        else:
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        if not tokens:
            break
    return "".join(tokens)


@FAST
@given(mutated_example())
def test_mutated_examples_never_raise_and_valid_mutants_format(text):
    result = check_text(text)
    assert_well_formed(result)
    if result.ok:  # a mutation that stays valid must still round-trip through fmt
        formatted = format_text(text)
        assert spec_ir(formatted) == spec_ir(text)
        assert format_text(formatted) == formatted
