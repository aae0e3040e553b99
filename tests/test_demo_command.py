"""The README's demo: `commonwatt demo` serves the API within 60 s and stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_demo_serves_api_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "demo", "--speed", "120", "--port", str(port),
         "--data-dir", str(tmp_path / "demo"), "--start", "15:00"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        while True:
            line = proc.stdout.readline()
            assert line, "demo exited early:\n" + "".join(lines)
            lines.append(line)
            if f"http://127.0.0.1:{port}/" in line:
                break
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
        devices = subprocess.run(
            [sys.executable, "-m", "controller.cli", "devices", "--url",
             f"http://127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True, timeout=30,
        )
        assert devices.returncode == 0, devices.stdout + devices.stderr
        assert "h01/meter" in devices.stdout and "26 of 26 devices ok" in devices.stdout
        assert (tmp_path / "demo" / "coop.toml").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Commonwatt demo stopped." in out
    assert "Traceback" not in out
