"""Vendor templates against their manufacturers' documented register addresses.

Every address, type and word order below is written out by hand from the
vendor documents named in each template's ``sources``, so the template and
this test are not the same source. The simulator is built from the
template; a raw pymodbus client reads the documented addresses, and the
template driver must report the same physical values.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest
from pymodbus.client import AsyncModbusTcpClient

from devices.kinds import Setpoint
from devices.modbus.transport import LinkPool
from devices.templates.driver import TemplateDevice, plan_reads
from devices.templates.schema import TemplateError, parse_template, shipped_templates, template
from simulators.clock import SimClock
from simulators.household import HouseholdSpec
from simulators.template_device import TemplateHousehold
from tests.conftest import free_port

PV_W, METER_W, BATTERY_W, SOC = 3456.0, 1234.0, -1500.0, 55.0
SPEC = HouseholdSpec("h1", "Test", pv_kwp=5, annual_kwh=3000, battery_wh=10_000,
                     battery_max_w=5000, soc_start_pct=50)


def s16(w: list[int]) -> int:
    return struct.unpack(">h", struct.pack(">H", w[0]))[0]


def u32(w: list[int]) -> int:
    return (w[0] << 16) | w[1]


def s32(w: list[int]) -> int:
    return struct.unpack(">i", struct.pack(">I", u32(w)))[0]


def s32_lsw(w: list[int]) -> int:
    return s32([w[1], w[0]])


def f32(w: list[int]) -> float:
    return struct.unpack(">f", struct.pack(">HH", w[0], w[1]))[0]


def f32_lsw(w: list[int]) -> float:
    return f32([w[1], w[0]])


def with_sf(w: list[int]) -> float:
    """A SunSpec int16 value followed (at the given distance) by its scale factor."""
    return s16(w[:1]) * 10.0 ** s16(w[-1:])


# family → (function code, unit, address, count, decoder, expected value)
Check = tuple[int, int, int, int, Callable[[list[int]], float], float]
DOCUMENTED: dict[str, list[Check]] = {
    "sma-sunny-boy-storage": [
        (3, 3, 30775, 2, s32, PV_W),             # GridMs.TotW
        (3, 3, 30865, 2, u32, METER_W),          # Metering.GridMs.TotWIn (drawn)
        (3, 3, 30867, 2, u32, 0),                # Metering.GridMs.TotWOut (fed in)
        (3, 3, 30845, 2, u32, SOC),              # Bat.ChaStt
        (3, 3, 31393, 2, u32, -BATTERY_W),       # BatChrg.CurBatCha
        (3, 3, 31395, 2, u32, 0),                # BatDsch.CurBatDsch
    ],
    "fronius-sunspec": [
        (3, 1, 40083, 2, with_sf, PV_W),         # 103 W, W_SF
        (3, 200, 40087, 5, with_sf, METER_W),    # 203 W … W_SF at 40091
    ],
    "solaredge-storedge": [
        (3, 1, 57716, 2, f32_lsw, -BATTERY_W),   # 0xE174 battery power, + = charging
        (3, 1, 57732, 2, f32_lsw, SOC),          # 0xE184 state of energy
        (3, 1, 40206, 5, with_sf, -METER_W),     # meter W, + = export
        (3, 1, 40083, 2, with_sf, PV_W + BATTERY_W),  # AC power = PV − charging
    ],
    "huawei-sun2000": [
        (3, 1, 32064, 2, s32, PV_W),             # input power
        (3, 1, 37113, 2, s32, -METER_W),         # meter active power, + = feed-in
        (3, 1, 37765, 2, s32, -BATTERY_W),       # battery power, + = charging
        (3, 1, 37760, 1, lambda w: w[0] / 10, SOC),  # SOC, gain 10
    ],
    "victron-gx": [
        (4, 100, 808, 1, lambda w: w[0], PV_W),  # AC-out PV L1
        (4, 100, 820, 1, s16, METER_W),          # grid L1
        (4, 100, 842, 1, s16, -BATTERY_W),       # battery power, + = charging
        (4, 100, 843, 1, lambda w: w[0], SOC),
    ],
    "eastron-sdm630": [
        (4, 1, 52, 2, f32, METER_W),             # 30053 total system power
    ],
    "carlo-gavazzi-em24": [
        (4, 1, 0x28, 2, lambda w: s32_lsw(w) / 10, METER_W),  # W sys ×10, LSW first
    ],
    "goodwe-et": [
        (3, 247, 35105, 2, u32, PV_W),           # Ppv1
        (3, 247, 36025, 2, s32, -METER_W),       # meter total active power, + = export
        (3, 247, 35182, 2, s32, BATTERY_W),      # Pbattery1, + = discharge
        (3, 247, 37007, 1, lambda w: w[0], SOC),
    ],
}

# family → documented control registers after a 2000 W charge command, 30 s expiry
CONTROL: dict[str, list[Check]] = {
    "sma-sunny-boy-storage": [(3, 3, 40236, 2, u32, 2289), (3, 3, 40795, 2, u32, 2000)],
    "solaredge-storedge": [
        (3, 1, 57348, 1, lambda w: w[0], 4),     # 0xE004 remote control
        (3, 1, 57355, 2, lambda w: u32([w[1], w[0]]), 30),  # 0xE00B timeout
        (3, 1, 57357, 1, lambda w: w[0], 3),     # 0xE00D charge from PV and AC
        (3, 1, 57358, 2, f32_lsw, 2000),         # 0xE00E charge limit
    ],
    "huawei-sun2000": [
        (3, 1, 47100, 1, lambda w: w[0], 1),     # forcible charge
        (3, 1, 47247, 2, u32, 2000),             # forcible charge power
        (3, 1, 47083, 1, lambda w: w[0], 1),     # period, minutes
    ],
    "victron-gx": [(3, 227, 37, 1, s16, 2000)],  # ESS mode 3 setpoint, + = charge
    "goodwe-et": [(3, 247, 47511, 1, lambda w: w[0], 11), (3, 247, 47512, 1, lambda w: w[0], 2000)],
}


def test_eight_families_ship_with_notes_and_sources() -> None:
    families = shipped_templates()
    assert set(DOCUMENTED) <= set(families) and len(families) >= 8
    for t in families.values():
        assert t.notes and t.sources
        controllable = t.battery is not None and t.battery.control is not None
        assert ("battery-control" in t.capabilities) == controllable, t.id


async def _raw(port: int, checks: list[Check]) -> list[float]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    out = []
    for fc, unit, address, count, decoder, _ in checks:
        read = client.read_input_registers if fc == 4 else client.read_holding_registers
        response = await read(address, count=count, device_id=unit)
        assert not response.isError(), (unit, address)
        out.append(decoder(response.registers))
    client.close()
    return out


async def _household(family: str) -> TemplateHousehold:
    sim = TemplateHousehold(template(family), SPEC, free_port(), SimClock(speed=0))
    await sim.start()
    image = sim.image
    for kind, name, value in (("battery", "power_w", BATTERY_W), ("battery", "soc_pct", SOC),
                              ("pv", "power_w", PV_W), ("meter", "power_w", METER_W)):
        if kind in sim.template.kinds:
            image.set(kind, name, value)
    return sim


@pytest.mark.parametrize("family", sorted(DOCUMENTED))
def test_documented_registers_and_driver_agree(family: str) -> None:
    async def run() -> None:
        sim = await _household(family)
        try:
            raw = await _raw(sim.server.port, DOCUMENTED[family])
            for got, check in zip(raw, DOCUMENTED[family], strict=True):
                assert got == pytest.approx(check[5], abs=0.51), (family, check[2])
            pool = LinkPool(2.0)
            link = pool.get("127.0.0.1", sim.server.port)
            t = template(family)
            if "pv" in t.kinds:
                pv = await TemplateDevice(link, t, "pv").read_pv()
                assert pv.power_w == pytest.approx(PV_W)
            meter = await TemplateDevice(link, t, "meter").read_meter()
            assert meter.power_w == pytest.approx(METER_W, abs=0.5)
            if "battery" in t.kinds:
                battery = await TemplateDevice(link, t, "battery").read_battery()
                assert battery.power_w == pytest.approx(BATTERY_W, abs=0.5)
                assert battery.soc_pct == pytest.approx(SOC, abs=0.1)
                assert battery.capacity_wh and battery.capacity_wh > 0
            pool.close()
        finally:
            await sim.stop()

    asyncio.run(run())


@pytest.mark.parametrize("family", sorted(CONTROL))
def test_battery_commands_land_in_documented_registers(family: str) -> None:
    async def run() -> None:
        sim = await _household(family)
        pool = LinkPool(2.0)
        device = TemplateDevice(pool.get("127.0.0.1", sim.server.port), template(family), "battery")
        try:
            await device.write_setpoint(Setpoint(-2000.0, 30))
            raw = await _raw(sim.server.port, CONTROL[family])
            for got, check in zip(raw, CONTROL[family], strict=True):
                assert got == pytest.approx(check[5]), (family, check[2])
            assert sim.last_command is not None
            assert (sim.last_command.action, sim.last_command.power_w) == ("charge", -2000.0)
            await device.write_setpoint(Setpoint(1200.0, 30))
            assert (sim.last_command.action, sim.last_command.power_w) == ("discharge", 1200.0)
            await device.write_setpoint(Setpoint(0.0, 30))
            assert sim.last_command.power_w == 0.0  # Huawei holds by forcing a 0 W charge
            await device.write_setpoint(None)
            assert sim.last_command.power_w == 0.0
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


def test_a_device_expiry_reverts_the_simulated_battery() -> None:
    async def run() -> None:
        clock = SimClock(start_s=12 * 3600, speed=0)
        sim = TemplateHousehold(template("huawei-sun2000"), SPEC, free_port(), clock)
        await sim.start()
        pool = LinkPool(2.0)
        device = TemplateDevice(pool.get("127.0.0.1", sim.server.port), sim.template, "battery")
        try:
            await device.write_setpoint(Setpoint(2000.0, 30))  # rounds up to 1 minute
            clock.advance(30)
            sim.step()
            assert sim.physics.battery_w[0] == pytest.approx(2000.0)
            clock.advance(61)
            sim.step()
            assert sim.physics.battery_w[0] == 0.0
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


def test_reads_are_batched_without_crossing_gaps() -> None:
    spans = {(1, "holding"): {(37760, 1), (37758, 2), (37765, 2), (47075, 2), (47077, 2)}}
    batches = [(b.address, b.count) for b in plan_reads(spans)]
    assert batches == [(37758, 3), (37765, 2), (47075, 4)]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("id='x'\nname='x'\nmanufacturer='x'\nprotocol='modbus'\ncapabilities=['meter']\n"
         "notes=['n']\nsources=['s']\n[meter.points]\npower_w={address=70000}\n",
         "meter.points.power_w"),
        ("id='x'\nname='x'\nmanufacturer='x'\nprotocol='modbus'\ncapabilities=['meter']\n"
         "notes=['n']\nsources=['s']\n[meter.points]\npowr_w={address=1}\n", "powr_w"),
        ("id='x'\nname='x'\nmanufacturer='x'\nprotocol='modbus'\ncapabilities=['meter']\n"
         "notes=['n']\nsources=['s']\n[meter.points]\npower_w={address=1,typ='s16'}\n", "typ"),
    ],
)
def test_template_errors_name_the_field(text: str, names: str) -> None:
    with pytest.raises(TemplateError) as err:
        parse_template(text, "my.toml")
    assert "my.toml" in str(err.value) and names in str(err.value)
