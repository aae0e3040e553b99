"""The driver of one MQTT device: its values from the hub, its commands through it.

A driver read returns the latest values only while every required value is
younger than the device's freshness timeout; otherwise it fails with "stale
topic", so the controller marks the device unknown exactly as it does for a
Modbus device that stops answering.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devices.kinds import BatteryReading, MeterReading, PvReading, Setpoint
from devices.modbus.transport import DeviceError
from devices.mqtt.formats import Format, Values

if TYPE_CHECKING:
    from devices.mqtt.hub import MqttHub

#: How long an edge agent holds an "on" (it only has to outlive the off it replaces).
AGENT_ON_HOLD_S = 60


@dataclass(frozen=True, slots=True)
class LoadReading:
    """A switchable load (smart plug): power, lifetime energy and relay state."""

    power_w: float | None
    energy_wh: float | None
    on: bool | None


class MqttDevice:
    """A device whose values come from MQTT topics under ``base``."""

    def __init__(self, hub: MqttHub, fmt: Format, base: str, fresh_s: float) -> None:
        self.hub, self.format, self.base, self.fresh_s = hub, fmt, base, fresh_s
        self.topics = fmt.topics(base)
        hub.register(self.topics)

    @property
    def refused(self) -> int:
        """Messages on this device's topics that were not read (over a limit, malformed)."""
        totals = self.hub.refusals.totals
        return sum(totals.get(topic, 0) for topic in self.topics)

    def values(self) -> Values:
        """Newest values of every topic; raises unless the required ones are fresh."""
        self.hub.refusals.flush()  # a flood that stopped is still logged, within a minute
        if self.hub.failure is not None:
            raise DeviceError("refused", self.hub.failure)
        now = time.monotonic()
        merged: Values = {}
        ages: dict[str, float] = {}
        for topic in self.topics:
            state = self.hub.states[topic]
            if state.error is not None:
                raise DeviceError("garbage", state.error)
            if state.received is None:
                continue
            for name, value in state.values.items():
                age = now - state.arrived.get(name, state.received)
                if name not in ages or age < ages[name]:  # two topics, one value: newest
                    merged[name] = value
                    ages[name] = age
        for name in self.format.required:
            if name not in merged:
                raise DeviceError("stale topic", f"{self.base}: no {name} received yet")
            if ages[name] > self.fresh_s:
                raise DeviceError("stale topic", f"{self.base}: {name} is {ages[name]:.1f} s old "
                                                 f"(limit {self.fresh_s:g} s)")
        return merged

    def _get(self, values: Values, name: str) -> float | None:
        value = values.get(name)
        return None if value is None or isinstance(value, bool) else float(value)

    async def read_meter(self) -> MeterReading:
        """Meter values (import > 0)."""
        v = self.values()
        return MeterReading(self._get(v, "power_w"), self._get(v, "import_wh"),
                            self._get(v, "export_wh"))

    async def read_pv(self) -> PvReading:
        """PV production."""
        v = self.values()
        return PvReading(self._get(v, "power_w"), self._get(v, "energy_wh"))

    async def read_battery(self) -> BatteryReading:
        """Battery values from a generic JSON topic (no control over MQTT)."""
        v = self.values()
        g = self._get
        return BatteryReading(g(v, "power_w"), g(v, "soc_pct"), g(v, "capacity_wh"),
                              g(v, "max_charge_w"), g(v, "max_discharge_w"))

    async def write_setpoint(self, setpoint: Setpoint | None) -> None:
        """A battery command to an edge agent, expiring with the setpoint (``None``: idle now).

        The agent holds it until ``expires_at`` and drops it when the coop goes
        silent; ``seq`` orders commands so a replayed one is refused.
        """
        topic = self.format.setpoint_topic(self.base)
        if topic is None:
            raise DeviceError("not controllable", f"{self.format.name} batteries take no setpoint")
        now = time.time()
        power, expires = (0.0, now) if setpoint is None else (setpoint.power_w,
                                                               now + setpoint.expires_s)
        self.hub.publish(topic, json.dumps({"seq": time.time_ns(), "kind": "battery",
                                            "power_w": power, "expires_at": expires}))

    async def read_load(self) -> LoadReading:
        """A switchable load's power, energy and relay state."""
        v = self.values()
        on = v.get("on")
        return LoadReading(self._get(v, "power_w"), self._get(v, "energy_wh"),
                           on if isinstance(on, bool) else None)

    async def switch(self, on: bool, revert_after_s: int | None = None) -> bool:
        """Turn the relay on or off (load shedding); True if the device will revert by itself.

        With ``revert_after_s`` an off (or on) is sent as the format's timed
        command, which the device undoes after that many seconds (Shelly
        ``toggle_after``, Tasmota ``RuleTimer``); an on cancels a pending
        revert. A format without one gets the plain command and returns False.
        """
        if self.format.setpoints:
            return self._agent_switch(on, revert_after_s)
        timed = self.format.timed
        if timed is not None and (revert_after_s is not None or on):
            self.hub.publish(*timed(self.base, on, revert_after_s))
            return revert_after_s is not None
        topic = self.format.command_topic(self.base)
        if topic is None or self.format.command is None:
            raise DeviceError("not controllable", f"{self.format.name} devices cannot switch")
        self.hub.publish(topic, self.format.command[1] if on else self.format.command[2])
        return False

    def _agent_switch(self, on: bool, revert_after_s: int | None) -> bool:
        """A load switch to an edge agent, as an expiring command (like a setpoint).

        The agent holds an off until ``expires_at`` and switches the load back
        on then, or as soon as the coop goes silent: it always reverts by itself.
        The load is named as the agent names it, ``<member>/<leaf of the topic>``
        (``coop/c/agents/m1/live/load1`` → ``m1/load1``).
        """
        topic = self.format.setpoint_topic(self.base)
        parts = self.base.split("/")
        if topic is None or len(parts) != 6 or parts[4] != "live":
            raise DeviceError("not controllable", f"{self.base}: expected the topic "
                              "coop/<coop>/agents/<member>/live/<load>")
        now = time.time()
        hold_s = revert_after_s if revert_after_s is not None else AGENT_ON_HOLD_S
        self.hub.publish(topic, json.dumps({"seq": time.time_ns(), "kind": "load",
                                            "load": f"{parts[3]}/{parts[5]}", "on": on,
                                            "expires_at": now + hold_s}))
        return True
