"""The rolling plan as the cycle sees it: targets before the tick, readings after it.

Kept apart from controller/cycle.py, which only asks :meth:`RollingPlan.targets` and
calls :meth:`RollingPlan.after_cycle`: when ``[dispatch] plan`` is off there is no
``RollingPlan`` and the cycle is exactly the greedy one.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from controller.config_tariff import TariffConfig, wear_prices
from controller.planning.expected import Expected, PlanAhead, plan_and_expect
from controller.planning.profile import SLOT_S, SlotProfile
from controller.planning.savings import book
from controller.planning.worker import MoneyFn, PlanWorker
from dispatch.fleet import BoolArray, CoopLimits, Fleet, FleetState
from dispatch.planned import PlannedEngine
from dispatch.result import TickResult

FloatArray = NDArray[np.float64]
log = logging.getLogger(__name__)
FORECAST_NAME = "history: each member by weekday and 15 min, PV as the last week's mean"


class RollingPlan:
    """The forecast learner and the plan worker of one controller."""

    def __init__(self, members: int, replan_min: float = 15.0, horizon_h: float = 24.0,
                 worker: PlanWorker | None = None, tariff: TariffConfig | None = None,
                 wear_per_kwh: FloatArray | None = None, policy: str = "prorata",
                 member_ids: Sequence[str] = (), savings: Path | None = None) -> None:
        self.profile = SlotProfile(members)
        #: Where each plan's expected saving against greedy is booked (None: not booked).
        self.savings, self.member_ids = savings, list(member_ids)
        self._booked: object = None
        self._engine: PlannedEngine | None = None
        self.worker = worker or PlanWorker(replan_min * 60.0, horizon_h * 3600.0, SLOT_S,
                                           forecast_name=FORECAST_NAME,
                                           money=plan_money(tariff, wear_per_kwh),
                                           solver=partial(plan_and_expect,
                                                          booked_s=replan_min * 60.0,
                                                          policy=policy))

    def targets(self, now: float, fleet: Fleet, limits: CoopLimits) -> FloatArray | None:
        """Targets in force now; None (greedy) islanded, without a plan, or when expired."""
        if limits.islanded:
            return None
        return self.worker.targets(now, fleet)

    def tick(self, fleet: Fleet, state: FleetState, pv_w: FloatArray, load_w: FloatArray,
             valid: BoolArray, dt_s: float, policy: str, limits: CoopLimits,
             target_wh: FloatArray) -> TickResult:
        """The cycle's tick following ``target_wh`` inside every safety limit."""
        kept = self._engine
        if kept is None or kept.fleet is not fleet or (kept.policy, kept.limits) != (policy,
                                                                                    limits):
            kept = self._engine = PlannedEngine(fleet, policy, limits)  # kept with the fleet
        return kept.tick(state, pv_w, load_w, valid, dt_s, target_wh)

    def after_cycle(self, now: float, fleet: Fleet, stored_wh: FloatArray, pv_w: FloatArray,
                    load_w: FloatArray, valid: BoolArray, limits: CoopLimits) -> None:
        """Learn from the cycle's readings; start a re-plan when one is due (on-grid)."""
        self.profile.observe(now, pv_w, load_w, valid)
        self._book()
        if not limits.islanded:
            self.worker.maybe_replan(now, fleet, stored_wh, self.profile.forecast,
                                     CoopLimits(limits.import_cap_w, limits.export_cap_w))

    def ahead(self) -> tuple[float, Expected] | None:
        """The plan in force and what following it is expected to do (None: greedy)."""
        answer = self.worker.answer
        if answer is None or not isinstance(answer[1], PlanAhead):
            return None
        return answer[0], answer[1].expected

    def _book(self) -> None:
        """Book a new plan's expected saving once (a failed write costs the pages nothing)."""
        answer = self.worker.answer
        if (self.savings is None or answer is None or answer is self._booked
                or not isinstance(answer[1], PlanAhead)):
            return
        self._booked = answer
        try:
            book(self.savings, answer[0], self.member_ids, answer[1].expected)
        except sqlite3.Error as exc:
            log.warning("plan savings not booked in %s: %s", self.savings, exc)

    def close(self) -> None:
        """Stop the worker thread."""
        self.worker.close()


def plan_money(tariff: TariffConfig | None, wear_per_kwh: FloatArray | None
               ) -> MoneyFn | None:
    """The plan's money keywords each re-plan: the tariff's prices at the middle of each
    plan step and each member's wear price, per Wh; None when there is neither."""
    wear = None
    if wear_per_kwh is not None and np.nansum(wear_per_kwh) > 0:
        wear = np.nan_to_num(np.asarray(wear_per_kwh, dtype=float)) / 1000.0
    if tariff is None and wear is None:
        return None

    def money(now: float, steps: int, step_s: float) -> dict[str, FloatArray]:
        out: dict[str, FloatArray] = {} if wear is None else {"wear_price": wear}
        if tariff is not None:
            imp, exp = tariff.prices_at(now + (np.arange(steps) + 0.5) * step_s)
            out |= {"import_price": imp / 1000.0, "export_price": exp / 1000.0}
        return out

    return money


def member_wear(members: list) -> FloatArray:
    """Each member's wear price per kWh out of its battery, in config order (NaN: none)."""
    prices = wear_prices(members)
    return np.array([prices.get(m.id, np.nan) for m in members], dtype=float)
