"""One dispatch tick: where every household's energy goes over one interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import Fleet
from dispatch.sharing import share_prorata

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(slots=True)
class TickResult:
    """Energy split of one tick, in Wh per household (all flows >= 0).

    Balances that always hold, per household::

        served = own_pv_used + from_battery + from_peers + from_grid
        load   = served + shed
        pv     = own_pv_used + to_battery + to_peers + to_grid + curtailed
        stored_after = stored_before + to_battery - from_battery - losses

    ``from_battery_coop`` is the part of ``from_battery`` that was charged from
    coop generation (the coop-origin pool); the rest came from the grid.
    """

    own_pv_used: FloatArray
    to_battery: FloatArray
    from_battery: FloatArray
    from_battery_coop: FloatArray
    to_peers: FloatArray
    from_peers: FloatArray
    to_grid: FloatArray
    from_grid: FloatArray
    curtailed: FloatArray
    shed: FloatArray
    losses: FloatArray
    battery_w: FloatArray
    stored_wh: FloatArray
    pool_coop_wh: FloatArray

    @property
    def served(self) -> FloatArray:
        """Load that was supplied, from any source."""
        return self.own_pv_used + self.from_battery + self.from_peers + self.from_grid

    @property
    def load(self) -> FloatArray:
        """Load that was asked for: served plus shed."""
        return self.served + self.shed

    @property
    def pv(self) -> FloatArray:
        """PV generation, wherever it went."""
        return self.own_pv_used + self.to_battery + self.to_peers + self.to_grid + self.curtailed

    @property
    def liberated(self) -> FloatArray:
        """Served load that came from coop generation rather than the grid."""
        return self.own_pv_used + self.from_peers + self.from_battery_coop


def dispatch_tick(
    fleet: Fleet,
    pv_w: FloatArray,
    load_w: FloatArray,
    stored_wh: FloatArray,
    pool_coop_wh: FloatArray,
    valid: BoolArray,
    dt_s: float,
) -> TickResult:
    """Balance one tick of ``dt_s`` seconds for every household at once.

    Order of use: own PV, then own battery, then peers (pro-rata to deficit),
    then the grid. Households whose readings are not ``valid`` take no part:
    their flows are zero and their battery holds (setpoint 0 W).

    Args:
        fleet: static battery parameters.
        pv_w: mean PV power over the tick, W (negative readings count as 0).
        load_w: mean household load over the tick, W (negative counts as 0).
        stored_wh: usable energy in each battery at the start of the tick.
        pool_coop_wh: the part of ``stored_wh`` that came from coop generation.
        valid: households whose readings are fresh enough to dispatch.
        dt_s: tick length in seconds.
    """
    hours = dt_s / 3600.0
    pv = np.where(valid, np.maximum(pv_w, 0.0), 0.0) * hours
    load = np.where(valid, np.maximum(load_w, 0.0), 0.0) * hours
    stored = np.clip(stored_wh, 0.0, fleet.capacity_wh)
    eta = fleet.leg_efficiency

    own_pv_used = np.minimum(pv, load)
    surplus = pv - own_pv_used
    deficit = load - own_pv_used

    charge_room = np.maximum(fleet.capacity_wh - stored, 0.0) / eta
    charge_cap = np.where(valid, np.minimum(fleet.max_charge_w * hours, charge_room), 0.0)
    to_battery = np.minimum(surplus, charge_cap)
    discharge_room = np.maximum(stored - fleet.soc_min_wh, 0.0) * eta
    discharge_cap = np.where(valid, np.minimum(fleet.max_discharge_w * hours, discharge_room), 0.0)
    from_battery = np.minimum(deficit, discharge_cap)
    surplus -= to_battery
    deficit -= from_battery

    to_peers, from_peers = share_prorata(surplus, deficit)
    to_grid = surplus - to_peers
    from_grid = deficit - from_peers

    drawn = from_battery / eta
    charged = to_battery * eta
    coop_fraction = np.divide(
        np.clip(pool_coop_wh, 0.0, stored), stored, out=np.zeros_like(stored), where=stored > 0
    )
    from_battery_coop = from_battery * coop_fraction
    zeros = np.zeros_like(pv)
    return TickResult(
        own_pv_used=own_pv_used,
        to_battery=to_battery,
        from_battery=from_battery,
        from_battery_coop=from_battery_coop,
        to_peers=to_peers,
        from_peers=from_peers,
        to_grid=to_grid,
        from_grid=from_grid,
        curtailed=zeros,
        shed=zeros.copy(),
        losses=(to_battery - charged) + (drawn - from_battery),
        battery_w=(from_battery - to_battery) / hours,
        stored_wh=stored + charged - drawn,
        pool_coop_wh=np.clip(pool_coop_wh, 0.0, stored) * (1.0 - _drawn_share(drawn, stored))
        + charged,
    )


def _drawn_share(drawn: FloatArray, stored: FloatArray) -> FloatArray:
    """Fraction of the stored energy drawn this tick: both pools shrink by it."""
    return np.divide(drawn, stored, out=np.zeros_like(stored), where=stored > 0)
