"""The README's demo: `commonwatt demo` serves the API within 60 s and stops cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.demo_process import running_demo, start_demo

ROOT = Path(__file__).resolve().parents[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_demo_serves_api_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    started = time.monotonic()
    demo = start_demo(tmp_path / "demo", speed=120, start="15:00")
    port = demo.port
    try:
        assert f"http://127.0.0.1:{port}/" in demo.banner
        assert time.monotonic() - started < 60
        members = get(f"http://127.0.0.1:{port}/api/v1/members")
        assert len(members) == 10
        deadline = time.monotonic() + 30
        energy = {}
        while time.monotonic() < deadline:
            energy = get(f"http://127.0.0.1:{port}/api/v1/coop/summary")
            if energy["intervals"] >= 5 and energy["liberated_kwh"] > 0:
                break
            time.sleep(0.5)
        assert energy["liberated_kwh"] > 0
        assert energy["liberated_kwh"] <= energy["served_kwh"]
        health = get(f"http://127.0.0.1:{port}/healthz")
        assert health["status"] == "ok", health
        # a token made while the demo runs counts at once
        config = str(tmp_path / "demo" / "coop.toml")
        made = subprocess.run(
            [sys.executable, "-m", "controller.cli", "token", "create", config, "--role",
             "installer", "--label", "test installer", "--expires", "10m"],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        devices = subprocess.run(
            [sys.executable, "-m", "controller.cli", "devices", "--url",
             f"http://127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True, timeout=30,
            env={**os.environ, "COMMONWATT_TOKEN": made.stdout.splitlines()[-1]},
        )
        assert devices.returncode == 0, devices.stdout + devices.stderr
        # 25 Modbus devices (h07 has no PV, so no inverter) and 3 smart plugs over MQTT
        assert "h01/meter" in devices.stdout and "28 of 28 devices ok" in devices.stdout
        assert "h03/load" in devices.stdout, devices.stdout
        assert (tmp_path / "demo" / "coop.toml").exists()
    finally:
        out = demo.stop()
    assert demo.proc.returncode == 0, out
    assert "Commonwatt demo stopped." in out
    assert "Traceback" not in out


def _run_demo(data_dir: Path, *extra: str, seconds: float = 8.0) -> str:
    with running_demo(data_dir, *extra, speed=600) as demo:
        time.sleep(seconds)
    out = demo.banner + demo.output
    assert demo.proc.returncode == 0, out
    return out


def test_a_restarted_demo_continues_its_ledger_and_fresh_starts_over(tmp_path: Path) -> None:
    from controller.ledger import LedgerReader

    data = tmp_path / "demo"
    _run_demo(data, "--start", "10:00")
    first = LedgerReader(data / "ledger.sqlite")
    first_start, first_end, _ = first.span()
    until = first.booked_until()
    assert first_end is not None and until is not None
    out = _run_demo(data)
    assert "(continued)" in out
    again = LedgerReader(data / "ledger.sqlite")
    start, end, count = again.span()
    assert start == first_start and end > first_end  # the same chain, carried on
    assert count == (end - start) // again.step  # contiguous: no interval missing or twice
    # the restart continued on the simulated clock where the ledger stopped (a short gap)
    assert again.totals()["gap_s_coop"] < 0.5 * (end - start)
    _run_demo(data, "--fresh", "--start", "10:00", seconds=2.0)
    fresh = LedgerReader(data / "ledger.sqlite")
    assert fresh.span()[2] < count  # a new ledger: the old chain is gone
