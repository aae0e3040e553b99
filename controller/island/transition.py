"""Battery setpoints while the coop goes off the grid.

Islanding, the grid-forming inverter takes the whole coop's imbalance the moment
the coupling opens, and keeps it until the other batteries get new setpoints.
On-grid setpoints leave the houses without a battery (and whatever the others
export or import) to the grid, so right after the coupling opens the grid-former
alone carries them: measured in a rehearsal from 18:00 at 2000x (a cycle spans
100 simulated s), its 3.3 kW were short, the island dropped 0.15 kWh and the
controller switched 1.5 kWh of plugs off while the plan held every tier.

So in ``GOING_OFF_GRID`` the batteries are set as the island will need them (an
islanded dispatch of this cycle's readings), while the cycle is still booked on
the grid: the coupling is closed until the grid-former confirms the island.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick

FloatArray = NDArray[np.float64]


def island_ready_battery_w(fleet: Fleet, state: FleetState, pv_w: FloatArray,
                           load_w: FloatArray, valid: NDArray[np.bool_], dt_s: float,
                           policy: str, caps: tuple[float, float]) -> FloatArray:
    """Battery setpoints (W, discharge > 0) of an islanded dispatch of these readings.

    Args:
        fleet: the fleet as it is islanded (reserve down to the floor, the grid-former
            offered).
        caps: the coupling's import and export caps, W.
    """
    limits = CoopLimits(*caps, islanded=True)
    return dispatch_tick(fleet, state, pv_w, load_w, valid, dt_s, policy, limits).battery_w
