"""SunSpec over real Modbus TCP: our driver, our simulator and pysunspec2 agree."""

from __future__ import annotations

import asyncio

import pytest
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from devices.kinds import Setpoint
from devices.modbus.transport import DeviceError, LinkPool
from devices.sunspec.adapters import SunSpecBattery, SunSpecInverter, SunSpecMeter
from devices.sunspec.client import SunSpecClient
from devices.sunspec.models import decode, model_def
from simulators.clock import SimClock
from simulators.coop import BATTERY_UNIT, INVERTER_UNIT, METER_UNIT, SimulatedCoop
from simulators.household import demo_households
from simulators.modbus_server import SimulatedModbusServer
from simulators.sunspec_image import SunSpecImage
from tests.conftest import free_port


def test_model_layouts_come_from_pysunspec2() -> None:
    # Model 103: W at offset 14 from the ID register (ID, L, A, AphA-C, A_SF, 6 voltages, V_SF)
    assert model_def(103).points["W"].offset == 14
    assert model_def(103).length == 50
    assert model_def(203).length == 105
    assert model_def(124).points["InOutWRte_RvrtTms"].offset == 15


def test_decode_applies_scale_factors_and_sentinels() -> None:
    regs = [0] * 52
    regs[0], regs[1] = 103, 50
    w, w_sf = model_def(103).points["W"], model_def(103).points["W_SF"]
    regs[w.offset], regs[w_sf.offset] = 1234, 1  # 1234 × 10^1
    hz, hz_sf = model_def(103).points["Hz"], model_def(103).points["Hz_SF"]
    regs[hz.offset], regs[hz_sf.offset] = 0xFFFF, 0xFFFE  # not implemented
    values = decode(model_def(103), regs)
    assert values["W"] == 12340
    assert values["Hz"] is None


def test_pysunspec2_reads_our_simulators_and_agrees_with_our_driver() -> None:
    async def run() -> None:
        clock = SimClock(start_s=1_780_000_000 // 86400 * 86400 + 12 * 3600, speed=0)
        coop = SimulatedCoop(demo_households(2), clock)
        await coop.start()
        host, port = coop.endpoint("h01")
        pool = LinkPool()
        try:
            ours = {
                INVERTER_UNIT: (await SunSpecInverter(
                    SunSpecClient(pool.get(host, port), INVERTER_UNIT)).read_pv()).power_w,
                METER_UNIT: (await SunSpecMeter(
                    SunSpecClient(pool.get(host, port), METER_UNIT)).read_meter()).power_w,
            }
            battery = await SunSpecBattery(
                SunSpecClient(pool.get(host, port), BATTERY_UNIT)).read_battery()
            pool.close()

            def scan(unit: int) -> SunSpecModbusClientDeviceTCP:
                device = SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr=host, ipport=port)
                device.scan()
                device.close()
                return device

            inverter = await asyncio.to_thread(scan, INVERTER_UNIT)
            meter = await asyncio.to_thread(scan, METER_UNIT)
            storage = await asyncio.to_thread(scan, BATTERY_UNIT)
        finally:
            await coop.stop()
        assert inverter.models[1][0].SN.value == "INV-h01"
        assert inverter.models[103][0].W.cvalue == pytest.approx(ours[INVERTER_UNIT])
        assert meter.models[203][0].W.cvalue == pytest.approx(ours[METER_UNIT])
        assert storage.models[802][0].SoC.cvalue == pytest.approx(battery.soc_pct)
        assert storage.models[802][0].WHRtg.cvalue == pytest.approx(battery.capacity_wh)
        assert set(storage.models) >= {1, 124, 802}

    asyncio.run(run())


def test_driver_reads_a_device_laid_out_by_the_test_itself() -> None:
    """A SunSpec map at base 0, not from our simulator, with a model we skip over."""
    async def run() -> None:
        image = SunSpecImage(
            [(1, {"Mn": "Acme", "SN": "X1"}), (120, {}),
             (201, {"W_SF": -1, "W": 5230, "TotWh_SF": 0, "TotWhImp": 777, "TotWhExp": 55})],
            base=0,
        )
        server = SimulatedModbusServer(free_port(), {7: image})
        await server.start()
        pool = LinkPool()
        try:
            meter = SunSpecMeter(SunSpecClient(pool.get("127.0.0.1", server.port), 7))
            reading = await meter.read_meter()
            missing = SunSpecInverter(SunSpecClient(pool.get("127.0.0.1", server.port), 7))
            with pytest.raises(DeviceError, match="missing model"):
                await missing.read_pv()
        finally:
            pool.close()
            await server.stop()
        assert reading.power_w == pytest.approx(523.0)
        assert reading.import_wh == 777 and reading.export_wh == 55

    asyncio.run(run())


def test_battery_setpoint_round_trip_with_expiry() -> None:
    async def run() -> None:
        clock = SimClock(start_s=1_780_000_000 // 86400 * 86400 + 12 * 3600, speed=0)
        coop = SimulatedCoop(demo_households(1), clock)
        await coop.start()
        pool = LinkPool()
        try:
            host, port = coop.endpoint("h01")
            battery = SunSpecBattery(SunSpecClient(pool.get(host, port), BATTERY_UNIT))
            await battery.write_setpoint(Setpoint(-1500.0, 20))
            assert coop.physics.setpoint_w[0] == pytest.approx(-1500.0, abs=1.0)
            assert coop.physics.setpoint_expiry_s[0] == pytest.approx(clock.now() + 20)
            await battery.write_setpoint(Setpoint(800.0, 20))
            assert coop.physics.setpoint_w[0] == pytest.approx(800.0, abs=1.0)
        finally:
            pool.close()
            await coop.stop()

    asyncio.run(run())
