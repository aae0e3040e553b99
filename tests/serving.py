"""Simulators served on their own event loop in a thread, and the `commonwatt` command run
as a user runs it: for tests where the CLI (which runs its own loop) talks to simulated
devices over real Modbus and MQTT."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serving(make: Callable[[], Any]) -> Iterator[Any]:
    """Start what ``make()`` builds (anything with async ``start``/``stop``, e.g. a
    ``SimulatedCoop``) on its own event loop in a thread; stop it at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = asyncio.run_coroutine_threadsafe(_start(make), loop).result(30)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _start(make: Callable[[], Any]) -> Any:
    sim = make()
    await sim.start()
    return sim


def commonwatt(*args: str, cwd: Path = ROOT, timeout: float = 300
               ) -> subprocess.CompletedProcess[str]:
    """``commonwatt ARGS`` in a new process, from ``cwd``; output captured as text."""
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
