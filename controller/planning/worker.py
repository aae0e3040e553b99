"""The rolling plan in the controller: solved in a worker thread, followed while fresh.

Every ``replan_s`` the cycle hands the worker the fleet, the batteries' content and a
forecast; the LP (:func:`dispatch.plan_lp.plan_storage`) runs in one background thread,
so the cycle never waits for it. The cycle asks :meth:`PlanWorker.targets` for the
content each battery should have at the end of the current plan step:

* no plan yet, a solve that failed, or one that ran past ``deadline_s``: ``None``, and
  the greedy dispatch is in charge (a late answer is thrown away when it comes);
* targets older than ``expire_s`` (the worker stopped, the forecast dried up): ``None``.

Fail safe: the targets only ever narrow what greedy may do (:mod:`dispatch.planned`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import CoopLimits, Fleet
from dispatch.plan_lp import StoragePlan, plan_storage

FloatArray = NDArray[np.float64]
#: forecast(now, steps, step_s) -> (pv_w, load_w), each steps × N; None: no forecast yet.
ForecastFn = Callable[[float, int, float], "tuple[FloatArray, FloatArray] | None"]
#: money(now, steps, step_s) -> the solver's money keywords (import_price, export_price,
#: wear_price), or {} without a tariff or wear prices.
MoneyFn = Callable[[float, int, float], "dict[str, FloatArray]"]


@dataclass(frozen=True, slots=True)
class PlanState:
    """What the plan is doing now, for the pages and the logs."""

    status: str  # "none", "solving", "ok", "failed", "late", "expired", "no forecast"
    solved_at: float | None
    solve_s: float | None
    message: str = ""
    forecast: str = ""


class PlanWorker:
    """Schedules solves, keeps the newest plan, and says which targets are in force."""

    def __init__(self, replan_s: float = 900.0, horizon_s: float = 86400.0,
                 step_s: float = 900.0, deadline_s: float | None = None,
                 expire_s: float | None = None, solver: Callable[..., StoragePlan] = plan_storage,
                 wall: Callable[[], float] = time.monotonic, forecast_name: str = "",
                 money: MoneyFn | None = None) -> None:
        self.replan_s, self.step_s = replan_s, step_s
        self.steps = max(1, round(horizon_s / step_s))
        #: A solve still running this long (wall seconds) after it began is late.
        self.deadline_s = replan_s if deadline_s is None else deadline_s
        #: Targets of a plan solved this long ago (controller clock) are dropped.
        self.expire_s = 2 * replan_s if expire_s is None else expire_s
        self.solver, self.wall, self.forecast_name = solver, wall, forecast_name
        self.money = money
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan")
        self._lock = threading.Lock()
        self._running: tuple[Future, float, float] | None = None  # future, wall start, now
        self._plan: tuple[float, FloatArray] | None = None  # solved at (clock), content
        self._last_request: float | None = None
        self._last: tuple[FloatArray, int, Fleet, FloatArray] | None = None
        self.answer: tuple[float, StoragePlan] | None = None
        self.state = PlanState("none", None, None)
        #: How many solves ended each way since start (for the logs and the pages).
        self.counts = {"ok": 0, "failed": 0, "late": 0}

    def maybe_replan(self, now: float, fleet: Fleet, stored_wh: FloatArray,
                     forecast: ForecastFn, limits: CoopLimits | None = None) -> bool:
        """Start a solve if one is due and none is running; True when one started."""
        self._collect(now)
        if self._running is not None:
            return False
        if self._last_request is not None and now - self._last_request < self.replan_s:
            return False
        self._last_request = now
        believed = forecast(now, self.steps, self.step_s)
        if believed is None:
            self.state = PlanState("no forecast", None, None, forecast=self.forecast_name)
            return False
        pv_w, load_w = believed
        stored = np.array(stored_wh, dtype=float)
        prices = self.money(now, self.steps, self.step_s) if self.money is not None else {}
        future = self._pool.submit(self.solver, fleet, stored, pv_w, load_w, self.step_s,
                                   limits=limits, **prices)
        self._running = (future, self.wall(), now)
        self.state = PlanState("solving", self.state.solved_at, self.state.solve_s,
                               forecast=self.forecast_name)
        return True

    def _collect(self, now: float) -> None:
        """Take a finished solve's answer, or give up on a late one."""
        if self._running is None:
            return
        future, began, asked = self._running
        if not future.done():
            if self.wall() - began > self.deadline_s:
                self._running = None  # its answer is dropped: the thread finishes unheard
                self._drop()
                self.counts["late"] += 1
                self.state = PlanState("late", self.state.solved_at, None,
                                       f"no answer within {self.deadline_s:g} s",
                                       self.forecast_name)
            return
        self._running = None
        try:
            plan = future.result()
        except Exception as exc:  # noqa: BLE001 - any failure leaves greedy in charge
            self._drop()
            self.counts["failed"] += 1
            self.state = PlanState("failed", self.state.solved_at, None, str(exc),
                                   self.forecast_name)
            return
        if self.wall() - began > self.deadline_s:
            self._drop()
            self.counts["late"] += 1
            self.state = PlanState("late", self.state.solved_at, plan.solve_s,
                                   f"answered after {self.wall() - began:.2f} s",
                                   self.forecast_name)
            return
        with self._lock:
            self._plan = (asked, plan.stored_wh)
            #: The newest answer in force and when it was asked for (pages, savings).
            self.answer = (asked, plan)
        self.counts["ok"] += 1
        self.state = PlanState("ok", asked, plan.solve_s, forecast=self.forecast_name)

    def _drop(self) -> None:
        """A re-plan that failed or came late: the older plan goes too, greedy is in charge."""
        with self._lock:
            self._plan = self.answer = None

    def targets(self, now: float, fleet: Fleet) -> FloatArray | None:
        """Each battery's content target for the plan step ``now`` is in; None: greedy."""
        self._collect(now)
        with self._lock:
            plan = self._plan
        if plan is None:
            return None
        solved_at, content = plan
        age = now - solved_at
        if age >= self.expire_s or age < 0:
            if self.state.status == "ok":
                self.state = PlanState("expired", solved_at, self.state.solve_s,
                                       forecast=self.forecast_name)
            return None
        k = min(int(age // self.step_s), len(content) - 1)
        # The same array while the plan step lasts: the follower clips it once per step.
        last = self._last
        if last is None or last[0] is not content or last[1] != k or last[2] is not fleet:
            last = self._last = (content, k, fleet,
                                 np.where(fleet.capacity_wh > 0, content[k], np.nan))
        return last[3]

    def close(self) -> None:
        """Stop the worker thread (a running solve finishes unheard)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
