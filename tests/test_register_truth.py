"""Register truth (issue 11, item 1): each fix read back by hand at the documented address.

A template's simulator serves the values; a raw pymodbus client reads the
address the vendor's document gives (written out here, not taken from the
template), and the template driver must agree with it.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from controller.config import parse_config
from controller.wiring import read_all
from devices.modbus.transport import LinkPool
from devices.templates.driver import TemplateDevice
from devices.templates.schema import shipped_templates, template
from simulators.clock import SimClock
from simulators.household import HouseholdSpec
from simulators.template_device import TemplateHousehold
from tests.conftest import free_port

SPEC = HouseholdSpec("h1", "Test", pv_kwp=5, annual_kwh=3000, battery_wh=10_000,
                     battery_max_w=5000, soc_start_pct=50)
METER_W, IMPORT_WH, EXPORT_WH = 1234.0, 12_345_600.0, 6_543_200.0


def s32_lsw(words: list[int]) -> int:
    """INT32, least-significant word first (Carlo Gavazzi)."""
    return struct.unpack(">i", struct.pack(">HH", words[1], words[0]))[0]


async def read_raw(port: int, unit: int, address: int, count: int, fc: int = 4) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        read = client.read_input_registers if fc == 4 else client.read_holding_registers
        response = await read(address, count=count, device_id=unit)
        assert not response.isError(), (unit, address)
        return list(response.registers)
    finally:
        client.close()


# family → documented (W sys, kWh(+) TOT, kWh(-) TOT, a partial kWh(+) PAR register)
EM24 = {
    # EM24-DIN PFA/PFB/X protocol v4 (RS485); OpenEMS and Victron's EM24 RTU module agree.
    "carlo-gavazzi-em24": (0x0028, 0x003E, 0x005C, 0x0042),
    # EM24_E1 (Ethernet) protocol v0 r1.2; Victron's carlo_gavazzi.py and mbmd agree.
    "carlo-gavazzi-em24-ethernet": (0x0028, 0x0034, 0x004E, 0x003C),
}


@pytest.mark.parametrize("family", sorted(EM24))
def test_em24_reads_the_total_counters_not_the_resettable_partial_ones(family: str) -> None:
    power_at, import_at, export_at, partial_at = EM24[family]

    async def run() -> None:
        sim = TemplateHousehold(template(family), SPEC, free_port(), SimClock(speed=0))
        await sim.start()
        pool = LinkPool(2.0)
        try:
            for name, value in (("power_w", METER_W), ("import_wh", IMPORT_WH),
                                ("export_wh", EXPORT_WH)):
                sim.image.set("meter", name, value)
            # A front-panel "reset of partial meters": the partial counter reads 0.
            sim.image.set_raw(1, partial_at, [0, 0])
            port = sim.server.port
            assert s32_lsw(await read_raw(port, 1, power_at, 2)) / 10 == METER_W  # W ×10
            assert s32_lsw(await read_raw(port, 1, import_at, 2)) * 100 == IMPORT_WH  # kWh ×10
            assert s32_lsw(await read_raw(port, 1, export_at, 2)) * 100 == EXPORT_WH
            device = TemplateDevice(pool.get("127.0.0.1", port), template(family), "meter")
            reading = await device.read_meter()
            assert reading.power_w == pytest.approx(METER_W)
            assert reading.import_wh == IMPORT_WH and reading.export_wh == EXPORT_WH
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


def test_the_two_em24_maps_are_told_apart_in_their_notes() -> None:
    rs485, ethernet = template("carlo-gavazzi-em24"), template("carlo-gavazzi-em24-ethernet")
    assert any("carlo-gavazzi-em24-ethernet" in n for n in rs485.notes)
    assert any("carlo-gavazzi-em24" in n and "RS485" in n for n in ethernet.notes)
    for t in (rs485, ethernet):
        assert len(t.sources) >= 2 and any("Checked against" in s for s in t.sources)


# ------------------------------------------------------------------ night-time sentinels
def sma_config(port: int, ledger: str) -> str:
    return f"""
[storage]
ledger = "{ledger}"
[[members]]
id = "a"
name = "House A"
devices = [
  {{ kind = "pv", family = "sma-sunny-boy-storage", host = "127.0.0.1", port = {port} }},
  {{ kind = "meter", family = "sma-sunny-boy-storage", host = "127.0.0.1", port = {port} }},
]
"""


def test_sma_asleep_at_night_reads_0_w_and_read_does_not_fail_it(tmp_path: Path) -> None:
    async def run() -> None:
        sim = TemplateHousehold(template("sma-sunny-boy-storage"), SPEC, free_port(),
                                SimClock(speed=0))
        await sim.start()
        pool = LinkPool(2.0)
        try:
            sim.image.set("meter", "power_w", 300.0)
            sim.image.set("pv", "power_w", None)  # the inverter sleeps: SMA's NaN
            # SMA Modbus TI: GridMs.TotW, register 30775 (S32), NaN = 0x80000000
            assert await read_raw(sim.server.port, 3, 30775, 2, fc=3) == [0x8000, 0x0000]
            device = TemplateDevice(pool.get("127.0.0.1", sim.server.port),
                                    template("sma-sunny-boy-storage"), "pv")
            assert (await device.read_pv()).power_w == 0.0
            config = parse_config(sma_config(sim.server.port, str(tmp_path / "l.sqlite")))
            report = {e["device"]: e for e in await read_all(config)}
            assert report["a/pv"]["ok"], report["a/pv"]
            assert report["a/pv"]["values"]["power_w"]["value"] == 0.0
            assert report["a/meter"]["ok"]
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


def test_only_documented_night_sentinels_read_as_zero() -> None:
    zeroed = {(t.id, kind, name)
              for t in shipped_templates().values() for kind in t.kinds
              for name, reg in t.kind(kind).points.items() if getattr(reg, "nan_zero", False)}
    assert zeroed == {("sma-sunny-boy-storage", "pv", "power_w")}
    sma = template("sma-sunny-boy-storage")
    assert any("0x80000000" in s and "evcc" in s and "openWB" in s for s in sma.sources)
