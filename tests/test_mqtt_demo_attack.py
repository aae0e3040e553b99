"""Issue 18's measurement replayed on the demo: a client publishes 100,000 nested arrays on
one smart plug's topic, 50 times a second for 10 s. On main the reader died, every MQTT
device stayed stale, /healthz said 200 "degraded", and the log grew by 6,306 tracebacks.

Here the controller (a real `commonwatt demo` process, its own broker) keeps every other
device ok, the plug reads again with its next message, the reader never restarts, and
the log holds at most two lines about it (the first refusal, then the minute's summary
at the stop) and no traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import load_config
from tests.demo_process import running_demo

ROOT = Path(__file__).resolve().parents[1]


def test_nested_payloads_on_a_plug_topic_leave_the_demo_running(tmp_path: Path) -> None:
    samples: list[dict] = []
    with running_demo(tmp_path / "demo", start="12:00") as demo:
        before = demo.wait_healthy()
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
                    samples.append(demo.healthz())
                time.sleep(0.02)
        finally:
            attacker.loop_stop()
            attacker.disconnect()
        # The plug publishes again on its own schedule; wait for every device.
        deadline = time.monotonic() + 30
        after = demo.healthz()
        while time.monotonic() < deadline and after["devices"]["ok"] != n:
            time.sleep(0.5)
            after = demo.healthz()
    out = demo.output
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
