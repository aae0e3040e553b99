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

:class:`SiteConfig` and :class:`IslandConfig` (in :mod:`.site_config`) are
``CoopConfig.site`` and ``CoopConfig.island``: ``config check`` validates them
with the rest of the file, and every error names the file and the key. Islanded,
the running controller re-plans every ``[island] replan_min`` minutes
(:mod:`.pilot`) from the plan in ``[island] plan_file`` (default ``plan.json``
beside the ledger).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from controller.config import ConfigError as ConfigError
from controller.config import CoopConfig, load_config
from controller.island.device_facts import BatteryFacts, Unread
from controller.island.site_config import (
    ArrayConfig,
    BatteryPlanConfig,
    IslandConfig,
    MemberLoadConfig,
    SiteConfig,
    parse_tz,
)
from dispatch.fleet import Fleet

__all__ = ["ArrayConfig", "BatteryPlanConfig", "Coop", "IslandConfig", "MemberLoadConfig",
           "SiteConfig", "load_island_config", "parse_tz", "resolve"]


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
    """The coop's config and its ``[site]``/``[island]`` tables; :class:`ConfigError` if bad
    or if the file has no ``[site]`` (the plan cannot forecast PV without it)."""
    config = load_config(path)
    if config.site is None:
        raise ConfigError(f"{path}: site: required table is missing (latitude, longitude, tz "
                          "and the PV arrays; see controller/island/site.py)")
    return config, config.site, config.island


def resolve(config: CoopConfig, site: SiteConfig, island: IslandConfig,
            source: str = "<config>",
            facts: Mapping[str, BatteryFacts | Unread] | None = None,
            no_array: Mapping[str, str] | None = None) -> Coop:
    """Check the tables against the members and turn them into arrays.

    ``facts`` are the batteries' own figures (:mod:`.device_facts`), for what the file leaves
    out: a battery device without an ``[[island.batteries]]`` entry, its SoC, its power
    limits. ``None``: the devices were not asked (``config check``), so only what the file
    says is checked; each missing thing is reported once, by the check that owns it.
    ``no_array``: for PV members without an array, why none could be estimated from the
    ledger (:mod:`controller.island_day.array_estimate`), said in their error."""
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
    listed = {b.member for b in island.batteries}
    devices_read = facts is not None
    facts = facts or {}
    entries: list[tuple[str, str, BatteryPlanConfig | None]] = [
        (f"island.batteries[{i}]", b.member, b) for i, b in enumerate(island.batteries)]
    # A battery device without an entry is planned from what it reports about itself.
    entries += [(f"members[{index[m.id]}] battery", m.id, None) for m in config.members
                if m.device("battery") is not None and m.id not in listed]
    for key, member, b in entries:
        if b is not None:
            check_member(key, member)
            if member not in index:
                continue
        device = config.members[index[member]].device("battery")
        got = facts.get(member)
        read = got if isinstance(got, BatteryFacts) else None
        why = f" (reading it failed: {got})" if isinstance(got, str) else ""
        if b is None:
            if not devices_read:
                continue  # config check: the device is asked when the plan is made
            if read is None or read.capacity_wh is None:
                problems.append(
                    f"{source}: island.batteries: member {member!r} has a battery device whose "
                    f"capacity could not be read{why or ' (it reports none)'}; add "
                    f"[[island.batteries]] member = {member!r} with capacity_kwh")
                continue
        limit = device.max_power_w if device else None
        charge = (b.max_charge_w if b else None) or limit or (read and read.max_charge_w)
        discharge = ((b.max_discharge_w if b else None) or limit
                     or (read and read.max_discharge_w))
        if devices_read and (not charge or not discharge):
            missing = "max_charge_w" if not charge else "max_discharge_w"
            problems.append(f"{source}: {key}.{missing}: required: member {member!r} has no "
                            f"battery device with max_power_w to take it from, and the device "
                            f"reports no limit{why}")
            continue
        floor = b.floor_pct if b is not None and b.floor_pct is not None else (
            device.soc_floor_pct if device else 5.0)
        capacity = b.capacity_kwh * 1000.0 if b is not None else float(read.capacity_wh)
        if b is not None and "soc_pct" in b.model_fields_set:
            soc = b.soc_pct
        elif read is not None and read.soc_pct is not None:
            soc = read.soc_pct
        elif b is None or devices_read:
            problems.append(f"{source}: {key}.soc_pct: not given, and the battery's own SoC "
                            f"could not be read{why}; add soc_pct (the last known SoC)")
            continue
        else:
            soc = b.soc_pct
        owners.append(index[member])
        columns["capacity"].append(capacity)
        columns["floor"].append(capacity * floor / 100.0)
        columns["charge"].append(float(charge or 0.0))
        columns["discharge"].append(float(discharge or 0.0))
        columns["efficiency"].append(
            (b.efficiency if b else None) or (device.efficiency if device else 0.92))
        columns["stored"].append(capacity * soc / 100.0)
    arrays = {a.member for a in site.arrays}
    no_array = no_array or {}
    for i, m in enumerate(config.members):
        if m.device("pv") is not None and m.id not in arrays:
            why = f", and none could be estimated: {no_array[m.id]}" if m.id in no_array else ""
            problems.append(f"{source}: site.arrays: member {m.id!r} (members[{i}]) has a PV "
                            f"inverter but no [[site.arrays]] entry{why}, so the plan would "
                            f"count no sun for it; add [[site.arrays]] member = {m.id!r} with "
                            "kwp (tilt and azimuth default to 30 and 180)")
    if problems:
        raise ConfigError("\n".join(problems))
    col = {k: np.array(v, dtype=np.float64) for k, v in columns.items()}
    fleet = Fleet(capacity_wh=col["capacity"], soc_min_wh=col["floor"],
                  max_charge_w=col["charge"], max_discharge_w=col["discharge"],
                  efficiency=col["efficiency"])
    return Coop(config.name, site, ids, annual, critical, essential,
                np.array(owners, dtype=np.int64), fleet, col["stored"])
