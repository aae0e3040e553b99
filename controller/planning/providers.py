"""PV forecasts for the rolling plan behind one small interface, :class:`PVProvider`.

A provider answers ``pv_w(start, steps, step_s)``: each member's mean PV power (W) in
each step from ``start`` (a UNIX time), a ``steps × N`` array with NaN where it has no
opinion (a member without an array, a factor not learned yet). The plan fills the NaNs
from the history profile (:class:`controller.planning.profile.SlotProfile`), so a
member is never without a forecast because one source does not know it.

* :class:`ClearSkyProvider`: pvlib's clear sky on the site's arrays
  (:func:`controller.island.forecast.pv_forecast_w`) × the cloudiness learned from the
  ledger (:mod:`controller.planning.cloudiness`); the default when ``[site]`` has arrays.
* :class:`controller.planning.open_meteo.OpenMeteoProvider`: a weather service's
  irradiance forecast on the same arrays (``[forecast] provider = "open-meteo"``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from controller.island.site_config import SiteConfig
from controller.planning.cloudiness import Cloudiness

FloatArray = NDArray[np.float64]


@runtime_checkable
class PVProvider(Protocol):
    """A PV forecast per member: ``name`` says which, for the plan's state."""

    name: str

    def pv_w(self, start: float, steps: int, step_s: float) -> FloatArray | None:
        """Mean W per member and step (steps × N; NaN: no opinion); None: nothing now."""
        ...


def with_arrays(site: SiteConfig, member_ids: list[str]) -> NDArray[np.bool_]:
    """Which members have at least one array in ``[site]``."""
    owners = {a.member for a in site.arrays}
    return np.array([m in owners for m in member_ids], dtype=bool)


def clear_sky_w(site: SiteConfig, member_ids: list[str], start: float, steps: int,
                step_s: float) -> FloatArray:
    """pvlib's clear-sky power of each member's arrays (steps × N, W; 0 without one)."""
    from controller.island.forecast import pv_forecast_w

    return pv_forecast_w(site, member_ids, datetime.fromtimestamp(start, UTC), steps,
                         "clear", int(step_s))


def utc_hours(start: float, steps: int, step_s: float) -> NDArray[np.int64]:
    """UTC hour of each step's centre."""
    return (((start + (np.arange(steps) + 0.5) * step_s) // 3600) % 24).astype(np.int64)


class ClearSkyProvider:
    """Clear sky × learned cloudiness, for the members with arrays."""

    name = "pvlib clear sky × cloudiness learned from the ledger"

    def __init__(self, site: SiteConfig, member_ids: list[str],
                 cloudiness: Callable[[], Cloudiness | None]) -> None:
        self.site, self.member_ids, self.cloudiness = site, member_ids, cloudiness
        self.covered = with_arrays(site, member_ids)

    def pv_w(self, start: float, steps: int, step_s: float) -> FloatArray | None:
        """None until a cloudiness has been learned."""
        cloud = self.cloudiness()
        if cloud is None:
            return None
        clear = clear_sky_w(self.site, self.member_ids, start, steps, step_s)
        # Lead time from the end of the last day learned: how far yesterday's clearness
        # has to be carried.
        lead = start + (np.arange(steps) + 0.5) * step_s - cloud.learned_at
        factor = cloud.factor(utc_hours(start, steps, step_s), lead)
        return np.where(self.covered[None, :], clear * factor, np.nan)
