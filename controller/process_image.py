"""The process image: one frozen snapshot of every reading, taken once per cycle.

The dispatch never reads a live value; it reads this. Unknown values are NaN
and the validity mask says which households can be dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ProcessImage:
    """Readings of all households at one instant, in Commonwatt's sign convention."""

    ARRAYS: ClassVar[tuple[str, ...]] = (
        "pv_w", "meter_w", "battery_w", "soc_pct", "capacity_wh", "max_charge_w",
        "max_discharge_w", "import_wh", "export_wh", "pv_energy_wh",
    )

    timestamp: float
    member_ids: tuple[str, ...]
    has_pv: NDArray[np.bool_]
    has_battery: NDArray[np.bool_]
    pv_w: FloatArray
    meter_w: FloatArray
    battery_w: FloatArray
    soc_pct: FloatArray
    capacity_wh: FloatArray
    max_charge_w: FloatArray
    max_discharge_w: FloatArray
    #: Lifetime energy counters (Wh) of the meter and the PV inverter; NaN where
    #: the device has none or is unknown.
    import_wh: FloatArray
    export_wh: FloatArray
    pv_energy_wh: FloatArray
    #: Batteries that do not answer but whose last setpoint has lapsed, so they idle:
    #: left out (``has_battery`` False) while the household is still booked.
    battery_assumed_idle: NDArray[np.bool_] | None = None
    #: Batteries whose last read or write failed: their reading (still within its
    #: staleness) is what they did before, not what they do now.
    battery_failing: NDArray[np.bool_] | None = None
    #: The AC frequency each PV inverter reports, Hz (NaN: unknown); None: not read.
    pv_hz: FloatArray | None = None

    @property
    def counters(self) -> FloatArray:
        """The counters as rows (import, export, pv), as the ledger takes them."""
        return np.stack([self.import_wh, self.export_wh, self.pv_energy_wh])

    @property
    def battery_ok(self) -> NDArray[np.bool_]:
        """Households whose battery (if any) has a fresh reading."""
        return ~self.has_battery | np.isfinite(self.soc_pct)

    @property
    def valid(self) -> NDArray[np.bool_]:
        """Households whose meter, PV and battery are all known: safe to dispatch."""
        pv_ok = ~self.has_pv | np.isfinite(self.pv_w)
        return np.isfinite(self.meter_w) & pv_ok & self.battery_ok

    @property
    def load_w(self) -> FloatArray:
        """Household consumption: grid import + PV + battery discharge (0 where unknown)."""
        load = self.meter_w + np.where(self.has_pv, self.pv_w, 0.0) + np.where(
            self.has_battery, self.battery_w, 0.0
        )
        return np.where(self.valid, np.maximum(load, 0.0), 0.0)

    @property
    def pv_production_w(self) -> FloatArray:
        """PV production, 0 where there is none or it is unknown."""
        return np.where(self.has_pv & np.isfinite(self.pv_w), np.maximum(self.pv_w, 0.0), 0.0)
