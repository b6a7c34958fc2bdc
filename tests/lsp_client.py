"""A small LSP client over stdio, for the language server's end-to-end tests and its benchmark:
it starts `python -m nnspec.cli lsp` as an editor would, speaks JSON-RPC with Content-Length
framing, and collects the server's notifications (publishDiagnostics) as they arrive."""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class LspClient:
    def __init__(self, cwd: Path = ROOT):
        self.proc = subprocess.Popen([sys.executable, "-m", "nnspec.cli", "lsp"], cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._next_id = 0
        self._inbox: queue.Queue = queue.Queue()
        self.notifications: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    # ------------------------------------------------------------ framing
    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    self._inbox.put(None)  # the server closed its output
                    return
                line = line.strip()
                if not line:
                    break
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            self._inbox.put(json.loads(out.read(int(headers["content-length"]))))

    def _next(self, timeout: float) -> dict:
        message = self._inbox.get(timeout=timeout)
        if message is None:
            raise RuntimeError("the server exited: " + self.proc.stderr.read().decode(errors="replace")[-2000:])
        return message

    # ------------------------------------------------------------ protocol
    def request(self, method: str, params: dict | None, timeout: float = 60) -> dict:
        """Send a request and return its response (`result`, or `error`); notifications that
        arrive meanwhile are kept in `notifications`."""
        self._next_id += 1
        self._send({"id": self._next_id, "method": method, "params": params})
        while True:
            message = self._next(timeout)
            if message.get("id") == self._next_id and "method" not in message:
                return message
            self._keep(message)

    def notify(self, method: str, params: dict) -> None:
        self._send({"method": method, "params": params})

    def wait_for(self, method: str, where=lambda params: True, timeout: float = 60) -> dict:
        """The params of the first notification `method` (already received or next) that `where` accepts."""
        for i, message in enumerate(self.notifications):
            if message["method"] == method and where(message["params"]):
                return self.notifications.pop(i)["params"]
        while True:
            message = self._next(timeout)
            if message.get("method") == method and where(message.get("params")):
                return message["params"]
            self._keep(message)

    def _keep(self, message: dict) -> None:
        if "method" in message and "id" in message:  # a request from the server (e.g. a capability)
            self._send({"id": message["id"], "result": None})
        elif "method" in message:
            self.notifications.append(message)

    def initialize(self) -> dict:
        result = self.request("initialize", {"processId": None, "rootUri": ROOT.as_uri(), "capabilities": {}})
        self.notify("initialized", {})
        return result["result"]

    def open(self, uri: str, text: str, version: int = 1) -> None:
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "nnspec",
                                                              "version": version, "text": text}})

    def change(self, uri: str, text: str, version: int) -> None:
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                               "contentChanges": [{"text": text}]})

    def diagnostics(self, uri: str, version: int, timeout: float = 60) -> list[dict]:
        params = self.wait_for("textDocument/publishDiagnostics",
                               lambda p: p["uri"] == uri and p.get("version") == version, timeout)
        return params["diagnostics"]

    def at(self, method: str, uri: str, line: int, character: int, **extra) -> object:
        params = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, **extra}
        return self.request(method, params)["result"]

    def close(self) -> int:
        """shutdown, exit, and the server's exit status."""
        try:
            self.request("shutdown", None, timeout=30)
            self.notify("exit", {})
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
