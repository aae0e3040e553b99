"""MQTT device formats against a real mosquitto on 127.0.0.1, with faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from devices.modbus.transport import DeviceError
from devices.mqtt.formats import FORMATS, Format, PayloadError, json_path_format
from devices.mqtt.hub import MqttDevice, MqttHub
from simulators.mqtt_devices import SimulatedMqttDevice


def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@contextmanager
def one_device(port: int, sim_format: str, base: str,
               fmt: Format | None = None) -> Iterator[tuple[MqttDevice, SimulatedMqttDevice]]:
    """A hub with one device on ``base`` and its simulator, subscribed and ready."""
    hub = MqttHub("127.0.0.1", port)
    hub.start()
    device = MqttDevice(hub, fmt or FORMATS[sim_format], base, fresh_s=5.0)
    sim = SimulatedMqttDevice(sim_format, base, port)
    assert hub.wait_subscribed()
    try:
        yield device, sim
    finally:
        sim.close()
        hub.stop()


def reads(device: MqttDevice, name: str, want: float) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return device.values().get(name) == pytest.approx(want)
        except DeviceError:
            return False
    return check


@pytest.mark.parametrize(
    ("fmt", "base", "kind"),
    [("shelly-pro3em", "shellypro3em-a1", "meter"), ("shelly-plug", "plug-kitchen", "load"),
     ("tasmota", "tasmota_meter", "meter"), ("opendtu", "solar/114182345678", "pv"),
     ("zigbee2mqtt", "zigbee2mqtt/washer", "load")],
)
def test_formats_read_power_and_energy(mosquitto: int, fmt: str, base: str, kind: str) -> None:
    with one_device(mosquitto, fmt, base) as (device, sim):
        sim.publish(power_w=812.5, energy_wh=123_400.0, import_wh=5000.0, export_wh=700.0)
        until(reads(device, "power_w", 812.5))
        values = device.values()
        if fmt == "shelly-pro3em":
            until(reads(device, "import_wh", 5000.0))
            reading = asyncio.run(device.read_meter())
            assert (reading.power_w, reading.export_wh) == (812.5, 700.0)
        else:
            assert values["energy_wh"] == pytest.approx(123_400.0)


@pytest.mark.parametrize(("fmt", "base"), [("shelly-plug", "plug-dryer"),
                                          ("zigbee2mqtt", "zigbee2mqtt/heatpump"),
                                          ("tasmota", "boiler")])
def test_switches_obey_commands(mosquitto: int, fmt: str, base: str) -> None:
    with one_device(mosquitto, fmt, base) as (device, sim):
        sim.publish(power_w=1500.0, energy_wh=1.0)
        until(reads(device, "power_w", 1500.0))
        asyncio.run(device.switch(False))
        until(reads(device, "power_w", 0.0))
        assert sim.values["on"] is False
        if fmt != "tasmota":
            assert asyncio.run(device.read_load()).on is False
        asyncio.run(device.switch(True))
        until(reads(device, "power_w", 1500.0))


def test_generic_json_path(mosquitto: int) -> None:
    fmt = json_path_format({"power_w": "data.power", "energy_wh": "data.energy_kwh"},
                           {"energy_wh": 1000.0})
    with one_device(mosquitto, "json", "home/heatpump/state", fmt) as (device, sim):
        sim.publish(power_w=2100.0, energy_wh=4_500_000.0)
        until(reads(device, "energy_wh", 4_500_000.0))


def test_stale_topic_and_malformed_payload_mark_the_device_unknown(
        mosquitto: int, reliability) -> None:
    row = reliability("mqtt-malformed", "A malformed payload on a device's topic (Shelly Pro 3EM)"
                      " makes that device unknown with the topic named, never a crash or a"
                      " stale value; the next good payload restores it")
    hub = MqttHub("127.0.0.1", mosquitto)
    hub.start()
    device = MqttDevice(hub, FORMATS["shelly-pro3em"], "em-1", fresh_s=0.5)
    other = MqttDevice(hub, FORMATS["opendtu"], "dtu/1", fresh_s=5.0)
    sim = SimulatedMqttDevice("shelly-pro3em", "em-1", mosquitto)
    sim_other = SimulatedMqttDevice("opendtu", "dtu/1", mosquitto)
    assert hub.wait_subscribed()
    try:
        with pytest.raises(DeviceError, match="stale topic"):
            device.values()  # nothing received yet
        sim.publish(power_w=100.0)
        sim_other.publish(power_w=50.0, energy_wh=10.0)
        until(reads(device, "power_w", 100.0))
        sim.stale = True
        time.sleep(0.7)
        with pytest.raises(DeviceError, match=r"stale topic.*limit 0.5 s"):
            device.values()
        assert other.values()["power_w"] == 50.0  # the rest keeps running
        sim.stale = False
        sim.publish(power_w=120.0)
        until(reads(device, "power_w", 120.0))  # recovers on its own
        sim.publish_malformed()
        until(lambda: hub.states["em-1/events/rpc"].error is not None)
        with pytest.raises(DeviceError, match="malformed payload.*em-1/events/rpc") as bad:
            device.values()
        assert other.values()["power_w"] == 50.0
        sim.publish(power_w=130.0)
        until(reads(device, "power_w", 130.0))
        row.observed = (f"values() raised {str(bad.value)[:120]!r}; the other device read 50 W; "
                        "the next good payload read 130 W")
    finally:
        sim.close()
        sim_other.close()
        hub.stop()


@pytest.mark.parametrize(
    ("fmt", "topic", "payload", "names"),
    [
        ("shelly-pro3em", "x/status/em:0", b'{"total_act_power": "abc"}', "total_act_power"),
        ("shelly-pro3em", "x/status/em:0", b'{"a_act_power": 1}', "total_act_power"),
        ("shelly-pro3em", "x/events/rpc",
         b'{"method": "NotifyStatus", "params": {"em:0": {"total_act_power": "abc"}}}',
         "params.em:0.total_act_power"),
        ("opendtu", "x/0/power", b"nan", "power_w"),
        ("zigbee2mqtt", "z", b'{"state": "MAYBE", "power": 1}', "state"),
        ("tasmota", "tele/t/SENSOR", b"not json", "not JSON"),
    ],
)
def test_bad_payloads_name_the_field(fmt: str, topic: str, payload: bytes, names: str) -> None:
    parser = next(p for suffix, p in FORMATS[fmt].subscriptions.items()
                  if topic.endswith(suffix))
    with pytest.raises(PayloadError, match=names):
        parser(topic, payload)


@pytest.mark.parametrize("meter_format", ["shelly-pro3em", "tasmota"])
def test_physics_driven_mqtt_household(mosquitto: int, meter_format: str) -> None:
    from simulators.clock import SimClock
    from simulators.household import HouseholdSpec
    from simulators.mqtt_devices import MqttHousehold

    clock = SimClock(start_s=12 * 3600, speed=0)
    house = MqttHousehold(HouseholdSpec("f1", "Flat", pv_kwp=0.8, annual_kwh=2000), mosquitto,
                          clock, meter_format)
    hub = MqttHub("127.0.0.1", mosquitto)
    hub.start()
    meter = MqttDevice(hub, FORMATS[meter_format], "meter-f1", fresh_s=5.0)
    pv = MqttDevice(hub, FORMATS["opendtu"], "solar/f1", fresh_s=5.0)
    assert hub.wait_subscribed()
    try:
        house.step()
        clock.advance(600)
        house.step()
        t = clock.now()
        until(reads(pv, "power_w", round(float(house.physics.pv_w(t)[0]), 1)))
        until(reads(meter, "power_w", float(house.physics.meter_w(t)[0])))
        assert 0 < pv.values()["power_w"] <= 800
    finally:
        house.close()
        hub.stop()
