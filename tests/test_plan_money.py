"""Money is the plan's second objective: time-of-use prices and the wear of offered
batteries steer the plan only where liberated energy is not at stake."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import Fleet
from dispatch.plan_lp import plan_storage

DT = 3600.0


def fleet_of(cap: list[float], offered: list[bool], eta: float = 0.9) -> Fleet:
    c = np.array(cap)
    n = len(c)
    return Fleet(c, c * 0.05, np.full(n, 3000.0), np.full(n, 3000.0), np.full(n, eta),
                 reserve_wh=c * 0.1, offered=np.array(offered))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(4, 12),
       aggregate=st.booleans())
def test_money_never_buys_a_wh_of_import(seed: int, steps: int, aggregate: bool) -> None:
    """Any prices and wear: the plan imports what the money-blind plan imports."""
    rng = np.random.default_rng(seed)
    n = 4
    fleet = fleet_of(list(rng.choice([0.0, 5000.0, 10_000.0], n)), list(rng.random(n) < 0.6),
                     float(rng.uniform(0.7, 1.0)))
    pv = rng.uniform(0, 5000, (steps, n)) * (rng.random((steps, 1)) < 0.6)
    load = rng.uniform(100, 2500, (steps, n))
    start = fleet.capacity_wh * rng.uniform(0, 1, n)
    blind = plan_storage(fleet, start, pv, load, DT, aggregate=aggregate)
    priced = plan_storage(fleet, start, pv, load, DT, aggregate=aggregate,
                          import_price=rng.uniform(0, 0.6, steps) / 1000,
                          export_price=rng.uniform(0, 0.3, steps) / 1000,
                          wear_price=rng.uniform(0, 2.0, n) / 1000)
    assert priced.import_wh <= blind.import_wh + 1e-6 * max(1.0, blind.import_wh)


def test_import_prices_send_the_battery_to_the_dear_hour() -> None:
    """The battery holds enough for one of two equal evening hours: whichever it serves the
    import is the same, and the plan serves the dear one."""
    fleet = fleet_of([10_000.0], [True])
    pv = np.zeros((3, 1))
    load = np.full((3, 1), 2000.0)
    start = np.array([1000.0 + 2000.0 / np.sqrt(0.9)])  # reserve + one hour's load
    for dear in (0, 2):
        price = np.full(3, 0.20 / 1000)
        price[dear] = 0.45 / 1000
        plan = plan_storage(fleet, start, pv, load, DT, import_price=price)
        blind = plan_storage(fleet, start, pv, load, DT)
        assert abs(plan.import_wh - blind.import_wh) < 1e-6
        assert plan.grid_wh[dear] < 1e-6
        assert float(plan.grid_wh @ price) < float(blind.grid_wh @ price) + 1e-9


def test_wear_sends_the_work_to_the_battery_that_costs_nothing() -> None:
    """Two offered batteries, one needed: the one without a price serves the evening."""
    fleet = fleet_of([10_000.0, 10_000.0, 0.0], [True, True, True])
    pv = np.zeros((3, 3))
    load = np.array([[0.0, 0.0, 1500.0]] * 3)
    start = np.array([6000.0, 6000.0, 0.0])
    for dear in (0, 1):
        wear = np.zeros(3)
        wear[dear] = 0.05 / 1000
        plan = plan_storage(fleet, start, pv, load, DT, wear_price=wear, aggregate=False)
        assert plan.import_wh < 1e-6
        assert plan.discharge_wh[:, dear].sum() < 1e-6
        assert plan.discharge_wh[:, 1 - dear].sum() > 4000
