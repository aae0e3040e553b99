"""SunSpec devices seen as Commonwatt device kinds (meter, PV inverter, battery).

* PV inverter: models 101/102/103 (integer) or 111/112/113 (float).
* Meter: models 201–204 (integer) or 211–214 (float). SunSpec meters report
  ``W > 0`` for import, which is Commonwatt's meter convention already.
* Battery: model 802 for state, model 124 for control and state when 802 is
  absent. Control uses 124's charge/discharge rate limits as a setpoint and
  ``InOutWRte_RvrtTms`` as its expiry, so the device reverts on its own.
"""

from __future__ import annotations

from devices.kinds import BatteryReading, MeterReading, PvReading, Setpoint
from devices.modbus.transport import DeviceError
from devices.sunspec.client import SunSpecClient

INVERTER_MODELS = (103, 102, 101, 113, 112, 111)
METER_MODELS = (203, 204, 202, 201, 213, 214, 212, 211)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class SunSpecInverter:
    """A SunSpec PV inverter."""

    def __init__(self, client: SunSpecClient) -> None:
        self.client = client

    async def read_pv(self) -> PvReading:
        """AC production in W and lifetime energy in Wh."""
        model_id = await self.client.first_model(INVERTER_MODELS, "inverter")
        values = await self.client.read_model(model_id)
        return PvReading(power_w=_float(values["W"]), energy_wh=_float(values["WH"]))


class SunSpecMeter:
    """A SunSpec grid-connection meter."""

    def __init__(self, client: SunSpecClient) -> None:
        self.client = client

    async def read_meter(self) -> MeterReading:
        """Net power (import > 0) and the import/export energy counters."""
        model_id = await self.client.first_model(METER_MODELS, "meter")
        values = await self.client.read_model(model_id)
        return MeterReading(
            power_w=_float(values["W"]),
            import_wh=_float(values["TotWhImp"]),
            export_wh=_float(values["TotWhExp"]),
        )


class SunSpecBattery:
    """A SunSpec battery: state from model 802 (or 124), control through model 124."""

    def __init__(self, client: SunSpecClient) -> None:
        self.client = client

    async def read_battery(self) -> BatteryReading:
        """SoC, capacity, power (discharge > 0) and ratings."""
        storage = await self.client.read_model(124)
        if self.client.has(802):
            battery = await self.client.read_model(802)
            return BatteryReading(
                power_w=_float(battery["W"]),
                soc_pct=_float(battery["SoC"]),
                capacity_wh=_float(battery["WHRtg"]),
                max_charge_w=_float(battery["WChaRteMax"]),
                max_discharge_w=_float(battery["WDisChaRteMax"]),
            )
        return BatteryReading(
            power_w=None,
            soc_pct=_float(storage["ChaState"]),
            capacity_wh=None,
            max_charge_w=_float(storage["WChaMax"]),
            max_discharge_w=_float(storage["WChaMax"]),
        )

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        """Command charge or discharge as a % of ``WChaMax``, reverting after ``expires_s``."""
        storage = await self.client.read_model(124)
        rating = _float(storage["WChaMax"])
        if not rating:
            raise DeviceError("garbage", "model 124 WChaMax is missing or zero")
        percent = max(-100.0, min(100.0, 100.0 * setpoint.power_w / rating))
        rate_sf = int(storage["InOutWRte_SF"] or 0)
        await self.client.write_points(124, {"StorCtl_Mod": 3}, sf={})
        await self.client.write_points(
            124,
            {
                "OutWRte": max(percent, 0.0),
                "InWRte": max(-percent, 0.0),
                "InOutWRte_WinTms": 0,
                "InOutWRte_RvrtTms": max(1, int(setpoint.expires_s)),
            },
            sf={"OutWRte": rate_sf, "InWRte": rate_sf},
        )
