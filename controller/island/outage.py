"""Load an overloaded grid-former drops, as the books see it (pure).

Islanded, a grid-forming inverter at its limit cannot hold the island's
frequency; load is dropped (by the households' under-frequency relays, by
tier: flexible first, critical last), and the grid-former says so (SunSpec 701
``Alrm`` UNDER_FREQUENCY). The meters only see what was served. What was
dropped is estimated from the demand measured just before the overload: the
coop's total is what the members' demand fell by, and it is attributed by tier
as the island drops it (least critical first, pro rata to demand within a
tier, never more than a member's demand). It is booked as unserved, never as
served, so an estimate errs only between members' shed and never creates energy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def dropped_load_w(before_w: FloatArray, demand_w: FloatArray, valid: NDArray[np.bool_],
                   tier: NDArray[np.int64]) -> FloatArray:
    """Per member, the load dropped now, W (``tier``: 0 critical, 1 essential, 2 flexible).

    Args:
        before_w: each member's demand just before the overload.
        demand_w: what the meters see now.
        valid: members whose readings are fresh (others are booked as gaps).
        tier: each member's load tier.
    """
    before = np.where(valid, before_w, 0.0)
    total = float(np.maximum(before - np.where(valid, demand_w, 0.0), 0.0).sum())
    out = np.zeros_like(before)
    for level in (2, 1, 0):  # three tiers, not a loop over members
        if total <= 0.0:
            break
        room = np.where(tier == level, before, 0.0)
        available = float(room.sum())
        if available <= 0.0:
            continue
        take = min(total, available)
        out += room * (take / available)
        total -= take
    return out
