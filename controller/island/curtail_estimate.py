"""PV held back, estimated: what the inverters could have given and did not, and why.

A capped inverter reports what it produces, not what the sun offers; islanded, a
grid-forming inverter that can take no more raises the island's frequency and every
inverter backs off (frequency-watt), so the measured PV is what was delivered. The
books need what was held back (``curtailed``) or the PV and self-sufficiency
figures describe a smaller day than the one the roofs had.

SunSpec has no standard available-power point (none of 101-103, 111-113, 120-126,
701-713 in pysunspec2's models), so the estimate is the forecast scaled by
measurement: each member's PV forecast (the island plan's, 15-minute means) times the
ratio of measured to forecast PV over the cycles in which nothing held it back
(energies, decayed with :data:`TAU_S`, so a cloudy hour moves the ratio and a
single cycle does not). While something holds it back the estimate is that
scaled forecast less what was measured, never below zero.

Causes (:data:`CAUSES`):

* ``command``: a PV cap Commonwatt set is in force on the inverter (an island's
  surplus, or the export cap at the point of common coupling);
* ``grid_former``: islanded, the grid-forming battery is full or charging at its
  rating, so it can take no more and the island sheds PV by frequency. Where the
  inverter reports the frequency and it is in the derating band, what it held
  back is inferred from the frequency and its output (:mod:`.freq_shift`), with
  no forecast.

Without a forecast (no island plan) nothing is estimated and the books hold only
what the dispatch itself curtailed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

CAUSES = ("command", "grid_former")
#: Time constant of the measured/forecast ratio, s.
TAU_S = 3600.0
#: A forecast below this (W) says too little about the ratio (dawn, dusk).
MIN_FORECAST_W = 50.0
#: The grid-former can take no more: SoC at or above this (%), ...
FULL_PCT = 99.5
#: ... or charging at this share of its rating or more.
AT_RATING = 0.95
#: A full grid-former discharging more than this share of its rating is the island's
#: source, not a sink that is full: nothing is held back (a cloud over a full island).
DISCHARGING = 0.02


def former_saturated(islanded: bool, grid_forming: BoolArray, battery_w: FloatArray,
                     soc_pct: FloatArray, max_charge_w: FloatArray) -> bool:
    """Whether, islanded, a grid-forming battery can take no more (full and not supplying
    the island, or charging at its rating; battery power is positive discharging)."""
    if not islanded or not grid_forming.any():
        return False
    g = grid_forming
    power = np.nan_to_num(battery_w[g], nan=0.0)
    full = (np.nan_to_num(soc_pct[g], nan=0.0) >= FULL_PCT) & (
        power <= DISCHARGING * max_charge_w[g])
    at_rating = -power >= AT_RATING * max_charge_w[g]
    return bool((full | (at_rating & (max_charge_w[g] > 0))).any())


@dataclass
class CurtailEstimate:
    """One cycle's estimate: W held back per member, and per cause."""

    held_w: FloatArray
    by_cause_w: dict[str, FloatArray]


class CurtailEstimator:
    """Keeps each member's measured/forecast PV ratio and estimates what was held back.

    Args:
        n: members.
    """

    def __init__(self, n: int) -> None:
        self.measured_wh = np.zeros(n)
        self.forecast_wh = np.zeros(n)

    @property
    def ratio(self) -> FloatArray:
        """Measured over forecast PV while nothing held it back (1 before any)."""
        return np.divide(self.measured_wh, self.forecast_wh, out=np.ones_like(self.measured_wh),
                         where=self.forecast_wh > 0)

    def step(self, dt_s: float, pv_w: FloatArray, valid: BoolArray,
             forecast_w: FloatArray | None, capped: BoolArray,
             saturated: bool, frequency_hz: FloatArray | None = None) -> CurtailEstimate:
        """Estimate this cycle's held-back PV, then learn from the members nothing held back.

        Args:
            dt_s: the cycle's length.
            pv_w: measured PV (NaN where unknown).
            valid: members whose readings count this cycle.
            forecast_w: the forecast PV now (NaN where unknown), None without one.
            capped: members with a Commonwatt PV cap in force.
            saturated: islanded and the grid-former can take no more
                (:func:`former_saturated`).
            frequency_hz: each inverter's AC frequency (NaN where unknown), None
                without: where it derates, the frequency says what was held back.
        """
        from controller.island.freq_shift import derating, held_back_w

        n = len(pv_w)
        zero = np.zeros(n)
        shifted = np.full(n, np.nan)
        if frequency_hz is not None:
            by_frequency = valid & derating(frequency_hz)
            shifted = np.where(by_frequency, held_back_w(pv_w, frequency_hz), np.nan)
            saturated_by = by_frequency
        else:
            saturated_by = np.zeros(n, dtype=bool)
        if forecast_w is None:
            held = np.where(np.isfinite(shifted) & ~capped, shifted, 0.0)
            return CurtailEstimate(held, {"command": zero, "grid_former": held})
        known = valid & np.isfinite(pv_w) & np.isfinite(forecast_w)
        pv = np.where(known, pv_w, 0.0)
        forecast = np.where(known, forecast_w, 0.0)
        held_back = known & (capped | saturated | saturated_by)
        available = forecast * self.ratio
        held = np.where(held_back, np.maximum(available - pv, 0.0), 0.0)
        held = np.where(np.isfinite(shifted) & ~capped, shifted, held)  # measured beats forecast
        command = np.where(capped, held, 0.0)
        former = held - command
        learn = known & ~held_back & ~saturated_by & (forecast >= MIN_FORECAST_W)
        decay = float(np.exp(-dt_s / TAU_S))
        self.measured_wh = np.where(learn, self.measured_wh * decay + pv * dt_s / 3600.0,
                                    self.measured_wh)
        self.forecast_wh = np.where(learn, self.forecast_wh * decay + forecast * dt_s / 3600.0,
                                    self.forecast_wh)
        return CurtailEstimate(held, {"command": command, "grid_former": former})
