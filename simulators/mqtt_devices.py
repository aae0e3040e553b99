"""Simulated MQTT energy devices publishing to a real broker on 127.0.0.1.

Each device publishes the payloads its real counterpart sends (Shelly Gen2
status JSON, Tasmota ``tele/…/SENSOR``, OpenDTU plain values, Zigbee2MQTT
JSON, or a generic JSON document) and obeys on/off commands like the real
relay. Faults: ``stale`` stops publishing, :meth:`publish_malformed` sends a
broken payload, and a lower energy value than before is a counter reset.
"""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.clock import SimClock
from simulators.household import HouseholdPhysics, HouseholdSpec


def payloads(fmt: str, base: str, v: dict[str, float | bool]) -> dict[str, str]:
    """Topic → payload of one status update in ``fmt`` (Commonwatt units in ``v``)."""
    power, energy = float(v.get("power_w", 0.0)), float(v.get("energy_wh", 0.0))
    on = bool(v.get("on", True))
    if fmt == "shelly-pro3em":
        return {
            f"{base}/status/em:0": json.dumps({"id": 0, "total_act_power": power,
                                                "a_act_power": power / 3}),
            f"{base}/status/emdata:0": json.dumps({"id": 0, "total_act": v.get("import_wh", 0.0),
                                                    "total_act_ret": v.get("export_wh", 0.0)}),
        }
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

    def __init__(self, fmt: str, base: str, port: int, host: str = "127.0.0.1") -> None:
        self.fmt, self.base = fmt, base
        self.values: dict[str, float | bool] = {"on": True}
        self.stale = False
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{fmt}-{base}")
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

    def _subscribe(self) -> None:
        topic = self._command_topic()
        if topic:
            self._client.subscribe(topic, qos=1)
        self._ready.set()

    def _on_command(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode(errors="replace").strip()
        table = COMMANDS[self.fmt][1]
        if table is None:
            state = json.loads(text).get("state", "")
            self.values["on"] = str(state).upper() == "ON"
        elif text in table:
            self.values["on"] = table[text]
        self._send(wait=False)  # on paho's thread: waiting here would deadlock

    def publish(self, **values: float | bool) -> None:
        """Update values and publish a status message, unless the device is stale."""
        self.values.update(values)
        self._send(wait=True)

    def _send(self, wait: bool) -> None:
        if self.stale:
            return
        for topic, payload in payloads(self.fmt, self.base, self.values).items():
            info = self._client.publish(topic, payload, qos=1)
            if wait:
                info.wait_for_publish(5)

    def publish_malformed(self) -> None:
        """A fault: the status topic carries something that is not the expected payload."""
        for topic in payloads(self.fmt, self.base, self.values):
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
                 meter_format: str = "shelly-pro3em", host: str = "127.0.0.1") -> None:
        self.clock = clock
        self.physics = HouseholdPhysics([spec])
        self.meter = SimulatedMqttDevice(meter_format, f"meter-{spec.member_id}", broker_port,
                                         host)
        self.pv = SimulatedMqttDevice("opendtu", f"solar/{spec.member_id}", broker_port, host)

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
