"""PV and load forecasts per member, in W, on 15-minute steps.

PV (pvlib, per array, summed per member):

* ``clear``: the Ineichen clear sky at the site (Linke turbidity from pvlib's
  climatology), as GHI/DNI/DHI;
* ``typical``: the clear sky scaled by the hourly clear-sky index of the same
  day of the typical year shipped with pvlib (Greensboro NC TMY3), matched by
  mean solar time, then split into DNI/DHI with Erbs' model. It carries a
  typical day's clouds to any site; a southern site takes the day half a year
  on, so seasons match;
* ``cloudy``: ``typical``'s power × :data:`CLOUDY_FACTOR`.

Each array's plane-of-array irradiance becomes AC power with the same
PVWatts-style derating as :mod:`simulators.profiles` (system efficiency 0.86,
-0.4 %/K above 25 °C cell temperature).

Load: a member with at least :data:`MIN_HISTORY_DAYS` days in the ledger (of
the last :data:`HISTORY_DAYS`) gets its mean profile by local hour of day;
any other gets the BDEW H25 household profile (demandlib) scaled to its
``annual_kwh``.

The pure functions take and return arrays: members × time are vectorized.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, tzinfo
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pvlib
from numpy.typing import NDArray

from controller.island.site import SiteConfig

if TYPE_CHECKING:
    from controller.ledger import LedgerReader

FloatArray = NDArray[np.float64]

STEP_S = 900
SCENARIOS = ("clear", "typical", "cloudy")
#: Output of an overcast day relative to a typical one. In the shipped TMY
#: (Greensboro) the dullest tenth of each month's days gets 29-57 % (42 % on
#: average over the months) of that month's median irradiation; a tilted array
#: loses a little more than the horizontal (no beam), so 0.4.
CLOUDY_FACTOR = 0.4
TMY_FILE = "723170TYA.CSV"
SYSTEM_EFFICIENCY = 0.86
TEMP_COEFF_PER_K = -0.004
HISTORY_DAYS = 14
MIN_HISTORY_DAYS = 7
#: An hour in which the ledger missed the member this long is not used.
MAX_GAP_S = 1800
#: The ledger columns whose sum is a member's load (served plus shed).
LOAD_COLUMNS = ("own_pv_used", "from_battery", "from_peers", "from_coop_battery", "from_grid",
                "shed")


def step_starts(start: datetime, steps: int, step_s: int = STEP_S) -> pd.DatetimeIndex:
    """UTC start of each step from ``start`` (an aware datetime)."""
    return pd.date_range(pd.Timestamp(start).tz_convert("UTC"), periods=steps,
                         freq=pd.Timedelta(seconds=step_s))


@cache
def _tmy() -> tuple[pd.DataFrame, dict]:
    path = os.path.join(os.path.dirname(pvlib.__file__), "data", TMY_FILE)
    return pvlib.iotools.read_tmy3(path, map_variables=True)


@cache
def _tmy_day(day: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Mean solar hour, clear-sky index and air temperature of each hour of a TMY day."""
    data, meta = _tmy()
    hourly = data.iloc[day * 24: day * 24 + 24]
    times = hourly.index - pd.Timedelta(minutes=30)  # hour-ending values: centre them
    clear = _clear_sky(times.tz_convert("UTC"), meta["latitude"], meta["longitude"],
                       meta["altitude"])
    ghi = hourly["ghi"].to_numpy(dtype=float)
    kt = np.divide(ghi, clear["ghi"], out=np.zeros(24), where=clear["ghi"] > 20.0)
    utc = times.tz_convert("UTC")
    solar_h = (utc.hour + utc.minute / 60.0 + meta["longitude"] / 15.0) % 24.0
    order = np.argsort(solar_h)
    return (solar_h.to_numpy()[order], np.clip(kt, 0.0, 1.2)[order],
            hourly["temp_air"].to_numpy(dtype=float)[order])


def _clear_sky(times_utc: pd.DatetimeIndex, latitude: float, longitude: float,
               altitude: float) -> dict[str, FloatArray]:
    with warnings.catch_warnings():
        # pvlib 0.11 reads DatetimeIndex.dayofyear, which pandas 3 deprecates.
        warnings.filterwarnings("ignore", message=".*dayofyear is deprecated")
        return _clear_sky_at(times_utc, latitude, longitude, altitude)


def _clear_sky_at(times_utc: pd.DatetimeIndex, latitude: float, longitude: float,
                  altitude: float) -> dict[str, FloatArray]:
    solpos = pvlib.solarposition.get_solarposition(times_utc, latitude, longitude, altitude)
    zenith = solpos["apparent_zenith"].to_numpy(dtype=float)
    airmass = pvlib.atmosphere.get_relative_airmass(zenith)
    am_abs = pvlib.atmosphere.get_absolute_airmass(airmass, pvlib.atmosphere.alt2pres(altitude))
    turbidity = pvlib.clearsky.lookup_linke_turbidity(times_utc, latitude, longitude)
    dni_extra = pvlib.irradiance.get_extra_radiation(times_utc).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):  # below the horizon
        sky = pvlib.clearsky.ineichen(zenith, np.nan_to_num(am_abs, nan=40.0),
                                      turbidity.to_numpy(dtype=float), altitude, dni_extra)
    out = {k: np.nan_to_num(np.asarray(sky[k], dtype=float)) for k in ("ghi", "dni", "dhi")}
    out["zenith"] = zenith
    out["azimuth"] = solpos["azimuth"].to_numpy(dtype=float)
    return out


def plane_power_w(ghi: FloatArray, dni: FloatArray, dhi: FloatArray, zenith: FloatArray,
                  azimuth: FloatArray, temp_air: FloatArray, kwp: FloatArray,
                  tilt: FloatArray, array_azimuth: FloatArray) -> FloatArray:
    """AC power (A arrays × T steps, W) from irradiance components over time (T,)."""
    poa = pvlib.irradiance.get_total_irradiance(
        tilt[:, None], array_azimuth[:, None], zenith[None, :], azimuth[None, :],
        dni[None, :], ghi[None, :], dhi[None, :])["poa_global"]
    poa = np.clip(np.nan_to_num(np.asarray(poa, dtype=float)), 0.0, None)
    cell = temp_air[None, :] + poa / 800.0 * 25.0
    derate = (1.0 + TEMP_COEFF_PER_K * (cell - 25.0)) * SYSTEM_EFFICIENCY
    return poa / 1000.0 * kwp[:, None] * 1000.0 * derate


def per_member(values: FloatArray, owner: NDArray[np.int64], n: int) -> FloatArray:
    """Sum rows of ``values`` (A × T) into ``n`` members: a T × n array."""
    out = np.zeros((n, values.shape[1]))
    np.add.at(out, owner, values)
    return out.T


def pv_forecast_w(site: SiteConfig, member_ids: list[str], start: datetime, steps: int,
                  scenario: str = "typical", step_s: int = STEP_S) -> FloatArray:
    """Mean PV power of each member in each step (T × N, W) under ``scenario``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario {scenario!r}: expected one of {', '.join(SCENARIOS)}")
    arrays = site.arrays
    n = len(member_ids)
    if not arrays:
        return np.zeros((steps, n))
    starts = step_starts(start, steps, step_s)
    centres = starts + pd.Timedelta(seconds=step_s / 2)
    lat, lon = site.latitude, site.longitude
    sky = _clear_sky(centres, lat, lon, site.altitude_m)
    solar_h = ((centres.hour + centres.minute / 60.0 + centres.second / 3600.0).to_numpy()
               + lon / 15.0) % 24.0
    kt, temp = typical_index(centres, solar_h, lat)
    ghi, dni, dhi = sky["ghi"], sky["dni"], sky["dhi"]
    if scenario != "clear":
        ghi = ghi * kt
        doy = centres.day_of_year.to_numpy()
        split = pvlib.irradiance.erbs(ghi, sky["zenith"], doy)
        dni = np.nan_to_num(np.asarray(split["dni"], dtype=float))
        dhi = np.nan_to_num(np.asarray(split["dhi"], dtype=float))
    index = {m: i for i, m in enumerate(member_ids)}
    owner = np.array([index[a.member] for a in arrays], dtype=np.int64)
    col = {k: np.array([getattr(a, k) for a in arrays], dtype=float)
           for k in ("kwp", "tilt", "azimuth")}
    power = plane_power_w(ghi, dni, dhi, sky["zenith"], sky["azimuth"], temp,
                          col["kwp"], col["tilt"], col["azimuth"])
    return per_member(power, owner, n) * (CLOUDY_FACTOR if scenario == "cloudy" else 1.0)


def typical_index(centres: pd.DatetimeIndex, solar_h: FloatArray, latitude: float,
                  ) -> tuple[FloatArray, FloatArray]:
    """Clear-sky index and air temperature of the typical year at each step's solar time."""
    days = (centres.day_of_year.to_numpy() - 1 + (182 if latitude < 0 else 0)) % 365
    kt, temp = np.zeros(len(centres)), np.zeros(len(centres))
    for day in np.unique(days):
        hours, day_kt, day_temp = _tmy_day(int(day))
        sel = days == day
        kt[sel] = np.interp(solar_h[sel], hours, day_kt)
        temp[sel] = np.interp(solar_h[sel], hours, day_temp)
    return kt, temp


def h25_load_w(start: datetime, steps: int, tz: tzinfo, annual_kwh: FloatArray,
               step_s: int = STEP_S) -> FloatArray:
    """BDEW H25 load (T × N, W) on local wall-clock time, scaled to each ``annual_kwh``."""
    from demandlib.bdew import H25

    local = step_starts(start, steps, step_s).tz_convert(tz).tz_localize(None)
    first = local.min().floor("D")
    index = pd.date_range(first, local.max().ceil("D") + pd.Timedelta(days=1), freq="15min")
    with warnings.catch_warnings():
        # demandlib 0.2 uses pandas' deprecated inplace= keyword; the values are unaffected.
        warnings.simplefilter("ignore")
        w_per_mwh = H25(index).to_numpy(dtype=float)  # kW per GWh/a is W per MWh/a
    slot = ((local - first) // pd.Timedelta(minutes=15)).to_numpy()
    return w_per_mwh[slot][:, None] * (np.asarray(annual_kwh, dtype=float) / 1000.0)[None, :]


def history_profile(hour_of_day: NDArray[np.int64], wh: FloatArray,
                    ) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Mean load by local hour of day (N × 24, W) from hourly energies (N × H, NaN = none).

    A member's profile is usable when it has :data:`MIN_HISTORY_DAYS` × 24 hours
    of history and every hour of the day at least once; the mask says which are.
    """
    valid = np.isfinite(wh)
    onehot = hour_of_day[None, :] == np.arange(24)[:, None]  # 24 × H
    counts = valid.astype(float) @ onehot.T  # N × 24
    sums = np.where(valid, wh, 0.0) @ onehot.T
    profile = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    usable = (valid.sum(axis=1) >= MIN_HISTORY_DAYS * 24) & (counts > 0).all(axis=1)
    return profile, usable


def read_history(reader: LedgerReader, member_ids: list[str], start: datetime, tz: tzinfo,
                 ) -> tuple[NDArray[np.int64], FloatArray]:
    """Local hour of day and each member's hourly load (N × H, Wh, NaN if missing)."""
    end_ts = int(pd.Timestamp(start).timestamp()) // 3600 * 3600
    begin_ts = end_ts - HISTORY_DAYS * 86400
    hours = np.arange(begin_ts, end_ts, 3600)
    wh = np.full((len(member_ids), len(hours)), np.nan)
    known = reader.member_numbers()
    for i, member in enumerate(member_ids):  # the reader answers one member at a time
        if member not in known:  # not booked yet (series would answer for the coop)
            continue
        for ts, sums in reader.series(member, begin_ts, end_ts, "hour"):
            if (sums.get("gap_s") or 0) >= MAX_GAP_S:
                continue
            wh[i, (ts - begin_ts) // 3600] = sum(sums.get(c) or 0 for c in LOAD_COLUMNS)
    local = pd.to_datetime(hours, unit="s", utc=True).tz_convert(tz)
    return local.hour.to_numpy().astype(np.int64), wh


def load_forecast_w(start: datetime, steps: int, tz: tzinfo, annual_kwh: FloatArray,
                    history: tuple[NDArray[np.int64], FloatArray] | None = None,
                    step_s: int = STEP_S) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Load per member and step (T × N, W) and which members' came from their history."""
    load = h25_load_w(start, steps, tz, annual_kwh, step_s)
    if history is None:
        return load, np.zeros(load.shape[1], dtype=bool)
    profile, usable = history_profile(*history)
    local_hour = step_starts(start, steps, step_s).tz_convert(tz).hour.to_numpy()
    from_history = profile[:, local_hour].T  # Wh per hour is the mean W over it
    return np.where(usable[None, :], from_history, load), usable
