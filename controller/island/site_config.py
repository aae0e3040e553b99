"""The ``[site]`` and ``[island]`` tables of the coop's configuration (models only).

They live apart from :mod:`controller.island.site` so that
:class:`~controller.config.CoopConfig` can hold them without importing the
planner. See :mod:`controller.island.site` for the tables as an installer writes them.
"""

from __future__ import annotations

import re
from datetime import timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from controller.config_network import Strict

_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):(\d{2})$")


def parse_tz(text: str) -> tzinfo:
    """An IANA zone (``Europe/Paris``) or a fixed offset (``+01:00``, ``UTC-05:00``)."""
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if offset > timedelta(hours=14):
            raise ValueError(f"offset {text} is beyond ±14:00")
        return timezone(-offset if sign == "-" else offset)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone name such as 'Europe/Paris' or a fixed "
                         "offset such as '+01:00'") from None


class ArrayConfig(Strict):
    """One PV array on a member's roof."""

    member: str = Field(description="id of the member whose meter the array is behind")
    kwp: float = Field(gt=0, le=10_000, description="peak power, kWp (DC, at STC)")
    tilt: float = Field(30.0, ge=0, le=90, description="degrees from horizontal")
    azimuth: float = Field(180.0, ge=0, lt=360, description="degrees clockwise from north")


class SiteConfig(Strict):
    """Where the coop is: the sun's path over it and its PV arrays."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    tz: str = Field(description="IANA time zone name or fixed offset such as '+01:00'")
    altitude_m: float = Field(0.0, ge=-500, le=9000, description="for the clear-sky model")
    arrays: list[ArrayConfig] = Field(default_factory=list)

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        parse_tz(value)
        return value

    @property
    def tzinfo(self) -> tzinfo:
        """The site's time zone."""
        return parse_tz(self.tz)


class MemberLoadConfig(Strict):
    """A member's consumption and how it splits into priority tiers."""

    member: str
    annual_kwh: float | None = Field(None, gt=0, le=1_000_000, description="for the H25 profile")
    critical_share: float | None = Field(None, ge=0, le=1)
    essential_share: float | None = Field(None, ge=0, le=1)


class BatteryPlanConfig(Strict):
    """A battery the island plan may use (its capacity is not in the device config)."""

    member: str
    capacity_kwh: float = Field(gt=0, le=100_000, description="usable energy at 100 % SoC")
    soc_pct: float = Field(50.0, ge=0, le=100, description="last known state of charge")
    max_charge_w: float | None = Field(None, gt=0, description="default: device max_power_w")
    max_discharge_w: float | None = Field(None, gt=0, description="default: device max_power_w")
    efficiency: float | None = Field(None, gt=0, le=1, description="round trip; default: device")
    floor_pct: float | None = Field(None, ge=0, le=100, description="default: device floor")


class IslandConfig(Strict):
    """What the coop's members need when the grid is gone."""

    annual_kwh: float = Field(3500.0, gt=0, le=1_000_000)
    critical_share: float = Field(0.15, ge=0, le=1)
    essential_share: float = Field(0.35, ge=0, le=1)
    members: list[MemberLoadConfig] = Field(default_factory=list)
    batteries: list[BatteryPlanConfig] = Field(default_factory=list)
    replan_min: float = Field(15.0, ge=1, le=360, allow_inf_nan=False, description=(
        "islanded, the running controller plans the rest of the island again this often, "
        "from fresh readings"))
    plan_file: str | None = Field(None, min_length=1, description=(
        "the plan the controller follows ('commonwatt island plan --json' output); default: "
        "plan.json beside the ledger"))

    # The island day you can trust (#21): survival odds and operating reserve.
    battery_availability: float = Field(0.97, gt=0, le=1, description=(
        "probability that a battery (with its inverter) is up through the island day; "
        "REopt's default"))
    pv_availability: float = Field(0.98, gt=0, le=1, description=(
        "probability that a member's PV is up through the island day; REopt's default"))
    reserve_load_pct: float = Field(10.0, ge=0, le=100, description=(
        "operating reserve: the grid-formers keep this % of the served load as headroom"))
    reserve_pv_pct: float = Field(25.0, ge=0, le=100, description=(
        "operating reserve: and this % of the PV in use, in case a cloud takes it"))
    ac_charge_ceiling_pct: float = Field(95.0, ge=50, le=100, description=(
        "islanded, a grid-forming battery charges from AC-coupled PV only up to this SoC "
        "(above it, its frequency shift curtails the PV inverters); the plan and the "
        "island dispatch keep to it"))
    black_start_pct: float = Field(10.0, ge=0, le=100, description=(
        "each grid-forming battery should end the island day at or above this SoC, to "
        "start again"))
    eve_h: float = Field(24.0, gt=0, le=168, description=(
        "island eve: this many hours before a planned island each battery is charged to the "
        "plan's starting SoC, with no export; its prior mode is restored after"))

    @model_validator(mode="after")
    def _shares(self) -> IslandConfig:
        if self.critical_share + self.essential_share > 1:
            raise ValueError("critical_share + essential_share is above 1")
        return self
