"""The optional numba kernel gives bit-identical results to the numpy path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import Fleet, FleetState, kernel
from dispatch.series import run_series
from dispatch.tick import BLOCK, DispatchEngine
from tests.fleet_strategies import fleet_cases

pytestmark = pytest.mark.skipif(not kernel.AVAILABLE, reason="numba not installed")

FLOWS = ("own_pv_used", "to_battery", "from_battery", "from_battery_coop", "to_peers",
         "from_peers", "to_grid", "from_grid", "curtailed", "shed")


def simple_fleet(n: int, seed: int) -> tuple[Fleet, FleetState, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cap = rng.uniform(0, 15_000, n) * (rng.random(n) < 0.6)
    fleet = Fleet(cap, cap * rng.uniform(0, 0.2, n), rng.uniform(0, 6000, n),
                  rng.uniform(0, 6000, n), rng.uniform(0.5, 1, n),
                  reserve_wh=cap * rng.uniform(0, 0.4, n))
    stored = cap * rng.random(n) * 1.05 - 10  # a little outside [0, cap]: both clip alike
    state = FleetState.start(stored, np.abs(stored) * rng.random(n))
    pv = rng.uniform(-50, 9000, n) * (rng.random(n) < 0.7)
    load = rng.uniform(0, 4000, n)
    return fleet, state, pv, load


def assert_identical(a, b) -> None:  # noqa: ANN001
    for name in FLOWS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.state.stored_wh, b.state.stored_wh)
    np.testing.assert_array_equal(a.state.pool_coop_wh, b.state.pool_coop_wh)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3 * BLOCK + 17), st.integers(0, 2**32 - 1),
       st.sampled_from([1.0, 60.0, 900.0]))
def test_fused_tick_is_bit_identical(n: int, seed: int, dt: float) -> None:
    fleet, state, pv, load = simple_fleet(n, seed)
    numpy_result = DispatchEngine(fleet, fused=False).tick(state, pv, load, None, dt)
    fused_result = DispatchEngine(fleet, fused=True).tick(state, pv, load, None, dt)
    assert_identical(numpy_result, fused_result)


@settings(max_examples=40, deadline=None)
@given(fleet_cases())
def test_fleets_the_kernel_does_not_cover_still_match(case) -> None:  # noqa: ANN001
    fleet, state, pv, load, valid, dt, policy, limits = case
    a = DispatchEngine(fleet, policy, limits, fused=False).tick(state, pv, load, valid, dt)
    b = DispatchEngine(fleet, policy, limits, fused=True).tick(state, pv, load, valid, dt)
    assert_identical(a, b)


def both_days(fleet: Fleet, state: FleetState, steps: int, cycles: float, pv_max: float,
              seed: int):  # noqa: ANN201 - two SeriesResults
    """The same sunny days at 5-minute steps, on the numpy path and on the kernel."""
    n = fleet.size
    rng = np.random.default_rng(seed)
    sun = np.clip(np.sin(np.linspace(-np.pi / 2, (2 * cycles - 0.5) * np.pi, steps)), 0, None)
    pv = sun[:, None] * rng.uniform(0, pv_max, n)[None, :]
    load = rng.uniform(100, 2500, (steps, n))
    return (run_series(fleet, state, pv, load, 300.0, fused=False),
            run_series(fleet, state, pv, load, 300.0, fused=True))


def assert_same_totals(a, b) -> None:  # noqa: ANN001
    for name, value in a.totals.items():
        np.testing.assert_array_equal(value, b.totals[name], err_msg=name)


def test_fused_day_is_bit_identical() -> None:
    fleet, state, _, _ = simple_fleet(2000, 5)
    a, b = both_days(fleet, state, 288, 1, 7000, 9)
    assert_same_totals(a, b)


def test_fused_day_with_reserve_hysteresis_is_bit_identical() -> None:
    """The kernel's running totals and the reserve latch match the numpy path tick by tick."""
    fleet, state, _, _ = simple_fleet(1500, 11)
    fleet = Fleet(fleet.capacity_wh, fleet.soc_min_wh, fleet.max_charge_w, fleet.max_discharge_w,
                  fleet.efficiency, reserve_wh=fleet.reserve_wh,
                  hysteresis_wh=fleet.capacity_wh * 0.1)
    a, b = both_days(fleet, state, 576, 2, 5000, 3)
    assert a.state.held.any()  # the latch was exercised
    np.testing.assert_array_equal(a.state.held, b.state.held)
    np.testing.assert_array_equal(a.state.stored_wh, b.state.stored_wh)
    assert_same_totals(a, b)


def test_kernel_totals_only_for_fleets_on_its_path() -> None:
    fleet, state, pv, load = simple_fleet(100, 2)
    offered = Fleet(fleet.capacity_wh, fleet.soc_min_wh, fleet.max_charge_w,
                    fleet.max_discharge_w, fleet.efficiency, offered=np.ones(100, bool))
    totals, after = np.zeros((len(kernel.SERIES_ROWS), 100)), state.copy()
    assert DispatchEngine(fleet, fused=True).tick_totals(state, pv, load, 60.0, totals, after)
    assert totals.any()
    totals[:] = 0.0
    assert not DispatchEngine(offered, fused=True).tick_totals(state, pv, load, 60.0, totals, after)
    assert not DispatchEngine(fleet, fused=False).tick_totals(state, pv, load, 60.0, totals, after)
    assert not totals.any()


def test_measured_battery_power_runs_numpy_on_a_fused_engine() -> None:
    """With measured battery power the kernel does not run (it covers only the planned
    tick): a fused engine gives exactly the numpy engine's booking, whose battery flows
    are the measured ones (the planned tick's differ)."""
    fleet, state, pv, load = simple_fleet(500, 3)
    battery_w = np.random.default_rng(4).uniform(-3000, 3000, 500) * (fleet.capacity_wh > 0)
    fused = DispatchEngine(fleet, fused=True).tick(state, pv, load, None, 60.0, battery_w)
    plain = DispatchEngine(fleet, fused=False).tick(state, pv, load, None, 60.0, battery_w)
    assert_identical(fused, plain)
    np.testing.assert_array_equal(fused.battery_to_grid, plain.battery_to_grid)
    np.testing.assert_allclose(fused.battery_w, battery_w, atol=1e-6)
    planned = DispatchEngine(fleet, fused=True).tick(state, pv, load, None, 60.0)
    assert not np.allclose(planned.battery_w, battery_w)
