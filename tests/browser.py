"""A real browser for page tests: Debian's chromium, headless, through Selenium and
Debian's chromedriver (never a downloaded one), and the app served by uvicorn on a free
loopback port."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


class _QuietServer(uvicorn.Server):
    """uvicorn in a thread: no signal handlers of its own."""

    def capture_signals(self):  # type: ignore[override]  # noqa: ANN201
        return contextlib.nullcontext()


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` on a free 127.0.0.1 port (the socket is bound before uvicorn starts)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = _QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (bootstrap.sh installs Debian's chromium)"
    if not CHROMEDRIVER.exists():
        return f"no chromedriver at {CHROMEDRIVER} (bootstrap.sh installs chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Debian's chromedriver; never downloads one."""
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="island-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 "--hide-scrollbars"):  # overlay scrollbars, as on a phone
        options.add_argument(flag)
    # The page shows the site's local times; pin the browser's zone so the words are known.
    service = Service(str(CHROMEDRIVER), env={**os.environ, "TZ": "UTC"})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_png(driver: Any) -> bytes:
    """The whole page, not only the viewport."""
    width, height = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    return base64.b64decode(shot["data"])


def to_fixed(x: float, digits: int = 2) -> str:
    """``x`` as the page's JavaScript ``toFixed`` prints it: the exact binary value
    rounded half up (Python's format rounds 3.625 to 3.62, toFixed to 3.63)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP))
