"""IEEE 1547 DER models: 701 measurement, 713 storage capacity, 704 active-power control."""

from __future__ import annotations

import asyncio

import pytest
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from devices.kinds import Setpoint
from devices.modbus.transport import LinkPool
from devices.sunspec.adapters import SunSpecBattery, SunSpecInverter
from devices.sunspec.client import SunSpecClient
from devices.sunspec.models import model_def
from simulators.modbus_server import SimulatedModbusServer
from simulators.sunspec_image import SunSpecImage
from tests.conftest import free_port


def der_image() -> SunSpecImage:
    """A DER storage inverter laid out here from pysunspec2's definitions (no 124, no 802)."""
    return SunSpecImage([
        (1, {"Mn": "Acme", "Md": "DER-S", "SN": "D-42"}),
        (701, {"W_SF": 0, "W": -1800, "TotWh_SF": 0, "TotWhInj": 91_000, "TotWhAbs": 40_000}),
        (713, {"WH_SF": 1, "WHRtg": 1350, "WHAvail": 600, "Pct_SF": -1, "SoC": 444, "SoH": 990}),
        (704, {"WSet_SF": 0, "WSetEna": 0, "WSetMod": 0, "WSet": 0, "WSetRvrtTms": 0}),
    ])


def test_der_models_read_write_and_agree_with_pysunspec2() -> None:
    async def run() -> None:
        image = der_image()
        server = SimulatedModbusServer(free_port(), {1: image})
        await server.start()
        pool = LinkPool()
        link = pool.get("127.0.0.1", server.port)
        try:
            battery = SunSpecBattery(SunSpecClient(link, 1))
            reading = await battery.read_battery()
            pv = await SunSpecInverter(SunSpecClient(link, 1)).read_pv()
            await battery.write_setpoint(Setpoint(2500.0, 45))

            def scan() -> SunSpecModbusClientDeviceTCP:
                device = SunSpecModbusClientDeviceTCP(
                    slave_id=1, ipaddr="127.0.0.1", ipport=server.port)
                device.scan()
                device.close()
                return device

            theirs = await asyncio.to_thread(scan)
        finally:
            pool.close()
            await server.stop()
        assert reading.power_w == -1800.0  # absorbing: the battery charges
        assert reading.soc_pct == pytest.approx(44.4)
        assert reading.capacity_wh == pytest.approx(13_500.0)
        assert pv.energy_wh == 91_000
        assert theirs.models[713][0].SoC.cvalue == pytest.approx(reading.soc_pct)
        assert theirs.models[701][0].W.cvalue == pytest.approx(reading.power_w)
        controls = theirs.models[704][0]
        assert (controls.WSetEna.value, controls.WSetMod.value) == (1, 1)
        assert controls.WSet.cvalue == pytest.approx(2500.0)
        assert controls.WSetRvrtTms.value == 45
        assert model_def(704).points["WSetRvrtTms"].offset == 31

    asyncio.run(run())
