"""The plan's SoC is a trajectory a controller would follow (controller/island/plan_trajectory.py):
on a sunny simulated day it stores as soon as there is surplus and spreads the energy.

Measured on this day (10 demo households from 00:00, 24 h) before the second LP: every
battery but two sat at its 5 % floor until 14:00 and charged from 14:30, with the same
shed (none) and curtailment (230.47 kWh) as now.
"""

from __future__ import annotations

import numpy as np
import pytest

import controller.island.plan as island_plan
from controller.island.plan import plan_island
from controller.island_day.rehearse_plan import day_start, simulated_problem
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.household import demo_households


@pytest.fixture(scope="module")
def problem() -> island_plan.Problem:
    start = day_start("00:00")
    coop = SimulatedCoop(demo_households(10, plugs=True), SimClock(start_s=start, speed=1.0))
    return simulated_problem(coop, start, 24)


def test_the_plan_stores_early_and_spreads_with_the_same_shed_and_curtailment(
        problem: island_plan.Problem, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_island(problem)
    soc = plan.soc_pct
    at = {h: soc[h * 4] for h in (6, 10, 12)}
    # before the sun: every battery at the same SoC (spread), not some at the floor
    assert at[6].max() - at[6].min() < 1.0, at[6]
    # the morning's surplus is stored as it comes: most of the way by 10:00, full by noon
    assert (at[10] > 70).all() and (at[12] > 99).all(), (at[10], at[12])
    # and it is the same plan otherwise: the first LP's shed and curtailment
    monkeypatch.setattr(island_plan, "follow_early", lambda *a, **k: None)
    vertex = plan_island(problem)
    assert plan.shed_by_tier_wh() == pytest.approx(vertex.shed_by_tier_wh(), abs=1e-3)
    assert plan.curtailed_wh.sum() == pytest.approx(vertex.curtailed_wh.sum(), rel=1e-6)
    assert np.allclose(plan.shed_wh.sum(axis=2), vertex.shed_wh.sum(axis=2), atol=1e-3)
    assert (vertex.soc_pct[10 * 4] < 40).sum() >= 3  # the vertex it replaces
