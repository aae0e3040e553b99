"""SunSpec devices seen as Commonwatt device kinds (meter, PV inverter, battery).

* PV inverter: models 101/102/103 (integer) or 111/112/113 (float).
* Meter: models 201–204 (integer) or 211–214 (float). SunSpec meters report
  ``W > 0`` for import, which is Commonwatt's meter convention already.
* DER models (IEEE 1547-2018): 701 (AC measurement, ``W > 0`` = generation)
  for inverter power and energy; 713 (storage capacity) for SoC and capacity.
* Battery: model 802 or 713 for state, model 124 for control (state from
  124 when neither is present). Control uses 124's charge/discharge rate
  limits as a setpoint and ``InOutWRte_RvrtTms`` as its expiry, so the device
  reverts on its own. A DER without 124 is controlled through model 704's
  active-power setpoint (``WSet``, watts) with ``WSetRvrtTms`` as the expiry.
"""

from __future__ import annotations

from devices.kinds import BatteryReading, MeterReading, PvReading, Setpoint
from devices.modbus.transport import DeviceError
from devices.sunspec.client import SunSpecClient

INVERTER_MODELS = (103, 102, 101, 113, 112, 111, 701)
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
        energy_point = "TotWhInj" if model_id == 701 else "WH"
        values = await self.client.read_model(model_id, ("W", energy_point))
        energy = values[energy_point]
        return PvReading(power_w=_float(values["W"]), energy_wh=_float(energy))


class SunSpecMeter:
    """A SunSpec grid-connection meter."""

    def __init__(self, client: SunSpecClient) -> None:
        self.client = client

    async def read_meter(self) -> MeterReading:
        """Net power (import > 0) and the import/export energy counters."""
        model_id = await self.client.first_model(METER_MODELS, "meter")
        values = await self.client.read_model(model_id, ("W", "TotWhImp", "TotWhExp"))
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
        await self.client.first_model((124, 802, 713), "storage")
        storage = await self.client.read_model(124) if self.client.has(124) else {}
        if self.client.has(802):
            battery = await self.client.read_model(802)
            return BatteryReading(
                power_w=_float(battery["W"]),
                soc_pct=_float(battery["SoC"]),
                capacity_wh=_float(battery["WHRtg"]),
                max_charge_w=_float(battery["WChaRteMax"]),
                max_discharge_w=_float(battery["WDisChaRteMax"]),
            )
        if self.client.has(713):
            capacity = await self.client.read_model(713)
            ac = await self.client.read_model(701) if self.client.has(701) else {}
            rating = _float(storage.get("WChaMax"))
            return BatteryReading(
                power_w=_float(ac.get("W")),  # 701: generation (discharge) is positive
                soc_pct=_float(capacity["SoC"]),
                capacity_wh=_float(capacity["WHRtg"]),
                max_charge_w=rating,
                max_discharge_w=rating,
            )
        return BatteryReading(
            power_w=None,
            soc_pct=_float(storage.get("ChaState")),
            capacity_wh=None,
            max_charge_w=_float(storage.get("WChaMax")),
            max_discharge_w=_float(storage.get("WChaMax")),
        )

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        """Command charge or discharge (124 rates, or 704 watts), reverting after ``expires_s``."""
        if not self.client.has(124) and await self._has(704):
            await self._write_704(setpoint)
            return
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

    async def _has(self, model_id: int) -> bool:
        if not self.client.models:
            await self.client.discover()
        return self.client.has(model_id)

    async def _write_704(self, setpoint: Setpoint) -> None:
        controls = await self.client.read_model(704)
        sf = int(controls["WSet_SF"] or 0)
        await self.client.write_points(
            704,
            {"WSetEna": 1, "WSetMod": 1, "WSet": setpoint.power_w, "WSetEnaRvrt": 0,
             "WSetRvrtTms": max(1, int(setpoint.expires_s))},
            sf={"WSet": sf},
        )
