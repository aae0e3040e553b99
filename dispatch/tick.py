"""One dispatch tick: where every household's energy goes over one interval.

Order of use, all households at once:

* deficit: own PV, own battery, peers, coop (offered) batteries, the grid;
* surplus: own load, own battery, peers, coop batteries, grid export, or
  curtailment when islanded or at the export cap.

What cannot be imported (islanded, or over the import cap) is shed, tier by
tier, critical loads last. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import BoolArray, CoopLimits, Fleet, FleetState
from dispatch.sharing import allocate

FloatArray = NDArray[np.float64]
NO_LIMITS = CoopLimits()


@dataclass(slots=True)
class TickResult:
    """Energy split of one tick, in Wh per household; every flow is >= 0.

    Per household::

        load   = own_pv_used + from_battery + from_peers + from_coop_battery + from_grid + shed
        pv     = own_pv_used + to_battery + to_peers + to_coop_battery + to_grid + curtailed
        stored_after - stored_before = to_battery + battery_from_coop + grid_to_battery
                                       - from_battery - battery_to_coop - losses

    Per coop: ``sum(to_peers) == sum(from_peers)``,
    ``sum(to_coop_battery) == sum(battery_from_coop)`` and
    ``sum(battery_to_coop) == sum(from_coop_battery)``.

    ``*_coop`` fields are the coop-origin parts of battery energy: the only
    battery energy that counts as liberated.
    """

    own_pv_used: FloatArray
    to_battery: FloatArray
    from_battery: FloatArray
    from_battery_coop: FloatArray
    to_peers: FloatArray
    from_peers: FloatArray
    to_coop_battery: FloatArray
    from_coop_battery: FloatArray
    from_coop_battery_coop: FloatArray
    battery_from_coop: FloatArray
    battery_to_coop: FloatArray
    grid_to_battery: FloatArray
    to_grid: FloatArray
    from_grid: FloatArray
    curtailed: FloatArray
    shed: FloatArray
    losses: FloatArray
    battery_w: FloatArray
    state: FleetState
    import_capped_wh: float = 0.0
    export_capped_wh: float = 0.0

    @property
    def stored_wh(self) -> FloatArray:
        """Battery content after the tick."""
        return self.state.stored_wh

    @property
    def pool_coop_wh(self) -> FloatArray:
        """Coop-origin part of the battery content after the tick."""
        return self.state.pool_coop_wh

    @property
    def served(self) -> FloatArray:
        """Load that was supplied, from any source."""
        return (self.own_pv_used + self.from_battery + self.from_peers + self.from_coop_battery
                + self.from_grid)

    @property
    def load(self) -> FloatArray:
        """Load that was asked for: served plus shed."""
        return self.served + self.shed

    @property
    def pv(self) -> FloatArray:
        """PV generation, wherever it went."""
        return (self.own_pv_used + self.to_battery + self.to_peers + self.to_coop_battery
                + self.to_grid + self.curtailed)

    @property
    def liberated(self) -> FloatArray:
        """Served load that came from coop generation rather than the grid."""
        return (self.own_pv_used + self.from_peers + self.from_battery_coop
                + self.from_coop_battery_coop)


def _share(total: float, amount: float) -> float:
    return min(amount, total) / total if total > 0.0 and amount > 0.0 else 0.0


def dispatch_tick(
    fleet: Fleet,
    state: FleetState,
    pv_w: FloatArray,
    load_w: FloatArray,
    valid: BoolArray,
    dt_s: float,
    policy: str = "prorata",
    limits: CoopLimits = NO_LIMITS,
) -> TickResult:
    """Balance one tick of ``dt_s`` seconds for every household at once.

    Households whose readings are not ``valid`` take no part: their flows are
    zero and their battery holds. ``state`` is not modified; the new state is
    in the result.
    """
    h = dt_s / 3600.0
    island = limits.islanded
    pv = np.where(valid, np.maximum(pv_w, 0.0), 0.0) * h
    load = np.where(valid, np.maximum(load_w, 0.0), 0.0) * h
    cap = fleet.capacity_wh
    stored = np.clip(state.stored_wh, 0.0, cap)
    eta, inv_eta = fleet.leg_efficiency, fleet.inverse_leg_efficiency
    tiered = island or policy == "tiers"

    # Floors: on-grid the reserve (held higher by the hysteresis latch) protects
    # the island; islanded the owner may go down to the hard floor.
    reserve = np.maximum(fleet.soc_min_wh, fleet.reserve_wh)
    if island:
        floor_own = fleet.soc_min_wh
    else:
        floor_own = reserve + np.where(state.held, fleet.hysteresis_wh, 0.0)
    floor_coop = np.maximum(floor_own, reserve)
    charge_power = np.where(valid, fleet.max_charge_w * h, 0.0)
    discharge_power = np.where(valid, fleet.max_discharge_w * h, 0.0)
    charge_room = np.minimum(charge_power, np.maximum(cap - stored, 0.0) * inv_eta)

    own_pv_used = np.minimum(pv, load)
    surplus = pv - own_pv_used
    deficit = load - own_pv_used
    to_battery = np.minimum(surplus, charge_room)
    surplus -= to_battery
    own_room = np.minimum(discharge_power, np.maximum(stored - floor_own, 0.0) * eta)
    from_battery = np.minimum(deficit, own_room)
    deficit -= from_battery

    total_surplus, total_deficit = float(surplus.sum()), float(deficit.sum())
    to_peers = surplus * _share(total_surplus, total_deficit)
    from_peers = allocate(min(total_surplus, total_deficit), deficit, policy, fleet.key,
                          fleet.tier, tiered)
    surplus -= to_peers
    deficit -= from_peers

    zeros = np.zeros_like(pv)
    to_coop_battery, battery_from_coop = zeros, zeros
    from_coop_battery, battery_to_coop = zeros, zeros
    if fleet.any_offered:
        # A battery does not charge and discharge in the same tick.
        room = np.where(fleet.offered & (from_battery == 0.0), charge_room - to_battery, 0.0)
        spare = np.minimum(discharge_power - from_battery,
                           (stored - floor_coop) * eta - from_battery)
        spare = np.where(fleet.offered & (to_battery == 0.0), np.maximum(spare, 0.0), 0.0)
        left_surplus, total_room = float(surplus.sum()), float(room.sum())
        charged = min(left_surplus, total_room)
        to_coop_battery = surplus * _share(left_surplus, charged)
        battery_from_coop = room * _share(total_room, charged)
        surplus = surplus - to_coop_battery
        left_deficit, total_spare = float(deficit.sum()), float(spare.sum())
        delivered = min(left_deficit, total_spare)
        from_coop_battery = allocate(delivered, deficit, policy, fleet.key, fleet.tier, tiered)
        battery_to_coop = spare * _share(total_spare, delivered)
        deficit = deficit - from_coop_battery

    import_cap = 0.0 if island else limits.import_cap_w * h
    wanted_import = float(deficit.sum())
    from_grid = deficit
    if wanted_import > import_cap:
        from_grid = allocate(import_cap, deficit, policy, fleet.key, fleet.tier, True)
    shed = deficit - from_grid
    import_left = import_cap - float(from_grid.sum())

    grid_to_battery = zeros
    if fleet.any_grid_charge and not island and import_left > 0.0:
        after = stored + (to_battery + battery_from_coop) * eta - from_battery * inv_eta
        want = np.minimum(np.maximum(reserve - after, 0.0) * inv_eta,
                          charge_room - to_battery - battery_from_coop)
        want = np.where(fleet.grid_charge & (from_battery == 0.0) & (battery_to_coop == 0.0),
                        np.maximum(want, 0.0), 0.0)
        grid_to_battery = want * _share(float(want.sum()), import_left)

    export_cap = 0.0 if island else limits.export_cap_w * h
    wanted_export = float(surplus.sum())
    to_grid = surplus * _share(wanted_export, export_cap) if wanted_export > export_cap else surplus
    curtailed = surplus - to_grid

    charged_in = to_battery + battery_from_coop + grid_to_battery
    drawn_out = from_battery + battery_to_coop
    drawn = drawn_out * inv_eta
    stored_after = stored + charged_in * eta - drawn
    pool = np.clip(state.pool_coop_wh, 0.0, stored)
    coop_fraction = np.divide(pool, stored, out=np.zeros_like(stored), where=stored > 0.0)
    delivered_coop = float((battery_to_coop * coop_fraction).sum())
    delivered_total = float(battery_to_coop.sum())
    pool_after = pool - drawn * coop_fraction + (to_battery + battery_from_coop) * eta
    reserve_line = reserve + fleet.hysteresis_wh
    held = np.where(stored_after <= reserve * (1 + 1e-12), True,
                    np.where(stored_after >= reserve_line, False, state.held)) & (cap > 0)

    return TickResult(
        own_pv_used=own_pv_used,
        to_battery=to_battery,
        from_battery=from_battery,
        from_battery_coop=from_battery * coop_fraction,
        to_peers=to_peers,
        from_peers=from_peers,
        to_coop_battery=to_coop_battery,
        from_coop_battery=from_coop_battery,
        from_coop_battery_coop=from_coop_battery * _share(delivered_total, delivered_coop),
        battery_from_coop=battery_from_coop,
        battery_to_coop=battery_to_coop,
        grid_to_battery=grid_to_battery,
        to_grid=to_grid,
        from_grid=from_grid,
        curtailed=curtailed,
        shed=shed,
        losses=(charged_in - charged_in * eta) + (drawn - drawn_out),
        battery_w=(drawn_out - charged_in) / h,
        state=FleetState(stored_after, np.clip(pool_after, 0.0, stored_after), held),
        import_capped_wh=max(wanted_import - import_cap, 0.0) if not island else 0.0,
        export_capped_wh=max(wanted_export - export_cap, 0.0) if not island else 0.0,
    )
