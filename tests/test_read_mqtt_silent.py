"""`commonwatt read` with six MQTT devices on a real mosquitto, one on a wrong topic.

The devices' last status is retained on the broker (as Zigbee2MQTT and many
Tasmota setups keep it), so it arrives the moment ``read`` subscribes. Waiting
for the silent device must not let the five others age past their freshness:
each is read as its message arrives. (Before, all six failed: the five were read
only after the wait for the sixth, ``fresh_s`` later.)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import parse_config
from controller.wiring import read_all
from simulators.mqtt_devices import payloads

DEVICES = [  # member, kind, format, topic
    ("a", "meter", "tasmota", "meter-a"),
    ("a", "pv", "opendtu", "solar/a"),
    ("c", "pv", "opendtu", "solar/c"),
    ("b", "meter", "shelly-pro3em", "em-b"),
    ("b", "load", "shelly-plug", "plug-b"),
    ("c", "meter", "tasmota", "meter-c"),
]
SILENT = "solar/c"  # configured, but the inverter publishes elsewhere (a typo)


def config_text(port: int) -> str:
    lines = [f"[mqtt]\nport = {port}"]
    for member in ("a", "b", "c"):
        lines.append(f'[[members]]\nid = "{member}"\nname = "{member.upper()}"')
        for m, kind, fmt, topic in DEVICES:
            if m == member:
                lines.append(f'[[members.devices]]\nkind = "{kind}"\nprotocol = "mqtt"\n'
                             f'family = "{fmt}"\ntopic = "{topic}"\nfresh_s = 1.0')
    return "\n".join(lines) + "\n"


def retain_status(port: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="retainer")
    client.connect("127.0.0.1", port)
    client.loop_start()
    values = {"power_w": 730.0, "energy_wh": 5000.0, "import_wh": 4000.0, "export_wh": 10.0,
              "on": True}
    for _, _, fmt, topic in DEVICES:
        base = "solar/c-typo" if topic == SILENT else topic
        for t, payload in payloads(fmt, base, values).items():
            client.publish(t, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_one_silent_topic_does_not_make_the_others_stale(mosquitto: int) -> None:
    retain_status(mosquitto)
    report = asyncio.run(read_all(parse_config(config_text(mosquitto), "coop.toml")))
    by_name = {r["device"]: r for r in report}
    silent = by_name.pop("c/pv")
    assert not silent["ok"] and "stale topic" in silent["error"], silent
    assert all(r["ok"] for r in by_name.values()), [r for r in by_name.values() if not r["ok"]]
    assert len(by_name) == 5
    assert by_name["a/meter"]["values"]["power_w"]["value"] == 730.0


def test_read_command_exit_and_lines(mosquitto: int, tmp_path: Path) -> None:
    retain_status(mosquitto)
    path = tmp_path / "coop.toml"
    path.write_text(config_text(mosquitto))
    out = subprocess.run([sys.executable, "-m", "controller.cli", "read", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert "c/pv" in out.stdout and "stale topic" in out.stdout, out.stdout + out.stderr
    assert out.stdout.count("730") >= 4, out.stdout
