"""The rolling plan in the controller: a failed or slow solve falls back to greedy, and
stale targets expire. Real LPs (HiGHS) in a real worker thread; only the clock is ours."""

from __future__ import annotations

import threading
import time

import numpy as np

from controller.planning.hook import RollingPlan
from controller.planning.profile import SlotProfile
from controller.planning.worker import PlanWorker
from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick
from dispatch.plan_lp import plan_storage

N = 4
FLEET = Fleet(np.array([10_000.0, 0.0, 5000.0, 13_500.0]), np.array([500.0, 0, 250, 675]),
              np.full(N, 3000.0), np.full(N, 3000.0), np.full(N, 0.9),
              offered=np.array([True, False, False, True]))
STORED = np.array([3000.0, 0.0, 1500.0, 4000.0])


def forecast(now: float, steps: int, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    hours = (now + np.arange(steps) * step_s) / 3600 % 24
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    pv = sun[:, None] * np.array([6000.0, 4000.0, 0.0, 0.0])[None, :]
    return pv, np.full((steps, N), 600.0)


def wait_for(worker: PlanWorker, now: float, status: str, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        worker.targets(now, FLEET)
        if worker.state.status == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"plan status {worker.state.status!r}, expected {status!r}")


def test_a_plan_gives_targets_then_they_expire() -> None:
    worker = PlanWorker(replan_s=900, horizon_s=86400, step_s=900)
    now = 8 * 3600.0
    assert worker.targets(now, FLEET) is None  # no plan yet: greedy
    assert worker.maybe_replan(now, FLEET, STORED, forecast)
    assert not worker.maybe_replan(now + 1, FLEET, STORED, forecast)  # one at a time
    wait_for(worker, now, "ok")
    targets = worker.targets(now + 60, FLEET)
    assert targets is not None and np.isnan(targets[1])  # no battery, no target
    assert (targets[[0, 2, 3]] <= FLEET.capacity_wh[[0, 2, 3]] + 1e-6).all()
    assert worker.targets(now + 1799, FLEET) is not None
    assert worker.targets(now + 1800, FLEET) is None  # 2 × replan_s: stale, greedy again
    assert worker.state.status == "expired"
    worker.close()


def test_a_failed_solve_leaves_greedy_in_charge() -> None:
    calls = []

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("storage LP failed: infeasible")
        return plan_storage(*args, **kwargs)

    worker = PlanWorker(replan_s=900, solver=failing)
    now = 8 * 3600.0
    worker.maybe_replan(now, FLEET, STORED, forecast)
    wait_for(worker, now, "ok")
    assert worker.targets(now + 900, FLEET) is not None
    assert worker.maybe_replan(now + 900, FLEET, STORED, forecast)
    wait_for(worker, now + 900, "failed")
    assert worker.targets(now + 901, FLEET) is None  # the older plan went too
    assert "infeasible" in worker.state.message
    worker.close()


def test_a_slow_solve_is_late_and_its_answer_is_dropped() -> None:
    release = threading.Event()

    def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        release.wait(10)
        return plan_storage(*args, **kwargs)

    worker = PlanWorker(replan_s=900, deadline_s=0.2, solver=slow)
    now = 8 * 3600.0
    worker.maybe_replan(now, FLEET, STORED, forecast)
    time.sleep(0.3)
    assert worker.targets(now + 1, FLEET) is None
    assert worker.state.status == "late"
    release.set()  # the answer comes, too late: still greedy
    time.sleep(0.5)
    assert worker.targets(now + 2, FLEET) is None
    worker.close()


def test_rolling_plan_cycle_without_targets_is_greedy_and_learns_a_forecast() -> None:
    plan = RollingPlan(N, replan_min=15, horizon_h=24)
    limits = CoopLimits()
    t0 = 3 * 86400.0  # a Sunday
    for k in range(97):  # a day of 15-min cycles: the profile learns every slot
        now = t0 + k * 900.0
        pv, load = (x[0] for x in forecast(now, 1, 900.0))
        plan.profile.observe(now, pv, load, np.ones(N, bool))
    believed = plan.profile.forecast(t0 + 86400.0, 96)
    assert believed is not None
    np.testing.assert_allclose(believed[1], 600.0)
    assert plan.targets(t0, FLEET, CoopLimits(islanded=True)) is None
    assert plan.targets(t0, FLEET, limits) is None  # nothing planned yet
    now = t0 + 86400.0
    plan.after_cycle(now, FLEET, STORED, *[x[0] for x in forecast(now, 1, 900.0)],
                     np.ones(N, bool), limits)
    wait_for(plan.worker, now, "ok")
    targets = plan.targets(now + 10, FLEET, limits)
    assert targets is not None
    state = FleetState.start(STORED)
    pv, load = (x[0] for x in forecast(now, 1, 900.0))
    planned = plan.tick(FLEET, state, pv, load, np.ones(N, bool), 10.0, "prorata", limits,
                        targets)
    greedy = dispatch_tick(FLEET, state, pv, load, np.ones(N, bool), 10.0)
    np.testing.assert_allclose(planned.load, greedy.load)  # the same load, served
    assert (planned.stored_wh >= np.minimum(STORED, FLEET.soc_min_wh) - 1e-9).all()
    plan.close()


def test_profile_slots_are_weekly() -> None:
    assert SlotProfile.slot_of(0.0) == 3 * 96  # 1970-01-01, a Thursday, 00:00
    assert SlotProfile.slot_of(4 * 86400.0) == 0  # Monday
