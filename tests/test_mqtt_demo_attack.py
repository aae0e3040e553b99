"""Issue 18's measurement replayed on the demo: a client publishes 100,000 nested arrays on
one smart plug's topic, 50 times a second for 10 s. On main the reader died, every MQTT
device stayed stale, /healthz said 200 "degraded", and the log grew by 6,306 tracebacks.

Here the controller (a real `commonwatt demo` process, its own broker) keeps every other
device ok, the plug reads again with its next message, the reader never restarts, and
the log holds at most two lines about it (the first refusal, then the minute's summary
at the stop) and no traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import load_config
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def healthz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def test_nested_payloads_on_a_plug_topic_leave_the_demo_running(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "demo", "--speed", "60", "--port", str(port),
         "--data-dir", str(tmp_path / "demo"), "--start", "12:00"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[dict] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the demo exited early"
            if "Press Ctrl-C" in line:
                break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and healthz(port).get("status") != "ok":
            time.sleep(0.5)
        before = healthz(port)
        assert before["status"] == "ok", before
        n = sum(before["devices"].values())  # every device of the demo's config (28 today)
        config = load_config(tmp_path / "demo" / "coop.toml")
        assert config.mqtt is not None
        plugs = [str(d.topic) for m in config.members for d in m.devices
                 if d.protocol == "mqtt"]
        assert len(plugs) == 3, plugs
        attacker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="attacker-nested")
        config.mqtt.access().apply(attacker)  # any client allowed on one device topic
        attacker.connect(config.mqtt.host, config.mqtt.port)
        attacker.loop_start()
        nested = b"[" * 100_000 + b"]" * 100_000
        sent = 0
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < 10:
                attacker.publish(f"{plugs[0]}/status/switch:0", nested, qos=0)
                sent += 1
                if sent % 25 == 0:
                    samples.append(healthz(port))
                time.sleep(0.02)
        finally:
            attacker.loop_stop()
            attacker.disconnect()
        # The plug publishes again on its own schedule; wait for every device.
        deadline = time.monotonic() + 30
        after = healthz(port)
        while time.monotonic() < deadline and after["devices"]["ok"] != n:
            time.sleep(0.5)
            after = healthz(port)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    during = [s["devices"]["ok"] for s in samples]
    assert min(during) >= n - 1, during  # at most the attacked plug
    assert all(s["mqtt_reader"]["state"] == "running" for s in samples)
    assert after["devices"]["ok"] == n and after["status"] == "ok", after
    reader = after["mqtt_reader"]
    assert reader["restarts"] == 0 and reader["client_id"] == before["mqtt_reader"]["client_id"]
    assert reader["messages_refused"] >= sent * 0.9, (reader, sent)
    log_lines = [line for line in out.splitlines() if "refused and not read" in line]
    assert 1 <= len(log_lines) <= 2, log_lines
    assert "Traceback" not in out and "RecursionError" not in out
    print(f"{sent} nested payloads in 10 s: {reader['messages_refused']} refused, devices ok "
          f"during: min {min(during)} of {n}; {len(log_lines)} log lines; "
          f"{len(out.encode())} bytes of demo output")
