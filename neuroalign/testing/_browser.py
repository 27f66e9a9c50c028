"""Open an HTML file in headless Chromium and check it: console errors, images, screenshot,
and the values of expressions evaluated in the loaded page.

Talks to Chromium over its DevTools protocol on ``--remote-debugging-pipe`` (JSON messages
separated by NUL bytes on file descriptors 3 and 4), so it needs no websocket client and no
browser-downloading package: only a Chromium binary (Debian: ``apt-get install chromium``,
or ``scripts/install-chromium.sh``). Nothing touches the network.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrowserCheck", "find_chromium", "check_html", "CHROMIUM_FLAGS"]

#: Flags every run uses. The background-networking ones keep Chromium from reaching out
#: (a closed network refuses those connections and Chromium logs them as errors).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)

_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(img => ({
  src: img.currentSrc || img.src || "", complete: img.complete,
  width: img.naturalWidth, height: img.naturalHeight})))"""


def _short_src(src: str) -> str:
    """An image's address for reports: an inline ``data:`` URL cut to 80 characters (it can
    be megabytes), a file or web address whole (cut, it would no longer say which file)."""
    return src[:80] if src.startswith("data:") else src


@dataclass
class BrowserCheck:
    """What :func:`check_html` saw (a dataclass; fields as parameters).

    Parameters
    ----------
    path : Path
        The page checked.
    console_errors : list of str
        ``console.error``/``console.assert`` calls, uncaught exceptions and browser log
        entries of level error (e.g. a resource that failed to load).
    images : list of dict
        Every ``<img>``: ``src`` (a ``data:`` URL cut to 80 characters, other addresses
        whole), ``complete``, ``width``, ``height``
        (natural size; 0 when the image did not load).
    screenshot : Path or None
        The screenshot written, if any.
    values : dict
        The results of the ``evaluate`` expressions of :func:`check_html` (JSON values).
    """

    path: Path
    console_errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def broken_images(self) -> list[str]:
        return [im["src"] for im in self.images if not (im["complete"] and im["width"] > 0)]

    @property
    def ok(self) -> bool:
        return not self.console_errors and not self.broken_images

    def problems(self) -> str:
        """What went wrong, one line per problem.

        Returns
        -------
        str
            Console errors and images that did not load, or ``"none"``.
        """
        lines = [f"console error: {e}" for e in self.console_errors]
        lines += [f"image did not load: {s}" for s in self.broken_images]
        return "\n".join(lines) or "none"


def find_chromium() -> str | None:
    """``$NEUROALIGN_CHROMIUM`` if set, else ``chromium`` / ``chromium-browser`` /
    ``google-chrome`` on ``PATH``; ``None`` when there is none.

    Returns
    -------
    str or None
        The browser binary.
    """
    env = os.environ.get("NEUROALIGN_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _DevTools:
    """A DevTools protocol connection over the pipe pair of ``--remote-debugging-pipe``."""

    def __init__(self, write_fd: int, read_fd: int, proc: subprocess.Popen) -> None:
        self.write_fd, self.read_fd, self.proc = write_fd, read_fd, proc
        self.buffer = b""
        self.events: list[dict] = []
        self.next_id = 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.write_fd, data):]
        return self.next_id

    def _read_message(self, deadline: float) -> dict | None:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe (exit code {self.proc.poll()!r}).")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send a command and wait for its answer, keeping the events that come first."""
        mid = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                raise TimeoutError(f"Chromium did not answer {method} within {timeout:g} s.")
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"Chromium: {method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if any(e["method"] == method for e in self.events):
            return True
        while True:
            msg = self._read_message(deadline)
            if msg is None:
                return False
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return True

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (msg := self._read_message(deadline)) is not None:
            if "method" in msg:
                self.events.append(msg)


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or above, so that moving it to 3 or 4 clobbers nothing."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def _errors_from(events: list[dict]) -> list[str]:
    errors = []
    for ev in events:
        method, p = ev["method"], ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            errors.append(f"console.{p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = d.get("exception", {}).get("description") or d.get("text", "")
            errors.append(f"uncaught exception: {desc.splitlines()[0] if desc else d}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            errors.append(f"{e.get('source', 'log')}: {e.get('text', '')} {_short_src(e.get('url', ''))}".rstrip())
    return errors


def check_html(path: str | os.PathLike, *, screenshot: str | os.PathLike | None = None,
               width: int = 1200, height: int = 900, timeout: float = 60.0,
               settle: float = 0.5, chromium: str | None = None,
               evaluate: dict[str, str] | None = None) -> BrowserCheck:
    """Open ``path`` in headless Chromium; collect console errors, check every ``<img>``
    loaded (``naturalWidth > 0``) and optionally save a full-page PNG screenshot.

    Parameters
    ----------
    path : path-like
        An HTML file.
    screenshot : path-like, optional
        Where to write the PNG (the whole page, up to 16,000 px tall).
    width, height : int
        Viewport size in CSS pixels.
    timeout : float
        Seconds to wait for Chromium and for the page's load event.
    settle : float
        Seconds to keep listening after the load event (late script errors).
    chromium : str, optional
        The browser binary; default :func:`find_chromium`.
    evaluate : dict of str -> str, optional
        JavaScript expressions evaluated (by the browser's debugger, not by the page) after
        the page loaded and settled, e.g. ``{"title": "document.title"}``; their JSON values
        go to :attr:`BrowserCheck.values`. They run after the page's own scripts, so they see
        what those did.

    Returns
    -------
    BrowserCheck
        Console errors, images, screenshot and evaluated values.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist or no Chromium is found.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"check_html(): {str(path)!r} does not exist.")
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError(
            "check_html(): no Chromium found (set NEUROALIGN_CHROMIUM or install it: "
            "apt-get install chromium, or scripts/install-chromium.sh)."
        )
    to_chrome_r, to_chrome_w = (_high_fd(fd) for fd in os.pipe())
    from_chrome_r, from_chrome_w = (_high_fd(fd) for fd in os.pipe())

    def _child_fds() -> None:  # runs in the child between fork and exec
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    result = BrowserCheck(path=path)
    with tempfile.TemporaryDirectory(prefix="neuroalign-chromium-") as profile:
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, preexec_fn=_child_fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        dt = _DevTools(to_chrome_w, from_chrome_r, proc)
        try:
            target = dt.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = dt.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                dt.call(f"{domain}.enable", session=session)
            dt.call("Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                    session=session)
            dt.events.clear()  # only what the page itself does
            nav = dt.call("Page.navigate", {"url": path.as_uri()}, session=session)
            if nav.get("errorText"):
                result.console_errors.append(f"navigation: {nav['errorText']}")
            if not dt.wait_event("Page.loadEventFired", timeout):
                raise TimeoutError(f"check_html(): {path.name} did not finish loading within {timeout:g} s.")
            dt.drain(settle)
            value = dt.call("Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True},
                            session=session)["result"]["value"]
            result.images = [{**im, "src": _short_src(im["src"])} for im in json.loads(value)]
            for key, expression in (evaluate or {}).items():
                out = dt.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                              session=session)
                if "exceptionDetails" in out:
                    raise RuntimeError(f"check_html(): evaluating {key!r} failed: "
                                       f"{out['exceptionDetails'].get('text', out['exceptionDetails'])}")
                result.values[key] = out["result"].get("value")
            if screenshot is not None:
                size = dt.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
                clip = {"x": 0, "y": 0, "width": max(width, size["width"]),
                        "height": min(max(height, size["height"]), 16000), "scale": 1}
                shot = dt.call("Page.captureScreenshot",
                               {"format": "png", "captureBeyondViewport": True, "clip": clip},
                               session=session, timeout=timeout)
                result.screenshot = Path(screenshot)
                result.screenshot.parent.mkdir(parents=True, exist_ok=True)
                result.screenshot.write_bytes(base64.b64decode(shot["data"]))
            dt.drain(0.05)
            result.console_errors += _errors_from(dt.events)
            try:
                dt.call("Browser.close", timeout=5)
            except (RuntimeError, TimeoutError):
                pass  # closing: it exits below either way
        finally:
            os.close(to_chrome_w)
            os.close(from_chrome_r)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stderr.close()
    return result
