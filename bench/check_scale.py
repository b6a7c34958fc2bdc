"""How `nnspec check` scales: 1k / 10k / 100k layers, and deep nesting of blocks and brackets.

Prints, for each size, the CPU time (time.process_time, less disturbed by other jobs than the
wall clock) of each front-end phase -- parse, lower, check -- and microseconds per layer; time
that is linear in the size shows as a flat last column. Then 200-deep nesting of blocks (each
block uses the next) and of parentheses, which must check without a RecursionError.

    .venv/bin/python bench/check_scale.py             # 1k, 10k, 100k layers
    .venv/bin/python bench/check_scale.py --sizes 1000 10000
"""
from __future__ import annotations

import argparse
import platform
import time

from nnspec.check import check_spec
from nnspec.diagnostics import Sink
from nnspec.lower import lower
from nnspec.parse import parse_text
from nnspec.pipeline import check_text


def layers_spec(n: int) -> str:
    """n layer statements, alternating Dense and an activation, in one chain, one per line."""
    body = "\n".join("        Dense(16)" if i % 2 == 0 else "        relu" for i in range(n - 1))
    return ("model Scale {\n    input x: [16]\n    layers {\n" + body +
            "\n        Dense(3) -> softmax\n    }\n    loss categorical_crossentropy\n}\n")


def nested_blocks_spec(depth: int) -> str:
    blocks = "".join(f"    block B{i}(n) {{\n        B{i + 1}(n) -> relu\n    }}\n" for i in range(depth))
    blocks += f"    block B{depth}(n) {{\n        Dense(n)\n    }}\n"
    return "model Deep {\n    input x: [4]\n" + blocks + "    layers {\n        B0(8)\n    }\n}\n"


def nested_parens_spec(depth: int) -> str:
    half = depth // 2  # around the layer, and around its argument: `((Dense(((2)))))`
    return ("model Deep {\n    input x: [4]\n    layers {\n        x -> " + "(" * half + "Dense(" + "(" * half
            + "2" + ")" * half + ")" + ")" * half + "\n    }\n}\n")


def phases(text: str) -> tuple[float, float, float, int, int]:
    t0 = time.process_time()
    parsed = parse_text(text)
    t1 = time.process_time()
    sink = Sink()
    spec = lower(parsed.tree, sink)
    t2 = time.process_time()
    checked = check_spec(spec, sink)
    t3 = time.process_time()
    errors = sum(d.is_error for d in checked.diagnostics)
    return t1 - t0, t2 - t1, t3 - t2, len(checked.graph.nodes), errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    args = ap.parse_args()
    print(f"# Python {platform.python_version()} on {platform.machine()}, CPU seconds (process_time)")
    print("| layers | graph nodes | parse s | lower s | check s | total s | µs / layer |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        parse_s, lower_s, check_s, nodes, errors = phases(layers_spec(n))
        assert errors == 0, f"the {n}-layer spec should check cleanly"
        total = parse_s + lower_s + check_s
        print(f"| {n:,} | {nodes:,} | {parse_s:.2f} | {lower_s:.2f} | {check_s:.2f} | {total:.2f} | "
              f"{total / n * 1e6:.0f} |")
    for what, make in (("blocks", nested_blocks_spec), ("parentheses", nested_parens_spec)):
        for depth in (200,):
            t0 = time.process_time()
            result = check_text(make(depth))
            took = time.process_time() - t0
            state = "ok" if result.ok else "; ".join(d.message for d in result.diagnostics if d.is_error)
            print(f"{depth}-deep nesting of {what}: {state} in {took:.2f} s")


if __name__ == "__main__":
    main()
