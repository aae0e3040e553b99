"""The black-start reserve as a constraint of the island plan's LP (issue #21, point 5).

The island day must end with each grid-forming battery at or above
``[island] black_start_pct`` of its capacity, so it can form the island again
if the grid is not back. In the LP (:mod:`controller.island.plan`) each battery
``b`` with a reserve gets one row on its content at the end::

    e[T-1, b] + short[b] − surplus[b] = reserve[b],   short, surplus ≥ 0

``short`` is costed, ``surplus`` free. Why a costed shortfall and not a hard
bound: a battery that starts below its reserve on a dark day cannot reach it,
and the plan must never answer "infeasible". The weight sits between the tiers
(:data:`RESERVE_WEIGHT`, about √(10³ · 10⁶)): the plan sheds essential and
flexible loads before it eats into the reserve, and eats into the reserve
before it sheds the critical tier (the critical loads now are certain, the
black start is a contingency). Any shortfall left fails the report's verdict
(:func:`controller.island_day.black_start.check_black_start`). In the required
starting SoC's LPs it costs as much as a tier that must hold, so the starting
SoC the island eve charges to includes the reserve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Cost per kWh short of the black-start reserve: above essential shed (10³), below
#: critical shed (10⁶), with a factor ≈ 30 either side (exact for trades of a few passes).
RESERVE_WEIGHT = 3e4


@dataclass(frozen=True, slots=True)
class FloorRows:
    """Rows to append to the LP's equalities (COO parts) and their right-hand side."""

    rows: list[IntArray]
    cols: list[IntArray]
    vals: list[FloatArray]
    rhs_kwh: FloatArray


def end_floor_rows(floor_wh: FloatArray | None, e_last: int, r_at: int,
                   first_row: int) -> FloorRows:
    """``e[T-1, b] + short[b] − surplus[b] = floor[b]`` for every battery.

    Args:
        floor_wh: each battery's reserve at the end, Wh (B,).
        e_last: the column of the last step's content of battery 0 (then 1, 2, …).
        r_at: the first shortfall column; the surpluses follow the B shortfalls.
        first_row: the index of the first new row.
    """
    floor = np.asarray(floor_wh, dtype=float)
    b = np.arange(floor.size)
    row = first_row + b
    ones = np.ones(floor.size)
    return FloorRows([row, row, row], [e_last + b, r_at + b, r_at + floor.size + b],
                     [ones, ones, -ones], floor / 1000.0)


def end_floor_wh(capacity_wh: FloatArray, grid_forming: NDArray[np.bool_],
                 reserve_pct: float) -> FloatArray:
    """Each battery's black-start reserve: ``reserve_pct`` of a grid-former's capacity, 0
    for the others (they do not form the island again)."""
    if not 0 <= reserve_pct <= 100:
        raise ValueError(f"black_start_pct: expected 0 to 100 %, got {reserve_pct}")
    cap = np.asarray(capacity_wh, dtype=float)
    if np.shape(grid_forming) != cap.shape:
        raise ValueError(f"grid_forming: expected one flag per battery ({cap.size})")
    return np.where(grid_forming, cap * reserve_pct / 100.0, 0.0)
