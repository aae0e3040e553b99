"""``commonwatt read``: the installer's wiring check.

Reads every configured device once and reports each value with its unit and
age, or, for a device that does not answer, its name and the reason (refused,
timeout, wrong unit id, no SunSpec marker, stale topic, garbage).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from controller.config import CoopConfig
from controller.polling import PolledDevice, Poller
from devices.modbus.transport import DeviceError
from devices.mqtt.hub import MqttDevice

UNITS = {"power_w": "W", "import_wh": "Wh", "export_wh": "Wh", "energy_wh": "Wh",
         "soc_pct": "%", "capacity_wh": "Wh", "max_charge_w": "W", "max_discharge_w": "W"}


async def read_all(config: CoopConfig) -> list[dict[str, Any]]:
    """One read of every device: values with units and age, or the reason it failed."""
    poller = Poller(config)
    try:
        early = {id(d) for d in await _first_messages(poller)}
        if poller.started:
            await poller.read_devices([d for d in poller.devices if id(d) not in early])
        else:
            await poller.poll()  # reports a broker that cannot be reached, per device
    finally:
        poller.close()
    now = time.monotonic()
    report = []
    for device in poller.devices:
        health = device.health
        ok = health.consecutive_failures == 0 and device.reading is not None
        entry: dict[str, Any] = {"device": health.name, "endpoint": health.endpoint,
                                 "ok": ok}
        if ok:
            age = round(now - (health.last_good or now), 3)
            entry["values"] = {
                name: {"value": value, "age_s": age,
                       "unit": UNITS.get(name, "") if _numeric(value) else ""}
                for name, value in asdict(device.reading).items()
            }
        else:
            entry["error"] = health.last_error
            # A silent MQTT device is most often a setting on the device: say which.
            if isinstance(device.driver, MqttDevice) and device.driver.format.notes:
                entry["notes"] = list(device.driver.format.notes)
        report.append(entry)
    return report


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _first_messages(poller: Poller) -> list[PolledDevice]:
    """MQTT devices publish on their own schedule: wait (up to their freshness) for each
    one's first message, and read each as soon as it has one. Returns the devices read.

    Each is read when its message arrives, not all at the end: waiting for a silent
    device (a wrong topic) must not let the others' messages grow stale meanwhile.
    """
    mqtt = [d for d in poller.devices if d.config.protocol == "mqtt"]
    if not mqtt:
        return []
    try:
        await poller.start()
    except DeviceError:
        return []  # the poll reports the broker as refused, per device
    deadline = time.monotonic() + min(max(d.config.fresh_s for d in mqtt), 15.0)
    waiting = list(mqtt)
    while waiting and time.monotonic() < deadline:
        ready = [d for d in waiting if _has_values(d)]
        if ready:
            await poller.read_devices(ready)
            waiting = [d for d in waiting if all(d is not r for r in ready)]
        await asyncio.sleep(0.1)
    return [d for d in mqtt if all(d is not w for w in waiting)]


def _has_values(device: PolledDevice) -> bool:
    try:
        device.driver.values()
    except DeviceError:
        return False
    return True


def _word(value: object) -> str:
    """A value as the installer reads it: numbers compact, booleans yes/no, text as is
    (a grid-former's ``grid = "on"``)."""
    if value is None:
        return "—"
    if isinstance(value, bool):  # before numbers: True is an int, and printed "1"
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:g}"
    return str(value)


def format_report(report: list[dict[str, Any]]) -> str:
    """Plain text, one device per block."""
    lines = []
    for entry in report:
        status = "OK" if entry["ok"] else "FAILED"
        lines.append(f"{entry['device']:<20} {entry['endpoint']}  {status}")
        if entry["ok"]:
            for name, v in entry["values"].items():
                lines.append(f"    {name:<16} {_word(v['value']):>12} {v['unit']:<3} "
                             f"(age {v['age_s']:.2f} s)")
        else:
            lines.append(f"    {entry['error']}")
            lines += [f"    note: {note}" for note in entry.get("notes", [])]
    failed = sum(not e["ok"] for e in report)
    lines.append(f"{len(report) - failed} of {len(report)} devices answered")
    return "\n".join(lines)
