"""Shelly Pro 3EM factory MQTT output and Tasmota's import counter, on a real mosquitto.

Shelly API docs (gen2/General/Notifications; gen2/ComponentsAndServices/Mqtt):
factory settings send NotifyStatus frames on ``<prefix>/events/rpc`` (``rpc_ntf``
on); ``status/<component>`` needs "Generic status update" (``status_ntf``, off).
A NotifyStatus carries only what changed, so a frame without ``em:0`` is no reading.
Tasmota docs: the ``ENERGY`` object of ``tele/<topic>/SENSOR`` carries ``Total``
(kWh, lifetime) next to ``Today``/``Yesterday`` (reset daily).
"""

from __future__ import annotations

import asyncio
import json
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import parse_config
from controller.polling import Poller
from devices.modbus.transport import DeviceError
from devices.mqtt.formats import FORMATS
from devices.mqtt.hub import MqttDevice, MqttHub
from simulators.mqtt_devices import SimulatedMqttDevice
from tests.test_mqtt_devices import reads, until


@pytest.mark.parametrize("generic_status", [False, True], ids=["factory-events-rpc",
                                                             "generic-status"])
def test_pro3em_is_read_from_either_channel(mosquitto: int, generic_status: bool) -> None:
    hub = MqttHub("127.0.0.1", mosquitto)
    hub.start()
    device = MqttDevice(hub, FORMATS["shelly-pro3em"], "shellypro3em-c8f09e", fresh_s=5.0)
    sim = SimulatedMqttDevice("shelly-pro3em", "shellypro3em-c8f09e", mosquitto,
                              generic_status=generic_status)
    try:
        assert hub.wait_subscribed()
        sim.publish(power_w=-1234.5, import_wh=81_000.0, export_wh=12_500.0)
        until(reads(device, "power_w", -1234.5))
        until(reads(device, "export_wh", 12_500.0))
        reading = asyncio.run(device.read_meter())
        assert (reading.power_w, reading.import_wh, reading.export_wh) == (
            -1234.5, 81_000.0, 12_500.0)
        seen = {t for t, s in hub.states.items() if s.received is not None}
        assert seen == ({"shellypro3em-c8f09e/status/em:0", "shellypro3em-c8f09e/status/emdata:0"}
                        if generic_status else {"shellypro3em-c8f09e/events/rpc"})
    finally:
        sim.close()
        hub.stop()


def test_notify_status_without_em_is_ignored_not_an_error(mosquitto: int) -> None:
    hub = MqttHub("127.0.0.1", mosquitto)
    hub.start()
    device = MqttDevice(hub, FORMATS["shelly-pro3em"], "pro3em-garage", fresh_s=1.0)
    sim = SimulatedMqttDevice("shelly-pro3em", "pro3em-garage", mosquitto)
    try:
        assert hub.wait_subscribed()
        sim.publish(power_w=400.0, import_wh=10.0, export_wh=0.0)
        until(reads(device, "power_w", 400.0))
        state = hub.states["pro3em-garage/events/rpc"]
        first = state.received
        sim.publish_notification("NotifyStatus", {"wifi": {"rssi": -61}})
        sim.publish_notification("NotifyEvent", {"events": [{"component": "sys",
                                                             "event": "scheduled_restart"}]})
        sim.publish_notification("NotifyStatus", {"em:0": {"id": 0, "a_current": 1.2}})
        time.sleep(0.3)
        assert state.error is None
        assert state.received == first  # not a reading: the old power does not look fresh
        assert device.values()["power_w"] == 400.0
        time.sleep(1.0)  # only wifi/events since: the power ages out as it should
        with pytest.raises(DeviceError, match="stale"):
            device.values()
        # A frame with only the counters refreshes the counters, not the old power.
        sim.publish_notification("NotifyStatus", {"emdata:0": {"id": 0, "total_act": 11.0}})
        until(lambda: hub.states["pro3em-garage/events/rpc"].values.get("import_wh") == 11.0)
        with pytest.raises(DeviceError, match="power_w is .* old"):
            device.values()
    finally:
        sim.close()
        hub.stop()


def test_tasmota_meter_import_counter_reaches_the_process_image(mosquitto: int) -> None:
    config = parse_config(f"""
[mqtt]
port = {mosquitto}
[[members]]
id = "m1"
name = "Flat 1"
[[members.devices]]
kind = "meter"
protocol = "mqtt"
family = "tasmota"
topic = "tasmota_E4B2C1"
fresh_s = 10.0
""")
    poller = Poller(config)
    sensor = {"Time": "2026-11-26T01:30:00",
              "ENERGY": {"TotalStartTime": "2025-03-01T10:00:00", "Total": 1523.417,
                         "Yesterday": 7.212, "Today": 3.104, "Period": 2, "Power": 655,
                         "ApparentPower": 700, "ReactivePower": 240, "Factor": 0.94,
                         "Voltage": 231, "Current": 3.03}}
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tasmota-E4B2C1")
    publisher.connect("127.0.0.1", mosquitto)
    publisher.loop_start()

    async def run() -> None:
        await poller.start()
        publisher.publish("tele/tasmota_E4B2C1/SENSOR", json.dumps(sensor),
                          qos=1).wait_for_publish(5)
        for _ in range(100):
            await poller.poll()
            if poller.devices[0].reading is not None:
                return
            await asyncio.sleep(0.05)

    try:
        asyncio.run(run())
        image = poller.freeze(time.time())
        assert image.import_wh[0] == pytest.approx(1_523_417.0)  # Total, not Today
        assert image.meter_w[0] == 655.0
    finally:
        poller.close()
        publisher.disconnect()
        publisher.loop_stop()


def test_read_of_a_silent_pro3em_prints_the_installer_notes(mosquitto: int) -> None:
    from controller.wiring import format_report, read_all

    config = parse_config(f"""
[mqtt]
port = {mosquitto}
[[members]]
id = "m1"
name = "Flat 1"
[[members.devices]]
kind = "meter"
protocol = "mqtt"
family = "shelly-pro3em"
topic = "shellypro3em-silent"
fresh_s = 0.5
""")
    report = asyncio.run(read_all(config))
    assert not report[0]["ok"] and "stale topic" in report[0]["error"]
    text = format_report(report)
    assert "note: " in text and "events/rpc" in text and "Generic status update" in text
