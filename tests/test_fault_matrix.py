"""Fault-matrix rows no other test covers: an MQTT broker restart, and a spoofed
out-of-range MQTT value (its current behaviour, which branch mqttcfg changes). The other
rows are recorded by the tests that already exercise them (see tests/reliability.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.mqtt_devices import payloads
from tests.conftest import free_port, wait_for_port
from tests.test_mixed_fleet import poll, rig, states


class Broker:
    """A real mosquitto on one 127.0.0.1 port that can be stopped and started again."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto-restart.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_a_broker_restart_is_survived_and_the_devices_come_back(broker: Broker,
                                                                reliability) -> None:
    row = reliability("broker-restart", "The MQTT broker stops and starts again: the MQTT"
                      " devices go unknown while it is away (their last values are not reused),"
                      " the Modbus devices stay ok, and the controller reconnects, subscribes"
                      " again and reads the MQTT devices without a restart")

    async def run() -> dict[str, object]:
        async with rig(broker.port) as r:
            await poll(r)
            assert states(r)["b/pv"] == "ok"
            broker.stop()
            down = time.monotonic()
            await asyncio.sleep(0.8)  # past the device's 0.6 s freshness limit
            await r.poller.poll()
            away = states(r)
            pv_away = float(r.poller.freeze(time.time()).pv_w[1])
            broker.start()
            back = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if r.dtu._client.is_connected() and r.poller.factory.hub.connected.is_set():
                    r.dtu.publish(power_w=430.0, energy_wh=1_000_100.0)
                    await asyncio.sleep(0.1)
                    await r.poller.poll()
                    if states(r)["b/pv"] == "ok":
                        back = time.monotonic() - down
                        break
                await asyncio.sleep(0.2)
            return {"away": away, "pv_away": pv_away, "back": back,
                    "pv_back": float(r.poller.freeze(time.time()).pv_w[1])}

    seen = asyncio.run(run())
    away = seen["away"]
    assert away["b/pv"] != "ok" and np.isnan(seen["pv_away"]), away
    assert away["a/meter"] == away["b/meter"] == "ok", "the Modbus devices are unaffected"
    assert seen["back"] is not None, "the MQTT device never came back after the restart"
    assert seen["pv_back"] == pytest.approx(430.0)
    row.observed = (f"broker away: b/pv {away['b/pv']}, pv_w NaN; a/meter and b/meter ok; "
                    f"b/pv ok again reading {seen['pv_back']:.0f} W, {seen['back']:.1f} s "
                    "after the broker went down (paho's reconnect, subscriptions renewed)")


def test_a_spoofed_out_of_range_value_is_refused(mosquitto: int, reliability) -> None:
    row = reliability(
        "spoofed-value", "A reading beyond the device's rating or the member's main fuse"
        " (max_import_w) is refused as implausible, the reason named; it is never booked")

    async def run() -> tuple[float, str, float]:
        async with rig(mosquitto) as r:
            await poll(r)
            spoofer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anonymous-spoofer")
            spoofer.connect("127.0.0.1", mosquitto)
            spoofer.loop_start()
            try:
                for topic, payload in payloads("opendtu", "solar/1141",
                                               {"power_w": 999_000.0,
                                                "energy_wh": 1_000_000.0}).items():
                    spoofer.publish(topic, payload, qos=1).wait_for_publish(5)
                await asyncio.sleep(0.2)
                await r.poller.poll()
                pv_w = float(r.poller.freeze(time.time()).pv_w[1])
                error = next(h["last_error"] for h in r.poller.health()
                             if h["name"] == "b/pv")
            finally:
                spoofer.loop_stop()
                spoofer.disconnect()
            return pv_w, str(error), 999_000.0

    pv_w, error, spoofed = asyncio.run(run())
    assert pv_w != spoofed, f"the spoofed {spoofed:.0f} W reached the process image"
    assert "implausible" in error, error
    row.observed = (f"an anonymous client's 999 kW on solar/1141: process image pv_w "
                    f"{pv_w:.0f} W (not the spoofed value); b/pv: {error[:100]!r}")
