"""A headless Chromium driven over the DevTools protocol, with the standard library only.

Enough to open a page, let its scripts run, evaluate JavaScript in it (a click, reading
the DOM) and take a screenshot: what a test needs to act as a user on a React page such
as MLflow's runs table, where ``--dump-dom`` can only read the first paint.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

#: Every headless Chromium here: no GPU, no sandbox (containers), nothing fetched or synced.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium() -> str:
    """The ``chromium`` binary; skips the test where it is missing (fails on CI)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


class Browser:
    """One headless Chromium (its own profile) and its first tab.

    Args:
        executable: The ``chromium`` binary.
        profile: An empty folder for the browser's profile.
        width, height: The window, in CSS pixels.
    """

    def __init__(self, executable: str, profile: Path, width: int = 1400, height: int = 900):
        profile.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [executable, *HEADLESS_FLAGS, f"--window-size={width},{height}",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            port = self._port(profile / "DevToolsActivePort")
            self._sock = self._connect(port)
        except BaseException:
            self.close()
            raise
        self._id = 0
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _port(self, marker: Path, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self._proc.poll() is not None:
                raise RuntimeError("chromium exited before opening its DevTools port")
            time.sleep(0.1)
        raise TimeoutError("chromium opened no DevTools port")

    def _connect(self, port: int) -> socket.socket:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=30) as answer:
            tabs = json.load(answer)
        url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
        path = url.split(f"127.0.0.1:{port}", 1)[1]
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"websocket refused: {head[:200]!r}")
        return sock

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        if n < 126:
            head = bytes([0x81, 0x80 | n])
        elif n < 65536:
            head = bytes([0x81, 0x80 | 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self._sock.sendall(head + mask + body)

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self._sock.recv(n - len(out))
            if not chunk:
                raise EOFError("chromium closed the DevTools connection")
            out += chunk
        return out

    def _receive(self) -> dict[str, Any]:
        message = b""
        while True:
            head = self._exact(2)
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            message += self._exact(n)
            if head[0] & 0x80:
                return dict(json.loads(message.decode()))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events in between are skipped)."""
        self._id += 1
        self._send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def open(self, url: str) -> None:
        """Navigate to ``url``."""
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 120.0) -> Any:
        """Evaluate ``expression`` until it is truthy; its value (errors while the page
        loads count as false)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_s} s: {expression}")
            time.sleep(0.25)

    def screenshot(self, path: Path) -> Path:
        """A PNG of the window."""
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """End the browser (its own process only)."""
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
