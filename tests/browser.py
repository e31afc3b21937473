"""A minimal headless Chromium driven over the Chrome DevTools Protocol, for the UI tests.

Chromium (the Debian package, `/usr/bin/chromium`) is started with a throw-away profile and
`--remote-debugging-port=0`; the port it picked is read from the profile's DevToolsActivePort
file, and one page target is driven through its websocket with the `websockets` sync client.
Only what the tests need is here: navigate, evaluate JavaScript, poll it, take screenshots.
Chromium runs in its own process group, which is killed as a whole on exit.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH, HEIGHT = 1600, 1000
# what the page looks like, leaving text out: every element's tag, classes and inline style
SHAPE_JS = """Array.from(document.body.querySelectorAll('*'))
  .map(e => e.tagName + '.' + e.getAttribute('class') + ';' + e.getAttribute('style'))
  .join('|')"""


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools command failed."""


def _kill_group(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)
    # the wrapper may be gone while renderers of its group linger
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Chromium:
    """Headless Chromium with one page; use as a context manager."""

    def __init__(self, start_timeout: float = 60) -> None:
        self.start_timeout = start_timeout
        self.profile: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._stack = ExitStack()

    def __enter__(self) -> Chromium:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        self.proc = subprocess.Popen(
            [
                str(CHROMIUM),
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        port = None
        while port is None:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium wrote no {active} in {self.start_timeout}s")
            lines = active.read_text().split() if active.exists() else []
            if len(lines) >= 2:
                port = int(lines[0])
            else:
                time.sleep(0.2)
        page = None
        while page is None:
            if time.monotonic() > deadline:
                raise BrowserError("chromium listed no page target")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
            except OSError:
                pages = []
            if pages:
                page = pages[0]
            else:
                time.sleep(0.2)
        url = page["webSocketDebuggerUrl"]
        self.ws = self._stack.enter_context(
            connect(url, max_size=None, open_timeout=30, ping_interval=None)
        )
        self.send("Page.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )

    def close(self) -> None:
        if self.ws is not None:
            self.ws = None
            try:
                self._stack.close()
            except Exception:
                pass  # the browser is killed next anyway
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc = None
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        """Send one DevTools command and return its result (events meanwhile are dropped)."""
        assert self.ws is not None, "chromium is not running"
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer in {timeout}s")
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if message.get("id") != call_id:
                continue
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            return message.get("result", {})

    def navigate(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def add_init_script(self, source: str) -> None:
        """Run `source` in every document this page loads, before the page's own scripts."""
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def poll(
        self,
        expression: str,
        problems: Callable[[Any], list[str]],
        timeout: float = 90,
        interval: float = 1,
    ) -> Any:
        """Evaluate `expression` until `problems(value)` is empty; returns that value.

        Raises AssertionError with the last problems and value after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
                found = problems(value)
            except BrowserError as err:  # mid-navigation: the context is being replaced
                value, found = None, [str(err)]
            if not found:
                return value
            if time.monotonic() > deadline:
                shown = json.dumps(value, indent=1)[-4000:]
                raise AssertionError(f"after {timeout}s: {found}; last value: {shown}")
            time.sleep(interval)

    def settle(self, quiet: float = 3, timeout: float = 30) -> bool:
        """Wait until the page's elements are unchanged for `quiet` seconds; False on timeout.

        Dagster fills in asset status in batches after the names are there; a picture taken
        before that shows grey nodes. Only tags, classes and inline styles count: text such as
        "Loaded 10 seconds ago" changes every second.
        """
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            try:
                now = self.evaluate(SHAPE_JS)
            except BrowserError:
                now = None
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
            time.sleep(0.5)
        return False

    def screenshot(self, *paths: Path) -> bytes:
        """A PNG of the viewport, written to every path given (folders are created)."""
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return data
