"""What a plan is expected to do, against greedy over the same forecast.

Each re-plan, in the worker thread after the LP, the per-cycle dispatch runs twice over
the forecast the plan was solved from, one tick per plan step: once greedy, once
following the plan's targets (:class:`~dispatch.planned.PlannedEngine`, the engine the
cycle runs). Same fleet, same start, same forecast, same engine: the only difference is
the targets. The difference of the two runs' grid import over the first ``booked_s``
(the interval until the next re-plan, so consecutive plans never count an hour twice) is
what the plan is expected to save; with a tariff, in money too (import saved at the
import price, less export given up at the export price). It is an expectation from the
forecast, not a measurement: what happened instead of greedy cannot be metered.

The same run gives the pages their "next hours": each battery's target content and what
each member is expected to receive from neighbours and coop batteries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import CoopLimits, Fleet, FleetState
from dispatch.plan_lp import StoragePlan, plan_storage
from dispatch.planned import PlannedEngine

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Expected:
    """Per plan step (T) and member (N): the plan's outlook, and its saving against greedy."""

    step_s: float
    target_wh: FloatArray  # T × N, each battery's content at the step's end (0: none)
    shared_wh: FloatArray  # T × N, expected from neighbours and coop batteries, following
    booked_steps: int
    saved_import_wh: FloatArray  # N, greedy's import less the plan's, over the booked steps
    saved_money: FloatArray | None  # N, in the tariff's currency; None without prices
    greedy_import_wh: float  # the coop's, over the booked steps
    plan_import_wh: float
    capacity_wh: FloatArray  # N, the batteries the plan was made for (0: none)


@dataclass(frozen=True, slots=True)
class PlanAhead:
    """The LP's answer and what following it is expected to do (what the worker keeps)."""

    plan: StoragePlan
    expected: Expected

    @property
    def stored_wh(self) -> FloatArray:
        """The plan's content path (the targets), as :class:`StoragePlan`'s."""
        return self.plan.stored_wh

    @property
    def solve_s(self) -> float:
        """Wall seconds of the LP."""
        return self.plan.solve_s


def expect(fleet: Fleet, stored_wh: FloatArray, pv_w: FloatArray, load_w: FloatArray,
           step_s: float, target_wh: FloatArray, booked_steps: int, policy: str = "prorata",
           limits: CoopLimits | None = None, import_price: FloatArray | None = None,
           export_price: FloatArray | None = None) -> Expected:
    """Greedy and the plan-following dispatch over the forecast ``pv_w``/``load_w`` (T × N,
    W), from ``stored_wh``; prices per Wh per step. Vectorized over members, one tick per
    plan step (a few dozen ticks: milliseconds at 1,000 members)."""
    limits = limits or CoopLimits()
    engine = PlannedEngine(fleet, policy, limits)
    steps = len(pv_w)
    targets = np.where(fleet.capacity_wh > 0, target_wh, np.nan)
    grid = np.zeros((2, steps, fleet.size))
    export = np.zeros((2, steps, fleet.size))
    shared = np.zeros((steps, fleet.size))
    for run in (0, 1):  # 0: greedy, 1: following the targets
        state = FleetState.start(np.array(stored_wh, dtype=float))
        for t in range(steps):
            r = engine.tick(state, pv_w[t], load_w[t], None, step_s,
                            targets[t] if run else None)
            grid[run, t] = r.from_grid + r.grid_to_battery
            export[run, t] = r.to_grid
            if run:
                shared[t] = r.from_peers + r.from_coop_battery
            state = FleetState(r.stored_wh.copy(), r.state.pool_coop_wh.copy(),
                               r.state.held.copy())
    booked = slice(0, min(booked_steps, steps))
    saved = (grid[0, booked] - grid[1, booked]).sum(axis=0)
    money = None
    if import_price is not None or export_price is not None:
        imp = np.zeros(steps) if import_price is None else np.broadcast_to(import_price,
                                                                            (steps,))
        exp = np.zeros(steps) if export_price is None else np.broadcast_to(export_price,
                                                                            (steps,))
        money = ((grid[0, booked] - grid[1, booked]) * imp[booked, None]
                 - (export[0, booked] - export[1, booked]) * exp[booked, None]).sum(axis=0)
    return Expected(step_s, np.where(fleet.capacity_wh > 0, target_wh, 0.0), shared,
                    booked.stop, saved, money, float(grid[0, booked].sum()),
                    float(grid[1, booked].sum()), fleet.capacity_wh.copy())


def plan_and_expect(fleet: Fleet, stored_wh: FloatArray, pv_w: FloatArray, load_w: FloatArray,
                    step_s: float, limits: CoopLimits | None = None, *, booked_s: float,
                    policy: str = "prorata", **money: FloatArray) -> PlanAhead:
    """The worker's solver: :func:`plan_storage`, then :func:`expect` over its targets."""
    plan = plan_storage(fleet, stored_wh, pv_w, load_w, step_s, limits=limits, **money)
    expected = expect(fleet, stored_wh, pv_w, load_w, step_s, plan.stored_wh,
                      max(1, round(booked_s / step_s)), policy, limits,
                      money.get("import_price"), money.get("export_price"))
    return PlanAhead(plan, expected)
