"""Simulated MQTT energy devices publishing to a real broker on 127.0.0.1.

Each device publishes the payloads its real counterpart sends (Shelly Gen2
status JSON, Tasmota ``tele/…/SENSOR``, OpenDTU plain values, Zigbee2MQTT
JSON, or a generic JSON document) and obeys on/off commands like the real
relay. Faults: ``stale`` stops publishing, :meth:`publish_malformed` sends a
broken payload, and a lower energy value than before is a counter reset.

Plugs also obey the timed commands Commonwatt sheds with: a Shelly
``Switch.Set`` with ``toggle_after`` on ``<base>/rpc``, and a Tasmota
``Backlog0`` of ``Power``/``RuleTimer8`` with the revert rule installed
(``tasmota_rule``). The revert happens on the device's clock (:meth:`tick`).
"""

from __future__ import annotations

import json
import re
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.mqtt.access import ANONYMOUS, MqttAccess, unique_client_id
from simulators.clock import SimClock
from simulators.household import HouseholdPhysics, HouseholdSpec


def _shelly_pro3em(base: str, v: dict[str, float | bool], generic_status: bool,
                   ) -> dict[str, str]:
    """A Pro 3EM's MQTT output: NotifyStatus on ``events/rpc`` (factory setting), and
    ``status/em:0``/``status/emdata:0`` only with "Generic status update" on."""
    power = float(v.get("power_w", 0.0))
    em = {"id": 0, "total_act_power": power, "a_act_power": power / 3}
    emdata = {"id": 0, "total_act": v.get("import_wh", 0.0),
              "total_act_ret": v.get("export_wh", 0.0)}
    if generic_status:
        return {f"{base}/status/em:0": json.dumps(em),
                f"{base}/status/emdata:0": json.dumps(emdata)}
    frame = {"src": base, "dst": f"{base}/events", "method": "NotifyStatus",
             "params": {"ts": 1764158400.12, "em:0": em, "emdata:0": emdata}}
    return {f"{base}/events/rpc": json.dumps(frame)}


def payloads(fmt: str, base: str, v: dict[str, float | bool],
             generic_status: bool = False) -> dict[str, str]:
    """Topic → payload of one status update in ``fmt`` (Commonwatt units in ``v``).

    ``generic_status``: a Shelly with "Generic status update over MQTT" switched on.
    """
    power, energy = float(v.get("power_w", 0.0)), float(v.get("energy_wh", 0.0))
    on = bool(v.get("on", True))
    if fmt == "shelly-pro3em":
        return _shelly_pro3em(base, v, generic_status)
    if fmt == "shelly-plug":
        return {f"{base}/status/switch:0": json.dumps(
            {"id": 0, "output": on, "apower": power if on else 0.0,
             "aenergy": {"total": energy}})}
    if fmt == "tasmota":
        return {f"tele/{base}/SENSOR": json.dumps(
            {"Time": "2026-11-25T12:00:00", "ENERGY": {"Total": energy / 1000.0,
                                                       "Power": power if on else 0.0}})}
    if fmt == "opendtu":
        return {f"{base}/0/power": f"{power:.1f}", f"{base}/0/yieldtotal": f"{energy / 1000:.3f}"}
    if fmt == "zigbee2mqtt":
        return {base: json.dumps({"state": "ON" if on else "OFF", "power": power if on else 0.0,
                                  "energy": energy / 1000.0, "linkquality": 120})}
    return {base: json.dumps({"data": {"power": power, "energy_kwh": energy / 1000.0}})}


COMMANDS = {
    "shelly-plug": ("/command/switch:0", {"on": True, "off": False}),
    "zigbee2mqtt": ("/set", None),
    "tasmota": ("POWER", {"ON": True, "OFF": False}),
}


class SimulatedMqttDevice:
    """One simulated device on a broker."""

    def __init__(self, fmt: str, base: str, port: int, host: str = "127.0.0.1",
                 clock: SimClock | None = None, tasmota_rule: bool = True,
                 access: MqttAccess = ANONYMOUS, generic_status: bool = False) -> None:
        self.fmt, self.base = fmt, base
        self.generic_status = generic_status
        self.values: dict[str, float | bool] = {"on": True}
        self.stale = False
        self.clock = clock or SimClock(start_s=0.0)
        self.tasmota_rule = tasmota_rule
        self.revert: tuple[float, bool] | None = None  # (clock time, relay state then)
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=unique_client_id(f"sim-{fmt}"))
        access.apply(self._client)
        self._client.on_message = self._on_command
        self._ready = threading.Event()
        self._client.on_connect = lambda *a, **k: self._subscribe()
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._ready.wait(5):
            raise TimeoutError(f"simulated {fmt} could not reach the broker on port {port}")

    def _command_topic(self) -> str | None:
        if self.fmt not in COMMANDS:
            return None
        suffix = COMMANDS[self.fmt][0]
        return f"cmnd/{self.base}/POWER" if self.fmt == "tasmota" else f"{self.base}{suffix}"

    def _timed_topic(self) -> str | None:
        if self.fmt == "shelly-plug":
            return f"{self.base}/rpc"
        return f"cmnd/{self.base}/Backlog0" if self.fmt == "tasmota" else None

    def _subscribe(self) -> None:
        for topic in (self._command_topic(), self._timed_topic()):
            if topic:
                self._client.subscribe(topic, qos=1)
        self._ready.set()

    def _on_command(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode(errors="replace").strip()
        with self._lock:
            if msg.topic == self._timed_topic():
                self._timed(text)
            else:
                table = COMMANDS[self.fmt][1]
                if table is None:
                    state = json.loads(text).get("state", "")
                    self._set(str(state).upper() == "ON")
                elif text in table:
                    self._set(table[text])
        self._send(wait=False)  # on paho's thread: waiting here would deadlock

    def _set(self, on: bool, revert_s: float | None = None) -> None:
        """Switch the relay; a new command replaces a pending revert."""
        self.values["on"] = on
        self.revert = None if revert_s is None else (self.clock.now() + revert_s, not on)

    def _timed(self, text: str) -> None:
        if self.fmt == "shelly-plug":  # {"method": "Switch.Set", "params": {...}}
            frame = json.loads(text)
            if frame.get("method") == "Switch.Set":
                params = frame["params"]
                self._set(bool(params["on"]), params.get("toggle_after"))
            return
        for command in (c.strip() for c in text.split(";")):  # Tasmota Backlog0
            if m := re.fullmatch(r"Power1? (ON|OFF)", command, re.IGNORECASE):
                self.values["on"] = m.group(1).upper() == "ON"
            elif m := re.fullmatch(r"RuleTimer8 (\d+)", command, re.IGNORECASE):
                seconds = int(m.group(1))
                self.revert = ((self.clock.now() + seconds, True)
                               if seconds and self.tasmota_rule else None)

    def tick(self, wait: bool = True) -> bool:
        """Apply a revert that is due on the clock (and publish); True if one was.

        ``wait=False`` on an event loop that also runs the broker (waiting would block it)."""
        with self._lock:
            if self.revert is None or self.clock.now() < self.revert[0]:
                return False
            self.values["on"], self.revert = self.revert[1], None
        self._send(wait=wait)
        return True

    def publish(self, wait: bool = True, **values: float | bool) -> None:
        """Update values and publish a status message, unless the device is stale
        (``wait=False``: see :meth:`tick`)."""
        self.values.update(values)
        self._send(wait=wait)

    def _send(self, wait: bool) -> None:
        if self.stale:
            return
        for topic, payload in payloads(self.fmt, self.base, self.values,
                                       self.generic_status).items():
            info = self._client.publish(topic, payload, qos=1)
            if wait:
                info.wait_for_publish(5)

    def publish_notification(self, method: str, params: dict[str, object]) -> None:
        """A Shelly Gen2 notification frame on ``events/rpc`` (e.g. one about Wi-Fi only)."""
        frame = {"src": self.base, "dst": f"{self.base}/events", "method": method,
                 "params": {"ts": self.clock.now(), **params}}
        self._client.publish(f"{self.base}/events/rpc", json.dumps(frame),
                             qos=1).wait_for_publish(5)

    def publish_malformed(self) -> None:
        """A fault: the status topic carries something that is not the expected payload."""
        for topic in payloads(self.fmt, self.base, self.values, self.generic_status):
            self._client.publish(topic, b"{\"power\": \"NaN-ish\"", qos=1).wait_for_publish(5)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


class MqttHousehold:
    """A household whose meter and PV report over MQTT, driven by the household physics.

    The grid meter is a Shelly Pro 3EM (or Tasmota) and the PV a Hoymiles
    micro-inverter behind OpenDTU, the usual retrofit in a flat or terrace.
    """

    def __init__(self, spec: HouseholdSpec, broker_port: int, clock: SimClock,
                 meter_format: str = "shelly-pro3em", host: str = "127.0.0.1",
                 access: MqttAccess = ANONYMOUS) -> None:
        self.clock = clock
        self.physics = HouseholdPhysics([spec])
        self.meter = SimulatedMqttDevice(meter_format, f"meter-{spec.member_id}", broker_port,
                                         host, access=access)
        self.pv = SimulatedMqttDevice("opendtu", f"solar/{spec.member_id}", broker_port, host,
                                      access=access)

    def step(self) -> None:
        """Advance the physics to the clock and publish one status message per device."""
        t = self.clock.now()
        p = self.physics
        p.advance_to(t)
        self.pv.publish(power_w=float(p.pv_w(t)[0]), energy_wh=float(p.pv_wh[0]))
        self.meter.publish(power_w=float(p.meter_w(t)[0]), import_wh=float(p.import_wh[0]),
                           export_wh=float(p.export_wh[0]), energy_wh=float(p.import_wh[0]))

    def close(self) -> None:
        """Disconnect both devices."""
        self.meter.close()
        self.pv.close()
