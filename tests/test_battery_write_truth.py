"""Battery writes read back by hand at the documented address (issue 11, item 1).

Each command goes through the real driver over pymodbus to a simulated device;
a raw pymodbus client then reads the registers the vendor's document names
(addresses and values written out here, not taken from the template).

- GoodWe ET, 47511 EMSPowerMode / 47512 EMSPowerSet: GoodWe's EMS mode table
  (as transcribed in marcelblijleven/goodwe EMSMode): 11 charge battery at
  Xset W, 12 discharge battery at Xset W, 8 battery standby, 1 auto.
- SunSpec model 124 (sunspec/models model_124.json; Fronius Gen24 storage
  control and evcc's sunspec-inverter-control for the signs): StorCtl_Mod bit 0
  charge limit, bit 1 discharge limit; a negative OutWRte forces a charge, a
  negative InWRte a discharge; ChaGriSet 1 lets the charge come from the grid.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pymodbus.client import AsyncModbusTcpClient

from devices.kinds import Setpoint
from devices.modbus.transport import LinkPool
from devices.sunspec.adapters import SunSpecBattery
from devices.sunspec.client import SunSpecClient
from devices.templates.driver import TemplateDevice
from devices.templates.schema import template
from simulators.clock import SimClock
from simulators.household import HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer
from simulators.sunspec_image import SunSpecImage
from simulators.template_device import TemplateHousehold
from tests.conftest import free_port

SPEC = HouseholdSpec("h1", "Test", pv_kwp=5, annual_kwh=3000, battery_wh=10_000,
                     battery_max_w=5000, soc_start_pct=50)


async def holding(port: int, unit: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        response = await client.read_holding_registers(address, count=count, device_id=unit)
        assert not response.isError(), (unit, address)
        return list(response.registers)
    finally:
        client.close()


def s16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


GOODWE = [  # setpoint W (+ discharge), EMSPowerMode at 47511, EMSPowerSet at 47512
    (-2000.0, 11, 2000),  # charge battery at 2000 W (not 4, import-AC: the grid's power)
    (1500.0, 12, 1500),   # discharge battery at 1500 W (not 5, export-AC)
    (0.0, 8, 0),          # battery standby
    (None, 1, 0),         # release: auto
]


@pytest.mark.parametrize(("power_w", "mode", "power_set"), GOODWE)
def test_goodwe_ems_mode_is_the_battery_power_mode(power_w: float | None, mode: int,
                                                   power_set: int) -> None:
    async def run() -> None:
        sim = TemplateHousehold(template("goodwe-et"), SPEC, free_port(), SimClock(speed=0))
        await sim.start()
        pool = LinkPool(2.0)
        try:
            device = TemplateDevice(pool.get("127.0.0.1", sim.server.port),
                                    template("goodwe-et"), "battery")
            await device.write_setpoint(None if power_w is None else Setpoint(power_w, 60))
            assert await holding(sim.server.port, 247, 47511, 2) == [mode, power_set]
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


# SunSpec map at 40000: "SunS" (2 registers), model 1 (2 + L 66), then model 124.
M124 = 40000 + 2 + 2 + 66
STOR_CTL_MOD, OUT_W_RTE, IN_W_RTE, RVRT_TMS, CHA_GRI_SET = (M124 + 5, M124 + 12, M124 + 13,
                                                           M124 + 15, M124 + 17)

SUNSPEC_124 = [  # setpoint W of a 5000 W battery → StorCtl_Mod, OutWRte %, InWRte %, ChaGriSet
    (-2000.0, 3, -40, 40, 1),  # forced charge: discharge limit negative
    (1000.0, 3, 20, -20, 0),   # forced discharge: charge limit negative
    (0.0, 3, 0, 0, 0),         # hold: neither
]


@asynccontextmanager
async def battery_124() -> AsyncIterator[tuple[SunSpecBattery, SimulatedModbusServer]]:
    """A 5000 W model 124 battery (Fronius Gen24 storage control) on a real Modbus server."""
    image = SunSpecImage([(1, {"Mn": "Fronius", "SN": "G24"}),
                          (124, {"WChaMax_SF": 0, "InOutWRte_SF": 0, "WChaMax": 5000,
                                 "StorCtl_Mod": 0, "InWRte": 100, "OutWRte": 100,
                                 "ChaGriSet": 0})], base=40000)
    server = SimulatedModbusServer(free_port(), {1: image})
    await server.start()
    pool = LinkPool(2.0)
    try:
        yield SunSpecBattery(SunSpecClient(pool.get("127.0.0.1", server.port), 1)), server
    finally:
        pool.close()
        await server.stop()


@pytest.mark.parametrize(("power_w", "mode", "out_pct", "in_pct", "grid"), SUNSPEC_124)
def test_model_124_forces_charge_and_discharge_with_negative_rates(
        power_w: float, mode: int, out_pct: int, in_pct: int, grid: int) -> None:
    async def run() -> None:
        async with battery_124() as (battery, server):
            await battery.write_setpoint(Setpoint(power_w, 30))
            assert (await holding(server.port, 1, M124, 1))[0] == 124  # the model is there
            words = await holding(server.port, 1, STOR_CTL_MOD, CHA_GRI_SET - STOR_CTL_MOD + 1)
            at = {a: words[a - STOR_CTL_MOD] for a in (STOR_CTL_MOD, OUT_W_RTE, IN_W_RTE,
                                                        RVRT_TMS, CHA_GRI_SET)}
            assert at[STOR_CTL_MOD] == mode
            assert (s16(at[OUT_W_RTE]), s16(at[IN_W_RTE])) == (out_pct, in_pct)
            assert at[RVRT_TMS] == 30 and at[CHA_GRI_SET] == grid
            await battery.release()
            assert (await holding(server.port, 1, STOR_CTL_MOD, 1))[0] == 0

    asyncio.run(run())


def test_model_124_revert_timer_longer_than_a_uint16_is_written_as_its_longest() -> None:
    """``InOutWRte_RvrtTms`` is a uint16 (pysunspec2's model_124.json): an expiry past
    65,535 s (a sped-up clock's scaling) is written as 65,535, never refused. Refused, no
    battery took a setpoint and a rehearsal's night island blacked out."""
    async def run() -> None:
        async with battery_124() as (battery, server):
            await battery.write_setpoint(Setpoint(1000.0, 5_184_000))
            words = await holding(server.port, 1, STOR_CTL_MOD, RVRT_TMS - STOR_CTL_MOD + 1)
            assert words[0] == 3 and words[RVRT_TMS - STOR_CTL_MOD] == 65_535
            assert s16(words[OUT_W_RTE - STOR_CTL_MOD]) == 20

    asyncio.run(run())
