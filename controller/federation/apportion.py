"""A coop's share of a federation settlement, split among its own members by its own policy.

The coop's offer is what is left after its members shared with each other:
its surplus is the sum of its members' export (``to_grid``), its deficit the
sum of their import (``from_grid``). What the federation moves is part of
those flows, not extra energy: a member's ``to_federation`` is the part of its
``to_grid`` that went to another coop, its ``from_federation`` the part of its
``from_grid`` that came from another coop. So reports count
``to_grid - to_federation`` as export to the grid (never both), and
``from_federation`` as liberated: it came from community generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from controller.federation.allocation import whole_wh
from dispatch.rounding import LIBERATED_FIELDS
from dispatch.sharing import allocate

IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class MemberShares:
    """Each member's ``to_federation`` and ``from_federation`` Wh in one interval."""

    interval: int
    digest: str
    member_ids: tuple[str, ...]
    to_federation: IntArray
    from_federation: IntArray


def coop_offer(to_grid: IntArray, from_grid: IntArray) -> tuple[int, int]:
    """``(surplus_wh, deficit_wh)`` of a coop from its members' booked grid flows."""
    return int(to_grid.sum()), int(from_grid.sum())


def split_by_policy(total: int, cap: IntArray, policy: str, key: NDArray[np.float64],
                    tier: IntArray) -> IntArray:
    """``total`` Wh over members capped at ``cap``, by the coop's sharing policy, whole Wh."""
    if total <= 0:
        return np.zeros(len(cap), dtype=np.int64)
    target = allocate(float(total), cap.astype(np.float64), policy, key, tier, tiered=False)
    return whole_wh(target, cap, total)


def apportion(interval: int, digest: str, member_ids: tuple[str, ...], coop_to: int,
              coop_from: int, to_grid: IntArray, from_grid: IntArray, policy: str,
              key: NDArray[np.float64] | None = None,
              tier: IntArray | None = None) -> MemberShares:
    """The coop's ``(to, from)`` federation Wh split among its members.

    Raises ``ValueError`` when the settlement asks for more than the members'
    booked flows hold: the offer was not built from these rows.
    """
    n = len(member_ids)
    key = np.ones(n) if key is None else key
    tier = np.zeros(n, dtype=np.int64) if tier is None else tier
    if coop_to > int(to_grid.sum()) or coop_from > int(from_grid.sum()):
        raise ValueError(f"interval {interval}: settlement ({coop_to} Wh out, {coop_from} Wh in) "
                         f"exceeds the members' grid flows ({int(to_grid.sum())} out, "
                         f"{int(from_grid.sum())} in)")
    return MemberShares(interval, digest, member_ids,
                        split_by_policy(coop_to, to_grid, policy, key, tier),
                        split_by_policy(coop_from, from_grid, policy, key, tier))


def member_split(row: dict[str, int | None]) -> dict[str, int]:
    """A member's liberated energy and net grid flows with the federation's part taken out."""
    fed_in, fed_out = int(row.get("from_federation") or 0), int(row.get("to_federation") or 0)
    return {
        "liberated": sum(int(row.get(f) or 0) for f in LIBERATED_FIELDS) + fed_in,
        "from_federation": fed_in,
        "to_federation": fed_out,
        "from_grid_net": int(row.get("from_grid") or 0) - fed_in,
        "to_grid_net": int(row.get("to_grid") or 0) - fed_out,
    }
