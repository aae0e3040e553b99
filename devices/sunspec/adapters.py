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
* PV curtailment: model 123 (immediate controls: ``WMaxLimPct`` in % of
  ``WMax``, ``WMaxLimPct_RvrtTms``, ``WMaxLim_Ena``) or, on DER devices,
  model 704 (``WMaxLimPctEna``, ``WMaxLimPct``, ``WMaxLimPctRvrt``,
  ``WMaxLimPctEnaRvrt``, ``WMaxLimPctRvrtTms``). Point names, types and
  scale factors are pysunspec2's ``sunspec2/models/json/model_123.json``
  and ``model_704.json`` (the SunSpec Alliance's own definitions); every
  limit carries its revert time, and release disables the limit.
"""

from __future__ import annotations

import math

from devices.kinds import BatteryReading, MeterReading, PvLimit, PvReading, Setpoint
from devices.modbus.transport import DeviceError
from devices.sunspec.client import SunSpecClient

#: SunSpec 701 ``Alrm`` UNDER_FREQUENCY (pysunspec2 model_701.json, symbol value 9).
UNDER_FREQUENCY_BIT = 1 << 9
INVERTER_MODELS = (103, 102, 101, 113, 112, 111, 701)
#: Limit models, preferred first (123 is the one most inverters implement).
LIMIT_MODELS = (123, 704)
#: Largest revert time each limit model's timer register holds (uint16 / uint32).
MAX_REVERT_S = {123: 0xFFFF, 704: 0xFFFFFFFF}
METER_MODELS = (203, 204, 202, 201, 213, 214, 212, 211)

#: The largest revert timer model 124 holds (``InOutWRte_RvrtTms`` is a uint16), s.
UINT16_MAX = 65_535


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class SunSpecInverter:
    """A SunSpec PV inverter, curtailable through model 123 or 704.

    ``rated_w`` overrides the nameplate as the base of the percentage limit
    (for devices whose nameplate models are missing or wrong).
    """

    def __init__(self, client: SunSpecClient, rated_w: float | None = None) -> None:
        self.client = client
        self.rated_w = rated_w

    async def read_pv(self) -> PvReading:
        """AC production in W and lifetime energy in Wh."""
        model_id = await self.client.first_model(INVERTER_MODELS, "inverter")
        energy_point = "TotWhInj" if model_id == 701 else "WH"
        values = await self.client.read_model(model_id, ("W", energy_point, "Hz"))
        energy = values[energy_point]
        return PvReading(power_w=_float(values["W"]), energy_wh=_float(energy),
                         frequency_hz=_float(values["Hz"]))

    async def write_limit(self, limit: PvLimit | None) -> None:
        """Cap AC output at ``limit.limit_w`` until ``limit.revert_s`` runs out; ``None`` releases.

        Model 123 gets ``WMaxLimPct``, ``WMaxLimPct_WinTms = 0`` and
        ``WMaxLimPct_RvrtTms`` in one request and ``WMaxLim_Ena = 1`` after
        them; model 704 gets ``WMaxLimPctEna = 1``, the percentage, and a
        reversion to "disabled, 100 %" after ``WMaxLimPctRvrtTms``. Release
        writes only the enable point (0).
        """
        model_id = await self.client.first_model(LIMIT_MODELS, "power-limit")
        enable = "WMaxLim_Ena" if model_id == 123 else "WMaxLimPctEna"
        if limit is None or limit.limit_w is None:
            await self.client.write_points(model_id, {enable: 0}, sf={})
            return
        rated = await self.rated_power_w()
        values = await self.client.read_model(model_id, ("WMaxLimPct_SF",))
        sf = int(values["WMaxLimPct_SF"] or 0)
        percent = _floor_to(100.0 * min(max(limit.limit_w, 0.0), rated) / rated, sf)
        revert = min(max(int(limit.revert_s), 1), MAX_REVERT_S[model_id])
        if model_id == 123:
            await self.client.write_points(
                123, {"WMaxLimPct": percent, "WMaxLimPct_WinTms": 0,
                      "WMaxLimPct_RvrtTms": revert, enable: 1},
                sf={"WMaxLimPct": sf},
            )
            return
        await self.client.write_points(
            704, {enable: 1, "WMaxLimPct": percent, "WMaxLimPctRvrt": 100.0,
                  "WMaxLimPctEnaRvrt": 0, "WMaxLimPctRvrtTms": revert},
            sf={"WMaxLimPct": sf, "WMaxLimPctRvrt": sf},
        )

    async def rated_power_w(self) -> float:
        """The base of the percentage limit: ``rated_w``, else the device's ``WMax``
        setting (121 / 702), else its rating (120 ``WRtg`` / 702 ``WMaxRtg``)."""
        if self.rated_w is None:
            candidates: list[tuple[int, str]] = [
                (121, "WMax"), (702, "WMax"), (120, "WRtg"), (702, "WMaxRtg")]
            if not self.client.models:
                await self.client.discover()
            for model_id, point in candidates:
                if self.client.has(model_id):
                    value = _float((await self.client.read_model(model_id, (point,)))[point])
                    if value:
                        self.rated_w = value
                        break
        if not self.rated_w or self.rated_w <= 0:
            raise DeviceError("missing model", "no rated power (121/702 WMax, 120 WRtg, 702"
                                               " WMaxRtg) to turn a limit into a percentage")
        return self.rated_w


def _floor_to(percent: float, sf: int) -> float:
    """``percent`` rounded down to the resolution of scale factor ``sf`` (10^sf)."""
    step = 10.0**sf
    return math.floor(percent / step + 1e-9) * step


class SunSpecMeter:
    """A SunSpec grid-connection meter."""

    def __init__(self, client: SunSpecClient) -> None:
        self.client = client

    async def read_meter(self) -> MeterReading:
        """Net power (import > 0) and the import/export energy counters."""
        model_id = await self.client.first_model(METER_MODELS, "meter")
        values = await self.client.read_model(
            model_id, ("W", "TotWhImp", "TotWhExp", "PhVphA", "Hz"))
        return MeterReading(
            power_w=_float(values["W"]),
            import_wh=_float(values["TotWhImp"]),
            export_wh=_float(values["TotWhExp"]),
            voltage_v=_float(values.get("PhVphA")),
            frequency_hz=_float(values.get("Hz")),
        )


class SunSpecBattery:
    """A SunSpec battery: state from model 802 (or 124), control through model 124."""

    def __init__(self, client: SunSpecClient) -> None:
        self.client = client

    async def read_battery(self) -> BatteryReading:
        """SoC, capacity, power (discharge > 0) and ratings."""
        await self.client.first_model((124, 802, 713), "storage")
        storage = await self.client.read_model(124) if self.client.has(124) else {}
        grid, overloaded = await self._grid() if self.client.has(701) else (None, False)
        if self.client.has(802):
            battery = await self.client.read_model(802)
            return BatteryReading(
                power_w=_float(battery["W"]),
                soc_pct=_float(battery["SoC"]),
                capacity_wh=_float(battery["WHRtg"]),
                max_charge_w=_float(battery["WChaRteMax"]),
                max_discharge_w=_float(battery["WDisChaRteMax"]),
                grid=grid,
                overloaded=overloaded,
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
                grid=grid,
                overloaded=overloaded,
            )
        return BatteryReading(
            power_w=None,
            soc_pct=_float(storage.get("ChaState")),
            capacity_wh=None,
            max_charge_w=_float(storage.get("WChaMax")),
            max_discharge_w=_float(storage.get("WChaMax")),
        )

    async def _grid(self) -> tuple[str | None, bool]:
        """701 ``ConnSt`` (pysunspec2 model_701.json: 0 DISCONNECTED, 1 CONNECTED) and
        whether ``Alrm`` has UNDER_FREQUENCY (bit 9) set."""
        points = await self.client.read_model(701, ("ConnSt", "Alrm"))
        state, alarm = points["ConnSt"], points.get("Alrm")
        grid = {0: "off", 1: "on"}.get(state) if isinstance(state, int) else None
        # 0xFFFFFFFF is SunSpec's "not implemented" for a bitfield32.
        under_frequency = isinstance(alarm, int) and alarm != 0xFFFFFFFF and bool(
            alarm & UNDER_FREQUENCY_BIT)
        return grid, under_frequency

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        """Force charge or discharge (124 rates, or 704 watts), reverting after ``expires_s``.

        Model 124 (SunSpec model_124.json): ``StorCtl_Mod`` bit 0 activates the
        charge limit ``InWRte``, bit 1 the discharge limit ``OutWRte``, both in %
        of ``WChaMax``. A positive rate only caps the battery; a negative one
        forces the opposite direction (Fronius 'Gen24 Modbus TCP & RTU', storage
        control; evcc's sunspec-inverter-control force-charges with
        ``OutWRte = -rate``). So a forced charge at X % is ``InWRte = X,
        OutWRte = -X``, a forced discharge ``OutWRte = X, InWRte = -X``, and a
        hold both 0, with both bits set. ``ChaGriSet = 1`` (grid charging
        allowed) goes with a charge where the device has the point.
        """
        if not self.client.has(124) and await self._has(704):
            await self._write_704(setpoint)
            return
        storage = await self.client.read_model(124)
        rating = _float(storage["WChaMax"])
        if not rating:
            raise DeviceError("garbage", "model 124 WChaMax is missing or zero")
        percent = max(-100.0, min(100.0, 100.0 * setpoint.power_w / rating))
        rate_sf = int(storage["InOutWRte_SF"] or 0)
        if percent < 0 and storage.get("ChaGriSet") is not None:
            await self.client.write_points(124, {"ChaGriSet": 1}, sf={})
        await self.client.write_points(124, {"StorCtl_Mod": 3}, sf={})
        await self.client.write_points(
            124,
            {
                "OutWRte": percent,  # discharge cap; negative: forced charge
                "InWRte": -percent,  # charge cap; negative: forced discharge
                "InOutWRte_WinTms": 0,
                # uint16 in model 124: a longer expiry cannot be written, so the device
                # gets the longest it can hold (shorter is the safe side).
                "InOutWRte_RvrtTms": min(UINT16_MAX, max(1, int(setpoint.expires_s))),
            },
            sf={"OutWRte": rate_sf, "InWRte": rate_sf},
        )

    async def release(self) -> None:
        """Hand the battery back to its own logic: model 124 ``StorCtl_Mod = 0`` (no forced
        charge or discharge), or model 704 ``WSetEna = 0``."""
        if self.client.has(124) or not await self._has(704):
            await self.client.write_points(124, {"StorCtl_Mod": 0}, sf={})
            return
        await self.client.write_points(704, {"WSetEna": 0}, sf={})

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
