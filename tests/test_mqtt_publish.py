"""Members' figures reach a real mosquitto broker, with Home Assistant discovery."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import MqttConfig
from controller.runtime import Runtime
from tests.coop_harness import start_harness


def collect(port: int, topics: list[str], until, timeout_s: float = 10.0) -> dict[str, dict]:
    messages: dict[str, dict] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_connect(c, userdata, flags, reason, properties):
        for t in topics:
            c.subscribe(t)

    def on_message(c, userdata, msg):
        messages[msg.topic] = json.loads(msg.payload)
        if until(messages):
            done.set()

    client.on_connect, client.on_message = on_connect, on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(timeout_s)
    client.loop_stop()
    client.disconnect()
    return messages


def test_runtime_publishes_retained_member_figures(tmp_path: Path, mosquitto: int) -> None:
    async def run() -> Runtime:
        h = await start_harness(tmp_path)
        h.controller.close()
        config = h.config.model_copy(update={"mqtt": MqttConfig(port=mosquitto)})
        runtime = Runtime(config, h.clock.now, nominal_dt_s=h.dt_s)
        runtime.publisher.start()
        try:
            for _ in range(20):
                h.clock.advance(h.dt_s)
                h.coop.step()
                await runtime.cycle_once()
            await asyncio.sleep(0.5)
        finally:
            runtime.publisher.stop()
            runtime.controller.close()
            await h.coop.stop()
        return runtime

    runtime = asyncio.run(run())
    wanted = {"commonwatt/members/h01/state", "commonwatt/coop/state",
              "homeassistant/sensor/commonwatt_h01_liberated_kwh/config"}
    got = collect(mosquitto, ["commonwatt/#", "homeassistant/#"],
                  until=lambda m: wanted <= set(m))
    assert wanted <= set(got), sorted(got)
    totals = runtime.reader.totals("h01")
    liberated = (totals["own_pv_used"] + totals["from_battery_coop"] + totals["from_peers"]
                 + totals["from_coop_battery_coop"])
    assert got["commonwatt/members/h01/state"]["liberated_kwh"] == round(liberated / 1000, 3)
    assert got["commonwatt/members/h01/state"]["intervals"] == 20
    discovery = got["homeassistant/sensor/commonwatt_h01_liberated_kwh/config"]
    assert discovery["state_class"] == "total_increasing"
    assert discovery["unit_of_measurement"] == "kWh"
    assert discovery["state_topic"] == "commonwatt/members/h01/state"
