"""Where the coop is and what it needs islanded: the ``[site]`` and ``[island]`` tables.

An installer writes, beside the rest of the coop's configuration file::

    [site]
    latitude = 45.76
    longitude = 4.84
    tz = "Europe/Paris"          # an IANA name, or a fixed offset such as "+01:00"

    [[site.arrays]]              # one per PV array; a member may have several
    member = "h01"
    kwp = 5.2
    tilt = 30                    # degrees from horizontal
    azimuth = 180                # degrees clockwise from north (180 = south)

    [island]
    annual_kwh = 3500            # defaults for members not listed below
    critical_share = 0.15        # of each member's load: served first, shed last
    essential_share = 0.35       # the rest of the load is flexible

    [[island.members]]
    member = "h01"
    annual_kwh = 4200
    critical_share = 0.25

    [[island.batteries]]         # one per battery the plan may use
    member = "h01"
    capacity_kwh = 10
    soc_pct = 64                 # last known state of charge

A battery's efficiency, hard floor and power limit default to its battery
device's ``efficiency``, ``floor_pct`` and ``max_power_w`` in ``[[members]]``.

:class:`SiteConfig` and :class:`IslandConfig` are plain models, ready to become
``CoopConfig.site`` and ``CoopConfig.island``. Until they are,
:func:`load_island_config` reads them from the same file itself: it validates
the coop's tables with :class:`~controller.config.CoopConfig` and these two
tables with the models here, so every error still names the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller.config import ConfigError, CoopConfig
from devices.validation import format_errors
from dispatch.fleet import Fleet

_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):(\d{2})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ArrayConfig(_Strict):
    """One PV array on a member's roof."""

    member: str = Field(description="id of the member whose meter the array is behind")
    kwp: float = Field(gt=0, le=10_000, description="peak power, kWp (DC, at STC)")
    tilt: float = Field(30.0, ge=0, le=90, description="degrees from horizontal")
    azimuth: float = Field(180.0, ge=0, lt=360, description="degrees clockwise from north")


class SiteConfig(_Strict):
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


class MemberLoadConfig(_Strict):
    """A member's consumption and how it splits into priority tiers."""

    member: str
    annual_kwh: float | None = Field(None, gt=0, le=1_000_000, description="for the H25 profile")
    critical_share: float | None = Field(None, ge=0, le=1)
    essential_share: float | None = Field(None, ge=0, le=1)


class BatteryPlanConfig(_Strict):
    """A battery the island plan may use (its capacity is not in the device config)."""

    member: str
    capacity_kwh: float = Field(gt=0, le=100_000, description="usable energy at 100 % SoC")
    soc_pct: float = Field(50.0, ge=0, le=100, description="last known state of charge")
    max_charge_w: float | None = Field(None, gt=0, description="default: device max_power_w")
    max_discharge_w: float | None = Field(None, gt=0, description="default: device max_power_w")
    efficiency: float | None = Field(None, gt=0, le=1, description="round trip; default: device")
    floor_pct: float | None = Field(None, ge=0, le=100, description="default: device floor")


class IslandConfig(_Strict):
    """What the coop's members need when the grid is gone."""

    annual_kwh: float = Field(3500.0, gt=0, le=1_000_000)
    critical_share: float = Field(0.15, ge=0, le=1)
    essential_share: float = Field(0.35, ge=0, le=1)
    members: list[MemberLoadConfig] = Field(default_factory=list)
    batteries: list[BatteryPlanConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shares(self) -> IslandConfig:
        if self.critical_share + self.essential_share > 1:
            raise ValueError("critical_share + essential_share is above 1")
        return self


class _IslandFile(BaseModel):
    """The two tables, validated against the whole file so errors carry their full key."""

    model_config = ConfigDict(extra="ignore")
    site: SiteConfig
    island: IslandConfig = IslandConfig()


@dataclass(frozen=True, slots=True)
class Coop:
    """Everything the planner needs from the configuration, as arrays over members.

    Attributes:
        member_ids: the coop's members, in configuration order.
        annual_kwh, critical_share, essential_share: per member.
        battery_member: index into ``member_ids`` of each planned battery's owner.
        fleet: the planned batteries (one element per battery, not per member).
        stored_wh: each battery's last known content.
    """

    name: str
    site: SiteConfig
    member_ids: list[str]
    annual_kwh: NDArray[np.float64]
    critical_share: NDArray[np.float64]
    essential_share: NDArray[np.float64]
    battery_member: NDArray[np.int64]
    fleet: Fleet
    stored_wh: NDArray[np.float64]


def load_island_config(path: str | Path) -> tuple[CoopConfig, SiteConfig, IslandConfig]:
    """The coop's config and its ``[site]``/``[island]`` tables; :class:`ConfigError` if bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    ours = {"site", "island"} - set(CoopConfig.model_fields)
    problems = []
    coop = None
    try:
        coop = CoopConfig.model_validate({k: v for k, v in data.items() if k not in ours})
    except ValidationError as exc:
        problems.append(format_errors(str(path), data, exc, CoopConfig))
    tables = None
    if "site" not in data:
        problems.append(f"{path}: site: required table is missing (latitude, longitude, tz "
                        "and the PV arrays; see controller/island/site.py)")
    else:
        try:
            tables = _IslandFile.model_validate(data)
        except ValidationError as exc:
            problems.append(format_errors(str(path), data, exc, _IslandFile))
    if problems or coop is None or tables is None:
        raise ConfigError("\n".join(problems))
    return coop, tables.site, tables.island


def resolve(config: CoopConfig, site: SiteConfig, island: IslandConfig,
            source: str = "<config>") -> Coop:
    """Check the tables against the members and turn them into arrays."""
    ids = [m.id for m in config.members]
    index = {m: i for i, m in enumerate(ids)}
    problems: list[str] = []

    def check_member(key: str, member: str) -> None:
        if member not in index:
            problems.append(f"{source}: {key}.member = {member!r}: not a member of the coop "
                            f"(members: {', '.join(ids[:10])}{', …' if len(ids) > 10 else ''})")

    for i, a in enumerate(site.arrays):
        check_member(f"site.arrays[{i}]", a.member)
    n = len(ids)
    annual = np.full(n, island.annual_kwh)
    critical = np.full(n, island.critical_share)
    essential = np.full(n, island.essential_share)
    for i, m in enumerate(island.members):
        check_member(f"island.members[{i}]", m.member)
        j = index.get(m.member)
        if j is None:
            continue
        annual[j] = m.annual_kwh if m.annual_kwh is not None else annual[j]
        critical[j] = m.critical_share if m.critical_share is not None else critical[j]
        essential[j] = m.essential_share if m.essential_share is not None else essential[j]
        if critical[j] + essential[j] > 1:
            problems.append(f"{source}: island.members[{i}]: critical_share + essential_share "
                            f"= {critical[j] + essential[j]:g}: expected at most 1")
    columns: dict[str, list[float]] = {k: [] for k in (
        "capacity", "floor", "charge", "discharge", "efficiency", "stored")}
    owners: list[int] = []
    for i, b in enumerate(island.batteries):
        key = f"island.batteries[{i}]"
        check_member(key, b.member)
        if b.member not in index:
            continue
        device = config.members[index[b.member]].device("battery")
        limit = device.max_power_w if device else None
        charge, discharge = b.max_charge_w or limit, b.max_discharge_w or limit
        if charge is None or discharge is None:
            missing = "max_charge_w" if charge is None else "max_discharge_w"
            problems.append(f"{source}: {key}.{missing}: required: member {b.member!r} has no "
                            "battery device with max_power_w to take it from")
            continue
        floor = b.floor_pct if b.floor_pct is not None else (
            device.soc_floor_pct if device else 5.0)
        capacity = b.capacity_kwh * 1000.0
        owners.append(index[b.member])
        columns["capacity"].append(capacity)
        columns["floor"].append(capacity * floor / 100.0)
        columns["charge"].append(charge)
        columns["discharge"].append(discharge)
        columns["efficiency"].append(b.efficiency or (device.efficiency if device else 0.92))
        columns["stored"].append(capacity * b.soc_pct / 100.0)
    for m in config.members:
        if m.device("battery") is not None and index[m.id] not in owners:
            problems.append(f"{source}: island.batteries: member {m.id!r} has a battery device "
                            f"but no entry; add [[island.batteries]] member = {m.id!r} with "
                            "capacity_kwh")
    if problems:
        raise ConfigError("\n".join(problems))
    col = {k: np.array(v, dtype=np.float64) for k, v in columns.items()}
    fleet = Fleet(capacity_wh=col["capacity"], soc_min_wh=col["floor"],
                  max_charge_w=col["charge"], max_discharge_w=col["discharge"],
                  efficiency=col["efficiency"])
    return Coop(config.name, site, ids, annual, critical, essential,
                np.array(owners, dtype=np.int64), fleet, col["stored"])
