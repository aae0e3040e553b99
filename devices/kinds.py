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
    #: Phase voltage (V) and frequency (Hz) where the meter reports them: a grid that is
    #: lost shows here (controller/island/grid_loss.py).
    voltage_v: float | None = None
    frequency_hz: float | None = None


@dataclass(frozen=True, slots=True)
class PvReading:
    """One reading of a PV inverter."""

    power_w: float | None
    energy_wh: float | None = None
    #: The AC frequency it measures (Hz): islanded, the grid-former's frequency shift
    #: derates AC-coupled PV above f0 + 1 Hz. None where the device does not say.
    frequency_hz: float | None = None


@dataclass(frozen=True, slots=True)
class BatteryReading:
    """One reading of a battery (or the battery side of a hybrid inverter)."""

    power_w: float | None
    soc_pct: float | None
    capacity_wh: float | None
    max_charge_w: float | None
    max_discharge_w: float | None
    #: A grid-forming inverter's view of the utility: "on" (connected), "off"
    #: (islanded), or None where the device does not say.
    grid: str | None = None
    #: A grid-forming inverter that cannot hold the island's frequency (SunSpec 701
    #: ``Alrm`` bit 9, UNDER_FREQUENCY): more load than it can carry, some is dropped.
    overloaded: bool = False


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


@dataclass(frozen=True, slots=True)
class PvLimit:
    """A cap on a PV inverter's AC output that expires on its own.

    Attributes:
        limit_w: the most AC power the inverter may produce, in W; ``None``
            means "no limit" and is the same as releasing the limit.
        revert_s: seconds after which the inverter drops the limit by itself
            unless the command is refreshed (its revert timer). Drivers never
            write a limit without it, so a controller that dies cannot leave
            panels throttled.
    """

    limit_w: float | None
    revert_s: int


@runtime_checkable
class Meter(Protocol):
    """A grid-connection meter."""

    async def read_meter(self) -> MeterReading: ...


@runtime_checkable
class PvInverter(Protocol):
    """A PV inverter."""

    async def read_pv(self) -> PvReading: ...


@runtime_checkable
class CurtailablePvInverter(PvInverter, Protocol):
    """A PV inverter whose AC output can be capped through its active-power limit.

    ``write_limit(PvLimit(limit_w, revert_s))`` caps production at
    ``limit_w`` (clamped to ``0 … rated power``) and arms the inverter's own
    revert timer with ``revert_s``; the controller refreshes the command
    before it runs out. ``write_limit(None)`` (or a limit of ``None``)
    releases the cap at once.

    Most inverters take the limit as a percentage of their rated power, so
    drivers divide by it: a SunSpec device's nameplate (model 121 ``WMax``
    or 120 ``WRtg``; on IEEE 1547 DER devices 702 ``WMax`` or ``WMaxRtg``),
    or a template's ``params.rated_w``. The percentage is rounded *down* to
    the register's resolution, so the inverter never produces more than
    asked; 0 W is written as 0 % (some inverters answer that by going to
    standby, which is what an island with nothing to absorb PV needs).
    ``revert_s`` is clamped to what the timer register holds, at least 1 s,
    because 0 means "never revert" on most devices. A device that holds a
    limit until it is released (a template with ``expiry = "controller"``)
    says so through its driver (``limit_needs_release``).
    """

    async def write_limit(self, limit: PvLimit | None) -> None: ...


@runtime_checkable
class Battery(Protocol):
    """A controllable battery."""

    async def read_battery(self) -> BatteryReading: ...

    async def write_setpoint(self, setpoint: Setpoint) -> None: ...
