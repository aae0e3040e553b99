"""Property tests of the planned dispatch: banded around any targets, it conserves energy
per member and tick exactly as greedy does and never breaks a floor, reserve, cap or rating."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import dispatch_tick
from dispatch.planned import PlannedEngine
from tests.fleet_strategies import fleet_cases
from tests.test_dispatch_properties import FLOWS


@st.composite
def planned_cases(draw):
    """A fleet case and targets anywhere in [0, capacity], some NaN (no target)."""
    case = draw(fleet_cases())
    fleet = case[0]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    target = fleet.capacity_wh * rng.random(fleet.size)
    target[rng.random(fleet.size) < draw(st.sampled_from([0.0, 0.3]))] = np.nan
    return case, target


@settings(max_examples=300, deadline=None)
@given(planned_cases())
def test_planned_tick_conserves_and_keeps_every_limit(planned) -> None:
    (fleet, state, pv, load, valid, dt, policy, limits), target = planned
    for hold in (False, True):
        _check(PlannedEngine(fleet, policy, limits, hold=hold).tick(
            state, pv, load, valid, dt, target), fleet, state, pv, load, valid, dt, limits)


def _check(r, fleet, state, pv, load, valid, dt, limits) -> None:  # noqa: ANN001
    """Conservation per member and coop, and every limit greedy keeps."""
    h = dt / 3600
    tol = 1e-9 * max(1.0, float(pv.sum() + load.sum()) * h + float(fleet.capacity_wh.sum()))
    for name in FLOWS:
        assert (getattr(r, name) >= -tol).all(), name
    # per member: every Wh of load and PV goes somewhere, the battery's content balances
    np.testing.assert_allclose(r.load, np.where(valid, load * h, 0), atol=tol)
    np.testing.assert_allclose(r.pv, np.where(valid, pv * h, 0), atol=tol)
    stored = np.clip(state.stored_wh, 0, fleet.capacity_wh)
    np.testing.assert_allclose(
        r.stored_wh - stored,
        r.to_battery + r.battery_from_coop + r.grid_to_battery - r.from_battery
        - r.battery_to_coop - r.losses, atol=tol)
    assert abs(r.to_peers.sum() - r.from_peers.sum()) <= tol
    assert abs(r.to_coop_battery.sum() - r.battery_from_coop.sum()) <= tol
    assert abs(r.battery_to_coop.sum() - r.from_coop_battery.sum()) <= tol
    # ratings, floor, capacity, reserve, offered flag
    charge = r.to_battery + r.battery_from_coop + r.grid_to_battery
    discharge = r.from_battery + r.battery_to_coop
    assert (charge <= fleet.max_charge_w * h + tol).all()
    assert (discharge <= fleet.max_discharge_w * h + tol).all()
    assert ((charge <= tol) | (discharge <= tol)).all()
    assert (r.stored_wh >= np.minimum(fleet.soc_min_wh, stored) - tol).all()
    assert (r.stored_wh <= fleet.capacity_wh + tol).all()
    if not limits.islanded:
        reserve = np.maximum(fleet.soc_min_wh, fleet.reserve_wh)
        held_floor = reserve + np.where(state.held, fleet.hysteresis_wh, 0.0)
        drew = discharge > tol
        assert (r.stored_wh[drew] >= held_floor[drew] - tol).all(), "below the reserve"
        assert r.from_grid.sum() + r.grid_to_battery.sum() <= limits.import_cap_w * h + tol
        assert r.to_grid.sum() <= limits.export_cap_w * h + tol
    own = ~fleet.offered
    assert (r.battery_from_coop[own] <= tol).all() and (r.battery_to_coop[own] <= tol).all()
    assert (r.liberated <= r.served + tol).all()
    assert (r.pool_coop_wh <= r.stored_wh + tol).all()


@settings(max_examples=100, deadline=None)
@given(fleet_cases())
def test_no_target_is_exactly_greedy(case) -> None:
    """Without targets (none, all NaN, or islanded) the planned tick is the greedy tick."""
    fleet, state, pv, load, valid, dt, policy, limits = case
    greedy = dispatch_tick(fleet, state, pv, load, valid, dt, policy, limits)
    engine = PlannedEngine(fleet, policy, limits)
    for target in (None, np.full(fleet.size, np.nan)):
        r = engine.tick(state, pv, load, valid, dt, target)
        for name in FLOWS:
            np.testing.assert_allclose(getattr(r, name), getattr(greedy, name),
                                       rtol=1e-12, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(r.stored_wh, greedy.stored_wh, rtol=1e-12, atol=1e-9)
