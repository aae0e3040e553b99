"""`commonwatt read`: every device read once; failures named with their reason."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households
from tests.conftest import free_port


def test_read_reports_values_and_names_failures(tmp_path: Path) -> None:
    ready, stop = threading.Event(), threading.Event()
    holder: dict = {}

    def serve() -> None:
        async def main() -> None:
            coop = SimulatedCoop(demo_households(2), SimClock(speed=0))
            await coop.start()
            holder["coop"] = coop
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await coop.stop()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        text = coop_toml(holder["coop"], tmp_path / "l.sqlite")
        host_port = f'port = {holder["coop"].households[1].server.port}\n  unit = 2'
        text = text.replace(host_port, f"port = {free_port()}\n  unit = 2")  # nobody there
        text = text.replace("  unit = 3", "  unit = 9", 1)  # wrong unit id for h01's battery
        config = tmp_path / "coop.toml"
        config.write_text(text)
        out = subprocess.run([sys.executable, "-m", "controller.cli", "read", str(config)],
                             capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        thread.join(30)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "h01/pv" in out.stdout and "power_w" in out.stdout and " W " in out.stdout
    assert "h02/meter" in out.stdout and "refused" in out.stdout
    battery_block = out.stdout.split("h01/battery")[1].split("\n")[1]
    assert "exception 11 (wrong unit id" in battery_block, battery_block
    assert "devices answered" in out.stdout
