"""How fast the front end is: parse + lower + check of generated N-layer specs in-process
(median of 7 runs at 1,000 layers, of 3 above), and `nnspec check` on a small spec as a command (wall clock, median of 5).

    .venv/bin/python bench/check_speed.py            # 1,000 / 10,000 / 100,000 layers
    .venv/bin/python bench/check_speed.py --quick    # 1,000 / 10,000 layers
    .venv/bin/python bench/check_speed.py --lark     # the same with every parse done by Lark
                                                     # (no fast path: nnspec/fastparse.py)

Targets (issue 2): 1,000 layers under 50 ms in-process; `nnspec check` on a small spec under
0.3 s; cost linear in the number of layers (the per-layer column should stay flat).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnspec import parse  # noqa: E402
from nnspec.parse import parse_text  # noqa: E402
from nnspec.pipeline import check_text  # noqa: E402


def layered_spec(n_nodes: int) -> str:
    """A valid spec whose checked graph has n_nodes operations (layers, activations and adds,
    each a node of its own, as `nnspec summary` lists them), in groups of five:
    Dense -> relu, a named Dropout, and `h + h -> LayerNorm()`, so every part of the checker
    is exercised. Rounded to a multiple of 5, plus the Dense(10) -> softmax head."""
    lines = ["model Deep {", "    input x: [32]", "    layers {"]
    for _ in range(max(n_nodes // 5 - 1, 0)):
        lines += ["        Dense(32) -> relu", "        h = Dropout(0.1)", "        h + h -> LayerNorm()"]
    lines += ["        Dense(10) -> softmax", "    }", "    loss categorical_crossentropy",
              "    optimizer Adam(lr=0.001)", "    metrics [accuracy]", "}"]
    return "\n".join(lines) + "\n"


def spec_with_nodes(target: int) -> tuple[str, int]:
    text = layered_spec(target)
    result = check_text(text)
    assert result.ok, result.render()
    return text, len(result.checked.graph.nodes) - len(result.checked.graph.inputs)


def median_time(fn, repeats: int = 3) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of fn() over `repeats` runs. CPU time is reported too
    because wall time on a shared machine also measures the neighbours."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def command_wall(spec: Path, repeats: int = 5, lark_only: bool = False) -> float:
    exe = Path(sys.executable).with_name("nnspec")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nnspec"]
    env = dict(os.environ, NNSPEC_LARK_ONLY="1" if lark_only else "")
    subprocess.run(cmd + ["check", "-q", str(spec)], check=True, capture_output=True, env=env)  # warm the caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd + ["check", "-q", str(spec)], check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 100,000-layer spec")
    ap.add_argument("--lark", action="store_true", help="parse with Lark only, without the fast path")
    args = ap.parse_args()
    parse.FAST_PATH = not args.lark
    print(f"parser: {'Lark only' if args.lark else 'fast path (nnspec/fastparse.py), Lark for what it refuses'}")
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    parse_text(layered_spec(10))  # build the parser once, as a long-lived process would
    print(f"{'nodes':>8} {'lines':>8} {'parse ms':>9} {'parse+check ms':>15} {'(cpu ms)':>9} {'us/node':>8}")
    for size in sizes:
        text, nodes = spec_with_nodes(size)
        repeats = 7 if size <= 1_000 else 3  # a small spec's run is short: take more of them
        parse_s, _ = median_time(lambda: parse_text(text), repeats)
        total_s, total_cpu = median_time(lambda: check_text(text), repeats)
        print(f"{nodes:>8,} {text.count(chr(10)):>8,} {parse_s * 1e3:>9.1f} {total_s * 1e3:>15.1f} "
              f"{total_cpu * 1e3:>9.1f} {total_s / nodes * 1e6:>8.1f}")
    small = ROOT / "specs" / "iris_mlp.nn"
    print(f"\n`nnspec check {small.relative_to(ROOT)}` as a command: {command_wall(small, lark_only=args.lark) * 1e3:.0f} ms wall (median of 5)")
    print(f"load average while measuring: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
