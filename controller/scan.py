"""``commonwatt scan``: what answers at HOST:PORT, and how to configure it.

First SunSpec discovery (the "SunS" marker at 40000, 0 and 50000, then the
model chain), then every shipped vendor template is probed with reads only;
a template matches when its points decode to plausible values and its
identity registers hold a model or serial. Nothing is
ever written to the device. The JSON shape is documented in the README.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from devices.modbus.transport import DeviceError, LinkPool, ModbusLink
from devices.sunspec.adapters import (
    INVERTER_MODELS,
    METER_MODELS,
    SunSpecBattery,
    SunSpecInverter,
    SunSpecMeter,
)
from devices.sunspec.client import SunSpecClient
from devices.templates.driver import TemplateDevice
from devices.templates.schema import Template, shipped_templates

PLAUSIBLE_W = 1_000_000.0
PLAUSIBLE_WH = 1e9  # a household device's lifetime counter stays far below 1 GWh
SUNSPEC_KINDS = (("pv", INVERTER_MODELS, SunSpecInverter, "read_pv"),
                 ("meter", METER_MODELS, SunSpecMeter, "read_meter"),
                 ("battery", (124, 802, 713), SunSpecBattery, "read_battery"))


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in values.items()}


async def scan_sunspec(link: ModbusLink, unit: int) -> dict[str, Any]:
    """SunSpec identity, model ids and live values of each kind found."""
    client = SunSpecClient(link, unit)
    try:
        models = await client.discover()
        common = await client.read_model(1) if 1 in models else {}
    except DeviceError as exc:
        return {"found": False, "unit": unit, "reason": str(exc)}
    kinds: dict[str, Any] = {}
    for kind, candidates, driver, method in SUNSPEC_KINDS:
        if any(m in models for m in candidates):
            try:
                kinds[kind] = _clean(asdict(await getattr(driver(client), method)()))
            except DeviceError as exc:
                kinds[kind] = {"error": str(exc)}
    return {
        "found": True,
        "unit": unit,
        "base": client.base,
        "manufacturer": common.get("Mn"),
        "model": common.get("Md"),
        "serial": common.get("SN"),
        "version": common.get("Vr"),
        "models": sorted(models),
        "kinds": kinds,
    }


def _plausible(kind: str, values: dict[str, float | None]) -> bool:
    power = values.get("power_w")
    if power is None or abs(power) > PLAUSIBLE_W:
        return False
    for name in ("energy_wh", "import_wh", "export_wh"):
        counter = values.get(name)
        if counter is not None and not 0 <= counter <= PLAUSIBLE_WH:
            return False
    if kind == "pv" and power < -100:
        return False
    soc = values.get("soc_pct", 50.0)
    return kind != "battery" or (soc is not None and 0 <= soc <= 100)


async def probe_template(link: ModbusLink, t: Template, unit: int | None) -> dict[str, Any] | None:
    """The template's live values if the device answers plausibly for at least one kind."""
    kinds: dict[str, Any] = {}
    for kind in t.kinds:
        device = TemplateDevice(link, t, kind, unit)
        try:
            values = await device.read_values()
        except DeviceError:
            continue
        if _plausible(kind, values):
            kinds[kind] = {"unit": device.unit, **_clean(values)}
    if not kinds:
        return None
    try:
        identity = await TemplateDevice(link, t, t.kinds[0], unit).identify()
    except DeviceError:
        return None
    # Zeros decode as plausible readings anywhere; a real identity register is the tie-breaker.
    if not any(identity.get(k) not in (None, "", "0") for k in ("model", "serial")):
        return None
    return {"family": t.id, "name": t.name, "identity": identity, "kinds": kinds,
            "capabilities": t.capabilities, "notes": t.notes}


async def scan(host: str, port: int, unit: int | None = None,
               timeout_s: float = 1.0) -> dict[str, Any]:
    """Everything found at ``host:port``, with configuration lines to paste."""
    pool = LinkPool(timeout_s)
    link = pool.get(host, port)
    try:
        sunspec = await scan_sunspec(link, 1 if unit is None else unit)
        templates = []
        for t in shipped_templates().values():
            if sunspec["found"] and t.protocol == "sunspec":
                continue  # discovery already read this device properly
            found = await probe_template(link, t, unit)
            if found is not None:
                templates.append(found)
    finally:
        pool.close()
    suggested = []
    if sunspec["found"]:
        suggested += [{"kind": k, "family": "sunspec", "host": host, "port": port,
                       "unit": sunspec["unit"]} for k in sunspec["kinds"]]
    for found in templates:
        suggested += [{"kind": k, "family": found["family"], "host": host, "port": port,
                       "unit": v["unit"]} for k, v in found["kinds"].items()]
    return {"target": f"{host}:{port}", "sunspec": sunspec, "templates": templates,
            "suggested": suggested}


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def format_scan(result: dict[str, Any]) -> str:
    """Plain text for the installer."""
    lines = [result["target"]]
    s = result["sunspec"]
    if s["found"]:
        lines.append(f"  SunSpec at {s['base']} (unit {s['unit']}): {s['manufacturer']} "
                     f"{s['model']}, serial {s['serial']}, version {s['version']}")
        lines.append(f"    models: {', '.join(str(m) for m in s['models'])}")
        for kind, values in s["kinds"].items():
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in values.items())
            lines.append(f"    {kind:<8} {shown}")
    else:
        lines.append(f"  SunSpec: not found (unit {s['unit']}: {s['reason']})")
    for t in result["templates"]:
        ident = t["identity"]
        lines.append(f"  Template {t['family']}: {ident['manufacturer']} {ident['model'] or ''} "
                     f"serial {ident['serial'] or '—'}")
        for kind, values in t["kinds"].items():
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in values.items() if k != "unit")
            lines.append(f"    {kind:<8} unit {values['unit']}: {shown}")
    if not result["suggested"]:
        lines.append("  Nothing recognised. Check the unit id (--unit) and that Modbus TCP "
                     "is enabled on the device.")
        return "\n".join(lines)
    lines.append("  Configuration lines for the member's devices = [...]:")
    for d in result["suggested"]:
        lines.append(f'    {{ kind = "{d["kind"]}", family = "{d["family"]}", host = "{d["host"]}"'
                     f', port = {d["port"]}, unit = {d["unit"]} }},')
    return "\n".join(lines)
