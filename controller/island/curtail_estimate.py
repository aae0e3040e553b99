"""PV held back, estimated: what the inverters could have given and did not, and why.

A capped inverter reports what it produces, not what the sun offers; islanded, a
grid-forming inverter that can take no more raises the island's frequency and every
inverter backs off (frequency-watt), so the measured PV is what was delivered. The
books need what was held back (``curtailed``) or the PV and self-sufficiency
figures describe a smaller day than the one the roofs had.

SunSpec has no standard available-power point (none of 101-103, 111-113, 120-126,
701-713 in pysunspec2's models; 701's ``ThrotPct`` is the throttle in % of the
maximum power, not of what the sun offers), so the estimate is the forecast scaled by
measurement: each member's PV forecast (the island plan's, 15-minute means) times the
ratio of measured to forecast PV over the cycles in which nothing held it back
(energies, decayed with :data:`TAU_S`, so a cloudy hour moves the ratio and a
single cycle does not). While something holds it back the estimate is that scaled
forecast less what was measured, never below zero.

What it cannot see: a cloud while *every* inverter is held back (a full island's
frequency shift holds them all back pro rata). The forecast is the clear-sky one and
the ratio was learnt before the cloud, so it overstates: measured on the default
rehearsed day (cloud × 0.3, 13:00-17:00), 0.9-1.0 of the simulator's held-back PV
in the clear hours and 2.6-12× in the cloudy ones. Seeing it takes an observable the
simulated inverters do not serve (an available-power point, a reference cell, or an
inverter left unthrottled as a reference).

Causes (:data:`CAUSES`):

* ``command``: a PV cap Commonwatt set is in force on the inverter (an island's
  surplus, or the export cap at the point of common coupling);
* ``grid_former``: islanded, the grid-forming battery is full or charging at its
  rating, so it can take no more and the island sheds PV by frequency. Where the
  inverter reports the frequency and it is in the derating band, what it held
  back is inferred from the frequency and its output (:mod:`.freq_shift`), with
  no forecast.

Without a forecast (no island plan, on the grid) the uncurtailed neighbours stand in
for it (:meth:`CurtailEstimator.neighbours_proxy_w`): each member's share of the
coop's PV, learnt over the cycles nothing held back anyone's, times what the unheld
members give now. With no unheld neighbour (or nothing learnt) nothing is estimated
and the books hold only what the dispatch itself curtailed.
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


#: The uncurtailed neighbours stand in for a forecast only if they give at least this
#: (W, summed): a share of one small roof at dusk says little.
MIN_NEIGHBOURS_W = 500.0


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
        #: Each member's PV (decayed Wh) over the cycles nothing held back any member's:
        #: its share of the coop's sun, for :meth:`neighbours_proxy_w`.
        self.share_wh = np.zeros(n)

    def neighbours_proxy_w(self, pv: FloatArray, known: BoolArray,
                           held_back: BoolArray) -> FloatArray | None:
        """Without a forecast, what the uncurtailed neighbours say each member's roof gives
        now: the unheld members' PV now, shared by the members' learnt shares of the
        coop's PV; None while too little is learnt or too few are unheld."""
        unheld = known & ~held_back & (self.share_wh > 0)
        share_unheld = float(self.share_wh[unheld].sum())
        if share_unheld <= 0 or float(pv[unheld].sum()) < MIN_NEIGHBOURS_W:
            return None
        return np.where(self.share_wh > 0, self.share_wh * float(pv[unheld].sum())
                        / share_unheld, np.nan)

    def _learn_shares(self, dt_s: float, pv: FloatArray, known: BoolArray,
                      held_back: BoolArray) -> None:
        if held_back.any() or not known.any():
            return
        decay = float(np.exp(-dt_s / TAU_S))
        self.share_wh = np.where(known, self.share_wh * decay + pv * dt_s / 3600.0,
                                 self.share_wh)

    @property
    def ratio(self) -> FloatArray:
        """Measured over forecast PV while nothing held it back (1 before any)."""
        return np.divide(self.measured_wh, self.forecast_wh, out=np.ones_like(self.measured_wh),
                         where=self.forecast_wh > 0)

    def step(self, dt_s: float, pv_w: FloatArray, valid: BoolArray,
             forecast_w: FloatArray | None, capped: BoolArray,
             saturated: bool, cap_w: FloatArray | None = None,
             islanded: bool = False, frequency_hz: FloatArray | None = None,
             ) -> CurtailEstimate:
        """Estimate this cycle's held-back PV, then learn from the members nothing held back.

        Args:
            dt_s: the cycle's length.
            pv_w: measured PV (NaN where unknown).
            valid: members whose readings count this cycle.
            forecast_w: the forecast PV now (NaN where unknown), None without one.
            capped: members with a Commonwatt PV cap in force.
            saturated: islanded and the grid-former can take no more
                (:func:`former_saturated`).
            cap_w: the caps in force (NaN: none or not known). A cap holds back what the
                panels could give above it (``command``); what is held back below it is
                the grid-former's.
            islanded: whether the coop is islanded; without a forecast the uncurtailed
                neighbours stand in only on the grid (islanded, one the controller sees
                unheld may be held back by the island).
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
        measured = np.isfinite(shifted) & ~capped  # the frequency says what was held back
        proxy = forecast_w is None
        if proxy and islanded:
            held = np.where(measured, shifted, 0.0)
            return CurtailEstimate(held, {"command": zero, "grid_former": held})
        if proxy:  # no island plan: the uncurtailed neighbours, if any
            seen = valid & np.isfinite(pv_w)
            pv_now = np.where(seen, pv_w, 0.0)
            held_now = seen & (capped | saturated | saturated_by)
            self._learn_shares(dt_s, pv_now, seen, held_now)
            forecast_w = self.neighbours_proxy_w(pv_now, seen, held_now)
            if forecast_w is None:
                held = np.where(measured, shifted, 0.0)
                return CurtailEstimate(held, {"command": zero, "grid_former": held})
        known = valid & np.isfinite(pv_w) & np.isfinite(forecast_w)
        pv = np.where(known, pv_w, 0.0)
        forecast = np.where(known, forecast_w, 0.0)
        held_back = known & (capped | saturated | saturated_by)
        # The proxy is the neighbours' sun already: the forecast's ratio is not for it.
        # (Islanded, members the controller sees unheld may still be held back by the
        # island - a grid-former near full takes less than its rating - so their PV is no
        # measure of the sky: scaling by them booked 0.89 of the simulator's held-back PV
        # on a sunny island, against 0.995 without.)
        available = forecast * (np.ones(n) if proxy else self.ratio)
        held = np.where(held_back, np.maximum(available - pv, 0.0), 0.0)
        held = np.where(measured, shifted, held)  # measured beats forecast
        cap = np.full(n, np.nan) if cap_w is None else cap_w
        over_cap = np.where(np.isfinite(cap), np.maximum(available - np.nan_to_num(cap), 0.0),
                            held)
        command = np.where(capped, np.minimum(over_cap, held), 0.0)
        # Below its cap an inverter is held back only by the island's frequency (a cloud
        # is what the estimate cannot see): the grid-former's, even in a cycle the
        # controller did not see it saturated (near full, its room is below its rating).
        former = held - command
        learn = (known & ~held_back & ~saturated_by & (forecast >= MIN_FORECAST_W)
                 & (not proxy))
        decay = float(np.exp(-dt_s / TAU_S))
        self.measured_wh = np.where(learn, self.measured_wh * decay + pv * dt_s / 3600.0,
                                    self.measured_wh)
        self.forecast_wh = np.where(learn, self.forecast_wh * decay + forecast * dt_s / 3600.0,
                                    self.forecast_wh)
        return CurtailEstimate(command + former, {"command": command, "grid_former": former})


def booked_causes(dispatch_wh: FloatArray, estimate: CurtailEstimate, hours: float,
                  islanded: bool, export_cap: bool = True) -> dict[str, FloatArray]:
    """A cycle's ``curtailed`` Wh and its split by cause (the ledger's ``curtailed_<cause>``).

    Curtailed is the larger of what the dispatch itself could not place and the estimate.
    What the grid-former held back is the estimate's; the rest was held back by a cap:
    islanded a ``command`` (the island's surplus), on the grid the ``export_cap`` where the
    coop has one (the dispatch curtails on the grid only past it, and sets caps for it);
    without one, a cap still in force on the grid is one the island set (``command``).
    """
    former = estimate.by_cause_w["grid_former"] * hours
    total = np.maximum(dispatch_wh, estimate.held_w * hours)
    rest = np.maximum(total - former, 0.0)
    zero = np.zeros_like(total)
    by_export_cap = not islanded and export_cap
    return {"curtailed": total, "curtailed_grid_former": former,
            "curtailed_command": zero if by_export_cap else rest,
            "curtailed_export_cap": rest if by_export_cap else zero}
