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
batteries like a neighbour's. Nothing here does I/O.
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
