"""Hostile input to the checker: whatever the spec, `nnspec check` answers in bounded time and memory.

- Elaboration: nested repetitions, and blocks that repeat blocks, multiply. What the layers
  section expands to is counted before anything is expanded; past MAX_GRAPH_NODES it is E209 at
  the outermost repetition or block use that goes past, said at once (these specs grew past
  1.8 GB and were killed before).
- The model's memory: W307 when the weights or one training step need more than this machine's
  memory (replaced here by a small number), and `nnspec train` refuses the same, with the bytes
  needed and available, before it loads data or builds the model (it was an internal error, 70).
- Diagnostics: thousands of errors on one line render in linear time (the source is split once);
  at most MAX_SHOWN are printed, then a count, and a long line is an excerpt with its carets in
  place. `--format json` still lists every one.
No timed assertions: subprocesses run under a generous timeout, and memory is measured with
tracemalloc. tests/test_fuzz.py generates many more nested specs.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnspec import check, memory
from nnspec.cli import main
from nnspec.diagnostics import MAX_LINE_SHOWN, MAX_SHOWN, Span, error, render_all
from nnspec.pipeline import check_text

GiB = 2**30


def _spec(layers: str, blocks: str = "", tail: str = "    loss mse\n") -> str:
    return "model Hostile {\n    input x: [4]\n" + blocks + "    layers {\n" + layers + "    }\n" + tail + "}\n"


TRIPLE = _spec("        ((Dense(4) * 10000) * 10000) * 10000\n")
BLOCK_REPEATED = _spec("        Many() * 10000\n", "    block Many() {\n        Dense(4) * 10000\n    }\n")
CHAINED = _spec("        B0()\n", "".join(f"    block B{i}() {{\n        B{i + 1}() * 100\n    }}\n" for i in range(7))
                + "    block B7() {\n        Dense(4)\n    }\n")
SPACE_COUNT = _spec("        Dense(4) * choice(2, 10000) * 200\n")

# name -> (spec, line:col of the E209, what its message says)
HOSTILE = {
    "triple_repetition": (TRIPLE, (4, 9), "this repetition expands to 10^12 layers; the limit is 1,000,000"),
    "block_repeated_10000_used_10000_times": (BLOCK_REPEATED, (7, 9), "expands to 100,000,000 layers"),
    "chained_blocks": (CHAINED, (28, 9), "this use of block 'B0' expands to 10^14 layers"),
    "search_space_count": (SPACE_COUNT, (4, 9), "expands to 2,000,000 layers"),
}


def _errors(result) -> list:
    return [d for d in result.diagnostics if d.is_error]


def _peak_mib(fn) -> tuple[object, float]:
    tracemalloc.start()
    try:
        value = fn()
        return value, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- elaboration is budgeted
@pytest.mark.parametrize("name", HOSTILE)
def test_an_expansion_past_the_limit_is_e209_at_the_outermost_repetition_before_expanding(name: str):
    source, (line, col), said = HOSTILE[name]
    result, peak = _peak_mib(lambda: check_text(source))
    (e209,) = [d for d in result.diagnostics if d.code == "E209"]
    assert (e209.span.line, e209.span.col) == (line, col), result.render()
    assert said in e209.message and e209.help
    assert [d.code for d in _errors(result)] == ["E209"], result.render()
    assert peak < 50, f"{peak:.0f} MiB: something was expanded"
    assert len(result.checked.graph.nodes) <= 3  # the input, a placeholder, nothing else


@pytest.mark.parametrize("name", HOSTILE)
def test_the_cli_exits_1_with_a_located_e209_and_no_traceback(name: str, tmp_path: Path):
    source, (line, col), _ = HOSTILE[name]
    path = tmp_path / f"{name}.nn"
    path.write_text(source)
    proc = subprocess.run([sys.executable, "-m", "nnspec", "check", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{path}:{line}:{col}: error[E209]" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_the_limit_is_exact_and_the_rest_of_the_spec_is_still_checked(monkeypatch):
    monkeypatch.setattr(check, "MAX_GRAPH_NODES", 1000)
    ok = check_text(_spec("        Dense(4) * 1000\n"))
    assert ok.ok and len(ok.checked.graph.nodes) == 1001, ok.render()
    over = check_text(_spec("        Dense(4) * 1001\n"))
    assert [d.code for d in _errors(over)] == ["E209"]
    assert "expands to 1,001 layers; the limit is 1,000" in _errors(over)[0].message
    two = check_text(_spec("        Dense(4) * 600\n        Dense(4) * 600\n        Dense(-1)\n"))
    assert [(d.code, d.span.line) for d in _errors(two)] == [("E209", 5), ("E108", 6)], two.render()
    assert "with the 600 before it makes 1,200" in _errors(two)[0].message


def test_search_spaces_as_counts_are_budgeted_at_their_largest_valid_value(monkeypatch):
    monkeypatch.setattr(check, "MAX_GRAPH_NODES", 1000)
    for count in ("choice(2, 10000)", "int_range(1, 10000)", "choice(0, 501)", "int_range(2, 1000000000)"):
        result = check_text(_spec(f"        Dense(4) * {count} * 2\n"))
        (e209,) = _errors(result)
        assert e209.code == "E209" and "largest valid count" in e209.notes[0], (count, result.render())
    small = check_text(_spec("        Dense(4) * choice(2, 3) * 200\n"))  # 600 at most; the graph holds 400
    assert small.ok and len(small.checked.graph.nodes) == 401, small.render()


def test_refused_constructs_leave_no_false_warnings(monkeypatch):
    """A refused use still uses its blocks (no W202) and the tensors it names (no W201)."""
    result = check_text(_spec("        h = x -> Dense(4)\n        (h -> Many()) * 10000\n",
                              "    block Many() {\n        Inner() * 100\n    }\n"
                              "    block Inner() {\n        Dense(4) * 100\n    }\n"))
    assert [d.code for d in result.diagnostics] == ["E209"], result.render()


def test_layers_deep_in_blocks_count_more_as_their_names_grow():
    depth = 200
    blocks = "".join(f"    block B{i}() {{\n        B{i + 1}()\n    }}\n" for i in range(depth))
    blocks += f"    block B{depth}() {{\n        Dense(4) * 10000 * 99\n    }}\n"
    result, peak = _peak_mib(lambda: check_text(_spec("        B0()\n", blocks)))
    (e209,) = _errors(result)
    assert "990,000 layers nested 201 blocks deep" in e209.message, e209.message
    assert peak < 100


def test_blocks_with_many_distinct_arguments_are_counted_once_each():
    """Each block is counted once per distinct set of arguments: 30 levels that each use the next
    block twice (2^30 instances) are counted in 30 steps, not 2^30."""
    blocks = "".join(f"    block B{i}(n) {{\n        B{i + 1}(n) -> B{i + 1}(n)\n    }}\n" for i in range(30))
    blocks += "    block B30(n) {\n        Dense(n)\n    }\n"
    result = check_text(_spec("        B0(4)\n", blocks))
    (e209,) = _errors(result)
    assert "expands to about 1.0 * 10^9 layers" in e209.message, e209.message


def test_recursive_blocks_that_branch_are_bounded():
    """Blocks that use each other (E202) are expanded by the elaborator until a block repeats on
    the path; twelve of them, each using all the others, would make 11! paths."""
    names = [f"R{i}" for i in range(12)]
    blocks = "".join(f"    block {n}() {{\n        " + " -> ".join(m for m in names if m != n) + "\n    }\n"
                     for n in names)
    result, peak = _peak_mib(lambda: check_text(_spec("        R0()\n", blocks)))
    codes = {d.code for d in _errors(result)}
    assert codes == {"E202", "E209"}, result.render()[:2000]
    assert peak < 200


def test_nested_search_space_marks_keep_the_outermost_space():
    result = check_text(_spec("        (Dense(4) * choice(2, 3)) * choice(1, 2)\n"))
    dense = [n for n in result.checked.graph.nodes if n.kind == "Dense"]
    assert len(dense) == 2 and all(n.searched["repeat"].span.col == 37 for n in dense), result.render()
    deep = "Dense(4) * 100"
    for _ in range(150):  # marking node by node at every level cost 150 x the nodes
        deep = f"({deep}) * choice(1, 1)"
    result = check_text(_spec(f"        {deep}\n"))
    assert result.ok and len(result.checked.graph.nodes) == 101


# ---------------------------------------------------------------- the model's memory
BIG = _spec("        Dense(44721)\n", tail="    loss mse\n    optimizer SGD(lr=0.1)\n"
            "    train {\n        data synthetic(n=8)\n        epochs 1\n        batch_size 1\n    }\n"
            ).replace("input x: [4]", "input x: [44721]")  # 2,000,012,562 parameters, 7.5 GiB of weights


def test_check_warns_when_the_weights_exceed_this_machines_memory(monkeypatch):
    monkeypatch.setattr(memory, "machine_memory", lambda: 4 * GiB)
    result = check_text(BIG)
    assert result.ok, result.render()
    (w307,) = [d for d in result.diagnostics if d.code == "W307"]
    assert (w307.span.line, w307.span.col) == (4, 9)  # the Dense layer
    assert "8,000,050,248 bytes" in w307.message and "4,294,967,296 bytes" in w307.message


def test_check_warns_when_one_training_step_exceeds_it(monkeypatch):
    monkeypatch.setattr(memory, "machine_memory", lambda: 16 * GiB)
    (w307,) = [d for d in check_text(BIG).diagnostics if d.code == "W307"]
    assert w307.span.line == 11 and "training one batch of 1" in w307.message  # at batch_size
    monkeypatch.setattr(memory, "machine_memory", lambda: 64 * GiB)
    assert not [d for d in check_text(BIG).diagnostics if d.code == "W307"]


def test_absolute_limits_stay_errors_whatever_the_machine(monkeypatch):
    monkeypatch.setattr(memory, "machine_memory", lambda: 2**60)
    result = check_text(_spec("        Dense(300000)\n").replace("input x: [4]", "input x: [300000]"))
    assert [d.code for d in _errors(result)] == ["E307"]


def test_train_refuses_before_allocating_with_the_bytes_needed_and_available(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(memory, "machine_memory", lambda: 16 * GiB)
    spec = tmp_path / "big.nn"
    spec.write_text(BIG)
    (w307,) = [d for d in check_text(BIG).diagnostics if d.code == "W307"]
    run = CliRunner().invoke(main, ["train", str(spec), "--device", "cpu", "--out", str(tmp_path / "run"), "-q"])
    assert run.exit_code == 1, run.output
    assert "error[E307]: " + w307.message in run.output  # the same decision, the same words
    assert "17,179,869,184 bytes" in run.output and "internal error" not in run.output
    assert not (tmp_path / "run" / "last.pt").exists()


def test_on_a_gpu_train_compares_a_step_with_the_gpus_memory_and_the_weights_with_this_machines(monkeypatch):
    """No GPU needed: the device and its memory are stand-ins."""
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from nnspec.diagnostics import UserError
    from nnspec.train.run import _refuse_absurd_memory

    checked = check_text(BIG).checked
    gpu = type("Device", (), {"type": "cuda", "__str__": lambda self: "cuda:0"})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=16 * GiB))
    monkeypatch.setattr(memory, "machine_memory", lambda: 64 * GiB)
    with pytest.raises(UserError) as refused:  # a step (29.8 GiB) is more than the GPU's 16 GiB
        _refuse_absurd_memory(checked, 1, gpu)
    assert "the GPU cuda:0 has 16.0 GiB (17,179,869,184 bytes)" in refused.value.message
    monkeypatch.setattr(memory, "machine_memory", lambda: 4 * GiB)
    with pytest.raises(UserError) as refused:  # the model is built in this machine's memory first
        _refuse_absurd_memory(checked, 1, gpu)
    assert "this machine has 4.0 GiB" in refused.value.message and refused.value.code == "E307"
    monkeypatch.setattr(memory, "machine_memory", lambda: 64 * GiB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=141 * GiB))
    _refuse_absurd_memory(checked, 1, gpu)  # fits both


def test_train_refuses_in_a_real_process_without_a_traceback(tmp_path: Path):
    spec = tmp_path / "big.nn"
    spec.write_text(BIG)
    code = ("import sys, nnspec.memory as m; m.machine_memory = lambda: 4 << 30; from nnspec.cli import main; "
            "sys.argv = ['nnspec'] + sys.argv[1:]; main()")
    proc = subprocess.run([sys.executable, "-c", code, "train", str(spec), "--device", "cpu", "--out",
                           str(tmp_path / "run"), "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{spec}:4:9: warning[W307]" in proc.stderr  # what check said
    assert "error[E307]" in proc.stderr and "4,294,967,296 bytes" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


# ---------------------------------------------------------------- diagnostics
def _unknown_arguments(n: int) -> str:
    return _spec("        Dense(4, " + ", ".join(f"bogus{i}=1" for i in range(n)) + ")\n")


def test_8000_unknown_arguments_on_one_line_print_100_and_a_count(tmp_path: Path):
    path = tmp_path / "args.nn"
    path.write_text(_unknown_arguments(8000))
    proc = subprocess.run([sys.executable, "-m", "nnspec", "check", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{path}:4:18: error[E105]: Dense has no argument `bogus0`")
    assert proc.stderr.count("error[E105]") == MAX_SHOWN
    assert f"{path}: ... and 7,900 more errors not shown (8,000 in all;" in proc.stderr
    assert len(proc.stderr) < 100_000  # was 1.2 GB
    assert max(len(line) for line in proc.stderr.splitlines() if " | " in line) <= MAX_LINE_SHOWN + 12
    listed = subprocess.run([sys.executable, "-m", "nnspec", "check", "--format", "json", str(path)],
                            capture_output=True, text=True, timeout=60)
    (report,) = json.loads(listed.stdout)
    assert len(report["diagnostics"]) == 8000 and listed.returncode == 1


def test_rendering_thousands_of_diagnostics_is_linear():
    result = check_text(_unknown_arguments(4000))
    text, peak = _peak_mib(result.render)
    assert text.count("error[E105]") == MAX_SHOWN and peak < 20  # was 208 MB of text


def test_a_long_line_is_an_excerpt_with_the_carets_under_the_span():
    line = "x" * 5000 + "TARGET" + "y" * 5000
    for col, width in ((5001, 6), (3, 4), (9990, 11)):
        text = render_all([error("E105", "m", Span(1, col, 1, col + width))], "f.nn", line)
        shown, carets = [t.split("| ", 1)[1] for t in text.splitlines()[2:4]]
        assert len(shown) <= MAX_LINE_SHOWN + 6 and shown.startswith("...") == (col > 60)
        at = carets.index("^")
        assert shown[at:at + width] == line[col - 1:col - 1 + width] and carets.count("^") == width


def test_errors_are_shown_before_warnings_when_not_all_fit():
    diags = [error("E100", f"e{i}", Span(2000 + i, 1, 2000 + i, 2)) for i in range(3)]
    from nnspec.diagnostics import warning

    diags = [warning("W201", f"w{i}", Span(i + 1, 1, i + 1, 2)) for i in range(200)] + diags
    text = render_all(diags, "f.nn", "")
    assert text.count("error[E100]") == 3 and text.count("warning[W201]") == MAX_SHOWN - 3
    assert text.endswith("f.nn: ... and 103 more warnings not shown (203 in all; "
                         "`nnspec check --format json` lists every one)")


def test_thousands_of_undefined_names_among_thousands_of_tensors(tmp_path: Path):
    """`did you mean` over every tensor name, for every mistake, was quadratic (2,000 + 2,000: 18 s)."""
    body = "".join(f"        h{i} = x -> Dense(4)\n" for i in range(3000))
    body += "".join(f"        q{i}zz -> Dense(4)\n" for i in range(3000))
    path = tmp_path / "names.nn"
    path.write_text(_spec(body))
    proc = subprocess.run([sys.executable, "-m", "nnspec", "check", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "... and 2,900 more errors and 3,000 more warnings not shown" in proc.stderr
    assert "h18 and 2,981 more\n" in proc.stderr  # the names listed in a help: 20, then a count
