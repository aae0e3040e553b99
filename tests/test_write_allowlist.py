"""Device writes go only to registers a template or a SunSpec control point names: the
transport refuses any other address, with a clear error, before anything reaches the server."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.client import AsyncModbusTcpClient

from devices.kinds import Setpoint
from devices.modbus.transport import LinkPool, WriteRefused
from devices.sunspec.adapters import SunSpecBattery
from devices.sunspec.client import SunSpecClient
from devices.sunspec.models import model_def
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


async def _holding(port: int, unit: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        response = await client.read_holding_registers(address, count=count, device_id=unit)
        assert not response.isError()
        return list(response.registers)
    finally:
        client.close()


def test_a_write_outside_the_template_is_refused_and_never_reaches_the_device() -> None:
    async def run() -> None:
        sim = TemplateHousehold(template("sma-sunny-boy-storage"), SPEC, free_port(),
                                SimClock(speed=0))
        await sim.start()
        seen: list[tuple[int, int, list[int]]] = []
        hook = sim.server.on_write

        def record(unit: int, offset: int, values: list[int]) -> None:
            seen.append((unit, offset, values))
            hook(unit, offset, values)  # type: ignore[misc]

        sim.server.on_write = record
        pool = LinkPool(2.0)
        link = pool.get("127.0.0.1", sim.server.port)
        try:
            battery = TemplateDevice(link, template("sma-sunny-boy-storage"), "battery")
            await battery.write_setpoint(Setpoint(-1000.0, 30))  # the template's own writes
            assert seen, "the template's control writes reach the device"
            assert 40236 in link.writable(3)  # SMA's documented control register
            before = len(seen)
            counter = await _holding(sim.server.port, 3, 30775, 2)
            with pytest.raises(WriteRefused, match=r"unit 3: register\(s\) 30775, 30776 are "
                                                   r"not writable") as refused:
                await link.write(30775, [0, 0], 3)  # the AC power register: read-only data
            assert refused.value.reason == "write refused"
            with pytest.raises(WriteRefused, match="40238"):  # one register past the control
                await link.write(40236, [0, 0, 0], 3)
            with pytest.raises(WriteRefused):
                await link.write(40236, [0, 0], 99)  # the right address on another unit
            assert len(seen) == before, "no refused write reached the server"
            assert await _holding(sim.server.port, 3, 30775, 2) == counter
        finally:
            pool.close()
            await sim.stop()

    asyncio.run(run())


def test_sunspec_control_points_are_writable_and_nothing_else() -> None:
    async def run() -> None:
        image = SunSpecImage([(1, {"Mn": "Acme", "SN": "X1"}),
                              (124, {"WChaMax_SF": 0, "InOutWRte_SF": 0,
                                      "WChaMax": 5000})], base=0)
        server = SimulatedModbusServer(free_port(), {7: image})
        await server.start()
        pool = LinkPool(2.0)
        link = pool.get("127.0.0.1", server.port)
        try:
            client = SunSpecClient(link, 7)
            await SunSpecBattery(client).write_setpoint(Setpoint(1000.0, 20))
            block = client.models[124]
            points = model_def(124).points
            allowed = link.writable(7)
            assert block.address + points["StorCtl_Mod"].offset in allowed
            assert block.address + points["WChaMax"].offset not in allowed  # a setting
            serial = client.models[1].address + model_def(1).points["SN"].offset
            with pytest.raises(WriteRefused, match=f"register\\(s\\) {serial}"):
                await link.write(serial, [0x4142], 7)
            assert (await _holding(server.port, 7, serial, 1))[0] != 0x4142
        finally:
            pool.close()
            await server.stop()

    asyncio.run(run())
