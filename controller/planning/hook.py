"""The rolling plan as the cycle sees it: targets before the tick, readings after it.

Kept apart from controller/cycle.py, which only asks :meth:`RollingPlan.targets` and
calls :meth:`RollingPlan.after_cycle`: when ``[dispatch] plan`` is off there is no
``RollingPlan`` and the cycle is exactly the greedy one.

The forecast the plan trusts: load from the history profile; PV from the providers of
``[forecast]`` (:mod:`controller.planning.providers`) for the members they know, the
history profile for the others. Once a day a background thread (never the cycle's)
learns from the ledger (:mod:`controller.planning.learner`: cloudiness, skill, the
profile after a restart) and asks the weather service; the plan, the cloudiness and the
skill are kept in a file beside the ledger (:mod:`controller.planning.store`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from controller.planning import store
from controller.planning.cloudiness import Cloudiness
from controller.planning.expected import Expected, PlanAhead
from controller.planning.learner import Learned
from controller.planning.profile import SLOT_S, SlotProfile
from controller.planning.providers import ClearSkyProvider, PVProvider
from controller.planning.savings import book
from controller.planning.worker import PlanWorker
from dispatch.fleet import BoolArray, CoopLimits, Fleet, FleetState
from dispatch.planned import PlannedEngine
from dispatch.result import TickResult

if TYPE_CHECKING:
    from controller.config import CoopConfig

FloatArray = NDArray[np.float64]
log = logging.getLogger(__name__)
FORECAST_NAME = "history: each member by weekday and 15 min, PV as the last week's mean"
LOAD_NAME = "load: history by weekday and 15 min"
#: After a failed learning, try again this much later (controller clock, s).
RETRY_S = 3600.0


class RollingPlan:
    """The forecast learner and the plan worker of one controller."""

    def __init__(self, members: int, replan_min: float = 15.0, horizon_h: float = 24.0,
                 worker: PlanWorker | None = None, *, providers: Sequence[PVProvider] = (),
                 learn: Callable[[float], Learned] | None = None,
                 store_path: Path | None = None, member_ids: list[str] | None = None,
                 refresh_s: float = 3600.0) -> None:
        self.profile = SlotProfile(members)
        #: Where each plan's expected saving against greedy is booked (None: not booked;
        #: :meth:`from_config` sets it, and the worker's solver to
        #: :func:`~controller.planning.expected.plan_and_expect`).
        self.savings: Path | None = None
        self._booked: object = None
        self._engine: PlannedEngine | None = None
        self.worker = worker or PlanWorker(replan_min * 60.0, horizon_h * 3600.0, SLOT_S,
                                           forecast_name=FORECAST_NAME)
        self.providers = list(providers)
        #: Learned from the ledger (:mod:`controller.planning.cloudiness`); None: not yet.
        self.cloudiness: Cloudiness | None = None
        self.member_ids = member_ids or [str(i) for i in range(members)]
        self.store_path, self.refresh_s, self._learn = store_path, refresh_s, learn
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast")
        self._learning: Future | None = None
        self._next_learn: float | None = None  # controller clock
        self._next_refresh: float | None = None
        self._started = self._seeded = False
        #: The background thread's last failures, by what failed ("learn", "provider").
        self.errors: dict[str, str] = {}
        self.worker.on_plan = self._save_plan
        self.worker.refine = self.pv_w

    @classmethod
    def from_config(cls, config: CoopConfig) -> RollingPlan:
        """The plan of a configured coop: ``[dispatch]``, ``[forecast]``, ``[site]``."""
        from functools import partial

        from controller.planning.expected import plan_and_expect
        from controller.planning.learner import learn_from_ledger
        from controller.planning.money import member_wear, plan_money
        from controller.planning.open_meteo import OpenMeteoProvider
        from controller.planning.savings import savings_path

        ids = [m.id for m in config.members]
        fc, site = config.forecast, config.site
        kind = fc.provider
        if kind == "auto":
            kind = "clear-sky" if site is not None and site.arrays else "history"
        plan = cls(len(ids), config.dispatch.replan_min, config.dispatch.horizon_h,
                   store_path=store.path_beside(config.storage.ledger), member_ids=ids,
                   refresh_s=fc.refresh_min * 60.0,
                   learn=partial(learn_from_ledger, config.storage.ledger, ids,
                                 site=site if kind != "history" else None))
        # Money (tariff, wear) and the expected saving against greedy (issue 22, point 3).
        plan.worker.money = plan_money(config.tariff, member_wear(config.members))
        plan.worker.solver = partial(plan_and_expect, booked_s=plan.worker.replan_s,
                                     policy=config.policy.sharing)
        plan.savings = savings_path(config.storage.ledger)
        if kind != "history" and site is not None:
            if kind == "open-meteo":
                plan.providers.append(OpenMeteoProvider(site, ids, fc.url, fc.timeout_s))
            plan.providers.append(ClearSkyProvider(site, ids, lambda: plan.cloudiness))
        return plan

    def targets(self, now: float, fleet: Fleet, limits: CoopLimits) -> FloatArray | None:
        """Targets in force now; None (greedy) islanded, without a plan, or when expired."""
        self._start(now)
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
        self._start(now)
        self.profile.observe(now, pv_w, load_w, valid)
        self._book()
        self._background_work(now)
        if not limits.islanded:
            # The history profile here (cheap numpy); the providers' part (pvlib) runs in
            # the worker thread before the solve (:meth:`pv_w`).
            self.worker.maybe_replan(now, fleet, stored_wh, self.profile.forecast,
                                     CoopLimits(limits.import_cap_w, limits.export_cap_w))

    def forecast(self, now: float, steps: int, step_s: float = SLOT_S
                 ) -> tuple[FloatArray, FloatArray] | None:
        """PV and load (W, steps × N) a plan made now would trust; None while the history
        profile has not seen a day."""
        base = self.profile.forecast(now, steps, step_s)
        if base is None:
            return None
        return self.pv_w(now, steps, step_s, base[0]), base[1]

    def pv_w(self, now: float, steps: int, step_s: float, history_pv: FloatArray
             ) -> FloatArray:
        """The providers' PV where they have an opinion, ``history_pv`` elsewhere; says
        which forecast it was in the worker's state (the worker's ``refine``)."""
        pv = np.full_like(history_pv, np.nan)
        used = []
        for provider in self.providers:  # the first with an opinion on a member wins
            got = provider.pv_w(now, steps, step_s)
            if got is None:
                continue
            fill = np.isnan(pv) & np.isfinite(got)
            if fill.any():
                used.append(provider.name)
                pv = np.where(fill, got, pv)
        if not used:  # no provider knew anyone: the history forecast alone, as before
            self.worker.forecast_name = FORECAST_NAME
            return history_pv
        if np.isnan(pv).any():
            used.append("history")
            pv = np.where(np.isnan(pv), history_pv, pv)
        self.worker.forecast_name = f"PV: {' + '.join(used)}; {LOAD_NAME}"
        return pv

    def status(self) -> dict:
        """The plan's state for ``/healthz``: status, forecast trusted, its skill, counts."""
        out = self.worker.state.as_dict() | {"solves": dict(self.worker.counts)}
        out["cloudiness_learned_at"] = (None if self.cloudiness is None
                                        else self.cloudiness.learned_at)
        if self.errors:
            out["errors"] = dict(self.errors)
        return out

    # -- the background thread: learning, the weather service, the file -------------------

    def _start(self, now: float) -> None:
        """Once, on the controller's clock: take what the file beside the ledger kept."""
        if self._started:
            return
        self._started = True
        if self.store_path is None:
            return
        kept = store.load(self.store_path, self.member_ids, now)
        if kept is None:
            return
        self.cloudiness = kept["cloudiness"]
        self.worker.skill = kept.get("skill")
        self.worker.last_forecast = kept.get("coop_forecast")
        if kept["plan"] is not None:
            self.worker.restore(*kept["plan"], forecast=str(kept.get("forecast", "")))

    def _background_work(self, now: float) -> None:
        """Collect a finished learning; start the next one (daily) or a weather refresh."""
        if self._learning is not None:
            if not self._learning.done():
                return
            try:
                learned = self._learning.result()
            except Exception as exc:  # noqa: BLE001 - no learning: the last one stands
                self.errors = self.errors | {"learn": f"{type(exc).__name__}: {exc}"}
                self._next_learn = now + RETRY_S
            else:
                self._take(learned, now)
            self._learning = None
        if self._learn is not None and (self._next_learn is None or now >= self._next_learn):
            self._learning = self._background.submit(self._learn, now)
            return
        refresh = [p for p in self.providers if hasattr(p, "refresh")]
        if refresh and (self._next_refresh is None or now >= self._next_refresh):
            self._next_refresh = now + self.refresh_s
            self._background.submit(self._refresh, refresh)

    def _refresh(self, providers: list) -> None:
        for provider in providers:  # errors replaced whole: the API thread reads them
            ok = provider.refresh()
            rest = {k: v for k, v in self.errors.items() if k != "provider"}
            self.errors = rest if ok else rest | {"provider": f"{provider.name}: "
                                                              f"{provider.error}"}

    def _take(self, learned: Learned, now: float) -> None:
        """Use a day's learning (on the cycle's thread: only references change hands,
        except the first time, when the profile is seeded from the window)."""
        self.errors = {k: v for k, v in self.errors.items() if k != "learn"}
        self._next_learn = (now // 86400 + 1) * 86400 + 600  # tomorrow, once booked
        if learned.cloudiness is not None:
            self.cloudiness = learned.cloudiness
        self.worker.skill = learned.skill
        if not self._seeded:
            self.profile.seed(learned.start_s, learned.pv_w, learned.load_w)
            self._seeded = True
            self.worker.replan_soon()  # the profile has a forecast now: no need to wait

    def _save_plan(self, solved_at: float, content: FloatArray) -> None:
        """Keep a new plan (and what was learned) in the file, off the cycle's thread."""
        if self.store_path is None:
            return
        self._background.submit(store.save, self.store_path, self.member_ids, solved_at,
                                self.worker.forecast_name, (solved_at, content),
                                self.cloudiness, self.worker.skill, self.worker.last_forecast)

    def ahead(self) -> tuple[float, Expected] | None:
        """The plan in force and what following it is expected to do (None: greedy)."""
        answer = self.worker.answer
        if answer is None or not isinstance(answer[1], PlanAhead):
            return None
        return answer[0], answer[1].expected

    def _book(self) -> None:
        """Book a new plan's expected saving once (a failed write costs the cycle nothing)."""
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
        """Stop the worker threads."""
        self.worker.close()
        self._background.shutdown(wait=False, cancel_futures=True)
