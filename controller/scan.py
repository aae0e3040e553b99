"""``commonwatt scan``: what answers at HOST:PORT, and how to configure it.

First the common unit ids (:data:`COMMON_UNITS`, or ``--unit``) are swept with
one read each, within :data:`PORT_BUDGET_S` in all: a port where nothing gives a
Modbus answer is given up on with one line. Then SunSpec discovery (the "SunS"
marker at 40000, 0 and 50000, then the model chain) on every unit that answered,
then every shipped vendor template is probed with reads only; a template matches
when its points decode to plausible values, its identity registers hold a model
or serial, and no manufacturer string the device gives (SunSpec ``Mn``, or the
template's own manufacturer register) names another maker. Nothing is ever
written to the device. The JSON shape is documented in docs/reference.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

from controller.drivers import READERS
from controller.polling import check_reading
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
from devices.templates.schema import Template, shipped_templates, template

#: Unit ids devices answer on out of the box: 1 (most inverters and meters), 2 and 3
#: (SMA: 3), 100 (Victron GX), 126 (SMA's SunSpec unit: 3 + 123), 200/201 (Fronius
#: Smart Meter behind a GEN24), 240 (Fronius Smart Meter behind a Datamanager 2.0),
#: 247 (GoodWe).
COMMON_UNITS = (1, 2, 3, 100, 126, 200, 201, 240, 247)
#: A port whose every unit id stays silent this long (s) does not speak Modbus.
PORT_BUDGET_S = 3.0
#: Exceptions a gateway gives for a unit id nobody answers to.
NOBODY_THERE = ("exception 10", "exception 11")
PLAUSIBLE_W = 1_000_000.0
PLAUSIBLE_WH = 1e9  # a household device's lifetime counter stays far below 1 GWh
SUNSPEC_KINDS = (("pv", INVERTER_MODELS, SunSpecInverter, "read_pv"),
                 ("meter", METER_MODELS, SunSpecMeter, "read_meter"),
                 ("battery", (124, 802, 713), SunSpecBattery, "read_battery"))


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in values.items()}


async def sweep_units(host: str, port: int, units: tuple[int, ...], timeout_s: float,
                      budget_s: float = PORT_BUDGET_S) -> tuple[list[dict[str, Any]], bool]:
    """One read (the SunSpec marker at 40000) per unit id: who answers, and whether
    anything at the port speaks Modbus at all (an exception is a Modbus answer).

    Each read gets ``timeout_s``, cut so the whole sweep of a silent port stays
    within ``budget_s``; a refused connection ends the sweep at once.
    """
    link = ModbusLink(host, port, min(timeout_s, budget_s / max(len(units), 1)))
    began = time.monotonic()
    found: list[dict[str, Any]] = []
    speaks = False
    try:
        for unit in units:
            if not speaks and time.monotonic() - began >= budget_s:
                found.append({"unit": unit, "answers": False, "reason": "not asked (port silent)"})
                continue
            try:
                await link.read(40000, 2, unit)
            except DeviceError as exc:
                if exc.reason == "refused":
                    return [{"unit": u, "answers": False, "reason": "refused"}
                            for u in units], False
                modbus = exc.reason.startswith("exception")
                speaks = speaks or modbus
                answers = modbus and not exc.reason.startswith(NOBODY_THERE)
                found.append({"unit": unit, "answers": answers, "reason": exc.reason})
            else:
                speaks = True
                found.append({"unit": unit, "answers": True, "reason": None})
    finally:
        link.close()
    return found, speaks


def manufacturer_matches(claimed: str | None, template_maker: str) -> bool:
    """Whether a device's manufacturer string names the template's maker (None: unknown, yes)."""
    if not claimed:
        return True
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())
    return norm(template_maker) in norm(claimed) or norm(claimed) in norm(template_maker)


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
                reading = await getattr(driver(client), method)()
                kinds[kind] = _clean(asdict(reading))
                check_reading(reading)
            except DeviceError as exc:
                # e.g. the inverter model of a battery: it has one, but no PV reads there
                kinds[kind] = {**kinds.get(kind, {}), "error": str(exc)}
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


async def probe_template(link: ModbusLink, t: Template,
                         unit: int | None) -> dict[str, Any] | None:
    """The template's live values if the device answers plausibly for at least one kind."""
    kinds: dict[str, Any] = {}
    for kind in t.kinds:
        device = TemplateDevice(link, t, kind, unit)
        try:
            values = await device.read_values()
            reader = getattr(device, READERS[kind], None)
            if reader is not None:  # as the controller will read it, or not suggested
                check_reading(await reader())
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
    # A model code outside the family's (two maps behind one code register) rules it out.
    codes = t.identity.model_codes
    if codes is not None and identity.get("model") not in {str(c) for c in codes}:
        return None
    # A manufacturer register that names another maker rules the template out.
    if t.identity.manufacturer is not None and not manufacturer_matches(
            identity.get("manufacturer"), t.manufacturer):
        return None
    return {"family": t.id, "name": t.name, "identity": identity, "kinds": kinds,
            "capabilities": t.capabilities, "notes": t.notes}


async def scan(host: str, port: int, unit: int | None = None,
               timeout_s: float = 1.0) -> dict[str, Any]:
    """Everything found at ``host:port``, with configuration lines to paste."""
    units, speaks = await sweep_units(host, port, COMMON_UNITS if unit is None else (unit,),
                                      timeout_s)
    answering = [u["unit"] for u in units if u["answers"]]
    result: dict[str, Any] = {"target": f"{host}:{port}", "modbus": speaks, "units": units,
                              "sunspec": {"found": False, "unit": unit if unit is not None
                                          else 1, "reason": "no unit id answered"},
                              "sunspec_units": [], "templates": [], "suggested": []}
    if not speaks:
        refused = any(u["reason"] == "refused" for u in units)
        result["sunspec"]["reason"] = "refused" if refused else "no Modbus answer"
        result["gave_up"] = (f"{host}:{port}: connection refused" if refused else
                             f"{host}:{port}: no Modbus answer from any unit id within "
                             f"{PORT_BUDGET_S:g} s; not a Modbus TCP server")
        return result
    pool = LinkPool(timeout_s)
    link = pool.get(host, port)
    try:
        tried = [await scan_sunspec(link, u) for u in answering]
        found_units = [s for s in tried if s["found"]]
        first = (found_units or tried or [result["sunspec"]])[0]
        makers = {s.get("manufacturer") for s in found_units} - {None}
        templates = []
        for t in shipped_templates().values():
            if found_units and t.protocol == "sunspec":
                continue  # discovery already read this device properly
            if makers and not any(manufacturer_matches(m, t.manufacturer) for m in makers):
                continue  # the device says who made it, and it is someone else
            found = await probe_template(link, t, unit)
            if found is not None:
                templates.append(found)
    finally:
        pool.close()
    vendor = [t.id for t in shipped_templates().values() if t.protocol == "sunspec"
              and makers and any(manufacturer_matches(m, t.manufacturer) for m in makers)]
    # Only what the controller's own driver read, and found usable (check_reading): a
    # suggestion that then never reads is worse than none (issue 20).
    suggested = [{"kind": k, "family": "sunspec", "host": host, "port": port,
                  "unit": s["unit"]} for s in found_units
                 for k, values in s["kinds"].items() if "error" not in values]
    for found in templates:
        suggested += [{"kind": k, "family": found["family"], "host": host, "port": port,
                       "unit": v["unit"]} for k, v in found["kinds"].items()]
    result.update(sunspec=first, sunspec_units=found_units, templates=templates,
                  suggested=suggested, vendor_notes=vendor)
    return result


def _fmt(value: Any) -> str:
    """A value in words: numbers compact, booleans yes/no, text as it is."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def format_scan(result: dict[str, Any]) -> str:
    """Plain text for the installer."""
    if "gave_up" in result:
        return result["gave_up"]
    lines = [result["target"]]
    answering = [str(u["unit"]) for u in result["units"] if u["answers"]]
    lines.append(f"  unit ids answering: {', '.join(answering) or 'none'} (of "
                 f"{', '.join(str(u['unit']) for u in result['units'])})")
    for s in result["sunspec_units"]:
        lines.append(f"  SunSpec at {s['base']} (unit {s['unit']}): {s['manufacturer']} "
                     f"{s['model']}, serial {s['serial']}, version {s['version']}")
        lines.append(f"    models: {', '.join(str(m) for m in s['models'])}")
        for kind, values in s["kinds"].items():
            if "error" in values:
                lines.append(f"    {kind:<8} does not read ({values['error']}): not suggested")
                continue
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in values.items())
            lines.append(f"    {kind:<8} {shown}")
    if not result["sunspec_units"]:
        s = result["sunspec"]
        lines.append(f"  SunSpec: not found (unit {s['unit']}: {s['reason']})")
    for family in result.get("vendor_notes", []):
        lines.append(f"  Notes for {family} (the manufacturer string matches):")
        lines += [f"    - {note}" for note in template(family).notes]
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
