"""A real browser for the tests: headless Chromium driven over the DevTools protocol.

Just enough to use a web page as a person does: open a URL, wait until a text shows, read the
page's visible text, click what carries a text, type into a box, take a screenshot. Chromium
comes from the system (Debian's `chromium`, which `.ci/run` installs); without it the browser
tests are skipped, unless TUNER_REQUIRE_BROWSER=1 (CI) turns that into a failure.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str:
    """The Chromium binary; skips the test (fails under TUNER_REQUIRE_BROWSER=1) without one."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    message = "no Chromium: `apt-get install -y chromium` (as .ci/run does) runs the browser tests"
    if os.environ.get("TUNER_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


class Browser:
    """One headless Chromium with one tab; `close()` ends the process."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.profile = tempfile.mkdtemp(prefix="tuner-chromium-")
        self.process = subprocess.Popen(
            [chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--hide-scrollbars", "--mute-audio",
             f"--window-size={width},{height}", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._ids = itertools.count(1)
        try:
            port = self._port(60)
            self.socket = websocket.create_connection(self._page(port), timeout=60,
                                                      suppress_origin=True)
            self.call("Page.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _port(self, timeout: float) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    @staticmethod
    def _page(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.loads(answer.read())
        return str(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, wait_for: str | None = None, timeout: float = 90) -> str:
        """Go to `url`; with `wait_for`, until the page's text holds it. Returns the text."""
        self.call("Page.navigate", url=url)
        return self.wait_for(wait_for, timeout) if wait_for else self.text()

    def text(self) -> str:
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def wait_for(self, wanted: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if wanted in text:
                return text
            time.sleep(0.5)
        raise AssertionError(f"{wanted!r} did not show within {timeout:.0f} s; the page says: "
                             f"{text[:1500]!r}")

    def open_menu(self, button: str, shows: str, tries: int = 3, timeout: float = 20) -> str:
        """Click `button` until the page shows `shows` (the menu it opens); the page's text. A
        click that lands while the menu before is still closing is lost (seen once in a full
        run, on a slow moment of MLflow's UI): then Escape, and click again."""
        for attempt in range(tries):
            self.click(button)
            try:
                return self.wait_for(shows, timeout)
            except AssertionError:
                if attempt == tries - 1:
                    raise
                self.key("Escape", 27)
        raise AssertionError("unreachable")

    def wait_until(self, expression: str, timeout: float = 60) -> Any:
        """Until the JavaScript `expression` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"{expression[:120]} stayed false for {timeout:.0f} s")

    def click(self, text: str, selector: str = "button, [role=button], [role=menuitem], "
              "[role=option], [role=tab], a, label, span, div") -> None:
        """Click the innermost element matching `selector` whose own text is `text`."""
        found = self.evaluate(f"""(() => {{
            const all = [...document.querySelectorAll({json.dumps(selector)})]
              .filter(e => e.offsetParent !== null && e.innerText
                           && e.innerText.trim() === {json.dumps(text)});
            const inner = all.filter(e => !all.some(o => o !== e && e.contains(o)));
            if (!inner.length) return false;
            inner[0].scrollIntoView({{block: 'center'}});
            const r = inner[0].getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        }})()""")
        if not found:
            raise AssertionError(f"nothing to click with the text {text!r}; the page says: "
                                 f"{self.text()[:1500]!r}")
        self.mouse_click(*found)

    def scroll_to(self, text: str) -> None:
        """Scroll the innermost element whose own text starts with `text` into view."""
        self.evaluate(f"""(() => {{
            const all = [...document.querySelectorAll('*')].filter(e => e.children.length === 0
              && e.textContent && e.textContent.trim().startsWith({json.dumps(text)}));
            if (all.length) all[0].scrollIntoView({{block: 'start'}});
        }})()""")
        time.sleep(0.5)

    def mouse_click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)

    def type(self, text: str) -> None:
        self.call("Input.insertText", text=text)

    def key(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key,
                      windowsVirtualKeyCode=code, nativeVirtualKeyCode=code)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)


def browser_session() -> Iterator[Browser]:
    browser = Browser()
    try:
        yield browser
    finally:
        browser.close()
