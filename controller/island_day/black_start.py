"""Black-start reserve: the island day must end with energy to start again.

If the grid is not back when the planned island ends (or fails right after the
return), the grid-formers must be able to form the island again and carry the
critical loads for a while. So each grid-forming battery should end the plan
at or above ``[island] black_start_pct`` (10 %) of its capacity, and the plan
states how many hours of the critical load the batteries still hold at the end
(the grid-formers' energy above their floors, through one discharge leg, at the
day's mean critical load: the other batteries follow a grid, they cannot form one).

The plan holds the reserve as a constraint (:mod:`.plan_black_start`, when the
problem has ``end_floor_wh``); this is the verdict: a grid-former that still
ends below it (it started too low, or the critical tier needed the energy) is
named and the check fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from controller.island.plan import Plan

BLACK_START_PCT = 10.0


@dataclass(frozen=True, slots=True)
class BlackStart:
    """Each grid-former's SoC at the end against the reserve, and the critical hours left."""

    reserve_pct: float
    end_pct: dict[int, float]  # battery index → SoC at the end, %
    below: list[int]  # grid-formers ending below the reserve
    critical_hours_left: float

    @property
    def met(self) -> bool:
        """Every grid-former ends at or above the reserve."""
        return not self.below


def check_black_start(plan: Plan, grid_forming: NDArray[np.bool_],
                      reserve_pct: float = BLACK_START_PCT) -> BlackStart:
    """The black-start reserve of ``plan`` (see the module docstring)."""
    p = plan.problem
    if np.shape(grid_forming) != (p.fleet.size,):
        raise ValueError(f"grid_forming: expected one flag per battery ({p.fleet.size})")
    if not 0 <= reserve_pct <= 100:
        raise ValueError(f"black_start_pct: expected 0 to 100 %, got {reserve_pct}")
    end = plan.soc_pct[-1]
    formers = np.flatnonzero(grid_forming)
    end_pct = {int(b): float(end[b]) for b in formers}
    below = [b for b, pct in end_pct.items() if pct < reserve_pct - 1e-6]
    # The grid-formers carry a black start alone: only their energy counts.
    left_wh = float(((plan.stored_wh[-1] - p.lower_wh).clip(0.0)
                     * p.fleet.leg_efficiency)[formers].sum())
    critical_w = float(p.tier_load_w[0].sum(axis=1).mean())
    hours = left_wh / critical_w if critical_w > 0 else float("inf")
    return BlackStart(reserve_pct, end_pct, below, hours)
