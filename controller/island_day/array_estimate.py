"""A PV array estimated from the ledger's history, for a member whose array is not written.

A member with a PV inverter but no ``[[site.arrays]]`` entry would be planned with no sun
at all. When the ledger has booked that member's PV, its size is estimated instead:

* the member's hourly PV as booked (:data:`~controller.island_day.weather.PV_COLUMNS`:
  curtailed and ``unallocated_pv`` count, it was there to be had) over the
  :data:`HISTORY_DAYS` local days before the plan;
* a day counts when every daylight hour (clear-sky PV at least
  :data:`~controller.island_day.weather.DAYLIGHT_SHARE` of the day's peak) was booked with
  less than :data:`~controller.island_day.weather.MAX_GAP_S` of gap, and at least
  :data:`MIN_DAYS` such days are needed;
* each day's PV over the clear-sky PV of 1 kWp at the assumed orientation (tilt 30°,
  azimuth 180°, the ``[[site.arrays]]`` defaults) on that day, from the same model the plan
  forecasts with (:func:`~controller.island.forecast.pv_forecast_w`), is the array's kWp
  times that day's clear-sky index; the :data:`QUANTILE` th percentile of the days' ratios
  (the clear days' level) is the estimate. Checked against the simulator's households
  (pvlib's typical year, Greensboro NC) over 23 windows of 30 days through the year, it
  is within -5.7 % and +5.7 % of their kWp; the clearest day alone reads up to 10 % high
  (a real clear day can beat the clear-sky model). A history without clear days
  underestimates the array (the safe side for an island), and the statement says over how
  many days it was made.

The orientation is not estimated: an east or west roof reads as a smaller south roof on
the day's energy, and the plan's hours shift by the roof's. The statement says so, and a
``[[site.arrays]]`` entry always wins.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from controller.island.site_config import ArrayConfig, SiteConfig

if TYPE_CHECKING:
    from controller.config import CoopConfig
    from controller.ledger import LedgerReader

FloatArray = NDArray[np.float64]

#: Days of history looked at, before the plan's day.
HISTORY_DAYS = 30
#: Whole booked days needed for an estimate.
MIN_DAYS = 3
#: Percentile of the days' PV over the clear sky that stands for a clear day.
QUANTILE = 90.0
#: The orientation assumed for an estimated array (the ``[[site.arrays]]`` defaults).
TILT, AZIMUTH = 30.0, 180.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """One member's estimated array."""

    member: str
    kwp: float
    days: int

    def statement(self) -> str:
        """The line the plan and ``config check`` print."""
        return (f"{self.member}: array estimated from {self.days} days of history: "
                f"{self.kwp:.1f} kWp (tilt {TILT:g}°, azimuth {AZIMUTH:g}° assumed; a "
                f"[[site.arrays]] entry for {self.member} replaces the estimate)")


def kwp_from_history(pv_wh: FloatArray, clear_wh_per_kwp: FloatArray,
                     daylight_share: float | None = None,
                     ) -> tuple[FloatArray, NDArray[np.int64]]:
    """Estimated kWp and whole days used, per member.

    ``pv_wh`` is members × days × 24 local hours of booked PV (NaN: not booked, or with too
    much gap); ``clear_wh_per_kwp`` days × 24 is the clear-sky PV of 1 kWp. A member with
    fewer than :data:`MIN_DAYS` whole days, or no PV on any, gets NaN.
    """
    from controller.island_day.weather import DAYLIGHT_SHARE

    share = DAYLIGHT_SHARE if daylight_share is None else daylight_share
    peak = clear_wh_per_kwp.max(axis=1, keepdims=True)
    daylight = (clear_wh_per_kwp >= share * peak) & (peak > 0)  # days × 24
    whole = np.all(np.isfinite(pv_wh) | ~daylight[None], axis=2) & daylight.any(axis=1)[None]
    day_pv = np.where(daylight[None], np.nan_to_num(pv_wh), 0.0).sum(axis=2)  # N × days
    day_clear = np.where(daylight, clear_wh_per_kwp, 0.0).sum(axis=1)  # days
    ratio = np.divide(day_pv, day_clear[None], out=np.zeros_like(day_pv),
                      where=day_clear[None] > 0)
    days = whole.sum(axis=1).astype(np.int64)
    counted = np.where(whole, ratio, np.nan)
    level = np.zeros(len(days))
    some = days > 0  # nanpercentile warns on a row with no whole day
    if some.any():
        level[some] = np.nanpercentile(counted[some], QUANTILE, axis=1)
    return np.where((days >= MIN_DAYS) & (level > 0), level, np.nan), days


def clear_per_kwp(site: SiteConfig, first_day: datetime, days: int) -> FloatArray:
    """Clear-sky PV of 1 kWp at the assumed orientation, days × 24 local hours, Wh."""
    from controller.island.forecast import pv_forecast_w

    one = site.model_copy(update={"arrays": [ArrayConfig(member="_", kwp=1.0, tilt=TILT,
                                                         azimuth=AZIMUTH)]})
    quarter = pv_forecast_w(one, ["_"], first_day, days * 96, "clear")[:, 0]  # mean W
    return quarter.reshape(days, 24, 4).mean(axis=2)  # mean W over an hour = Wh


def booked_pv(reader: LedgerReader, members: list[str], first_day: datetime, days: int,
              ) -> FloatArray:
    """Each member's booked PV by local hour, members × days × 24, NaN where not booked or
    with too much gap."""
    from controller.island_day.weather import MAX_GAP_S, PV_COLUMNS

    begin = int(first_day.timestamp())
    hours = days * 24
    out = np.full((len(members), hours), np.nan)
    known = reader.member_numbers()
    for i, member in enumerate(members):  # the reader answers one member at a time
        if member not in known:
            continue
        for ts, sums in reader.series(member, begin, begin + hours * 3600, "hour"):
            k = (ts - begin) // 3600
            if 0 <= k < hours and (sums.get("gap_s") or 0) < MAX_GAP_S:
                out[i, k] = sum(sums.get(c) or 0 for c in PV_COLUMNS)
    return out.reshape(len(members), days, 24)


def missing_arrays(config: CoopConfig, site: SiteConfig) -> list[str]:
    """Members with a PV inverter and no ``[[site.arrays]]`` entry."""
    written = {a.member for a in site.arrays}
    return [m.id for m in config.members if m.device("pv") is not None and m.id not in written]


def estimate_arrays(config: CoopConfig, site: SiteConfig, ledger: Path, before: datetime,
                    ) -> tuple[SiteConfig, list[Estimate], dict[str, str]]:
    """``site`` with an array added for every PV member without one that the ledger's
    history allows, those estimates, and for the others why not (for the error)."""
    from controller.ledger import LedgerMissingError, LedgerReader

    members = missing_arrays(config, site)
    if not members:
        return site, [], {}
    try:
        reader = LedgerReader(ledger)
    except LedgerMissingError:
        return site, [], dict.fromkeys(members, f"there is no ledger at {ledger} to estimate "
                                       "one from")
    except sqlite3.DatabaseError as exc:
        return site, [], dict.fromkeys(members, f"the ledger at {ledger} cannot be read to "
                                       f"estimate one ({exc})")
    # Whole local days, the last one ending at the plan's day.
    today = pd.Timestamp(before).tz_convert(site.tzinfo).normalize()
    first_day = (today - pd.Timedelta(days=HISTORY_DAYS)).to_pydatetime()
    kwp, days = kwp_from_history(booked_pv(reader, members, first_day, HISTORY_DAYS),
                                 clear_per_kwp(site, first_day, HISTORY_DAYS))
    estimates, why = [], {}
    for member, k, d in zip(members, kwp, days, strict=True):
        if np.isfinite(k):
            estimates.append(Estimate(member, max(round(float(k), 2), 0.01), int(d)))
        elif d >= MIN_DAYS:
            why[member] = f"its PV booked nothing in {d} whole days of the last {HISTORY_DAYS}"
        else:
            why[member] = (f"the ledger has {d} whole days of its PV in the last "
                           f"{HISTORY_DAYS} ({MIN_DAYS} needed to estimate one)")
    added = [ArrayConfig(member=e.member, kwp=e.kwp, tilt=TILT, azimuth=AZIMUTH)
             for e in estimates]
    return site.model_copy(update={"arrays": [*site.arrays, *added]}), estimates, why

