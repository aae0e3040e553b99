"""The island plan in the running controller: re-planning from fresh readings (pure)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controller.island.pilot import FADE_S, BaseForecast, IslandPilot, Readings, problem_json
from controller.island.plan import Problem, plan_island
from dispatch.fleet import Fleet

STEP = 900.0
T0 = 1_780_000_000.0


def night_problem(hours: int = 8, stored_wh: float = 2000.0) -> Problem:
    """Two members at night: A has the battery (10 kWh, floor 1 kWh, 100 % efficient) and
    a critical 200 W load; B has a flexible 300 W load. No sun."""
    steps = int(hours * 3600 / STEP)
    pv = np.zeros((steps, 2))
    load = np.zeros((3, steps, 2))
    load[0, :, 0] = 200.0
    load[2, :, 1] = 300.0
    fleet = Fleet(capacity_wh=[10000.0], soc_min_wh=[1000.0], max_charge_w=[3000.0],
                  max_discharge_w=[3000.0], efficiency=[1.0])
    return Problem(pv, load, fleet, np.array([stored_wh]), np.array([0]), STEP, ["a", "b"], T0)


def base_of(problem: Problem) -> BaseForecast:
    return BaseForecast.from_json(json.loads(json.dumps({"inputs": problem_json(problem)})))


def readings(stored: float, pv: float = 0.0, demand: tuple[float, float] = (200.0, 300.0),
             ok: bool = True) -> Readings:
    return Readings(np.array([stored, np.nan]), np.array([ok, False]), np.array([pv, 0.0]),
                    np.array(demand))


def test_the_saved_inputs_round_trip() -> None:
    problem = night_problem()
    base = base_of(problem)
    assert base.member_ids == ["a", "b"] and base.start_ts == T0 and base.step_s == STEP
    np.testing.assert_array_equal(base.tier_load_w, problem.tier_load_w)
    np.testing.assert_array_equal(base.fleet.capacity_wh, [10000.0])
    assert base.end_ts == T0 + 8 * 3600


@pytest.mark.parametrize(("data", "message"), [
    ({}, "inputs: missing"),
    ({"inputs": {"member_ids": ["a"]}}, "inputs: KeyError"),
    ({"inputs": {**problem_json(night_problem()), "pv_w": [[float("nan"), 0.0]] * 32}},
     "must be finite"),
    ({"inputs": {**problem_json(night_problem()), "battery_member": [5]}}, "battery_member"),
])
def test_a_bad_saved_plan_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BaseForecast.from_json(data)


def test_hand_case_the_plan_sheds_the_flexible_house_to_carry_the_critical_one() -> None:
    """8 h at night: critical 200 W needs 1.6 kWh, the flexible 300 W another 2.4 kWh.
    With 2 kWh stored and a 1 kWh floor only 1 kWh is usable: the critical load cannot
    hold all night either (0.6 kWh short), and the flexible house is shed all night."""
    pilot = IslandPilot(base_of(night_problem()), ["b", "a"], replan_s=900)
    problem = pilot.problem(T0, Readings(np.array([np.nan, 2000.0]), np.array([False, True]),
                                         np.zeros(2), np.array([300.0, 200.0])))
    assert problem is not None
    plan = plan_island(problem)
    pilot.adopt(plan, T0)
    shed = pilot.shed_w(T0 + 60)
    assert shed[0] == pytest.approx(300.0, abs=1e-6)  # "b" is first in the controller
    assert plan.shed_wh[2].sum() == pytest.approx(2400.0, abs=1e-3)
    assert plan.shed_wh[0].sum() == pytest.approx(1600.0 - 1000.0, abs=1e-3)
    assert pilot.targets_wh(T0)[1] == pytest.approx(2000.0)


def test_with_enough_stored_nothing_is_shed_now() -> None:
    pilot = IslandPilot(base_of(night_problem()), ["a", "b"], replan_s=900)
    problem = pilot.problem(T0, readings(1000.0 + 4000.0))
    pilot.adopt(plan_island(problem), T0)
    assert pilot.shed_w(T0).sum() == pytest.approx(0.0, abs=1e-6)
    assert not pilot.due(T0 + 899) and pilot.due(T0 + 900)


def test_the_problem_starts_now_from_the_step_in_force_to_the_command_end() -> None:
    pilot = IslandPilot(base_of(night_problem()), ["a", "b"], replan_s=900)
    problem = pilot.problem(T0 + 2 * STEP + 100, readings(5000.0), end_ts=T0 + 4 * 3600)
    assert problem is not None and problem.pv_w.shape[0] == 16 - 2
    assert problem.start_ts == T0 + 2 * STEP + 100
    assert pilot.problem(T0 + 9 * 3600, readings(5000.0)) is None  # the forecast is over


def test_a_battery_that_does_not_answer_is_not_planned_on() -> None:
    pilot = IslandPilot(base_of(night_problem()), ["a", "b"], replan_s=900)
    problem = pilot.problem(T0, readings(5000.0, ok=False))
    assert problem is not None and problem.fleet.size == 0
    plan = plan_island(problem)
    pilot.adopt(plan, T0)
    assert pilot.shed_w(T0).sum() == pytest.approx(500.0, abs=1e-6)  # nothing to serve from


@pytest.mark.parametrize(("measured", "expected_now"), [
    (625.0, 1.25),  # a quarter more demand than forecast
    (250.0, 0.5),
    (5000.0, 2.0),  # one odd reading: capped
])
def test_fresh_demand_scales_the_forecast_and_fades(measured: float, expected_now: float) -> None:
    pilot = IslandPilot(base_of(night_problem()), ["a", "b"], replan_s=900)
    share = measured / 500.0
    problem = pilot.problem(T0, readings(5000.0, demand=(200.0 * share, 300.0 * share)))
    assert problem is not None
    total = problem.tier_load_w.sum(axis=(0, 2))
    assert total[0] == pytest.approx(500.0 * expected_now)
    later = 1.0 + (expected_now - 1.0) * np.exp(-10 * STEP / FADE_S)
    assert total[10] == pytest.approx(500.0 * later)
