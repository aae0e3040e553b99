"""``[tariff]``: the coop's prices, flat or by time of use.

Flat prices (``grid_import_per_kwh``, ``grid_export_per_kwh``) price the month's
statement. Time-of-use ``[[tariff.periods]]`` give the utility's import and export
price by hour of the day and day of the week, in the tariff's ``timezone``; the
rolling plan uses them as its second objective, after liberated energy. When periods
are given they must cover every hour of the week exactly once: a gap or an overlap is
an error naming the period and the hours, so no hour is silently priced twice or not
at all::

    [[tariff.periods]]
    name = "peak"
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    hours = [17, 21]              # from 17:00 to 21:00
    import_per_kwh = 0.38
    export_per_kwh = 0.08
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator

from controller.config_network import Strict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_PER_WEEK = 7 * 24


class TariffPeriod(Strict):
    """One time-of-use period: prices over some hours of some weekdays."""

    name: str = Field("", max_length=40, description="what the utility calls it (peak, ...)")
    weekdays: list[str] = Field(
        default_factory=lambda: list(WEEKDAYS), min_length=1,
        description="days it applies to: mon, tue, wed, thu, fri, sat, sun (default all)")
    hours: list[int] = Field(
        min_length=2, max_length=2,
        description="[from, to): whole hours of the local day, 0 <= from < to <= 24")
    import_per_kwh: float = Field(ge=0, description="what the utility charges per kWh then")
    export_per_kwh: float = Field(ge=0, description="what the utility pays per kWh then")

    @field_validator("weekdays")
    @classmethod
    def _days(cls, days: list[str]) -> list[str]:
        bad = [d for d in days if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"{bad}: expected days among {', '.join(WEEKDAYS)}")
        if len(set(days)) != len(days):
            raise ValueError(f"{days}: a day is named twice")
        return days

    @field_validator("hours")
    @classmethod
    def _hours(cls, hours: list[int]) -> list[int]:
        start, end = hours
        if not 0 <= start < end <= 24:
            raise ValueError(f"[{start}, {end}]: expected [from, to) with 0 <= from < to <= 24")
        return hours

    def week_hours(self) -> list[int]:
        """The hours of the week (0 = Monday 00:00) this period covers."""
        return [WEEKDAYS.index(d) * 24 + h for d in self.weekdays
                for h in range(self.hours[0], self.hours[1])]


class TariffConfig(Strict):
    """Prices for the budget and the plan, per kWh, in the coop's currency."""

    currency: str = Field("EUR", min_length=1, max_length=8)
    peer_price_per_kwh: float = Field(
        ge=0, description="what a member pays per kWh received from peers (and its giver earns)")
    grid_import_per_kwh: float = Field(ge=0, description="what the utility charges per kWh")
    grid_export_per_kwh: float = Field(ge=0, description="what the utility pays per kWh")
    coop_fee_per_kwh: float = Field(
        0.0, ge=0, description="fee per kWh received from peers, paid to the coop's own fund")
    timezone: str = Field("UTC", description="IANA zone the periods' hours are in")
    periods: list[TariffPeriod] = Field(
        default_factory=list, description="time-of-use prices; none: the flat prices always")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{zone!r}: not an IANA time zone (e.g. Europe/Paris)") from None
        return zone

    @model_validator(mode="after")
    def _cover_the_week(self) -> TariffConfig:
        if not self.periods:
            return self
        owner: dict[int, int] = {}
        for i, period in enumerate(self.periods):
            for wh in period.week_hours():
                if wh in owner:  # the first overlap only: one clear line
                    raise ValueError(f"periods[{i}].hours: {_when(wh)} is already in "
                                     f"periods[{owner[wh]}] (periods may not overlap)")
                owner[wh] = i
        missing = [wh for wh in range(HOURS_PER_WEEK) if wh not in owner]
        if missing:
            shown = ", ".join(_when(wh) for wh in missing[:3])
            more = f" and {len(missing) - 3} more hours" if len(missing) > 3 else ""
            raise ValueError(f"periods: no price for {shown}{more} (periods must cover every"
                             " hour of the week)")
        return self

    def week_prices(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Import and export price per hour of the week (168 each, Monday 00:00 first)."""
        imp = np.full(HOURS_PER_WEEK, float(self.grid_import_per_kwh))
        exp = np.full(HOURS_PER_WEEK, float(self.grid_export_per_kwh))
        for period in self.periods:
            hours = period.week_hours()
            imp[hours], exp[hours] = period.import_per_kwh, period.export_per_kwh
        return imp, exp

    def prices_at(self, unix_s: NDArray[np.float64] | list[float]
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Import and export price per kWh at each Unix time (local hour of the week)."""
        from datetime import UTC, datetime

        zone = ZoneInfo(self.timezone)
        imp, exp = self.week_prices()
        times = np.asarray(unix_s, dtype=float)
        # Local offsets are per instant (DST); a plan has ~100 steps, so this loop is cheap.
        index = np.array([
            (local.weekday() * 24 + local.hour)
            for local in (datetime.fromtimestamp(float(t), UTC).astimezone(zone)
                          for t in times.ravel())], dtype=np.int64).reshape(times.shape)
        return imp[index], exp[index]


def _when(week_hour: int) -> str:
    """``tue 17:00`` for hour 41 of the week."""
    return f"{WEEKDAYS[week_hour // 24]} {week_hour % 24:02d}:00"


def wear_prices(members: list) -> dict[str, float]:
    """Each member's wear price per kWh out of its battery (members with a priced battery
    only; several priced batteries: their capacity-weighted mean). ``members``: the
    config's :class:`~controller.config.MemberConfig` list."""
    out: dict[str, float] = {}
    for m in members:
        priced = [d for d in m.devices if d.wear_per_kwh is not None]
        if priced:
            whole = sum(d.capacity_kwh for d in priced)
            out[m.id] = sum(d.wear_per_kwh * d.capacity_kwh for d in priced) / whole
    return out
