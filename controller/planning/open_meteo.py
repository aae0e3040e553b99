"""The Open-Meteo forecast API as a :class:`~controller.planning.providers.PVProvider`.

One request (``GET {url}?latitude=…&longitude=…&hourly=…&timezone=GMT``, no key for
non-commercial use) returns, per the API's documentation, a JSON object::

    {"latitude": 45.76, "longitude": 4.84, "utc_offset_seconds": 0, "timezone": "GMT",
     "hourly_units": {"time": "iso8601", "shortwave_radiation": "W/m²", …},
     "hourly": {"time": ["2026-06-01T00:00", …], "temperature_2m": [14.2, …],
                "shortwave_radiation": [0.0, …], "direct_normal_irradiance": [0.0, …],
                "diffuse_radiation": [0.0, …]}}

Times are local to ``utc_offset_seconds`` (0 with ``timezone=GMT``); radiation is the
mean over the *preceding* hour (``minutely_15``: the preceding 15 minutes), so each
value is centred half an interval before its time stamp; temperature is instantaneous.
A missing hour is ``null``. The irradiance becomes each member's AC power with the
island planner's plane-of-array model (:func:`controller.island.forecast.plane_power_w`),
so this provider and the clear-sky one differ only in the sky they are given.

The provider never fetches on the cycle's thread: :meth:`OpenMeteoProvider.refresh` is
called by the plan's background thread, and :meth:`OpenMeteoProvider.pv_w` reads the
newest answer it parsed (NaN beyond what that answer covers).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from controller.island.site_config import SiteConfig
from controller.planning.providers import with_arrays

FloatArray = NDArray[np.float64]
DEFAULT_URL = "https://api.open-meteo.com/v1/forecast"
RADIATION = ("shortwave_radiation", "direct_normal_irradiance", "diffuse_radiation")
VARIABLES = ("temperature_2m", *RADIATION)
#: The horizon asked for (the plan looks at most 36 h ahead).
FORECAST_DAYS = 3


@dataclass(frozen=True, slots=True)
class Weather:
    """A parsed answer: per interval, its centre (UNIX s) and the mean irradiance over
    it (W/m², GHI/DNI/DHI) and the air temperature (°C) at its centre."""

    centre_s: FloatArray
    ghi: FloatArray
    dni: FloatArray
    dhi: FloatArray
    temp_air: FloatArray
    interval_s: float


def request_url(site: SiteConfig, url: str = DEFAULT_URL) -> str:
    """The forecast request for the site (hourly, GMT, this many days)."""
    query = urllib.parse.urlencode({"latitude": site.latitude, "longitude": site.longitude,
                                    "hourly": ",".join(VARIABLES), "timezone": "GMT",
                                    "forecast_days": FORECAST_DAYS})
    return f"{url}?{query}"


def parse(payload: dict) -> Weather:
    """The answer's hourly (or ``minutely_15``) block; ValueError naming the field."""
    block = next((k for k in ("minutely_15", "hourly") if k in payload), None)
    if block is None:
        raise ValueError("open-meteo answer: neither 'hourly' nor 'minutely_15' present")
    data, units = payload[block], payload.get(f"{block}_units", {})
    interval = 900.0 if block == "minutely_15" else 3600.0
    for name in ("time", *VARIABLES):
        if name not in data:
            raise ValueError(f"open-meteo answer: {block}.{name} missing")
    for name in RADIATION:
        if units.get(name, "W/m²") not in ("W/m²", "W/m2"):
            raise ValueError(f"open-meteo answer: {block}_units.{name} = {units[name]!r}, "
                             "expected 'W/m²'")
    count = len(data["time"])
    for name in VARIABLES:
        if len(data[name]) != count:
            raise ValueError(f"open-meteo answer: {block}.{name} has {len(data[name])} "
                             f"values for {count} times")
    offset = float(payload.get("utc_offset_seconds", 0))
    try:
        stamps = pd.to_datetime(data["time"], format="ISO8601").as_unit("s")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"open-meteo answer: {block}.time: {exc}") from None
    if stamps.tz is not None:
        stamps = stamps.tz_convert(None)
    ends = stamps.asi8.astype(float) - offset  # local wall time → UTC
    values = {name: np.array(data[name], dtype=float) for name in VARIABLES}  # null → NaN
    for name in RADIATION:
        if (values[name] < 0).any():
            raise ValueError(f"open-meteo answer: {block}.{name} has negative values")
    return Weather(ends - interval / 2, values["shortwave_radiation"],
                   values["direct_normal_irradiance"], values["diffuse_radiation"],
                   values["temperature_2m"], interval)


def fetch_json(url: str, timeout_s: float) -> dict:
    """GET ``url`` and decode its JSON (urllib: no dependency for one request)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
        return json.load(response)


class OpenMeteoProvider:
    """PV per member from Open-Meteo's irradiance forecast on the site's arrays."""

    name = "open-meteo irradiance forecast on the site's arrays (pvlib)"

    def __init__(self, site: SiteConfig, member_ids: list[str], url: str = DEFAULT_URL,
                 timeout_s: float = 10.0,
                 fetch: Callable[[str, float], dict] = fetch_json) -> None:
        self.site, self.member_ids = site, member_ids
        self.url, self.timeout_s, self.fetch = request_url(site, url), timeout_s, fetch
        self.covered = with_arrays(site, member_ids)
        self.weather: Weather | None = None
        self.error = ""  # the last refresh's failure, for the plan's state

    def refresh(self) -> bool:
        """Fetch and parse a new answer; on failure keep the old one (True: refreshed)."""
        try:
            self.weather = parse(self.fetch(self.url, self.timeout_s))
        except (OSError, ValueError) as exc:  # the network, HTTP, JSON or the answer
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        self.error = ""
        return True

    def pv_w(self, start: float, steps: int, step_s: float) -> FloatArray | None:
        """Mean W per member and step from the newest answer; None without one."""
        weather = self.weather
        if weather is None:
            return None
        centres = start + (np.arange(steps) + 0.5) * step_s
        inside = ((centres >= weather.centre_s[0] - weather.interval_s / 2)
                  & (centres <= weather.centre_s[-1] + weather.interval_s / 2))
        ok = np.isfinite(weather.ghi) & np.isfinite(weather.dni) & np.isfinite(weather.dhi)
        if ok.sum() < 2 or np.isfinite(weather.temp_air).sum() < 2:
            return None  # an answer of nulls says nothing

        def at(values: FloatArray) -> FloatArray:
            good = ok & np.isfinite(values)
            return np.interp(centres, weather.centre_s[good], values[good])

        power = plane_power(self.site, self.member_ids, centres, at(weather.ghi),
                            at(weather.dni), at(weather.dhi), at(weather.temp_air))
        return np.where(inside[:, None] & self.covered[None, :], power, np.nan)


def plane_power(site: SiteConfig, member_ids: list[str], centres_s: FloatArray,
                ghi: FloatArray, dni: FloatArray, dhi: FloatArray,
                temp_air: FloatArray) -> FloatArray:
    """Each member's AC power (T × N, W) from irradiance at ``centres_s`` on its arrays."""
    import pvlib

    from controller.island.forecast import per_member, plane_power_w

    arrays = site.arrays
    if not arrays:
        return np.zeros((len(centres_s), len(member_ids)))
    times = pd.DatetimeIndex([datetime.fromtimestamp(float(t), UTC) for t in centres_s])
    solpos = pvlib.solarposition.get_solarposition(times, site.latitude, site.longitude,
                                                   site.altitude_m)
    zenith = solpos["apparent_zenith"].to_numpy(dtype=float)
    # Beam from below the horizon is an interpolation artefact: none.
    dni = np.where(zenith < 90.0, dni, 0.0)
    index = {m: i for i, m in enumerate(member_ids)}
    owner = np.array([index[a.member] for a in arrays], dtype=np.int64)
    col = {k: np.array([getattr(a, k) for a in arrays], dtype=float)
           for k in ("kwp", "tilt", "azimuth")}
    power = plane_power_w(ghi, dni, dhi, zenith, solpos["azimuth"].to_numpy(dtype=float),
                          temp_air, col["kwp"], col["tilt"], col["azimuth"])
    return per_member(power, owner, len(member_ids))
