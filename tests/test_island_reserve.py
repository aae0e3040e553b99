"""Operating reserve: the grid-formers' headroom against 10 % of load + 25 % of PV."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.island.plan import Problem, plan_island
from controller.island_day.reserve import check_reserve, verdict
from dispatch.fleet import Fleet
from tests.test_island_plan import problems

STEPS = 96


def one_battery_day(load_w: float, rating_w: float, pv_w: float = 0.0) -> Problem:
    """A member with constant load and PV, and a full 50 kWh grid-forming battery."""
    fleet = Fleet(capacity_wh=[50000.0], soc_min_wh=[0.0], max_charge_w=[rating_w],
                  max_discharge_w=[rating_w], efficiency=[1.0])
    return Problem.from_shares(np.full((STEPS, 1), pv_w), np.full((STEPS, 1), load_w),
                               [0.3], [0.3], fleet, [50000.0], [0], member_ids=["a"])


def test_energy_met_but_reserve_short_is_fragile_with_the_shortage_apart_from_shed() -> None:
    # 1150 W of load from a 1200 W grid-former: every kWh is served (24 × 1.15 = 27.6 kWh of
    # 50), but the headroom is 50 W where 10 % of 1150 W = 115 W is needed: 65 W short in
    # each of the 96 steps, 65 W × 24 h = 1.56 kWh of capacity shortage, none of it shed.
    plan = plan_island(one_battery_day(1150.0, 1200.0))
    assert all(plan.feasible.values())
    reserve = check_reserve(plan, np.array([True]))
    assert reserve.headroom_w == pytest.approx(np.full(STEPS, 50.0), abs=1e-3)
    assert reserve.need_w == pytest.approx(np.full(STEPS, 115.0))
    assert reserve.shortage_kwh == pytest.approx(1.56, abs=1e-3)
    assert len(reserve.short_steps) == STEPS and not reserve.met
    assert sum(plan.shed_by_tier_wh().values()) == 0.0
    assert verdict(plan, reserve) == {t: "fragile" for t in ("critical", "essential",
                                                             "flexible")}


def test_reserve_met_is_feasible_and_pv_in_use_counts_a_quarter() -> None:
    # 1000 W load: headroom 200 W ≥ 100 W. With 400 W of PV in use the battery gives 600 W:
    # headroom 600 W against 100 + 0.25 × 400 = 200 W.
    plan = plan_island(one_battery_day(1000.0, 1200.0))
    reserve = check_reserve(plan, np.array([True]))
    assert reserve.met and reserve.shortage_kwh == 0.0
    assert verdict(plan, reserve)["critical"] == "feasible"
    sunny = check_reserve(plan_island(one_battery_day(1000.0, 1200.0, pv_w=400.0)),
                          np.array([True]))
    assert sunny.need_w == pytest.approx(np.full(STEPS, 200.0))
    assert sunny.headroom_w == pytest.approx(np.full(STEPS, 600.0), abs=1e-3)
    # A battery that does not form the grid gives no headroom: all short.
    follower = check_reserve(plan, np.array([False]))
    assert follower.shortfall_w == pytest.approx(np.full(STEPS, 100.0))


def test_bad_reserve_settings_name_the_field() -> None:
    plan = plan_island(one_battery_day(1000.0, 1200.0))
    with pytest.raises(ValueError, match="reserve_pv_pct"):
        check_reserve(plan, np.array([True]), reserve_pv_pct=120.0)
    with pytest.raises(ValueError, match="grid_forming"):
        check_reserve(plan, np.array([True, False]))


def test_black_start_reserve_names_a_grid_former_that_ends_too_low() -> None:
    from controller.island_day.black_start import check_black_start

    # 1000 W for 24 h from a 50 kWh battery at 30 %: 15 kWh, so it runs to its floor (0 %)
    # and ends below 10 %: named, with no critical hours left.
    fleet = Fleet(capacity_wh=[50000.0], soc_min_wh=[0.0], max_charge_w=[3000.0],
                  max_discharge_w=[3000.0], efficiency=[1.0])
    low = Problem.from_shares(np.zeros((STEPS, 1)), np.full((STEPS, 1), 1000.0), [0.3], [0.3],
                              fleet, [15000.0], [0], member_ids=["a"])
    check = check_black_start(plan_island(low), np.array([True]))
    assert not check.met and check.below == [0] and check.end_pct[0] == pytest.approx(0.0)
    assert check.critical_hours_left == pytest.approx(0.0, abs=1e-6)
    # Full: 50 − 24 = 26 kWh left at the end (52 %), 26 kWh / 300 W critical = 86.7 h.
    check = check_black_start(plan_island(one_battery_day(1000.0, 3000.0)), np.array([True]))
    assert check.met and check.end_pct[0] == pytest.approx(52.0, abs=0.01)
    assert check.critical_hours_left == pytest.approx(26000.0 / 300.0, rel=1e-3)


def test_black_start_reserve_is_a_constraint_of_the_plan_and_its_verdict_can_fail() -> None:
    from dataclasses import replace

    from controller.island.plan_black_start import end_floor_wh
    from controller.island_day.black_start import check_black_start

    # 1000 W for 24 h (critical 30 %, essential 30 %, flexible 40 %), no PV, a 50 kWh
    # grid-former, reserve 10 % = 5 kWh.
    fleet = Fleet(capacity_wh=[50000.0], soc_min_wh=[0.0], max_charge_w=[3000.0],
                  max_discharge_w=[3000.0], efficiency=[1.0])
    floor = end_floor_wh(fleet.capacity_wh, np.array([True]), 10.0)

    def day(stored_wh: float) -> Problem:
        return replace(Problem.from_shares(np.zeros((STEPS, 1)), np.full((STEPS, 1), 1000.0),
                                           [0.3], [0.3], fleet, [stored_wh], [0],
                                           member_ids=["a"]), end_floor_wh=floor)

    # From 15 kWh: without the reserve it runs to 0 %; with it, it sheds essential load
    # (4.4 kWh of 7.2) to end at exactly 10 %, the critical tier whole. 5 kWh / 300 W.
    plan = plan_island(day(15000.0))
    assert plan.soc_pct[-1, 0] == pytest.approx(10.0, abs=1e-6)
    assert plan.feasible["critical"] and not plan.feasible["essential"]
    assert plan.shed_by_tier_wh()["essential"] == pytest.approx(4400.0, abs=0.5)
    check = check_black_start(plan, np.array([True]))
    assert check.met and check.critical_hours_left == pytest.approx(5000.0 / 300.0, rel=1e-6)
    # The starting SoC the plan asks for (what the island eve charges to) holds the
    # reserve too: critical + essential 14.4 kWh + 5 kWh = 38.8 %.
    assert plan.required_start_pct("essential")[0] == pytest.approx(38.8, abs=0.01)
    # From 6 kWh the critical tier (7.2 kWh) outranks the reserve: it ends at 0 %, and
    # the verdict fails, naming the grid-former.
    plan = plan_island(day(6000.0))
    check = check_black_start(plan, np.array([True]))
    assert not check.met and check.below == [0] and check.end_pct[0] == pytest.approx(0.0)
    # A battery that does not form the grid has no reserve, and its energy is no black start.
    assert end_floor_wh(fleet.capacity_wh, np.array([False]), 10.0) == pytest.approx([0.0])
    with pytest.raises(ValueError, match="black_start_pct"):
        end_floor_wh(fleet.capacity_wh, np.array([True]), 110.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**32 - 1))
def test_with_a_black_start_reserve_energy_balances_and_the_required_start_keeps_it(
        problem: Problem, seed: int) -> None:
    """Random days with random reserves on random batteries: every step balances; started
    at the required SoC (what the island eve charges to), critical and essential hold
    and every battery ends at or above its reserve (when the level can hold at all)."""
    from dataclasses import replace

    from controller.island.plan_black_start import end_floor_wh

    rng = np.random.default_rng(seed)
    fleet = problem.fleet
    floor = end_floor_wh(fleet.capacity_wh, rng.random(fleet.size) < 0.5,
                         float(rng.choice([0.0, 10.0, 30.0])))
    problem = replace(problem, end_floor_wh=floor)
    plan = plan_island(problem)
    h = problem.hours
    served = problem.tier_load_w.sum(axis=(0, 2)) * h - plan.shed_wh.sum(axis=(0, 2))
    supply = (problem.pv_w.sum(axis=1) * h - plan.curtailed_wh.sum(axis=1)
              + plan.battery_w.sum(axis=1) * h)
    assert served == pytest.approx(supply, abs=1e-2)
    assert (plan.stored_wh >= problem.lower_wh - 1e-6).all()
    if plan.required_holds["essential"]:
        start = plan.required_start_wh["essential"]
        again = plan_island(replace(problem, stored_wh=start))
        assert again.shed_wh[:2].sum() <= 0.5
        assert (again.stored_wh[-1] >= np.minimum(floor, fleet.capacity_wh) - 0.5).all()


def two_battery_day(load_w: float, former_wh: float = 50000.0,
                    gf: tuple[bool, bool] = (True, False)) -> Problem:
    """A grid-former (1 kW) and a follower (1 kW), both 50 kWh, constant load, no PV."""
    fleet = Fleet(capacity_wh=[50000.0, 50000.0], soc_min_wh=[0.0, 0.0],
                  max_charge_w=[1000.0, 1000.0], max_discharge_w=[1000.0, 1000.0],
                  efficiency=[1.0, 1.0])
    return Problem.from_shares(np.zeros((STEPS, 1)), np.full((STEPS, 1), load_w), [0.3],
                               [0.3], fleet, [former_wh, 50000.0], [0, 0], member_ids=["a"])


@pytest.mark.parametrize(("case", "load_w", "former_wh", "short_w", "flexible_wh"), [
    # 1150 W from one 1200 W grid-former: need 115 W, headroom 50 W: 65 W short, every step.
    ("one battery at its rating", 1150.0, None, 65.0, 0.0),
    # 1800 W from two 1 kW batteries: need 180 W. Energy alone spreads it 900/900 (100 W of
    # headroom: fragile); the reserve rows have the follower give 980 W: 180 W kept.
    ("follower serves first", 1800.0, 50000.0, 0.0, 0.0),
    # 2000 W: both at their rating; no headroom at all, 200 W short: fragile, nothing shed.
    ("both at their rating", 2000.0, 50000.0, 200.0, 0.0),
    # 1000 W with the grid-former holding 10 Wh and the follower at its rating: the energy
    # behind the grid-former gives 10 Wh / 0.25 h = 40 W of headroom against 100 W. 15 Wh
    # more in it keeps the reserve all day, so the plan sheds 15 Wh of flexible load early
    # (the follower charges it meanwhile): 0.015 flexible kWh against 96 steps × 60 W short.
    ("grid-former nearly empty", 1000.0, 10.0, 0.0, 15.0),
])
def test_reserve_rows_in_the_lp_match_the_check(case: str, load_w: float,
                                                former_wh: float | None,
                                                short_w: float, flexible_wh: float) -> None:
    base = one_battery_day(load_w, 1200.0) if former_wh is None else two_battery_day(
        load_w, former_wh)
    gf = np.array([True] + [False] * (base.fleet.size - 1))
    energy_only = plan_island(base)
    plan = plan_island(replace(base, grid_forming=gf))
    reserve = check_reserve(plan, gf)
    # The LP's own capacity shortage is the check's, W per step, apart from shed energy.
    assert plan.reserve_shortfall_w == pytest.approx(reserve.shortfall_w, abs=0.01), case
    shed = plan.shed_by_tier_wh()
    assert shed["critical"] == shed["essential"] == 0.0, case
    assert shed["flexible"] == pytest.approx(flexible_wh, abs=0.1), case
    assert reserve.shortfall_w == pytest.approx(np.full(STEPS, short_w), abs=0.01), case
    expected = "fragile" if short_w > 0 else "feasible"
    assert verdict(plan, reserve) == {"critical": expected, "essential": expected,
                                      "flexible": "shed" if flexible_wh else expected}, case
    # Energy alone (the plan before #21.2) keeps no more reserve.
    assert check_reserve(energy_only, gf).shortage_kwh >= reserve.shortage_kwh - 1e-6


def test_re_plans_keep_the_reserve_and_the_ceiling_from_the_saved_plan() -> None:
    from controller.island.pilot import BaseForecast, IslandPilot, Readings, problem_json

    base = replace(two_battery_day(1800.0), grid_forming=np.array([True, False]),
                   reserve_load_pct=12.0, reserve_pv_pct=30.0,
                   charge_ceiling_wh=np.array([47500.0, 50000.0]))
    saved = BaseForecast.from_json({"inputs": problem_json(base)})
    pilot = IslandPilot(saved, ["a"], 900.0)
    readings = Readings(np.array([30000.0]), np.array([True]), np.full(1, np.nan),
                        np.full(1, np.nan))
    again = pilot.problem(base.start_ts, readings)
    assert again is not None and again.grid_forming is not None
    assert again.grid_forming.tolist() == [True, False]
    assert (again.reserve_load_pct, again.reserve_pv_pct) == (12.0, 30.0)
    assert again.charge_ceiling_wh is not None
    assert again.charge_ceiling_wh.tolist() == [47500.0, 50000.0]
    with pytest.raises(ValueError, match="grid_forming"):
        raw = problem_json(base)
        raw["grid_forming"] = [True]
        BaseForecast.from_json({"inputs": raw})
