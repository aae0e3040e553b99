"""The greedy dispatch against linear-programming references (scipy HiGHS)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import Fleet, FleetState, dispatch_tick
from dispatch.lp import lp_copper_plate_import, lp_tick_import
from dispatch.series import run_series


def random_fleet(rng: np.random.Generator, n: int, battery_share: float) -> Fleet:
    cap = rng.uniform(0, 12_000, n) * (rng.random(n) < battery_share)
    return Fleet(cap, cap * rng.uniform(0, 0.2, n), rng.uniform(0, 5000, n),
                 rng.uniform(0, 5000, n), rng.uniform(0.7, 1.0, n),
                 reserve_wh=cap * rng.uniform(0, 0.3, n), offered=rng.random(n) < 0.5)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 25), st.integers(0, 2**32 - 1))
def test_greedy_never_imports_less_than_the_tick_lp(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    fleet = random_fleet(rng, n, 0.7)
    state = FleetState.start(fleet.capacity_wh * rng.random(n))
    pv = rng.uniform(0, 6000, n) * (rng.random(n) < 0.6)
    load = rng.uniform(0, 3000, n)
    greedy = float(dispatch_tick(fleet, state, pv, load, None, 900.0).from_grid.sum())
    assert greedy >= lp_tick_import(fleet, state, pv, load, 900.0) - 1e-6


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 25), st.integers(0, 2**32 - 1), st.sampled_from(["no batteries", "night"]))
def test_greedy_equals_the_tick_lp_where_greedy_is_optimal(n: int, seed: int, kind: str) -> None:
    """Fleets where the greedy order is optimal for one tick.

    With nothing to charge, every source the LP could use is already used to
    the full by the greedy order (own PV, own battery, all peer surplus,
    offered batteries to their limit), so both import the same:

    * "no batteries": households without storage;
    * "night": no PV at all, so no battery can be charging.
    """
    rng = np.random.default_rng(seed)
    fleet = random_fleet(rng, n, 0.0 if kind == "no batteries" else 0.8)
    state = FleetState.start(fleet.capacity_wh * rng.random(n))
    pv = rng.uniform(0, 6000, n) * (rng.random(n) < 0.6) * (kind == "no batteries")
    load = rng.uniform(0, 3000, n)
    greedy = float(dispatch_tick(fleet, state, pv, load, None, 900.0).from_grid.sum())
    assert greedy == pytest.approx(lp_tick_import(fleet, state, pv, load, 900.0),
                                   rel=1e-7, abs=1e-6)


def test_copper_plate_bound_is_a_lower_bound_and_offered_batteries_come_close() -> None:
    rng = np.random.default_rng(42)
    t_steps, n, dt = 96, 8, 900.0
    hours = np.arange(t_steps) * dt / 3600
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    pv = sun[:, None] * rng.choice([0.0, 3000.0, 6000.0], n)[None, :]
    load = 300 + 200 * rng.random((t_steps, n))
    cap = np.where(rng.random(n) < 0.6, 10_000.0, 0.0)
    cap[0] = 10_000.0
    fleet = Fleet(cap, cap * 0.05, np.full(n, 3000.0), np.full(n, 3000.0), np.full(n, 0.9),
                  offered=np.ones(n, bool))
    bound = lp_copper_plate_import(fleet, cap * 0.3, pv, load, dt)
    greedy = run_series(fleet, FleetState.start(cap * 0.3), pv, load, dt).coop["from_grid"]
    assert greedy >= bound - 1e-6
    assert greedy <= 1.10 * bound + 1.0
