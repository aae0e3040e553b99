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
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from controller.planning.money import MoneyFn
from dispatch.fleet import CoopLimits, Fleet
from dispatch.plan_lp import StoragePlan, plan_storage

FloatArray = NDArray[np.float64]
#: forecast(now, steps, step_s) -> (pv_w, load_w), each steps × N; None: no forecast yet.
ForecastFn = Callable[[float, int, float], "tuple[FloatArray, FloatArray] | None"]


@dataclass(frozen=True, slots=True)
class PlanState:
    """What the plan is doing now, for the pages and the logs."""

    status: str  # "none", "solving", "ok", "failed", "late", "expired", "no forecast"
    solved_at: float | None
    solve_s: float | None
    message: str = ""
    forecast: str = ""
    #: How the forecast has done lately (:func:`controller.planning.learner.skill`):
    #: coop MAE and skill against persistence for PV and load; None until scored.
    skill: dict | None = None

    def as_dict(self) -> dict:
        """JSON-ready, for ``/healthz`` and the logs (later fields may be added freely)."""
        return asdict(self)


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
        self.skill: dict | None = None
        #: refine(now, steps, step_s, pv_w) -> pv_w, run in the worker thread before each
        #: solve: the costly part of the forecast stays off the cycle's thread.
        self.refine: Callable[[float, int, float, FloatArray], FloatArray] | None = None
        #: The coop's PV and load (W per step, summed over members) the newest plan
        #: trusted, from when: (start, pv_w, load_w); for the plan's file and the pages.
        self.last_forecast: tuple[float, FloatArray, FloatArray] | None = None
        self._believed: tuple[float, FloatArray, FloatArray] | None = None
        #: Called with (solved at, content) after each plan taken (the plan's file).
        self.on_plan: Callable[[float, FloatArray], None] | None = None
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
            with self._lock:
                held = self._plan
            # A plan still held (restored after a restart) is followed until it expires.
            self._set("no forecast", None if held is None else held[0], None,
                      "" if held is None else "following the plan held until it expires")
            return False
        pv_w, load_w = believed
        stored = np.array(stored_wh, dtype=float)
        future = self._pool.submit(self._solve, now, fleet, stored, pv_w, load_w, limits)
        self._running = (future, self.wall(), now)
        self._set("solving", self.state.solved_at, self.state.solve_s)
        return True

    def _solve(self, now: float, fleet: Fleet, stored: FloatArray, pv_w: FloatArray,
               load_w: FloatArray, limits: CoopLimits | None) -> StoragePlan:
        """In the worker thread: refine the PV forecast (pvlib, a weather service), solve."""
        if self.refine is not None:
            pv_w = self.refine(now, len(pv_w), self.step_s, pv_w)
        self._believed = (now, pv_w.sum(axis=1), load_w.sum(axis=1))
        prices = self.money(now, len(pv_w), self.step_s) if self.money is not None else {}
        return self.solver(fleet, stored, pv_w, load_w, self.step_s, limits=limits, **prices)

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
                self._set("late", self.state.solved_at, None,
                          f"no answer within {self.deadline_s:g} s")
            return
        self._running = None
        try:
            plan = future.result()
        except Exception as exc:  # noqa: BLE001 - any failure leaves greedy in charge
            self._drop()
            self.counts["failed"] += 1
            self._set("failed", self.state.solved_at, None, str(exc))
            return
        if self.wall() - began > self.deadline_s:
            self._drop()
            self.counts["late"] += 1
            self._set("late", self.state.solved_at, plan.solve_s,
                      f"answered after {self.wall() - began:.2f} s")
            return
        with self._lock:
            self._plan = (asked, plan.stored_wh)
            #: The newest answer in force and when it was asked for (pages, savings).
            self.answer = (asked, plan)
        self.counts["ok"] += 1
        self.last_forecast = self._believed
        self._set("ok", asked, plan.solve_s)
        if self.on_plan is not None:
            self.on_plan(asked, plan.stored_wh)

    def _set(self, status: str, solved_at: float | None, solve_s: float | None,
             message: str = "") -> None:
        self.state = PlanState(status, solved_at, solve_s, message, self.forecast_name,
                               self.skill)

    def replan_soon(self) -> None:
        """Let the next :meth:`maybe_replan` start a solve (a forecast just became ready)."""
        self._last_request = None

    def restore(self, solved_at: float, content: FloatArray, forecast: str) -> None:
        """Take a plan saved before a restart; :meth:`targets` drops it once expired."""
        with self._lock:
            self._plan = (solved_at, np.asarray(content, dtype=float))
        self.forecast_name = forecast
        self._set("ok", solved_at, None, "restored after a restart")

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
                self._set("expired", solved_at, self.state.solve_s)
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
