"""PV curtailment through the inverter's active-power limit, with a revert timer.

Real pymodbus servers on 127.0.0.1. The driver writes a limit; a raw pymodbus
client reads the documented registers back at addresses written out here by
hand; the simulated PV must drop to the limit and come back when the revert
time runs out on the simulated clock (or at once on release).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pymodbus.client import AsyncModbusTcpClient
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from devices.kinds import CurtailablePvInverter, PvLimit
from devices.modbus.transport import DeviceError, LinkPool
from devices.sunspec.adapters import SunSpecInverter
from devices.sunspec.client import SunSpecClient
from devices.templates.driver import TemplateDevice
from devices.templates.schema import TemplateError, parse_template, shipped_templates, template
from simulators.clock import SimClock
from simulators.coop import INVERTER_UNIT, SimulatedCoop
from simulators.household import HouseholdSpec, demo_households
from simulators.modbus_server import SimulatedModbusServer
from simulators.sunspec_image import SunSpecImage
from simulators.template_device import TemplateHousehold
from tests.conftest import free_port

NOON = 1_780_000_000 // 86400 * 86400 + 12 * 3600
SPEC = HouseholdSpec("h1", "Test", pv_kwp=5, annual_kwh=3000)

# Our simulated inverter (base 40000): SunS, model 1 (L=66) at 40002, 103 (L=50) at 40070,
# 120 (L=26) at 40122, 123 (L=24) at 40150. Offsets from pysunspec2's model_123.json.
WMAXLIMPCT, RVRTTMS, ENA, PCT_SF, WRTG = 40155, 40157, 40159, 40173, 40125


async def _holding(port: int, unit: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        response = await client.read_holding_registers(address, count=count, device_id=unit)
        assert not response.isError(), (unit, address)
        return list(response.registers)
    finally:
        client.close()


def s16(word: int) -> int:
    return word - 0x10000 if word >= 0x8000 else word


def _scan(port: int, unit: int) -> SunSpecModbusClientDeviceTCP:
    device = SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1", ipport=port)
    device.scan()
    device.close()
    return device


def test_sunspec_123_limit_caps_the_simulated_pv_and_reverts_on_the_clock() -> None:
    async def run() -> None:
        clock = SimClock(start_s=NOON, speed=0)
        coop = SimulatedCoop(demo_households(1), clock)
        await coop.start()
        host, port = coop.endpoint("h01")
        pool = LinkPool()
        inverter = SunSpecInverter(SunSpecClient(pool.get(host, port), INVERTER_UNIT))
        assert isinstance(inverter, CurtailablePvInverter)
        try:
            available = float(coop.physics.pv_available_w(clock.now())[0])
            rated = coop.physics.kwp[0] * 1000.0
            assert available > 1000.0
            limit = round(available * 0.4)
            await inverter.write_limit(PvLimit(limit, 30))

            regs = await _holding(port, INVERTER_UNIT, WMAXLIMPCT, 5)
            assert s16((await _holding(port, INVERTER_UNIT, PCT_SF, 1))[0]) == -2
            assert (await _holding(port, INVERTER_UNIT, WRTG, 1))[0] == rated
            percent = regs[0] / 100.0  # WMaxLimPct_SF = -2
            assert percent <= 100.0 * limit / rated < percent + 0.01  # rounded down
            assert regs[RVRTTMS - WMAXLIMPCT] == 30
            assert regs[ENA - WMAXLIMPCT] == 1
            theirs = await asyncio.to_thread(_scan, port, INVERTER_UNIT)
            assert 123 in theirs.models and 120 in theirs.models
            controls = theirs.models[123][0]
            assert controls.WMaxLimPct.cvalue == pytest.approx(percent)
            assert (controls.WMaxLim_Ena.value, controls.WMaxLimPct_RvrtTms.value) == (1, 30)

            clock.advance(10)
            coop.step()
            capped = (await inverter.read_pv()).power_w
            assert capped == pytest.approx(percent / 100.0 * rated, abs=1.0)
            assert capped <= limit
            assert coop.households[0].inverter.get_raw(103, "St") == 5  # THROTTLED

            clock.advance(21)  # 31 s after the write: the revert timer has run out
            coop.step()
            assert (await inverter.read_pv()).power_w == pytest.approx(
                coop.physics.pv_available_w(clock.now())[0], abs=1.0)
            assert (await _holding(port, INVERTER_UNIT, ENA, 1)) == [0]

            await inverter.write_limit(PvLimit(limit, 300))
            coop.step()
            assert (await inverter.read_pv()).power_w <= limit
            await inverter.write_limit(None)  # release: disable the limit at once
            assert (await _holding(port, INVERTER_UNIT, ENA, 1)) == [0]
            coop.step()
            assert (await inverter.read_pv()).power_w == pytest.approx(
                coop.physics.pv_available_w(clock.now())[0], abs=1.0)
        finally:
            pool.close()
            await coop.stop()

    asyncio.run(run())


def test_sunspec_704_limit_on_a_der_device_laid_out_by_the_test() -> None:
    """No 120/121/123: the rating comes from 702 WMaxRtg, the limit goes to 704."""
    # SunS, model 1 at 40002, 701 (L=153) at 40070, 702 (L=50) at 40225, 704 (L=57) at 40277:
    # WMaxLimPctEna 40291, WMaxLimPct 40292, WMaxLimPctRvrt 40293, WMaxLimPctEnaRvrt 40294,
    # WMaxLimPctRvrtTms 40295-40296 (uint32). Offsets from pysunspec2's model_704.json.
    image = SunSpecImage([
        (1, {"Mn": "Acme", "Md": "DER-PV", "SN": "P-7"}),
        (701, {"W_SF": 0, "W": 4100, "TotWh_SF": 0, "TotWhInj": 5000}),
        (702, {"W_SF": 0, "WMaxRtg": 5000}),
        (704, {"WMaxLimPct_SF": -1, "WMaxLimPctEna": 0, "WMaxLimPct": 1000}),
    ])

    async def run() -> None:
        server = SimulatedModbusServer(free_port(), {1: image})
        await server.start()
        pool = LinkPool()
        inverter = SunSpecInverter(SunSpecClient(pool.get("127.0.0.1", server.port), 1))
        try:
            await inverter.write_limit(PvLimit(1234.0, 90))  # 24.68 % → 24.6 % at 0.1 %
            regs = await _holding(server.port, 1, 40291, 6)
            assert regs == [1, 246, 1000, 0, 0, 90]
            theirs = await asyncio.to_thread(_scan, server.port, 1)
            controls = theirs.models[704][0]
            assert controls.WMaxLimPct.cvalue == pytest.approx(24.6)
            assert controls.WMaxLimPctRvrtTms.value == 90
            await inverter.write_limit(PvLimit(None, 90))  # no limit = release
            assert (await _holding(server.port, 1, 40291, 1)) == [0]
        finally:
            pool.close()
            await server.stop()

    asyncio.run(run())


def test_a_sunspec_device_without_limit_model_or_rating_refuses() -> None:
    image = SunSpecImage([(1, {"Mn": "Acme"}), (103, {"W_SF": 0, "W": 10}), (123, {})])
    bare = SunSpecImage([(1, {"Mn": "Acme"}), (103, {"W_SF": 0, "W": 10})])

    async def run() -> None:
        server = SimulatedModbusServer(free_port(), {1: image, 2: bare})
        await server.start()
        pool = LinkPool()
        link = pool.get("127.0.0.1", server.port)
        try:
            with pytest.raises(DeviceError, match="rated power"):
                await SunSpecInverter(SunSpecClient(link, 1)).write_limit(PvLimit(100, 30))
            with pytest.raises(DeviceError, match="power-limit"):
                await SunSpecInverter(SunSpecClient(link, 2)).write_limit(PvLimit(100, 30))
        finally:
            pool.close()
            await server.stop()

    asyncio.run(run())


# family → (documented registers after a 1500 W limit of a 5000 W inverter, 30 s revert;
#           the same registers after release). (unit, address, count, decoder, expected)
Check = tuple[int, int, int, Callable[[list[int]], float], float]
LIMITED: dict[str, list[Check]] = {
    "fronius-sunspec": [
        (1, 40232, 1, lambda w: w[0], 3000),       # 40233 WMaxLimPct, 30.00 % at SF -2
        (1, 40250, 1, lambda w: s16(w[0]), -2),    # 40251 WMaxLimPct_SF
        (1, 40234, 1, lambda w: w[0], 30),         # 40235 WMaxLimPct_RvrtTms
        (1, 40236, 1, lambda w: w[0], 1),          # 40237 WMaxLim_Ena
    ],
    "huawei-sun2000": [(1, 40125, 1, lambda w: s16(w[0]), 300)],  # derating 30.0 %, gain 10
}
RELEASED: dict[str, list[Check]] = {
    "fronius-sunspec": [(1, 40236, 1, lambda w: w[0], 0)],
    "huawei-sun2000": [(1, 40125, 1, lambda w: s16(w[0]), 1000)],
}


async def _check(port: int, checks: list[Check]) -> None:
    for unit, address, count, decoder, expected in checks:
        got = decoder(await _holding(port, unit, address, count))
        assert got == pytest.approx(expected), (address, got, expected)


@pytest.mark.parametrize("family", sorted(LIMITED))
def test_template_limit_lands_in_documented_registers_and_caps_pv(family: str) -> None:
    async def run() -> None:
        clock = SimClock(start_s=12 * 3600, speed=0)
        sim = TemplateHousehold(template(family), SPEC, free_port(), clock)
        await sim.start()
        pool = LinkPool(2.0)
        device = TemplateDevice(pool.get("127.0.0.1", sim.server.port), sim.template, "pv",
                                params={"rated_w": 5000})
        assert isinstance(device, CurtailablePvInverter)
        try:
            available = float(sim.physics.pv_available_w(clock.now())[0])
            assert available > 1500
            await _check(sim.server.port, RELEASED[family])
            await device.write_limit(PvLimit(1500, 30))
            await _check(sim.server.port, LIMITED[family])
            clock.advance(10)
            sim.step()
            assert (await device.read_pv()).power_w == pytest.approx(1500, abs=1)

            clock.advance(21)
            sim.step()
            if device.limit_needs_release:  # Huawei: no revert timer, holds until released
                assert (await device.read_pv()).power_w == pytest.approx(1500, abs=1)
                await _check(sim.server.port, LIMITED[family])
            else:  # the inverter reverted on its own
                assert (await device.read_pv()).power_w == pytest.approx(
                    sim.physics.pv_available_w(clock.now())[0], abs=1)
                await _check(sim.server.port, RELEASED[family])

            await device.write_limit(PvLimit(1500, 30))
            await device.write_limit(None)
            await _check(sim.server.port, RELEASED[family])
            sim.step()
            assert (await device.read_pv()).power_w == pytest.approx(
                sim.physics.pv_available_w(clock.now())[0], abs=1)
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


def test_template_limit_needs_a_rating_and_a_pv_limit_section() -> None:
    async def run() -> None:
        sim = TemplateHousehold(template("huawei-sun2000"), SPEC, free_port(), SimClock(speed=0))
        await sim.start()
        pool = LinkPool(2.0)
        link = pool.get("127.0.0.1", sim.server.port)
        try:
            with pytest.raises(DeviceError, match="rated_w"):
                await TemplateDevice(link, sim.template, "pv").write_limit(PvLimit(100, 30))
            sma = TemplateDevice(link, template("sma-sunny-boy-storage"), "pv")
            with pytest.raises(DeviceError, match="no pv_limit"):
                await sma.write_limit(PvLimit(100, 30))
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


def test_families_document_their_pv_limit_or_its_absence() -> None:
    families = shipped_templates()
    assert {t for t, f in families.items() if f.pv_limit is not None} == set(LIMITED)
    for t in families.values():
        assert ("pv-limit" in t.capabilities) == (t.pv_limit is not None), t.id
        if t.pv_limit is not None:  # a vendor document and a second public source, both named
            assert sum(s.startswith("PV limit") for s in t.sources) >= 2, t.id
        elif t.pv is not None:
            assert any(n.startswith("No PV limit") for n in t.notes), t.id


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ("[pv_limit]\nexpiry='device'\nset=[{address=1,value='limit_kw'}]\n"
         "release=[{address=1,value=0}]\n", "pv_limit.set[0].value"),
        ("[pv_limit]\nexpiry='sometimes'\nset=[{address=1,value=1}]\n"
         "release=[{address=1,value=0}]\n", "expiry"),
    ],
)
def test_pv_limit_errors_name_the_field(extra: str, names: str) -> None:
    text = ("id='x'\nname='x'\nmanufacturer='x'\nprotocol='modbus'\ncapabilities=['pv']\n"
            "notes=['n']\nsources=['s']\n[pv.points]\npower_w={address=1}\n" + extra)
    with pytest.raises(TemplateError) as err:
        parse_template(text, "my.toml")
    assert "my.toml" in str(err.value) and names in str(err.value)
    meter_only = text.replace("[pv.points]", "[meter.points]").replace("['pv']", "['meter']")
    with pytest.raises(TemplateError, match="no \\[pv\\]"):
        parse_template(meter_only.replace("'sometimes'", "'device'").replace(
            "'limit_kw'", "1"), "my.toml")
