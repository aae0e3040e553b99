"""The tick as it happened: battery flows from the measured battery power.

The dispatch's own tick (:mod:`dispatch.tick`) says what batteries *should* do
next; a battery does what its BMS lets it (it stops at its limit, a setpoint
lags the load). The books follow the measurement: each battery's charge and
discharge over the tick are its measured AC power times the tick, and the
dispatch's rules only say *whose* energy that was:

* charge comes from the owner's PV surplus first, then from coop surplus left
  after peers (``battery_from_coop``, paired with the senders'
  ``to_coop_battery``), then from the grid (``grid_to_battery``, never of coop
  origin);
* discharge serves the owner's load first, then neighbours' deficit left after
  peers (``battery_to_coop``, paired with their ``from_coop_battery``);
* what one battery gave beyond everyone's load and another took beyond everyone's
  surplus went battery to battery (``battery_to_batteries`` /
  ``battery_from_batteries``, a pair; not counted as coop origin);
* only the rest crossed the coop's connection (``grid_to_battery``,
  ``battery_to_grid``).

A full battery that measures 0 W is therefore booked as neither charging nor
discharging, whatever room its rounded SoC suggests. All households at once,
numpy only; the fused kernel does not cover this path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import BoolArray, FleetState
from dispatch.pcc import pcc_limits
from dispatch.result import TickResult
from dispatch.sharing import allocate, capped_fraction

if TYPE_CHECKING:
    from dispatch.tick import DispatchEngine

FloatArray = NDArray[np.float64]
_TINY = 1e-300


def measured_battery_wh(battery_w: FloatArray, fleet_capacity_wh: FloatArray,
                        valid: BoolArray | None, h: float) -> tuple[FloatArray, FloatArray]:
    """AC energy into and out of each battery over ``h`` hours from its measured power
    (discharge > 0). Unknown power, no battery, or an invalid household: 0."""
    ok = np.isfinite(battery_w) & (fleet_capacity_wh > 0)
    if valid is not None:
        ok &= valid
    power = np.where(ok, battery_w, 0.0)
    return np.maximum(-power, 0.0) * h, np.maximum(power, 0.0) * h


def measured_tick(engine: DispatchEngine, state: FleetState, pv_w: FloatArray,
                  load_w: FloatArray, battery_w: FloatArray, valid: BoolArray | None,
                  dt_s: float) -> TickResult:
    """Split one tick's measured energy by origin; see the module docstring.

    ``load_w`` is the household consumption (meter + PV + battery, as measured).
    Every flow is a fresh array (nothing shares the engine's buffers).
    """
    f, policy, tiered = engine.fleet, engine.policy, engine.tiered
    h = dt_s / 3600.0
    if valid is not None and valid.all():
        valid = None
    mask = 1.0 if valid is None else valid.astype(np.float64)
    pv = np.maximum(pv_w, 0.0) * h * mask
    load = np.maximum(load_w, 0.0) * h * mask
    charge, discharge = measured_battery_wh(battery_w, f.capacity_wh, valid, h)
    own = np.minimum(pv, load)
    surplus, deficit = pv - own, load - own
    to_battery = np.minimum(surplus, charge)
    from_battery = np.minimum(deficit, discharge)
    surplus -= to_battery
    deficit -= from_battery
    charge_left, discharge_left = charge - to_battery, discharge - from_battery

    total_surplus, total_deficit = float(surplus.sum()), float(deficit.sum())
    shared = min(total_surplus, total_deficit)
    to_peers = surplus * capped_fraction(total_surplus, shared)
    from_peers = allocate(shared, deficit, policy, f.key, f.tier, tiered)
    surplus -= to_peers
    deficit -= from_peers

    # A battery that charged beyond its owner's surplus imported: neighbours' export first.
    left_surplus, total_charge = float(surplus.sum()), float(charge_left.sum())
    moved = min(left_surplus, total_charge)
    to_coop_battery = surplus * capped_fraction(left_surplus, moved)
    battery_from_coop = charge_left * capped_fraction(total_charge, moved)
    grid_to_battery = charge_left - battery_from_coop
    surplus -= to_coop_battery
    # A battery that discharged beyond its owner's load exported: neighbours' need first.
    left_deficit, total_discharge = float(deficit.sum()), float(discharge_left.sum())
    moved = min(left_deficit, total_discharge)
    from_coop_battery = allocate(moved, deficit, policy, f.key, f.tier, tiered)
    battery_to_coop = discharge_left * capped_fraction(total_discharge, moved)
    deficit -= from_coop_battery
    # What one battery gave beyond everyone's load, another took beyond everyone's surplus:
    # battery to battery (islanded, the grid-former charging the others). Only the rest
    # crossed the coop's connection.
    charge_left, discharge_left = grid_to_battery, discharge_left - battery_to_coop
    total_charge, total_discharge = float(charge_left.sum()), float(discharge_left.sum())
    moved = min(total_charge, total_discharge)
    battery_from_batteries = charge_left * capped_fraction(total_charge, moved)
    battery_to_batteries = discharge_left * capped_fraction(total_discharge, moved)
    grid_to_battery = charge_left - battery_from_batteries
    battery_to_grid = discharge_left - battery_to_batteries

    # On-grid the meters counted what crossed them, caps or not (a cap is a control target,
    # not a measurement). Islanded there is no grid: a deficit the measurements leave is
    # load that went unserved, a surplus is PV that was not delivered.
    from_grid, shed, to_grid, curtailed = deficit, np.zeros_like(deficit), surplus, np.zeros_like(
        surplus)
    if engine.limits.islanded:
        from_grid, shed, to_grid, curtailed, *_ = pcc_limits(deficit, surplus, h, engine.limits,
                                                             policy, f)

    eta, inv_eta = f.leg_efficiency, f.inverse_leg_efficiency
    stored = np.minimum(np.maximum(state.stored_wh, 0.0), f.capacity_wh)
    # Energy from other batteries is not counted as coop origin (it may be grid energy
    # they stored): never more liberated than it was.
    coop_in = (to_battery + battery_from_coop) * eta
    drawn = (from_battery + battery_to_coop + battery_to_grid + battery_to_batteries) * inv_eta
    stored_after = stored + (coop_in + (grid_to_battery + battery_from_batteries) * eta) - drawn
    pool = np.maximum(np.minimum(state.pool_coop_wh, stored), 0.0)
    fraction = pool / np.maximum(stored, _TINY)
    # A measured discharge can exceed the content the rounded SoC shows: the pool never
    # goes below 0 or above what is left.
    pool_after = np.minimum(np.maximum(pool - drawn * fraction + coop_in, 0.0),
                            np.maximum(stored_after, 0.0))
    from_battery_coop = from_battery * fraction
    delivered = float(battery_to_coop.sum())
    from_coop_battery_coop = from_coop_battery * capped_fraction(
        delivered, float(np.dot(battery_to_coop, fraction)))
    held = engine._held_after(stored_after, state).copy()
    return TickResult(
        own_pv_used=own, to_battery=to_battery, from_battery=from_battery,
        from_battery_coop=from_battery_coop, to_peers=to_peers, from_peers=from_peers,
        to_coop_battery=to_coop_battery, from_coop_battery=from_coop_battery,
        from_coop_battery_coop=from_coop_battery_coop, battery_from_coop=battery_from_coop,
        battery_to_coop=battery_to_coop, grid_to_battery=grid_to_battery, to_grid=to_grid,
        from_grid=from_grid, curtailed=curtailed, shed=shed,
        state=FleetState(stored_after, pool_after, held), leg_efficiency=eta, hours=h,
        battery_to_grid=battery_to_grid, battery_to_batteries=battery_to_batteries,
        battery_from_batteries=battery_from_batteries)
