"""MQTT payload formats of common smart-home energy devices (pure parsers).

Each format knows the topics it listens to under a device's base topic, how
to turn each payload into named values in Commonwatt units (W, Wh, on/off),
and, for switches, the topic and payload of an on/off command. A payload
that cannot be used raises :class:`PayloadError` naming the topic and field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Values = dict[str, float | bool]


class PayloadError(ValueError):
    """A payload that does not carry the expected values; the message names the field."""


def _json(topic: str, payload: bytes) -> Any:
    # ValueError covers a JSONDecodeError, bad UTF-8 and an integer over Python's digit
    # limit; RecursionError, arrays nested past the stack (the hub refuses those first).
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"{topic}: not JSON ({str(exc)[:200]})") from None


def dig(data: Any, path: str, topic: str) -> Any:
    """The value at a dotted ``path`` (``ENERGY.Power``; list indices as numbers)."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PayloadError(f"{topic}: field {path!r} is missing")
    return node


def number(value: Any, field: str, topic: str, scale: float = 1.0) -> float:
    """A finite number, scaled; anything else is a :class:`PayloadError`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(f"{topic}: {field} = {value!r}: expected a number")
    try:
        out = float(value)
    except ValueError:
        raise PayloadError(f"{topic}: {field} = {value!r}: expected a number") from None
    if not math.isfinite(out):
        raise PayloadError(f"{topic}: {field} = {value!r}: expected a finite number")
    return out * scale


def on_off(value: Any, field: str, topic: str) -> bool:
    """``ON``/``OFF``, ``true``/``false`` as a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.upper() in ("ON", "OFF"):
        return value.upper() == "ON"
    raise PayloadError(f"{topic}: {field} = {value!r}: expected ON or OFF")


Parser = Callable[[str, bytes], Values]


def _fields(spec: dict[str, tuple[str, float]]) -> Parser:
    """A JSON parser taking each value from a dotted path, times a scale."""
    def parse(topic: str, payload: bytes) -> Values:
        data = _json(topic, payload)
        return {name: number(dig(data, path, topic), path, topic, scale)
                for name, (path, scale) in spec.items()}
    return parse


def _plain(name: str, scale: float = 1.0) -> Parser:
    def parse(topic: str, payload: bytes) -> Values:
        return {name: number(payload.decode(errors="replace").strip(), name, topic, scale)}
    return parse


def _shelly_switch(topic: str, payload: bytes) -> Values:
    data = _json(topic, payload)
    return {
        "power_w": number(dig(data, "apower", topic), "apower", topic),
        "energy_wh": number(dig(data, "aenergy.total", topic), "aenergy.total", topic),
        "on": on_off(dig(data, "output", topic), "output", topic),
    }


#: Shelly Gen2 status keys (EM and EMData components) → Commonwatt value names.
_SHELLY_EM = {"em:0": {"total_act_power": "power_w"},
              "emdata:0": {"total_act": "import_wh", "total_act_ret": "export_wh"}}


def _shelly_em_notification(topic: str, payload: bytes) -> Values:
    """A ``NotifyStatus`` frame on ``<prefix>/events/rpc``; other frames give nothing.

    Shelly API docs (gen2/General/Notifications): ``params`` holds ``ts`` and
    one object per changed component (``em:0``, ``emdata:0``), and "some or all
    unchanged attributes" may be left out, so an absent key is no error: the
    frame is an overlay on the last known status (Home Assistant's aioshelly
    merges it the same way). NotifyEvent frames and other components are ignored.
    """
    frame = _json(topic, payload)
    if not isinstance(frame, dict) or frame.get("method") != "NotifyStatus":
        return {}
    params = frame.get("params")
    if not isinstance(params, dict):
        raise PayloadError(f"{topic}: field 'params' is missing")
    out: Values = {}
    for component, fields in _SHELLY_EM.items():
        status = params.get(component)
        if not isinstance(status, dict):
            continue
        for key, name in fields.items():
            if key in status:
                out[name] = number(status[key], f"params.{component}.{key}", topic)
    return out


def _z2m(topic: str, payload: bytes) -> Values:
    data = _json(topic, payload)
    out: Values = {
        "power_w": number(dig(data, "power", topic), "power", topic),
        "on": on_off(dig(data, "state", topic), "state", topic),
    }
    if isinstance(data, dict) and "energy" in data:
        out["energy_wh"] = number(data["energy"], "energy", topic, 1000.0)
    return out


#: (base topic, on, revert after s or None) → (topic, payload) of a switch command.
TimedCommand = Callable[[str, bool, int | None], tuple[str, str]]

#: Tasmota rule timer that switches a shed plug back on (see :func:`_tasmota_timed`).
TASMOTA_REVERT_TIMER = 8
#: The rule a Tasmota plug needs, once, for that (console: ``Rule3 <this>``, then ``Rule3 1``).
TASMOTA_REVERT_RULE = f"ON Rules#Timer={TASMOTA_REVERT_TIMER} DO Power1 ON ENDON"


def _shelly_timed(base: str, on: bool, revert_s: int | None) -> tuple[str, str]:
    """Shelly Gen2 ``Switch.Set`` over the MQTT RPC channel (``<topic_prefix>/rpc``).

    ``toggle_after`` is the device's own "flip-back timer in seconds" (Shelly
    API docs, gen2/ComponentsAndServices/Switch, Switch.Set; the RPC channel over
    MQTT: gen2/ComponentsAndServices/Mqtt, ``enable_rpc``, on by default).
    """
    params: dict[str, object] = {"id": 0, "on": on}
    if revert_s is not None:
        params["toggle_after"] = revert_s
    return f"{base}/rpc", json.dumps({"id": 1, "src": "commonwatt", "method": "Switch.Set",
                                      "params": params})


def _tasmota_timed(base: str, on: bool, revert_s: int | None) -> tuple[str, str]:
    """``Backlog0`` of ``Power`` and ``RuleTimer8``; the plug needs :data:`TASMOTA_REVERT_RULE`.

    Tasmota docs (tasmota/docs, Commands.md): ``PulseTime`` only turns a relay
    OFF after it was switched ON, so it cannot bring a shed plug back;
    ``RuleTimer<x> 0..65535`` is a countdown in seconds that fires the rule
    trigger ``Rules#Timer=<x>`` (Rules.md). Without the rule the timer fires
    into nothing and the plug stays off until Commonwatt switches it on.
    """
    timer = f"RuleTimer{TASMOTA_REVERT_TIMER}"
    if on or revert_s is None:
        return f"cmnd/{base}/Backlog0", f"{timer} 0; Power {'ON' if on else 'OFF'}"
    return f"cmnd/{base}/Backlog0", f"Power OFF; {timer} {revert_s}"


@dataclass(frozen=True, slots=True)
class Format:
    """How one device family talks MQTT.

    Attributes:
        subscriptions: suffix → parser; a topic is ``base + suffix`` (or
            ``prefix`` + base for Tasmota-style topics, see :meth:`topics`).
        required: values a reading must have.
        command: (suffix, on payload, off payload) for switches.
        timed: a switch command the device reverts by itself after some
            seconds, where the format has one (``None``: it has none).
    """

    name: str
    kinds: tuple[str, ...]
    subscriptions: dict[str, Parser]
    required: tuple[str, ...]
    command: tuple[str, str, str] | None = None
    tasmota_style: bool = False
    timed: TimedCommand | None = None
    #: Battery setpoints and load switches go to :meth:`setpoint_topic` as expiring
    #: commands (the Commonwatt edge agent only).
    setpoints: bool = False
    #: What the installer must set on the device for these topics to carry values.
    notes: tuple[str, ...] = ()

    def topics(self, base: str) -> dict[str, Parser]:
        """Full topic → parser for a device whose base topic is ``base``."""
        if self.tasmota_style:
            return {f"tele/{base}/SENSOR": self.subscriptions["SENSOR"]}
        return {f"{base}{suffix}": parser for suffix, parser in self.subscriptions.items()}

    def setpoint_topic(self, base: str) -> str | None:
        """Where a battery setpoint for ``base`` goes (the agent's ``commands`` topic)."""
        if not self.setpoints:
            return None
        return f"{base.rsplit('/live/', 1)[0]}/commands"

    def command_topic(self, base: str) -> str | None:
        """Where an on/off command for ``base`` goes."""
        if self.command is None:
            return None
        return f"cmnd/{base}/POWER" if self.tasmota_style else f"{base}{self.command[0]}"


FORMATS: dict[str, Format] = {
    "shelly-pro3em": Format(
        "shelly-pro3em", ("meter",),
        {"/events/rpc": _shelly_em_notification,
         "/status/em:0": _fields({"power_w": ("total_act_power", 1.0)}),
         "/status/emdata:0": _fields({"import_wh": ("total_act", 1.0),
                                      "export_wh": ("total_act_ret", 1.0)})},
        required=("power_w",),
        notes=(
            "Factory settings publish live power only as NotifyStatus frames on "
            "<prefix>/events/rpc ('RPC status notifications over MQTT', rpc_ntf, on by "
            "default); Commonwatt reads those, so leave that setting on.",
            "<prefix>/status/em:0 and status/emdata:0 appear only with 'Generic status "
            "update over MQTT' (status_ntf, off by default); Commonwatt reads them too, "
            "the newer of the two wins.",
            "The topic to configure is the device's MQTT prefix (default: its device "
            "id, e.g. shellypro3em-<mac>).",
        ),
    ),
    "shelly-plug": Format(
        "shelly-plug", ("load", "pv"), {"/status/switch:0": _shelly_switch},
        required=("power_w", "on"), command=("/command/switch:0", "on", "off"),
        timed=_shelly_timed,
    ),
    "tasmota": Format(
        "tasmota", ("meter", "pv", "load"),
        # ENERGY.Total (kWh) is Tasmota's lifetime counter of energy drawn through
        # the metering chip: a meter's import. Today/Yesterday reset daily: no counters.
        {"SENSOR": _fields({"power_w": ("ENERGY.Power", 1.0),
                            "energy_wh": ("ENERGY.Total", 1000.0),
                            "import_wh": ("ENERGY.Total", 1000.0)})},
        required=("power_w",), command=("POWER", "ON", "OFF"), tasmota_style=True,
        timed=_tasmota_timed,
    ),
    "opendtu": Format(
        "opendtu", ("pv",),
        {"/0/power": _plain("power_w"), "/0/yieldtotal": _plain("energy_wh", 1000.0)},
        required=("power_w",),
    ),
    # No revert of an OFF: Zigbee2MQTT's on_time/off_wait_time ("on with timed
    # off", zigbee2mqtt.io device pages) only turns a plug OFF after an ON.
    "zigbee2mqtt": Format(
        "zigbee2mqtt", ("load",), {"": _z2m}, required=("power_w", "on"),
        command=("/set", '{"state": "ON"}', '{"state": "OFF"}'),
    ),
}


def _agent_values(topic: str, payload: bytes) -> Values:
    """An edge agent's flat JSON of one device; ``null`` (unknown there) is left out."""
    data = _json(topic, payload)
    if not isinstance(data, dict):
        raise PayloadError(f"{topic}: expected a JSON object")
    values: Values = {name: number(value, name, topic) for name, value in data.items()
                      if name in AGENT_VALUES and value is not None}
    if data.get("on") is not None:  # a switchable load's relay
        values["on"] = on_off(data["on"], "on", topic)
    return values


#: What ``commonwatt agent`` publishes on ``coop/<coop>/agents/<member>/live/<kind>``.
AGENT_VALUES = ("power_w", "import_wh", "export_wh", "energy_wh", "soc_pct", "capacity_wh",
                "max_charge_w", "max_discharge_w")
FORMATS["commonwatt-agent"] = Format(
    "commonwatt-agent", ("meter", "pv", "battery", "load"), {"": _agent_values},
    required=("power_w",),
    setpoints=True,
)


def json_path_format(paths: dict[str, str], scales: dict[str, float]) -> Format:
    """A generic format: one JSON topic, each value at a dotted path."""
    spec = {name: (path, scales.get(name, 1.0)) for name, path in paths.items()}
    return Format("json", ("meter", "pv", "load", "battery"), {"": _fields(spec)},
                  required=tuple(paths))
