"""Property tests on random fleets: conservation, limits, references, symmetry."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from dispatch import Fleet, FleetState, dispatch_tick
from dispatch.reference import FIELDS, reference_tick
from tests.fleet_strategies import fleet_cases

FLOWS = ("own_pv_used", "to_battery", "from_battery", "from_battery_coop", "to_peers",
         "from_peers", "to_coop_battery", "from_coop_battery", "from_coop_battery_coop",
         "battery_from_coop", "battery_to_coop", "grid_to_battery", "to_grid", "from_grid",
         "curtailed", "shed", "losses")


@settings(max_examples=300, deadline=None)
@given(fleet_cases())
def test_conservation_limits_and_origin(case) -> None:
    fleet, state, pv, load, valid, dt, policy, limits = case
    r = dispatch_tick(fleet, state, pv, load, valid, dt, policy, limits)
    h = dt / 3600
    tol = 1e-9 * max(1.0, float(pv.sum() + load.sum()) * h + float(fleet.capacity_wh.sum()))
    for name in FLOWS:
        assert (getattr(r, name) >= -tol).all(), name
    # per household
    np.testing.assert_allclose(r.load, np.where(valid, load * h, 0), atol=tol)
    np.testing.assert_allclose(r.pv, np.where(valid, pv * h, 0), atol=tol)
    stored = np.clip(state.stored_wh, 0, fleet.capacity_wh)
    np.testing.assert_allclose(
        r.stored_wh - stored,
        r.to_battery + r.battery_from_coop + r.grid_to_battery - r.from_battery
        - r.battery_to_coop - r.losses, atol=tol)
    # per coop: what is sent is received
    assert abs(r.to_peers.sum() - r.from_peers.sum()) <= tol
    assert abs(r.to_coop_battery.sum() - r.battery_from_coop.sum()) <= tol
    assert abs(r.battery_to_coop.sum() - r.from_coop_battery.sum()) <= tol
    # limits
    charge = r.to_battery + r.battery_from_coop + r.grid_to_battery
    discharge = r.from_battery + r.battery_to_coop
    assert (charge <= fleet.max_charge_w * h + tol).all()
    assert (discharge <= fleet.max_discharge_w * h + tol).all()
    assert ((charge <= tol) | (discharge <= tol)).all(), "never charge and discharge at once"
    assert (r.stored_wh >= np.minimum(fleet.soc_min_wh, stored) - tol).all()
    assert (r.stored_wh <= fleet.capacity_wh + tol).all()
    if limits.islanded:
        assert r.from_grid.sum() <= tol and r.to_grid.sum() <= tol
        assert r.grid_to_battery.sum() <= tol
    else:
        assert r.from_grid.sum() + r.grid_to_battery.sum() <= limits.import_cap_w * h + tol
        assert r.to_grid.sum() <= limits.export_cap_w * h + tol
        assert r.shed.sum() <= tol or r.from_grid.sum() >= limits.import_cap_w * h - tol
    # origin: liberated never exceeds served; coop pool never exceeds content
    assert (r.liberated <= r.served + tol).all()
    assert (r.pool_coop_wh <= r.stored_wh + tol).all()
    # nothing goes to the grid while a neighbour is short of what it could have had
    assert min(r.to_grid.sum() + r.curtailed.sum(), r.from_grid.sum() + r.shed.sum()) <= tol


@settings(max_examples=200, deadline=None)
@given(fleet_cases())
def test_numpy_matches_plain_python_reference(case) -> None:
    fleet, state, pv, load, valid, dt, policy, limits = case
    fast = dispatch_tick(fleet, state, pv, load, valid, dt, policy, limits)
    slow = reference_tick(fleet, state, pv.tolist(), load.tolist(), valid.tolist(), dt, policy,
                          limits)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(fast, name), slow[name], rtol=1e-9, atol=1e-9,
                                   err_msg=name)


@settings(max_examples=100, deadline=None)
@given(fleet_cases())
def test_deterministic_and_invariant_under_reordering(case) -> None:
    fleet, state, pv, load, valid, dt, policy, limits = case
    first = dispatch_tick(fleet, state, pv, load, valid, dt, policy, limits)
    again = dispatch_tick(fleet, state, pv, load, valid, dt, policy, limits)
    for name in FLOWS:
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    perm = np.random.default_rng(len(pv)).permutation(len(pv))

    def take(a):
        return None if a is None else a[perm]

    shuffled_fleet = Fleet(*(take(getattr(fleet, f)) for f in (
        "capacity_wh", "soc_min_wh", "max_charge_w", "max_discharge_w", "efficiency",
        "reserve_wh", "hysteresis_wh", "offered", "grid_charge", "tier", "key")))
    shuffled_state = FleetState(state.stored_wh[perm], state.pool_coop_wh[perm],
                                state.held[perm])
    moved = dispatch_tick(shuffled_fleet, shuffled_state, pv[perm], load[perm], valid[perm], dt,
                          policy, limits)
    for name in FLOWS:
        np.testing.assert_allclose(getattr(moved, name), getattr(first, name)[perm],
                                   rtol=1e-9, atol=1e-9, err_msg=name)


def test_blocked_path_matches_reference_across_block_edges() -> None:
    from dispatch.tick import BLOCK

    n = 2 * BLOCK + 123
    rng = np.random.default_rng(9)
    cap = rng.uniform(0, 12_000, n) * (rng.random(n) < 0.6)
    fleet = Fleet(cap, cap * 0.1, rng.uniform(0, 5000, n), rng.uniform(0, 5000, n),
                  rng.uniform(0.7, 1.0, n))
    state = FleetState(cap * rng.random(n), cap * rng.random(n) * 0.3, np.zeros(n, bool))
    pv, load = rng.uniform(0, 7000, n) * (rng.random(n) < 0.5), rng.uniform(0, 3000, n)
    fast = dispatch_tick(fleet, state, pv, load, None, 60.0)
    slow = reference_tick(fleet, state, pv.tolist(), load.tolist(), [True] * n, 60.0)
    for name in FIELDS:
        np.testing.assert_allclose(getattr(fast, name), slow[name], rtol=1e-9, atol=1e-9,
                                   err_msg=name)
