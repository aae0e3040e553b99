"""What the island plan takes from the batteries themselves: capacity, SoC and power limits.

Every battery the controller runs reports its rated energy (SunSpec 802/713 ``WHRtg``), its
state of charge and its charge and discharge limits. ``[[island.batteries]]`` need not
repeat them: what the file leaves out is read from the device, once, with the same drivers
as ``commonwatt read`` (:func:`controller.wiring.read_all`). What the file says wins (an
installer may plan on less than the nameplate).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from controller.config import CoopConfig
from controller.island.site_config import IslandConfig


@dataclass(frozen=True, slots=True)
class BatteryFacts:
    """One battery's own figures, as it reported them (``None`` where it says nothing)."""

    capacity_wh: float | None
    soc_pct: float | None
    max_charge_w: float | None
    max_discharge_w: float | None


#: What a battery that could not be read gives instead of facts: the reason.
Unread = str


def members_to_read(config: CoopConfig, island: IslandConfig) -> list[str]:
    """Members whose battery the plan needs to ask: no ``[[island.batteries]]`` entry, no
    SoC in it, or no power limit in it nor in the device's ``max_power_w``."""
    listed = {b.member: b for b in island.batteries}
    wanted = []
    for m in config.members:
        device = m.device("battery")
        if device is None:
            continue
        entry = listed.get(m.id)
        if (entry is None or "soc_pct" not in entry.model_fields_set
                or (device.max_power_w is None
                    and (entry.max_charge_w is None or entry.max_discharge_w is None))):
            wanted.append(m.id)
    return wanted


async def read_battery_facts(config: CoopConfig, members: list[str],
                             ) -> dict[str, BatteryFacts | Unread]:
    """One read of each listed member's battery: its facts, or why it could not be read."""
    from controller.wiring import read_all

    if not members:
        return {}
    chosen = [m.model_copy(update={"devices": [m.device("battery")]})
              for m in config.members if m.id in members and m.device("battery") is not None]
    # Only the batteries: a coop's meters, inverters and plugs are not needed to plan.
    report = await read_all(config.model_copy(update={"members": chosen}))
    facts: dict[str, BatteryFacts | Unread] = {}
    for member, entry in zip(chosen, report, strict=True):
        if not entry["ok"]:
            facts[member.id] = str(entry["error"])
            continue
        v = {name: value["value"] for name, value in entry["values"].items()}
        facts[member.id] = BatteryFacts(v.get("capacity_wh"), v.get("soc_pct"),
                                        v.get("max_charge_w"), v.get("max_discharge_w"))
    return facts


def read_battery_facts_sync(config: CoopConfig, island: IslandConfig,
                            ) -> dict[str, BatteryFacts | Unread]:
    """:func:`read_battery_facts` of :func:`members_to_read`, for a command line."""
    return asyncio.run(read_battery_facts(config, members_to_read(config, island)))
