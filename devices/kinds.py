"""The device kinds the controller understands, as small typed protocols.

One sign convention applies everywhere in Commonwatt, whatever the vendor:

* **Meter** (household connection point): ``power_w > 0`` is import from the
  grid into the household, ``< 0`` is export.
* **PV inverter**: ``power_w >= 0`` is AC production.
* **Battery**: ``power_w > 0`` is discharge (the battery supplies the house),
  ``< 0`` is charge.

Energies are in Wh, SoC in %, power in W. ``None`` means "unknown": a
sentinel register, a device that did not answer, or a stale value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One reading of a bidirectional meter."""

    power_w: float | None
    import_wh: float | None = None
    export_wh: float | None = None


@dataclass(frozen=True, slots=True)
class PvReading:
    """One reading of a PV inverter."""

    power_w: float | None
    energy_wh: float | None = None


@dataclass(frozen=True, slots=True)
class BatteryReading:
    """One reading of a battery (or the battery side of a hybrid inverter)."""

    power_w: float | None
    soc_pct: float | None
    capacity_wh: float | None
    max_charge_w: float | None
    max_discharge_w: float | None


@dataclass(frozen=True, slots=True)
class Setpoint:
    """A battery power command that expires on its own.

    Attributes:
        power_w: target power, positive = discharge, negative = charge.
        expires_s: seconds after which the device reverts to its safe idle
            state unless the command is refreshed.
    """

    power_w: float
    expires_s: int


@runtime_checkable
class Meter(Protocol):
    """A grid-connection meter."""

    async def read_meter(self) -> MeterReading: ...


@runtime_checkable
class PvInverter(Protocol):
    """A PV inverter."""

    async def read_pv(self) -> PvReading: ...


@runtime_checkable
class Battery(Protocol):
    """A controllable battery."""

    async def read_battery(self) -> BatteryReading: ...

    async def write_setpoint(self, setpoint: Setpoint) -> None: ...
