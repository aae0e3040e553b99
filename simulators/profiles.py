"""Realistic PV and household-load profiles from data shipped with pvlib and demandlib.

* PV: a typical-year weather file shipped with pvlib (Greensboro, NC, TMY3),
  transposed to a 30° south-facing plane with pvlib and turned into AC power
  per kWp with a PVWatts-style temperature derating.
* Load: the BDEW H25 household standard load profile from demandlib.

Both are returned per minute of day as numpy arrays, so a simulation can
index them for any number of households at once.
"""

from __future__ import annotations

import os
import warnings
from functools import cache

import numpy as np
import pandas as pd
import pvlib
from numpy.typing import NDArray

MINUTES_PER_DAY = 1440
TMY_FILE = "723170TYA.CSV"
TILT_DEG = 30.0
AZIMUTH_DEG = 180.0
TEMP_COEFF_PER_K = -0.004
SYSTEM_EFFICIENCY = 0.86


@cache
def _tmy() -> tuple[pd.DataFrame, dict]:
    path = os.path.join(os.path.dirname(pvlib.__file__), "data", TMY_FILE)
    data, meta = pvlib.iotools.read_tmy3(path, map_variables=True)
    return data, meta


def daily_irradiation() -> NDArray[np.float64]:
    """Global horizontal irradiation of each day of the typical year, Wh/m²."""
    data, _ = _tmy()
    return data["ghi"].to_numpy(dtype=float).reshape(-1, 24).sum(axis=1)


def sunny_day() -> int:
    """Day of year (0-based) of the sunniest day in June of the typical year."""
    ghi = daily_irradiation()
    return int(151 + np.argmax(ghi[151:181]))


def cloudy_day() -> int:
    """Day of year (0-based) of the dullest day in June of the typical year."""
    ghi = daily_irradiation()
    return int(151 + np.argmin(ghi[151:181]))


@cache
def pv_w_per_kwp(day: int) -> NDArray[np.float64]:
    """AC power of 1 kWp on ``day`` (0-based day of the typical year), per minute, W."""
    data, meta = _tmy()
    hourly = data.iloc[day * 24 : day * 24 + 24]
    # TMY values are hour-ending averages: centre them on the half hour.
    times = hourly.index - pd.Timedelta(minutes=30)
    solpos = pvlib.solarposition.get_solarposition(times, meta["latitude"], meta["longitude"])
    poa = pvlib.irradiance.get_total_irradiance(
        TILT_DEG,
        AZIMUTH_DEG,
        solpos["apparent_zenith"].to_numpy(),
        solpos["azimuth"].to_numpy(),
        hourly["dni"].to_numpy(),
        hourly["ghi"].to_numpy(),
        hourly["dhi"].to_numpy(),
    )["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float))
    cell_temp = hourly["temp_air"].to_numpy() + poa / 800.0 * 25.0
    power = poa / 1000.0 * (1.0 + TEMP_COEFF_PER_K * (cell_temp - 25.0)) * SYSTEM_EFFICIENCY
    hour_centres = np.arange(24) * 60 + 30
    minutes = np.arange(MINUTES_PER_DAY)
    return np.interp(minutes, hour_centres, np.maximum(power, 0.0) * 1000.0)


@cache
def load_w_per_mwh_year(day: int, year: int = 2025) -> NDArray[np.float64]:
    """H25 household load for an annual consumption of 1 MWh, per minute, W."""
    from demandlib.bdew import H25

    start = pd.Timestamp(year=year, month=1, day=1) + pd.Timedelta(days=day)
    index = pd.date_range(start, periods=96, freq="15min")
    with warnings.catch_warnings():
        # demandlib 0.2 uses pandas' deprecated inplace= keyword; the values are unaffected.
        warnings.simplefilter("ignore")
        kw_per_gwh = H25(index).to_numpy(dtype=float)
    w_per_mwh = kw_per_gwh * 1000.0 / 1000.0
    return np.repeat(w_per_mwh, 15)


def at_minute(
    profile: NDArray[np.float64], minute_of_day: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Linear interpolation of a per-minute day profile at fractional minutes (wrapping)."""
    m = np.mod(minute_of_day, MINUTES_PER_DAY)
    lo = np.floor(m).astype(np.int64)
    hi = (lo + 1) % MINUTES_PER_DAY
    frac = m - lo
    return profile[lo] * (1.0 - frac) + profile[hi] * frac
