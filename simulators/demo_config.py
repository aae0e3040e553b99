"""The configuration of a simulated coop, as the TOML an installer would write."""

from __future__ import annotations

from pathlib import Path

from devices.mqtt.access import ANONYMOUS, MqttAccess
from simulators.coop import (
    BATTERY_UNIT,
    INVERTER_UNIT,
    METER_UNIT,
    SimulatedCoop,
    contactor_topic,
    plug_topic,
)
from simulators.profiles import AZIMUTH_DEG, TILT_DEG

#: Latitude of the simulator's weather (pvlib's Greensboro TMY3 file), degrees north.
SIM_LATITUDE = 36.1


def coop_toml(coop: SimulatedCoop, ledger: Path, api_port: int = 8000,
              mqtt: tuple[str, int] | None = None, cycle_s: float = 1.0,
              settlement_s: int = 900, mqtt_access: MqttAccess = ANONYMOUS,
              site: bool = False) -> str:
    """TOML for a controller that drives ``coop``'s simulated devices; with ``site``, the
    ``[site]`` and ``[island]`` tables too (:func:`site_toml`: the demo has them)."""
    lines = [
        'name = "Commonwatt demo coop"',
        "",
        "[controller]",
        f"cycle_s = {cycle_s}",
        "stale_after_s = 5.0",
        "setpoint_expiry_s = 10",
        "",
        "[policy]",
        'sharing = "prorata"',
        "",
        "[storage]",
        f'ledger = "{ledger.as_posix()}"',
        "",
        "[ledger]",
        f"settlement_s = {settlement_s}",
        "",
        "[api]",
        'host = "127.0.0.1"',
        f"port = {api_port}",
    ]
    if mqtt is not None:
        lines += ["", "[mqtt]", f'host = "{mqtt[0]}"', f"port = {mqtt[1]}",
                  *mqtt_access.toml_lines()]
    for h in coop.households:
        spec, host, port = h.spec, h.server.host, h.server.port
        lines += ["", "[[members]]", f'id = "{spec.member_id}"', f'name = "{spec.name}"']
        if spec.tier != "essential":  # the default
            lines.append(f'tier = "{spec.tier}"')
        devices = [("meter", METER_UNIT)]
        if spec.pv_kwp > 0:  # a flat or a shaded roof has no inverter to configure
            devices.append(("pv", INVERTER_UNIT))
        if h.battery is not None:
            devices.append(("battery", BATTERY_UNIT))
        for kind, unit in devices:
            lines += [
                "", "  [[members.devices]]", f'  kind = "{kind}"', '  family = "sunspec"',
                f'  host = "{host}"', f"  port = {port}", f"  unit = {unit}",
            ]
            if kind == "battery":
                lines += ["  reserve_pct = 10", f"  efficiency = {spec.efficiency}"]
                if spec.grid_forming:
                    lines += ["  grid_forming = true"]
        if spec.plug_w > 0 and mqtt is not None:  # a flexible appliance, shed first
            lines += ["", "  [[members.devices]]", '  kind = "load"', '  protocol = "mqtt"',
                      '  family = "shelly-plug"', f'  topic = "{plug_topic(spec.member_id)}"',
                      '  tier = "flexible"', f"  rated_w = {spec.plug_w:g}"]
        if spec.contactor and mqtt is not None:  # the whole house, switched off last
            lines += ["", "  [[members.devices]]", '  kind = "load"', '  protocol = "mqtt"',
                      '  family = "shelly-plug"', f'  topic = "{contactor_topic(spec.member_id)}"',
                      "  contactor = true"]
    if site:
        lines += site_toml(coop)
    return "\n".join(lines) + "\n"


def site_toml(coop: SimulatedCoop) -> list[str]:
    """The ``[site]`` and ``[island]`` tables of the simulated coop, so that ``island plan``
    works on the demo: its arrays and yearly loads as simulated. The batteries are left out
    of ``[island]``: the plan reads their capacity, SoC and limits from the devices.

    The simulator's sun is a typical year's weather at Greensboro (latitude 36.1 N) with
    its clock on UTC (solar noon at 12:00 UTC), so the site is that latitude on the
    prime meridian, in UTC: the plan's clear-sky sun rises and sets with the simulated one.
    """
    lines = ["", "[site]", f"latitude = {SIM_LATITUDE}", "longitude = 0.0", 'tz = "UTC"']
    for h in coop.households:
        if h.spec.pv_kwp > 0:
            lines += ["", "[[site.arrays]]", f'member = "{h.spec.member_id}"',
                      f"kwp = {h.spec.pv_kwp:g}", f"tilt = {TILT_DEG:g}",
                      f"azimuth = {AZIMUTH_DEG:g}"]
    lines += ["", "[island]", "critical_share = 0.15", "essential_share = 0.35"]
    for h in coop.households:
        lines += ["", "[[island.members]]", f'member = "{h.spec.member_id}"',
                  f"annual_kwh = {h.spec.annual_kwh:.0f}"]
    return lines
