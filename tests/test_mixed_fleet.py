"""A coop wired with vendor templates and MQTT devices, polled by the controller.

One fault test per injected fault (sentinel values, counter reset, stale MQTT
topic, malformed payload): the device is marked unknown within its timeout
(or, for a counter reset, the drop is not booked), the other devices go on,
no exception escapes, and recovery is automatic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from controller.config import parse_config
from controller.polling import Poller
from controller.wiring import read_all
from devices.templates.schema import template
from simulators.clock import SimClock
from simulators.household import HouseholdSpec
from simulators.mqtt_devices import SimulatedMqttDevice
from simulators.template_device import TemplateHousehold
from tests.conftest import free_port

HOUSE = HouseholdSpec("a", "A", pv_kwp=6, annual_kwh=4000, battery_wh=10_000,
                      battery_max_w=5000, soc_start_pct=60)
FLAT = HouseholdSpec("b", "B", pv_kwp=0, annual_kwh=2500)


@dataclass
class Rig:
    huawei: TemplateHousehold
    sdm: TemplateHousehold
    dtu: SimulatedMqttDevice
    plug: SimulatedMqttDevice
    poller: Poller


def config_text(huawei: int, sdm: int, broker: int) -> str:
    return f"""
[controller]
stale_after_s = 0.6
[mqtt]
port = {broker}
[[members]]
id = "a"
name = "House A"
devices = [
  {{ kind = "pv", family = "huawei-sun2000", host = "127.0.0.1", port = {huawei} }},
  {{ kind = "meter", family = "huawei-sun2000", host = "127.0.0.1", port = {huawei} }},
  {{ kind = "battery", family = "huawei-sun2000", host = "127.0.0.1", port = {huawei} }},
]
[[members]]
id = "b"
name = "Flat B"
devices = [
  {{ kind = "meter", family = "eastron-sdm630", host = "127.0.0.1", port = {sdm} }},
  {{ kind = "pv", protocol = "mqtt", family = "opendtu", topic = "solar/1141", fresh_s = 0.6 }},
  {{ kind = "load", protocol = "mqtt", family = "shelly-plug", topic = "plug-b", fresh_s = 5 }},
]
"""


@asynccontextmanager
async def rig(broker: int) -> AsyncIterator[Rig]:
    clock = SimClock(start_s=12 * 3600, speed=0)
    huawei = TemplateHousehold(template("huawei-sun2000"), HOUSE, free_port(), clock)
    sdm = TemplateHousehold(template("eastron-sdm630"), FLAT, free_port(), clock)
    await huawei.start()
    await sdm.start()
    dtu = SimulatedMqttDevice("opendtu", "solar/1141", broker)
    plug = SimulatedMqttDevice("shelly-plug", "plug-b", broker)
    config = parse_config(config_text(huawei.server.port, sdm.server.port, broker))
    poller = Poller(config)
    await poller.start()
    try:
        yield Rig(huawei, sdm, dtu, plug, poller)
    finally:
        poller.close()
        dtu.close()
        plug.close()
        await huawei.stop()
        await sdm.stop()


def states(r: Rig) -> dict[str, str]:
    return {h["name"]: h["state"] for h in r.poller.health()}


async def poll(r: Rig) -> None:
    r.dtu.publish(power_w=420.0, energy_wh=1_000_000.0)
    r.plug.publish(power_w=60.0, energy_wh=5000.0)
    await asyncio.sleep(0.1)
    await r.poller.poll()


def test_templates_and_mqtt_devices_fill_one_process_image(mosquitto: int) -> None:
    async def run() -> None:
        async with rig(mosquitto) as r:
            await poll(r)
            assert set(states(r).values()) == {"ok"}, r.poller.health()
            image = r.poller.freeze(time.time())
            assert image.pv_w[1] == 420.0
            assert image.pv_w[0] == pytest.approx(r.huawei.physics.pv_w(12 * 3600)[0], abs=1)
            assert image.soc_pct[0] == pytest.approx(60.0, abs=0.1)
            assert np.isnan(image.soc_pct[1])
            load = next(d for d in r.poller.devices if d.config.kind == "load")
            assert load.reading.power_w == 60.0 and load.reading.on is True

    asyncio.run(run())


def test_sentinel_values_mark_only_that_device_unknown_and_it_recovers(
        mosquitto: int, reliability) -> None:
    row = reliability("sentinel", "A Modbus meter (Eastron SDM, float32) reading its 'no value'"
                      " sentinel (NaN) is a bad value, not 0 W: that device alone goes unknown,"
                      " the household's other devices stay ok, and it recovers by itself")

    async def run() -> None:
        async with rig(mosquitto) as r:
            await poll(r)
            r.sdm.image.set("meter", "power_w", None)  # float NaN, the SDM's "no value"
            await poll(r)
            error = next(h["last_error"] for h in r.poller.health() if h["name"] == "b/meter")
            assert "garbage" in error
            await asyncio.sleep(0.7)
            await poll(r)
            s = states(r)
            assert s["b/meter"] in ("unknown", "backoff")
            assert s["a/meter"] == s["b/pv"] == s["a/battery"] == "ok"
            r.sdm.step()  # the meter answers with numbers again
            await asyncio.sleep(2.1)  # first back-off is 2 s
            await poll(r)
            assert states(r)["b/meter"] == "ok"
            row.observed = (f"b/meter {s['b/meter']} with {error!r}; a/meter, b/pv, a/battery "
                            "ok; b/meter ok again after its 2 s back-off")

    asyncio.run(run())


def test_a_counter_reset_is_reported_and_not_booked(mosquitto: int, reliability) -> None:
    row = reliability("counter-reset", "A meter's import counter going back (meter replaced or"
                      " reset) is reported as an event, the device stays ok, and the jump is"
                      " never booked as energy: only the Wh counted on either side are")

    async def run() -> None:
        async with rig(mosquitto) as r:
            r.sdm.image.set("meter", "import_wh", 1_500_000.0)
            await poll(r)
            r.sdm.image.set("meter", "import_wh", 1_500_400.0)
            await poll(r)
            r.sdm.image.set("meter", "import_wh", 12.0)  # meter replaced / reset
            await poll(r)
            r.sdm.image.set("meter", "import_wh", 112.0)
            await poll(r)
            health = next(h for h in r.poller.health() if h["name"] == "b/meter")
            assert health["state"] == "ok"
            assert "import_wh counter went back from 1500400 to 12" in health["last_event"]
            assert health["counters"]["counter_resets"] == 1
            assert health["counters"]["counted_wh"]["import_wh"] == pytest.approx(500.0, abs=1)
            row.observed = (f"1500000 → 1500400 → 12 → 112 Wh: state {health['state']}, event "
                            f"{health['last_event']!r}, resets "
                            f"{health['counters']['counter_resets']}, counted "
                            f"{health['counters']['counted_wh']['import_wh']:.0f} Wh (400 + 100)")

    asyncio.run(run())


def test_a_stale_topic_marks_the_device_unknown_within_its_timeout(
        mosquitto: int, reliability) -> None:
    row = reliability("mqtt-stale", "An MQTT device (OpenDTU) whose topic stops updating is"
                      " marked unknown after its freshness limit, its value leaves the process"
                      " image (NaN, not the last value), the others stay ok, and it recovers")

    async def run() -> None:
        async with rig(mosquitto) as r:
            await poll(r)
            r.dtu.stale = True
            await asyncio.sleep(0.7)
            await poll(r)
            health = next(h for h in r.poller.health() if h["name"] == "b/pv")
            assert health["state"] != "ok" and "stale topic" in health["last_error"]
            pv = r.poller.freeze(time.time()).pv_w[1]
            assert np.isnan(pv)
            assert states(r)["a/pv"] == "ok"
            r.dtu.stale = False
            await asyncio.sleep(2.1)
            await poll(r)
            assert states(r)["b/pv"] == "ok"
            row.observed = (f"after 0.7 s silent: b/pv {health['state']} "
                            f"({health['last_error']!r}), pv_w {pv}; a/pv ok; b/pv ok again "
                            "once it published")

    asyncio.run(run())


def test_wiring_check_names_a_silent_mqtt_device(mosquitto: int) -> None:
    async def run() -> None:
        async with rig(mosquitto) as r:
            r.dtu.stale = True
            report = await read_all(r.poller.config)
            dtu = next(e for e in report if e["device"] == "b/pv")
            assert not dtu["ok"] and "stale topic" in dtu["error"]
            assert next(e for e in report if e["device"] == "a/battery")["ok"]

    asyncio.run(run())


def test_shutdown_releases_batteries_without_a_device_watchdog() -> None:
    async def run() -> None:
        sim = TemplateHousehold(template("goodwe-et"), HOUSE, free_port(), SimClock(speed=0))
        await sim.start()
        config = parse_config(f"""
[[members]]
id = "a"
name = "A"
devices = [
  {{ kind = "meter", family = "goodwe-et", host = "127.0.0.1", port = {sim.server.port} }},
  {{ kind = "battery", family = "goodwe-et", host = "127.0.0.1", port = {sim.server.port} }},
]
""")
        poller = Poller(config)
        try:
            await poller.write_setpoints(np.array([-1000.0]), np.array([True]), 10)
            assert sim.last_command is not None and sim.last_command.action == "charge"
            await poller.release_batteries()
            assert sim.last_command.action == "release"  # EMS mode 1, auto
        finally:
            poller.close()
            await sim.stop()

    asyncio.run(run())
