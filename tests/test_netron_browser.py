"""`nnspec viz RUN_DIR --netron` checked in a real browser: headless Chromium (driven by
Playwright) loads the page Netron serves on 127.0.0.1, waits for the graph, and finds every
layer of the spec by its name, a shape on every edge, and the trained model's file; it saves
screenshots in the run folder. Skipped, saying why, without Playwright or Chromium.

Run as a script to refresh the screenshots of the docs:
    .venv/bin/python tests/test_netron_browser.py docs/
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "tiny_resnet.nn"
WAIT_S = 120  # hang guards, not timed assertions: the page draws the graph in seconds
SHAPE = re.compile(r"batch(×\d+)+")  # an edge label: the batch dimension symbolic, the rest numbers


def chromium() -> str | None:
    """The Chromium to drive: $NNSPEC_CHROMIUM, or chromium on the PATH (Debian: apt-get install chromium)."""
    return os.environ.get("NNSPEC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _needs_browser() -> str:
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright is not installed (pip install playwright): the browser check of `viz --netron` needs it")
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set NNSPEC_CHROMIUM): "
                    "the browser check of `viz --netron` needs it")
    for name in ("netron", "onnx", "onnxruntime"):
        pytest.importorskip(name, reason=f"{name} is not installed (pip install 'nnspec[netron]')")
    return browser


def train_small_run(run_dir: Path) -> Path:
    """TinyResNet trained one epoch on a few synthetic images: weights that came from training."""
    from nnspec.pipeline import check_file
    from nnspec.train.run import train_spec

    train_spec(check_file(SPEC), out_dir=run_dir, epochs=1, data="synthetic(n=48, seed=0)", defaults=True)
    return run_dir


def serve(run_dir: Path) -> tuple[subprocess.Popen, str]:
    """`nnspec viz RUN_DIR --netron --port 0 --no-browser`, as a user runs it; its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "nnspec", "viz", str(run_dir), "--netron", "--port", "0",
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, deadline = [], time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"Netron is serving \S+ at (http://127\.0\.0\.1:\d+/)", line)
        if found:
            return proc, found.group(1)
    stop(proc)
    raise AssertionError("viz --netron printed no URL:\n" + "".join(lines))


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # what Ctrl+C does: netron.stop, then exit
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def browse(url: str, browser: str, shots: Path) -> tuple[str, str]:
    """The page's HTML once Netron has drawn the graph, as it opens (operators, shapes on the
    edges) and with View > Show Names (Ctrl+U: the nodes' names in their boxes); a screenshot
    of each, the whole graph, in `shots`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        engine = p.chromium.launch(executable_path=browser)
        try:
            context = engine.new_context(viewport={"width": 1200, "height": 900})
            # Netron asks a first visitor's consent to its usage reports, and sends them to the
            # internet: answer as a returning visitor, and let nothing leave 127.0.0.1.
            context.add_cookies([{"name": "consent", "value": str(int(time.time() * 1000)), "url": url}])
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            page = context.new_page()
            page.goto(url)
            drawn = "svg#canvas[width] .node-item-type"  # a node, in a canvas sized to the laid-out graph
            page.wait_for_selector(drawn, state="attached", timeout=WAIT_S * 1000)
            default = _whole_graph(page, shots / "netron.png")
            page.keyboard.press("Control+U")
            page.wait_for_selector(f"{drawn}:has-text('residual_1.conv2d_1')", state="attached", timeout=WAIT_S * 1000)
            named = _whole_graph(page, shots / "netron_names.png")
        finally:
            engine.close()
    return default, named


def _whole_graph(page, path: Path) -> str:
    """Size the window to the drawn graph, screenshot it, and return the page's HTML.
    (Netron forbids eval in its page, so the DOM is read from its serialised HTML.)"""
    deadline = time.monotonic() + WAIT_S
    while not (size := re.search(r'<svg id="canvas"[^>]*width="(\d+)" height="(\d+)"', page.content())):
        assert time.monotonic() < deadline, "Netron drew no graph"
        page.wait_for_timeout(200)  # the layout of a redrawn graph, done in a worker
    width, height = int(size.group(1)), int(size.group(2))
    page.set_viewport_size({"width": max(800, width + 80), "height": max(600, height + 80)})
    page.wait_for_timeout(500)  # the re-layout of the window, before the picture
    page.screenshot(path=str(path))
    return page.content()


def texts(html: str, pattern: str) -> list[str]:
    return [unescape(t) for t in re.findall(pattern, html)]


def node_tooltips(html: str) -> set[str]:
    return set(texts(html, r"<title>([^<]*)</title>"))


def node_titles(html: str) -> list[str]:
    return texts(html, r'class="node-item node-item-type[^"]*"[^>]*><path[^>]*></path><text[^>]*>([^<]*)</text>')


def edge_labels(html: str) -> list[str]:
    return texts(html, r'class="edge-label"[^>]*><tspan[^>]*>([^<]*)</tspan>')


def layer_names() -> list[str]:
    from nnspec.pipeline import check_file

    return [n.name for n in check_file(SPEC).checked.graph.nodes if n.op != "input"]


def check_in_browser(run_dir: Path, browser: str, shots: Path) -> dict:
    """Serve the run, browse it, assert what Netron shows; returns counts for the report."""
    proc, url = serve(run_dir)
    try:
        default, named = browse(url, browser, shots)
    finally:
        stop(proc)
    names = layer_names()
    assert '<meta name="identifier" content="best.onnx">' in default  # the trained model's file
    tooltips = node_tooltips(default)
    assert [n for n in names if n not in tooltips] == []  # each layer's node, named as in the spec
    labels = edge_labels(default)
    assert labels and [t for t in labels if not SHAPE.fullmatch(t)] == []  # a shape on every edge
    assert len(labels) == default.count('class="edge-path"')
    shown = set(node_titles(named)) | node_tooltips(named)  # a long name is cut short in its box, whole in its tooltip
    assert [n for n in names if n not in shown] == []
    assert {"conv2d_1", "residual_1.conv2d_1", "global_avg_pool_1", "dense_1"} <= set(node_titles(named))
    return {"layers": len(names), "edges": len(labels), "url": url}


@pytest.mark.slow
def test_netron_shows_the_trained_network_by_the_spec_names_in_chromium(tmp_path):
    browser = _needs_browser()
    run_dir = train_small_run(tmp_path / "run")
    check_in_browser(run_dir, browser, run_dir)
    for shot in ("netron.png", "netron_names.png"):
        assert (run_dir / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


if __name__ == "__main__":  # refresh docs/netron_tiny_resnet*.png
    import tempfile

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    with tempfile.TemporaryDirectory() as tmp:
        run = train_small_run(Path(tmp) / "run")
        print(check_in_browser(run, chromium() or sys.exit("no Chromium found"), run))
        from PIL import Image

        for shot, name in (("netron.png", "netron_tiny_resnet.png"), ("netron_names.png", "netron_tiny_resnet_names.png")):
            # flat colours: a 64-colour palette keeps the picture and a fraction of the bytes
            Image.open(run / shot).quantize(64).save(out / name, optimize=True)
        print(f"wrote {out / 'netron_tiny_resnet.png'} and {out / 'netron_tiny_resnet_names.png'}")
