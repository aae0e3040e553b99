"""The controller keeps one dispatch engine, rebuilt only when the fleet's inputs change,
and its results equal a fresh engine's every tick (issue 17, point 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from controller.fleet_dispatch import EngineKeeper, FleetParams, detached
from dispatch import CoopLimits, FleetState, dispatch_tick
from tests.coop_harness import start_harness

N = 40


def params(rng: np.random.Generator) -> FleetParams:
    return FleetParams(
        floor_pct=np.full(N, 5.0), reserve_pct=np.full(N, 20.0), hysteresis_pct=np.zeros(N),
        offered=rng.random(N) < 0.5, grid_forming=np.arange(N) == 0,
        grid_charge=np.zeros(N, dtype=bool), efficiency=np.full(N, 0.9),
        limit_w=np.full(N, np.inf), tier=rng.integers(0, 3, N), key=np.ones(N))


def image(capacity: np.ndarray) -> SimpleNamespace:
    has = np.isfinite(capacity) & (capacity > 0)
    return SimpleNamespace(has_battery=has, capacity_wh=capacity,
                           max_charge_w=np.where(has, 3300.0, np.nan),
                           max_discharge_w=np.where(has, 3300.0, np.nan))


def test_kept_engine_equals_a_fresh_one_and_rebuilds_on_change() -> None:
    rng = np.random.default_rng(7)
    p = params(rng)
    keeper = EngineKeeper(p, "prorata")
    capacity = np.where(rng.random(N) < 0.6, 10_000.0, np.nan)
    islanded, limits = False, CoopLimits()
    kept = []
    for tick in range(12):
        if tick == 4:
            capacity = capacity.copy()
            capacity[3] = 5_000.0  # a battery reports another capacity
        if tick == 7:
            islanded, limits = True, CoopLimits(islanded=True)
        img = image(capacity)  # a new image every cycle, as freeze makes
        stored = np.nan_to_num(capacity) * rng.uniform(0.1, 0.9, N)
        state = FleetState.start(stored, stored * 0.3)
        pv, load = rng.uniform(0, 5000, N), rng.uniform(100, 3000, N)
        valid = rng.random(N) < 0.95
        fleet = keeper.fleet(img, islanded)
        got = keeper.tick(fleet, state, pv, load, valid, 60.0, limits)
        want = dispatch_tick(p.fleet(img, islanded), state, pv, load, valid, 60.0, "prorata",
                             limits)
        for f in ("own_pv_used", "to_peers", "from_peers", "from_grid", "to_grid",
                  "to_battery", "from_battery", "shed", "curtailed", "from_coop_battery"):
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
        kept.append((detached(got), want))
    assert (keeper.fleets_built, keeper.engines_built) == (3, 3)  # start, capacity, island
    # A detached result keeps its figures after the engine's later ticks.
    first, want = kept[0]
    np.testing.assert_array_equal(first.own_pv_used, want.own_pv_used)
    np.testing.assert_array_equal(first.state.stored_wh, want.state.stored_wh)


def test_the_controller_keeps_one_engine_over_cycles(tmp_path: Path) -> None:
    async def run() -> None:
        h = await start_harness(tmp_path, households=6, start_hour=11.0)
        try:
            reports = [await h.step() for _ in range(6)]
        finally:
            await h.close()
        assert h.controller.engines.engines_built == 1
        results = [r.result for r in reports if r.result is not None]
        assert len(results) >= 5
        # Each report's figures are its own, not the engine's buffers of a later tick.
        assert results[0].own_pv_used is not results[1].own_pv_used
        assert not np.shares_memory(results[0].own_pv_used, results[-1].own_pv_used)

    asyncio.run(run())
