"""Islanded, the grid-forming battery is spent last.

Islanded, the grid-forming battery is every house's slack: whatever the other
batteries and the PV do not cover, it covers, instant by instant. If it reaches
its floor the island goes dark, critical loads included, however much the other
batteries still hold. So the dispatch spends it last:

* it serves its own house only while it holds more than its floor plus
  :data:`FORMER_MARGIN` of its capacity (:func:`own_floor`);
* the coop's deficit is served by the other offered batteries first, and by the
  grid-former (down to its hard floor) only when they cannot (:func:`coop_rank`,
  with :func:`dispatch.sharing.allocate` filling rank 0 before rank 1).

Its own house's deficit below the margin is then the coop's, served by the other
batteries like a neighbour's.

With AC-coupled PV the grid-former also charges only up to a ceiling (default
95 %, :func:`charge_ceiling_wh`): above it, it raises the island's frequency and
the PV inverters derate (from f0 + 1 Hz to nothing at f0 + 2 Hz), so charge it
counts on there does not come, and a full grid-former has no room left to absorb
the PV a load drop throws at it. Nothing here does I/O.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

#: Share of the grid-former's capacity kept above its floor while other batteries can
#: still serve: the slack it needs between two cycles (a load switching on, a cloud)
#: without reaching the floor, which on an island is a blackout.
FORMER_MARGIN = 0.10


def own_floor(soc_min_wh: FloatArray, capacity_wh: FloatArray,
              grid_forming: BoolArray) -> FloatArray:
    """The floor down to which each battery serves its own house islanded: the hard floor,
    raised by :data:`FORMER_MARGIN` of capacity for the grid-former (capped at full)."""
    raised = np.minimum(soc_min_wh + FORMER_MARGIN * capacity_wh, capacity_wh)
    return np.where(grid_forming, raised, soc_min_wh)


def coop_rank(grid_forming: BoolArray) -> IntArray:
    """The order in which batteries serve the coop islanded: the others (rank 0), then the
    grid-former (rank 1)."""
    return grid_forming.astype(np.int64)


def charge_ceiling_wh(capacity_wh: FloatArray, grid_forming: BoolArray,
                      ceiling_pct: float) -> FloatArray:
    """The content up to which each battery charges islanded: ``ceiling_pct`` of capacity
    for a grid-former, full for the others."""
    if not 0 < ceiling_pct <= 100:
        raise ValueError(f"charge_ceiling_pct: expected above 0 and at most 100 %, got "
                         f"{ceiling_pct}")
    return np.where(grid_forming, ceiling_pct / 100.0 * capacity_wh, capacity_wh)


def below_ceiling(charge_wh: FloatArray, stored_wh: FloatArray, ceiling_wh: FloatArray,
                  inverse_leg_efficiency: FloatArray) -> FloatArray:
    """Each battery's charge limit this tick (AC energy) kept below its ceiling: at most
    what fills it to the ceiling, nothing at or above it (a battery above is not drained)."""
    room = np.maximum(ceiling_wh - stored_wh, 0.0) * inverse_leg_efficiency
    return np.minimum(charge_wh, room)
