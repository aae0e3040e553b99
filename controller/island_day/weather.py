"""Weather days for the survival odds (:mod:`.survival`): clear-sky indices, days × steps.

Every day is a factor per step on the coop's **clear-sky** PV profile (the plan's
``clear`` scenario). Two sources, the first that has enough days:

* **The ledger's own history** (:func:`ledger_weather`): the coop's hourly PV
  as booked (``own_pv_used + to_battery + to_peers + to_coop_battery + to_grid
  + curtailed + unallocated_pv``) on each day within :data:`SEASON_DAYS` of the
  plan's date, in the last year (this year's past days and last year's around
  the same date), over the clear-sky PV of that day and hour. A day counts when
  every daylight hour was booked with less than :data:`MAX_GAP_S` of gaps
  summed over the members. At least :data:`MIN_DAYS` days, or this source is not used.
  Curtailed PV is counted as PV (it was there to be had); PV lost while the
  controller was down is ``unallocated_pv``.
* **A synthetic ensemble** (:func:`synthetic_weather`): the clear-sky index of
  the :data:`MIN_DAYS` days of the typical year shipped with pvlib (Greensboro
  NC TMY3, as in :mod:`.forecast`) centred on the plan's date, matched by mean
  solar time. It carries the spread of a real season's days (overcast ones
  included) to any site. Scaling the clear-sky *power* by the index of *GHI*
  ignores how clouds change the beam/diffuse split on a tilted array; for a
  south-facing array at 30° the error in a day's energy is a few per cent.

P10/P50/P90 are the days ranking there by daily energy (a provider's
quantiles can be given to :class:`~controller.island_day.survival.Weather` instead).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from controller.island.forecast import STEP_S, pv_forecast_w, step_starts, typical_index
from controller.island_day.survival import Weather

if TYPE_CHECKING:
    from controller.island.site import SiteConfig
    from controller.ledger import LedgerReader

FloatArray = NDArray[np.float64]

MIN_DAYS = 30
SEASON_DAYS = 30
MAX_GAP_S = 1800
#: An hour is daylight when the clear-sky PV is at least this share of the day's peak.
DAYLIGHT_SHARE = 0.05
#: Clear-sky indices above this are measurement trouble (or a wrong [site] array), not sky.
MAX_INDEX = 1.3
PV_COLUMNS = ("own_pv_used", "to_battery", "to_peers", "to_coop_battery", "to_grid",
              "curtailed", "unallocated_pv")


def synthetic_weather(site: SiteConfig, start: datetime, steps: int,
                      step_s: int = STEP_S, days: int = MIN_DAYS) -> Weather:
    """``days`` typical-year days centred on ``start``'s date, as clear-sky indices."""
    centres = step_starts(start, steps, step_s) + pd.Timedelta(seconds=step_s / 2)
    lon = site.longitude
    solar_h = ((centres.hour + centres.minute / 60.0).to_numpy() + lon / 15.0) % 24.0
    rows = []
    for offset in range(-(days // 2), days - days // 2):
        kt, _ = typical_index(centres + pd.Timedelta(days=offset), solar_h, site.latitude)
        rows.append(kt)
    return Weather(np.array(rows), f"synthetic: {days} typical-year days (pvlib TMY3, "
                   "Greensboro NC) around the date, over the clear sky")


def ledger_weather(reader: LedgerReader, site: SiteConfig, member_ids: list[str],
                   start: datetime, steps: int, step_s: int = STEP_S) -> Weather | None:
    """The season's booked days as clear-sky indices, or ``None`` if fewer than MIN_DAYS."""
    day0 = pd.Timestamp(start).tz_convert(site.tzinfo).normalize()
    candidates = [day0 + pd.Timedelta(days=d) for d in range(-SEASON_DAYS, 0)]
    candidates += [day0 - pd.Timedelta(days=365) + pd.Timedelta(days=d)
                   for d in range(-SEASON_DAYS, SEASON_DAYS + 1)]
    plan_hours = (step_starts(start, steps, step_s).tz_convert(site.tzinfo).hour.to_numpy())
    rows = []
    for day in candidates:
        index = _day_index(reader, site, member_ids, day.to_pydatetime())
        if index is not None:
            rows.append(index[plan_hours])
    if len(rows) < MIN_DAYS:
        return None
    return Weather(np.array(rows), f"ledger: {len(rows)} booked days of the season over the "
                   "clear sky")


def _day_index(reader: LedgerReader, site: SiteConfig, member_ids: list[str],
               day: datetime) -> FloatArray | None:
    """Clear-sky index by local hour (24,) of one booked day, or None if not whole."""
    begin = int(day.timestamp())
    end = int((day + timedelta(days=1)).timestamp())
    clear = pv_forecast_w(site, member_ids, day, 96, "clear").sum(axis=1)  # W per 15 min
    clear_h = clear.reshape(24, 4).mean(axis=1)  # mean W over each hour = Wh per hour
    pv = np.zeros(24)
    seen = np.zeros(24, bool)
    for ts, sums in reader.series(None, begin, end, "hour"):
        hour = (ts - begin) // 3600
        if not 0 <= hour < 24:
            continue
        if (sums.get("gap_s") or 0) >= MAX_GAP_S:
            continue
        pv[hour] = sum(sums.get(c) or 0 for c in PV_COLUMNS)
        seen[hour] = True
    daylight = clear_h >= DAYLIGHT_SHARE * max(float(clear_h.max()), 1e-9)
    if not daylight.any() or not seen[daylight].all():
        return None
    index = np.divide(pv, clear_h, out=np.zeros(24), where=daylight)
    return np.clip(index, 0.0, MAX_INDEX)
