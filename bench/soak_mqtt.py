"""The soak's MQTT households, published from their own process to a real broker.

``python -m bench.soak_mqtt SPEC.json PORT`` publishes households
``modbus..households-1`` of the :class:`~bench.soak_fleet.FleetSpec` once a
second through one paho-mqtt client: an OpenDTU inverter (``solar/<id>``) and a
Shelly Pro 3EM meter (``meter/<id>``), in the payloads of
:func:`simulators.mqtt_devices.payloads`. Faults: ``stale`` and ``dropout``
stop a device publishing, ``garbage`` sends a payload that does not parse.
Prints one JSON line when connected, then publishes until stdin closes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.soak_fleet import FleetSpec
from devices.mqtt.access import unique_client_id
from simulators.mqtt_devices import payloads

PUBLISH_S = 1.0


def topics(member_id: str) -> dict[str, str]:
    """Base topic of each of a household's MQTT devices."""
    return {"pv": f"solar/{member_id}", "meter": f"meter/{member_id}"}


def run(spec: FleetSpec, port: int) -> None:
    """Publish until stdin closes."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_client_id("soak-mqtt-fleet"))
    connected = threading.Event()
    client.on_connect = lambda *a, **k: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("soak_mqtt: no connection to the broker")
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    ids = spec.member_ids
    households = range(spec.modbus, spec.households)
    energy = {i: {"pv": 0.0, "import": 0.0, "export": 0.0} for i in households}
    last = time.time()
    print(json.dumps({"households": len(households)}), flush=True)
    while not stop.is_set():
        now = time.time()
        dt_h, last = (now - last) / 3600, now
        pv, load = spec.power_w(now)
        for i in households:
            e = energy[i]
            meter_w = float(load[i] - pv[i])
            e["pv"] += pv[i] * dt_h
            e["import"] += max(meter_w, 0.0) * dt_h
            e["export"] += max(-meter_w, 0.0) * dt_h
            base = topics(ids[i])
            values = {"pv": payloads("opendtu", base["pv"], {
                          "power_w": float(pv[i]), "energy_wh": e["pv"]}),
                      "meter": payloads("shelly-pro3em", base["meter"], {
                          "power_w": meter_w, "import_wh": e["import"],
                          "export_wh": e["export"]})}
            for device, messages in values.items():
                kind = spec.active(i, device, now)
                if kind in ("stale", "dropout"):
                    continue
                for topic, payload in messages.items():
                    client.publish(topic, "{garbage" if kind == "garbage" else payload)
        stop.wait(max(0.0, PUBLISH_S - (time.time() - now)))
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    run(FleetSpec.load(Path(sys.argv[1])), int(sys.argv[2]))
