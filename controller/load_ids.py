"""The switchable loads of a config, each with the id the poller gives it.

A load is named ``<member>/load<n>``, ``n`` counting the member's ``kind = "load"``
devices from 1 in config order. Shedding, the guard's protected loads, the grid-loss
hold and the poller all take their names from here, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.config import CoopConfig, DeviceConfig, MemberConfig


def load_id(member_id: str, n: int) -> str:
    """The id of a member's ``n``-th load device (from 1)."""
    return f"{member_id}/load{n}"


def load_devices(config: CoopConfig) -> Iterator[tuple[int, MemberConfig, str, DeviceConfig]]:
    """Every load device of ``config``: its member's index, the member, its id, the device."""
    for index, member in enumerate(config.members):
        count = 0
        for dev in member.devices:
            if dev.kind == "load":
                count += 1
                yield index, member, load_id(member.id, count), dev
