"""A real `commonwatt demo` process for tests: started, waited for, read and stopped.

Several tests run the demo as a user would (its own simulated coop, broker and API on
loopback). They share this one way of starting it, waiting for its banner, reading
``/healthz`` and stopping it with Ctrl-C, so that a change to the demo's start-up is
made once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
BANNER_END = "Press Ctrl-C"


@dataclass
class Demo:
    """A running demo: its process, API port, the banner it printed, and (once stopped)
    everything it printed after the banner."""

    proc: subprocess.Popen[str]
    port: int
    banner: str
    output: str = field(default="")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz(self) -> dict:
        """``/healthz`` as JSON, whether it answers 200 or 503 (same body)."""
        return healthz(self.port)

    def wait_healthy(self, timeout_s: float = 60) -> dict:
        """Wait until every device answers (``status`` ok); return the last health."""
        deadline = time.monotonic() + timeout_s
        health = self.healthz()
        while time.monotonic() < deadline and health.get("status") != "ok":
            time.sleep(0.5)
            health = self.healthz()
        return health

    def stop(self, timeout_s: float = 60) -> str:
        """Ctrl-C, as a user stops it; return what it printed after the banner."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=timeout_s)
        self.output = out or ""
        return self.output


def healthz(port: int) -> dict:
    """The controller's ``/healthz`` body on loopback (a 503 carries the same body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def start_demo(data_dir: Path, *args: str, speed: float = 60, start: str | None = None,
               port: int | None = None, cwd: Path = ROOT, timeout_s: float = 90) -> Demo:
    """Start `commonwatt demo` on a free loopback port and wait for its banner."""
    port = port or free_port()
    command = [sys.executable, "-m", "controller.cli", "demo", "--speed", f"{speed:g}",
               "--port", str(port), "--data-dir", str(data_dir), *args]
    if start is not None:
        command += ["--start", start]
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while BANNER_END not in (lines[-1] if lines else ""):
        line = proc.stdout.readline() if proc.stdout else ""
        if not line or time.monotonic() > deadline:
            proc.kill()
            rest, _ = proc.communicate(timeout=30)
            raise AssertionError("the demo did not start:\n" + "".join(lines) + (rest or ""))
        lines.append(line)
    return Demo(proc, port, "".join(lines))


@contextmanager
def running_demo(data_dir: Path, *args: str, **options: object) -> Iterator[Demo]:
    """A demo that is stopped (Ctrl-C) however the block ends; ``demo.output`` then
    holds what it printed after the banner."""
    demo = start_demo(data_dir, *args, **options)  # type: ignore[arg-type]
    try:
        yield demo
    finally:
        demo.stop()
