"""Property tests on random fleets: conservation, limits, references, symmetry."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick
from dispatch.reference import FIELDS, MEASURED_FIELDS, reference_measured_tick, reference_tick
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


def _measured_power(case, seed: int) -> np.ndarray:
    """Battery power as a meter would read it: within the rating, either way, some idle
    (a full or empty battery at its BMS's limit), some unknown (NaN)."""
    fleet = case[0]
    rng = np.random.default_rng(seed)
    n = fleet.size
    power = rng.uniform(-1, 1, n) * np.maximum(fleet.max_charge_w, fleet.max_discharge_w)
    power[rng.random(n) < 0.2] = 0.0
    power[rng.random(n) < 0.05] = np.nan
    return power


@settings(max_examples=300, deadline=None)
@given(fleet_cases(), st.integers(0, 2**32 - 1))
def test_measured_battery_conservation_and_measurement(case, seed) -> None:
    """Booked from measured battery power: every household's PV, load and battery energy
    is what was measured, split without loss; pairs match; grid never becomes liberated."""
    fleet, state, pv, load, valid, dt, policy, limits = case
    battery_w = _measured_power(case, seed)
    r = dispatch_tick(fleet, state, pv, load, valid, dt, policy, limits, battery_w=battery_w)
    h = dt / 3600
    tol = 1e-9 * max(1.0, float(pv.sum() + load.sum()) * h + float(fleet.capacity_wh.sum())
                     + float(np.nansum(np.abs(battery_w))) * h)
    for name in (*FLOWS, "battery_to_grid", "battery_to_batteries", "battery_from_batteries"):
        assert (getattr(r, name) >= -tol).all(), name
    np.testing.assert_allclose(r.load, np.where(valid, load * h, 0), atol=tol)
    np.testing.assert_allclose(r.pv, np.where(valid, pv * h, 0), atol=tol)
    # the battery did what it measured, no more, no less
    known = valid & np.isfinite(battery_w) & (fleet.capacity_wh > 0)
    power = np.where(known, battery_w, 0.0)
    np.testing.assert_allclose(r.charged_in, np.maximum(-power, 0) * h, atol=tol)
    np.testing.assert_allclose(r.drawn_out, np.maximum(power, 0) * h, atol=tol)
    np.testing.assert_allclose(r.battery_w, power, atol=tol / h)
    stored = np.clip(state.stored_wh, 0, fleet.capacity_wh)
    np.testing.assert_allclose(r.stored_wh - stored, r.charged_in - r.drawn_out - r.losses,
                               atol=tol)
    # what crosses each meter is the measured net power: import - export = load - pv + battery
    meter_in = (r.from_peers + r.from_coop_battery + r.from_grid + r.shed + r.battery_from_coop
                + r.grid_to_battery + r.battery_from_batteries)
    meter_out = (r.to_peers + r.to_coop_battery + r.to_grid + r.curtailed + r.battery_to_coop
                 + r.battery_to_grid + r.battery_to_batteries)
    np.testing.assert_allclose(meter_in - meter_out, r.load - r.pv + r.charged_in - r.drawn_out,
                               atol=tol)
    assert abs(r.to_peers.sum() - r.from_peers.sum()) <= tol
    assert abs(r.to_coop_battery.sum() - r.battery_from_coop.sum()) <= tol
    assert abs(r.battery_to_coop.sum() - r.from_coop_battery.sum()) <= tol
    assert abs(r.battery_to_batteries.sum() - r.battery_from_batteries.sum()) <= tol
    # energy leaves the coop only where nobody in it could take it
    assert min(r.grid_to_battery.sum(), r.battery_to_grid.sum()) <= tol
    if limits.islanded:
        assert r.from_grid.sum() <= tol and r.to_grid.sum() <= tol
    assert (r.liberated <= r.served + tol).all()
    assert (r.pool_coop_wh <= np.maximum(r.stored_wh, 0) + tol).all()
    assert (r.pool_coop_wh >= 0).all()
    # grid energy stored is never of coop origin: the pool grows by coop charge only
    pool = np.maximum(np.minimum(state.pool_coop_wh, stored), 0)
    assert (r.pool_coop_wh - pool <= (r.to_battery + r.battery_from_coop) + tol).all()


@settings(max_examples=200, deadline=None)
@given(fleet_cases(), st.integers(0, 2**32 - 1))
def test_measured_battery_matches_plain_python_reference(case, seed) -> None:
    fleet, state, pv, load, valid, dt, policy, limits = case
    battery_w = _measured_power(case, seed)
    fast = dispatch_tick(fleet, state, pv, load, valid, dt, policy, limits, battery_w=battery_w)
    slow = reference_measured_tick(fleet, state, pv.tolist(), load.tolist(), battery_w.tolist(),
                                   valid.tolist(), dt, policy, limits)
    for name in MEASURED_FIELDS:
        np.testing.assert_allclose(getattr(fast, name), slow[name], rtol=1e-9, atol=1e-9,
                                   err_msg=name)


def test_full_battery_measuring_zero_books_no_charge() -> None:
    """The issue's case: a battery at 99.9 % with room by its rounded SoC measures 0 W;
    the dispatch would charge it, the books do not, and the meter's export is booked."""
    fleet = Fleet(np.array([10_000.0, 0.0]), np.array([500.0, 0.0]), np.array([5000.0, 0.0]),
                  np.array([5000.0, 0.0]), np.array([0.92, 1.0]))
    state = FleetState.start(np.array([9_990.0, 0.0]))
    pv, load = np.array([3000.0, 0.0]), np.array([500.0, 300.0])
    planned = dispatch_tick(fleet, state, pv, load, None, 3600.0)
    assert planned.to_battery[0] > 0  # phantom room: 10 Wh / sqrt(0.92)
    booked = dispatch_tick(fleet, state, pv, load, None, 3600.0, battery_w=np.array([0.0, 0.0]))
    assert booked.to_battery[0] == 0 and booked.charged_in[0] == 0
    assert booked.to_peers[0] == 300 and booked.to_grid[0] == 2200
    assert booked.stored_wh[0] == 9_990.0


def test_measured_on_grid_books_what_crossed_the_meters_caps_or_not() -> None:
    """A cap steers the plan; the books hold what the meters counted (no shed on-grid)."""
    fleet = Fleet.without_batteries(2)
    state = FleetState.start(np.zeros(2))
    limits = CoopLimits(import_cap_w=100.0, export_cap_w=50.0)
    pv, load = np.array([0.0, 900.0]), np.array([700.0, 0.0])
    planned = dispatch_tick(fleet, state, pv, load, None, 3600.0, limits=limits)
    assert planned.shed.sum() == 0 and planned.curtailed.sum() == 150
    booked = dispatch_tick(fleet, state, pv, load, None, 3600.0, limits=limits,
                           battery_w=np.zeros(2))
    assert booked.to_grid[1] == 200 and booked.curtailed.sum() == 0 and booked.shed.sum() == 0
    booked = dispatch_tick(fleet, state, np.zeros(2), load, None, 3600.0, limits=limits,
                           battery_w=np.zeros(2))
    assert booked.from_grid[0] == 700 and booked.shed.sum() == 0
