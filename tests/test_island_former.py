"""Islanded, the dispatch spends the grid-forming battery last (dispatch/island.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick
from dispatch.island import FORMER_MARGIN

ISLANDED = CoopLimits(islanded=True)
CAP = 10_000.0


def _fleet(n: int = 3) -> Fleet:
    """h0 forms the grid, h1 has a battery too, the rest have none; all offered."""
    cap = np.array([CAP, CAP] + [0.0] * (n - 2))
    power = np.where(cap > 0, 5000.0, 0.0)
    return Fleet(cap, 0.05 * cap, power, power, np.ones(n), offered=cap > 0,
                 grid_forming=np.arange(n) == 0, tier=np.ones(n, np.int64))


def _tick(fleet: Fleet, stored: list[float], load: list[float], hours: float = 0.25):
    state = FleetState.start(np.array(stored))
    n = fleet.size
    return dispatch_tick(fleet, state, np.zeros(n), np.array(load), None, hours * 3600.0,
                         "prorata", ISLANDED)


def test_the_other_battery_serves_the_neighbours_before_the_grid_former() -> None:
    r = _tick(_fleet(), [5000.0, 5000.0, 0.0], [400.0, 0.0, 800.0])
    assert r.battery_to_coop[1] == pytest.approx(200.0)  # 800 W for 15 min
    assert r.battery_to_coop[0] == 0.0
    assert r.from_battery[0] == pytest.approx(100.0)  # its own house, above its margin
    assert r.shed.sum() == 0.0


def test_below_its_margin_the_grid_formers_own_house_is_served_by_the_others() -> None:
    near_floor = (0.05 + FORMER_MARGIN / 2) * CAP
    r = _tick(_fleet(), [near_floor, 5000.0, 0.0], [400.0, 0.0, 800.0])
    assert r.from_battery[0] == 0.0 and r.battery_to_coop[0] == 0.0
    assert r.from_coop_battery[0] == pytest.approx(100.0)
    assert r.battery_to_coop[1] == pytest.approx(300.0)
    assert r.shed.sum() == 0.0


def test_when_the_others_are_empty_the_grid_former_serves_down_to_its_floor() -> None:
    near_floor = (0.05 + FORMER_MARGIN / 2) * CAP
    r = _tick(_fleet(), [near_floor, 0.05 * CAP, 0.0], [400.0, 0.0, 800.0])
    assert r.battery_to_coop[1] == 0.0
    assert r.battery_to_coop[0] == pytest.approx(300.0)
    assert r.shed.sum() == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 3000), min_size=5, max_size=5),
       st.floats(0.05 * CAP, CAP), st.floats(0.05 * CAP, CAP))
def test_nothing_is_shed_while_the_coop_holds_the_energy_and_energy_is_conserved(
        load: list[float], former: float, other: float) -> None:
    fleet = _fleet(5)
    r = _tick(fleet, [former, other, 0, 0, 0], load)
    wh = np.array(load) * 0.25
    each = 5000.0 * 0.25  # a battery's rating over the tick, Wh
    can = min(former - 0.05 * CAP, each) + min(other - 0.05 * CAP, each)
    served = r.own_pv_used + r.from_battery + r.from_peers + r.from_coop_battery
    assert served + r.shed == pytest.approx(wh, abs=1e-6)
    given_out = r.from_battery + r.battery_to_coop
    assert given_out.sum() == pytest.approx((r.from_battery + r.from_coop_battery).sum())
    # nothing is shed while the two batteries can carry the load, whoever forms the grid
    assert r.shed.sum() == pytest.approx(max(wh.sum() - can, 0.0), abs=1e-6)
    # the grid-former gives to the coop only what the other battery could not
    if r.battery_to_coop[0] > 1e-9:
        other_room = min(5000 * 0.25 - r.from_battery[1], other - 0.05 * CAP - r.from_battery[1])
        assert r.battery_to_coop[1] == pytest.approx(max(other_room, 0.0), abs=1e-6)
