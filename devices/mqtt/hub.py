"""MQTT devices: one paho-mqtt 2.x subscriber per broker, and a driver per device.

Messages arrive on paho's network thread and are parsed at once; each value
is stored with its arrival time. A driver read returns the latest values
only while every required value is younger than the device's freshness
timeout; otherwise it fails with "stale topic", so the controller marks the
device unknown exactly as it does for a Modbus device that stops answering.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.kinds import BatteryReading, MeterReading, PvReading, Setpoint
from devices.modbus.transport import DeviceError
from devices.mqtt.access import ANONYMOUS, MqttAccess, refusal_reason
from devices.mqtt.formats import Format, Parser, PayloadError, Values

#: How long an edge agent holds an "on" (it only has to outlive the off it replaces).
AGENT_ON_HOLD_S = 60


@dataclass(frozen=True, slots=True)
class LoadReading:
    """A switchable load (smart plug): power, lifetime energy and relay state."""

    power_w: float | None
    energy_wh: float | None
    on: bool | None


@dataclass(slots=True)
class TopicState:
    """What the newest message on a topic said, and when."""

    values: Values = field(default_factory=dict)
    received: float | None = None
    error: str | None = None
    #: When each value last arrived: a frame may carry only some (Shelly NotifyStatus).
    arrived: dict[str, float] = field(default_factory=dict)


class MqttHub:
    """One connection to a broker, shared by every MQTT device on it."""

    def __init__(self, host: str, port: int, client_id: str = "commonwatt-devices",
                 access: MqttAccess = ANONYMOUS) -> None:
        self.host, self.port = host, port
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        access.apply(self._client)
        #: Why the broker cannot be used (refused login, TLS failure); None once connected.
        self.failure: str | None = None
        self._answered = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self._parsers: dict[str, Parser] = {}
        self.states: dict[str, TopicState] = {}
        self.connected = threading.Event()

    def register(self, topics: dict[str, Parser]) -> None:
        """Listen to ``topics`` (topic → parser); call before or after :meth:`start`."""
        for topic, parser in topics.items():
            self._parsers[topic] = parser
            self.states.setdefault(topic, TopicState())
            if self.connected.is_set():
                self._subscribe(topic)

    def _subscribe(self, topic: str) -> None:
        with self._lock:
            self.subscribed.clear()
            _, mid = self._client.subscribe(topic, qos=0)
            if mid is not None:
                self._pending.add(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: object, properties: object = None) -> None:
        with self._lock:
            self._pending.discard(mid)
            if not self._pending:
                self.subscribed.set()

    def wait_subscribed(self, timeout_s: float = 5.0) -> bool:
        """Block until the broker has acknowledged every subscription."""
        return self.subscribed.wait(timeout_s)

    def start(self, timeout_s: float = 5.0) -> None:
        """Connect and run paho's network loop in its thread.

        The first connection is made here, not in paho's thread, so that a TLS
        or socket error is raised with its cause; paho keeps retrying after it.
        """
        where = f"{self.host}:{self.port}"
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as exc:
            self.failure = f"cannot connect to the MQTT broker at {where}: {exc}"
            self._client.connect_async(self.host, self.port, keepalive=30)
            self._client.loop_start()
            raise DeviceError("refused", self.failure) from None
        self._client.loop_start()
        if not self._answered.wait(timeout_s):
            raise DeviceError("refused", f"no MQTT broker answered at {where}")
        if self.failure is not None:
            raise DeviceError("refused", self.failure)

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: str) -> None:
        """Send a command (QoS 1, not retained: a stale command must never replay)."""
        info = self._client.publish(topic, payload, qos=1, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeviceError("disconnected", f"MQTT publish to {topic} failed (rc {info.rc})")

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: object, properties: object = None) -> None:
        if getattr(reason, "is_failure", False):
            self.failure = (f"the MQTT broker at {self.host}:{self.port} refused the "
                            f"connection: {refusal_reason(reason)}")
            self._answered.set()
            return
        self.failure = None
        for topic in list(self._parsers):
            self._subscribe(topic)
        if not self._parsers:
            self.subscribed.set()
        self.connected.set()
        self._answered.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        parser = self._parsers.get(msg.topic)
        if parser is None:
            return
        state = self.states[msg.topic]
        try:
            values = parser(msg.topic, msg.payload)
        except PayloadError as exc:
            state.error = f"malformed payload: {exc}"
            state.received = time.monotonic()
            return
        if not values:  # a frame about something else (a Shelly NotifyEvent): not a reading
            return
        now = time.monotonic()
        state.values = {**state.values, **values}
        state.arrived.update(dict.fromkeys(values, now))
        state.error = None
        state.received = now


class MqttDevice:
    """A device whose values come from MQTT topics under ``base``."""

    def __init__(self, hub: MqttHub, fmt: Format, base: str, fresh_s: float) -> None:
        self.hub, self.format, self.base, self.fresh_s = hub, fmt, base, fresh_s
        self.topics = fmt.topics(base)
        hub.register(self.topics)

    def values(self) -> Values:
        """Newest values of every topic; raises unless the required ones are fresh."""
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
