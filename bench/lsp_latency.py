"""How long `nnspec lsp` takes to answer a change: a client process (tests/lsp_client.py) opens a
generated spec of about 1,000 graph nodes (bench/check_speed.py's `layered_spec`), then sends
full-text changes that each alter one layer, and times didChange -> publishDiagnostics (wall
clock, client side, stdio and JSON included), and the CPU time the server process spent on each
change (Linux: /proc/PID/stat), which a busy machine does not inflate as it does the wall clock.
Prints the median and the worst of the runs, and the in-process `check_text` time for comparison.

    .venv/bin/python bench/lsp_latency.py            # 1,000 nodes, 21 changes
    .venv/bin/python bench/lsp_latency.py --nodes 5000 --changes 11

Target (issue 17): under 100 ms for a 1,000-node file.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from check_speed import layered_spec  # noqa: E402
from lsp_client import LspClient  # noqa: E402

from nnspec.pipeline import check_text  # noqa: E402


def cpu_ms(pid: int) -> float | None:
    """The process's user + system CPU time so far, in ms (None where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def in_process_ms(text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        check_text(text)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=21)
    args = ap.parse_args()
    text = layered_spec(args.nodes)
    nodes = len(check_text(text).checked.graph.nodes)
    uri = (ROOT / "bench" / "latency.nn").as_uri()  # never written: the editor's buffer is the text
    client = LspClient()
    client.initialize()
    client.open(uri, text)
    client.diagnostics(uri, 1)
    times, cpu = [], []
    for version in range(2, args.changes + 2):
        changed = text.replace("Dense(32)", f"Dense({32 + version % 5})", 1)  # one edit, as typing makes
        start, cpu_start = time.perf_counter(), cpu_ms(client.proc.pid)
        client.change(uri, changed, version)
        diags = client.diagnostics(uri, version)
        times.append((time.perf_counter() - start) * 1000)
        if cpu_start is not None:
            cpu.append(cpu_ms(client.proc.pid) - cpu_start)
        assert diags == [], diags
    client.close()
    print(f"{nodes} graph nodes, {len(text.splitlines())} lines, {len(times)} changes: "
          f"didChange -> publishDiagnostics median {statistics.median(times):.1f} ms, "
          f"worst {max(times):.1f} ms, best {min(times):.1f} ms")
    if cpu:  # clock ticks are 10 ms: the median of many changes is still a fair estimate
        print(f"server CPU per change: median {statistics.median(cpu):.0f} ms, mean {statistics.mean(cpu):.1f} ms")
    print(f"check_text in this process (same text): median {in_process_ms(text, args.changes):.1f} ms")


if __name__ == "__main__":
    main()
