"""The kept planned engine (one banded engine rewritten in place each cycle) dispatches
exactly as a fresh banded fleet and engine built each cycle from :func:`band` did."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import Fleet, FleetState
from dispatch.planned import PlannedEngine, _coop_surplus, band
from dispatch.tick import DispatchEngine
from tests.fleet_strategies import fleet_cases
from tests.test_dispatch_properties import FLOWS


def fresh_tick(fleet, state, pv, load, valid, dt, policy, limits, target, hold):  # noqa: ANN001, ANN201
    """The former per-cycle path: a banded Fleet and a new engine every cycle."""
    if not hold and _coop_surplus(pv, load, valid):
        return DispatchEngine(fleet, policy, limits, fused=False).tick(state, pv, load, valid, dt)
    floor, ceiling = band(fleet, state, target, hold)
    banded = Fleet(ceiling, np.minimum(fleet.soc_min_wh, ceiling), fleet.max_charge_w,
                   fleet.max_discharge_w, fleet.efficiency, reserve_wh=floor,
                   hysteresis_wh=fleet.hysteresis_wh, offered=fleet.offered,
                   grid_charge=fleet.grid_charge, tier=fleet.tier, key=fleet.key)
    return DispatchEngine(banded, policy, limits, fused=False).tick(state, pv, load, valid, dt)


@settings(max_examples=60, deadline=None)
@given(fleet_cases(), st.integers(0, 2**32 - 1))
def test_kept_engine_equals_a_fresh_one_every_cycle(case, seed: int) -> None:  # noqa: ANN001
    fleet, state, pv, load, valid, dt, policy, limits = case
    if limits.islanded:
        return  # islanded the targets are ignored: greedy either way
    rng = np.random.default_rng(seed)
    for hold in (False, True):
        engine = PlannedEngine(fleet, policy, limits, hold=hold)
        now = state
        for _ in range(3):  # three cycles, new targets each: the kept arrays are rewritten
            target = fleet.capacity_wh * rng.random(fleet.size)
            target[rng.random(fleet.size) < 0.3] = np.nan
            load_now = load * 3.0  # the coop imports: the banded path
            got = engine.tick(now, pv, load_now, valid, dt, target)
            want = fresh_tick(fleet, now, pv, load_now, valid, dt, policy, limits, target, hold)
            for name in FLOWS:
                np.testing.assert_allclose(getattr(got, name), getattr(want, name),
                                           rtol=1e-9, atol=1e-7, err_msg=name)
            np.testing.assert_allclose(got.stored_wh, want.stored_wh, rtol=1e-9, atol=1e-7)
            now = FleetState(got.stored_wh.copy(), got.state.pool_coop_wh.copy(),
                             got.state.held.copy())
