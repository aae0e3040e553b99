"""AC-coupled PV (#21.3a): the grid-former charges only to its ceiling, in the dispatch and
in the plan."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from controller.island.plan import Problem, plan_island
from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick
from dispatch.island import below_ceiling, charge_ceiling_wh

CAP = 10_000.0


@pytest.mark.parametrize(("stored", "charge", "expected"), [
    # (Wh in the battery, charge limit this tick as AC Wh, what it may take) at η = 1 and a
    # 9,500 Wh ceiling: below it, the room to it; at or above it, nothing (and no drain).
    (9000.0, 1250.0, 500.0), (9400.0, 50.0, 50.0), (9500.0, 1250.0, 0.0),
    (9800.0, 1250.0, 0.0), (0.0, 1250.0, 1250.0),
])
def test_charge_below_the_ceiling(stored: float, charge: float, expected: float) -> None:
    got = below_ceiling(np.array([charge]), np.array([stored]), np.array([9500.0]),
                        np.array([1.0]))
    assert got[0] == pytest.approx(expected)


def test_only_grid_formers_have_a_ceiling_and_bad_settings_name_the_field() -> None:
    got = charge_ceiling_wh(np.array([CAP, CAP]), np.array([True, False]), 95.0)
    assert got.tolist() == [9500.0, CAP]
    with pytest.raises(ValueError, match="charge_ceiling_pct"):
        charge_ceiling_wh(np.array([CAP]), np.array([True]), 0.0)


def _island_tick(stored: list[float], ceiling_pct: float):
    """4 kW of surplus PV at h2 for 15 min; h0 forms the grid, h1 follows; all offered."""
    cap = np.array([CAP, CAP, 0.0])
    power = np.where(cap > 0, 5000.0, 0.0)
    fleet = Fleet(cap, 0.05 * cap, power, power, np.ones(3), offered=cap > 0,
                  grid_forming=np.arange(3) == 0, tier=np.ones(3, np.int64))
    return dispatch_tick(fleet, FleetState.start(np.array(stored)),
                         np.array([0.0, 0.0, 4000.0]), np.zeros(3), None, 900.0, "prorata",
                         CoopLimits(islanded=True, charge_ceiling_pct=ceiling_pct))


@pytest.mark.parametrize(("case", "stored", "ceiling", "after_0", "curtailed"), [
    # 1 kWh of surplus; the follower is full: without a ceiling the grid-former takes it all.
    ("no ceiling", [9000.0, CAP, 0.0], 100.0, 10_000.0, 0.0),
    # At a 95 % ceiling it takes 500 Wh and the other 500 Wh is curtailed.
    ("to the ceiling", [9000.0, CAP, 0.0], 95.0, 9500.0, 500.0),
    # Above the ceiling it takes nothing and keeps what it holds.
    ("above it", [9800.0, CAP, 0.0], 95.0, 9800.0, 1000.0),
    # The follower has room: it is not capped.
    ("the follower", [9800.0, 9000.0, 0.0], 95.0, 9800.0, 0.0),
])
def test_islanded_the_grid_former_charges_only_to_its_ceiling(
        case: str, stored: list[float], ceiling: float, after_0: float,
        curtailed: float) -> None:
    r = _island_tick(stored, ceiling)
    assert r.state.stored_wh[0] == pytest.approx(after_0), case
    assert r.curtailed.sum() == pytest.approx(curtailed), case
    # Energy is conserved: PV in = stored gain + curtailed.
    gain = float(r.state.stored_wh.sum() - sum(stored))
    assert gain + float(r.curtailed.sum()) == pytest.approx(1000.0), case


def test_the_plan_keeps_the_grid_former_below_its_ceiling_on_a_sunny_day() -> None:
    steps = 96
    hour = np.arange(steps) / 4.0
    pv = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)[:, None] * 4000.0
    fleet = Fleet(capacity_wh=[CAP, CAP], soc_min_wh=[500.0, 500.0],
                  max_charge_w=[3000.0, 3000.0], max_discharge_w=[3000.0, 3000.0],
                  efficiency=[0.9, 0.9])
    base = Problem.from_shares(pv, np.full((steps, 1), 300.0), [0.3], [0.3], fleet,
                               [5000.0, 5000.0], [0, 0], member_ids=["a"])
    free = plan_island(base)
    ceiling = charge_ceiling_wh(fleet.capacity_wh, np.array([True, False]), 95.0)
    capped = plan_island(replace(base, charge_ceiling_wh=ceiling))
    assert free.stored_wh[:, 0].max() > 9600.0  # the sun fills it without a ceiling
    assert capped.stored_wh[:, 0].max() <= 9500.0 + 1e-3
    assert capped.stored_wh[:, 1].max() == pytest.approx(CAP, abs=1e-3)  # the follower fills
    assert capped.shed_by_tier_wh() == free.shed_by_tier_wh()
