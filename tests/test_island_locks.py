"""Flexible loads not cut mid-run (#21.8): minimum on/off times carried into re-plans."""

from __future__ import annotations

import numpy as np
import pytest

from controller.island.pilot import BaseForecast, IslandPilot, LoadLock, Readings
from controller.island.plan import Problem, plan_island
from controller.island.plan_rows import steps_covered
from controller.island.shedding import ShedPlanner
from controller.island.shedding_model import Plug, SwitchableLoad
from dispatch.fleet import Fleet

STEPS = 8
STEP_S = 900.0
H = STEP_S / 3600.0


@pytest.mark.parametrize(("remaining_s", "steps"), [
    (0.0, 0), (-5.0, 0), (1.0, 1), (100.0, 1), (900.0, 1), (901.0, 2), (1800.0, 2),
    (1800.5, 3), (float("inf"), 0), (float("nan"), 0),
])
def test_run_lengths_round_up_to_whole_steps(remaining_s: float, steps: int) -> None:
    assert steps_covered(remaining_s, STEP_S) == steps


def day(rating_w: float, stored_wh: float, load_w: tuple[float, float, float],
        members: int = 1) -> Problem:
    """Constant tiered load per member, no PV, one battery (floor 0) on member 0."""
    fleet = Fleet(capacity_wh=[20000.0], soc_min_wh=[0.0], max_charge_w=[rating_w],
                  max_discharge_w=[rating_w], efficiency=[1.0])
    tiers = np.broadcast_to(np.asarray(load_w)[:, None, None], (3, STEPS, members)).copy()
    return Problem(np.zeros((STEPS, members)), tiers, fleet, np.array([stored_wh]),
                   np.array([0]), STEP_S, [f"m{i}" for i in range(members)])


def locks(members: int, tier: int, member: int, power_w: float, steps: int) -> np.ndarray:
    out = np.zeros((3, STEPS, members))
    out[tier, :steps, member] = power_w
    return out


def test_a_load_held_off_stays_off_for_the_steps_its_min_off_covers() -> None:
    # Plenty of battery: nothing would be shed. Member 1's 300 W flexible load was switched
    # off with min_off left over two steps: the plan sheds exactly it, at member 1, then.
    from dataclasses import replace

    base = day(5000.0, 20000.0, (100.0, 200.0, 400.0), members=2)
    plan = plan_island(replace(base, held_off_w=locks(2, 2, 1, 300.0, 2)))
    assert plan.shed_wh[2, :2, 1] == pytest.approx([300.0 * H] * 2, abs=1e-3)
    assert plan.shed_wh[2, :2, 0] == pytest.approx([0.0, 0.0], abs=1e-3)
    assert plan.shed_wh[:, 2:].sum() == pytest.approx(0.0, abs=1e-3)
    assert plan.shed_wh[:2].sum() == 0.0
    assert plan.cut_mid_run_wh is not None and plan.cut_mid_run_wh.sum() == 0.0


@pytest.mark.parametrize(("case", "rating_w", "running_w", "flexible_w_0", "cut_w_0"), [
    # 1000 W load (300 / 300 / 400) on a 600 W battery: 400 W of flexible shed every step.
    ("no lock", 600.0, 0.0, 400.0, 0.0),
    # 300 W of it running within min_on for two steps: only 100 W of flexible is free to
    # shed then; the other 300 W is cut mid-run (10 per kWh) before any essential (1000).
    ("running flexible", 600.0, 300.0, 100.0, 300.0),
    # An empty battery: everything is shed, running or not, never "infeasible".
    ("no energy at all", 0.0, 300.0, 100.0, 300.0),
])
def test_running_loads_are_shed_last_and_the_plan_never_fails(
        case: str, rating_w: float, running_w: float, flexible_w_0: float,
        cut_w_0: float) -> None:
    from dataclasses import replace

    base = day(rating_w, 20000.0 if rating_w else 0.0, (300.0, 300.0, 400.0))
    problem = base if not running_w else replace(
        base, locked_on_w=locks(1, 2, 0, running_w, 2))
    plan = plan_island(problem)
    total = problem.tier_load_w.sum() * H
    shed = plan.shed_wh.sum()
    assert shed == pytest.approx(total - rating_w * H * STEPS, abs=0.01), case  # conserved
    cut = np.zeros((3, STEPS)) if plan.cut_mid_run_wh is None else plan.cut_mid_run_wh
    assert cut[2, :2] == pytest.approx([cut_w_0 * H] * 2, abs=1e-3), case
    assert cut[:, 2:].sum() == pytest.approx(0.0, abs=1e-3), case
    assert (plan.shed_wh[2, :2].sum(axis=-1) - cut[2, :2]) == pytest.approx(
        [flexible_w_0 * H] * 2, abs=1e-3), case
    if rating_w:  # the essential tier is served whatever runs
        assert plan.shed_wh[1].sum() == pytest.approx(0.0, abs=1e-3), case


def test_re_plans_take_the_shedders_minimum_times_over_whole_steps() -> None:
    loads = [SwitchableLoad("m0/load1", 0, "flexible", 2000.0, min_on_s=1200.0,
                            min_off_s=600.0),
             SwitchableLoad("m1/load1", 1, "essential", 500.0, min_on_s=0.0,
                            min_off_s=1000.0)]
    shedder = ShedPlanner(loads, ["essential", "essential"])
    now = 10_000.0
    # m1's load is shed now (off for 1000 s from now); m0's was seen switched on at now − 100.
    shedder.plan(now - 100.0, np.zeros(2), {"m0/load1": Plug(1800.0, False)})
    shedder.plan(now - 100.0 + 20, np.zeros(2), {"m0/load1": Plug(1800.0, True)})
    shedder.plan(now, np.array([0.0, 500.0]), {"m1/load1": Plug(480.0, True)})
    found = {(lk.member, lk.running): lk for lk in shedder.locks(
        now, {"m0/load1": Plug(1800.0, True)})}
    assert found[(0, True)].power_w == 1800.0
    assert found[(0, True)].remaining_s == pytest.approx(1200.0 - 80.0)
    assert found[(1, False)].power_w == 480.0 and found[(1, False)].remaining_s == 1000.0
    fleet = Fleet(capacity_wh=[10000.0], soc_min_wh=[0.0], max_charge_w=[3000.0],
                  max_discharge_w=[3000.0], efficiency=[1.0])
    base = BaseForecast(now, STEP_S, ["m0", "m1"], np.zeros((STEPS, 2)),
                        np.full((3, STEPS, 2), 1000.0), np.array([0]), fleet)
    pilot = IslandPilot(base, ["m1", "m0"], 900.0)  # the controller's order differs
    readings = Readings(np.array([np.nan, 5000.0]), np.array([False, True]),
                        np.full(2, np.nan), np.full(2, np.nan))
    # Controller member 0 is m1 in the forecast: the lock lands on forecast member 1.
    problem = pilot.problem(now, readings, locks=[
        LoadLock(1, "flexible", 1800.0, True, 1120.0),   # m0: 2 steps (1120 s > 900 s)
        LoadLock(0, "essential", 480.0, False, 100.0),   # m1: 1 step
        LoadLock(0, "flexible", 0.0, True, 5000.0),      # draws nothing: no lock
    ])
    assert problem is not None and problem.locked_on_w is not None
    assert problem.held_off_w is not None
    assert problem.locked_on_w[2, :, 0].tolist() == [1800.0, 1800.0] + [0.0] * 6
    assert problem.locked_on_w.sum() == 3600.0
    assert problem.held_off_w[1, :, 1].tolist() == [480.0] + [0.0] * 7
    assert problem.held_off_w.sum() == 480.0
