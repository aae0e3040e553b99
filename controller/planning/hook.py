"""The rolling plan as the cycle sees it: targets before the tick, readings after it.

Kept apart from controller/cycle.py, which only asks :meth:`RollingPlan.targets` and
calls :meth:`RollingPlan.after_cycle`: when ``[dispatch] plan`` is off there is no
``RollingPlan`` and the cycle is exactly the greedy one.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controller.planning.profile import SLOT_S, SlotProfile
from controller.planning.worker import PlanWorker
from dispatch.fleet import BoolArray, CoopLimits, Fleet, FleetState
from dispatch.planned import PlannedEngine
from dispatch.result import TickResult

FloatArray = NDArray[np.float64]
FORECAST_NAME = "history: each member by weekday and 15 min, PV as the last week's mean"


class RollingPlan:
    """The forecast learner and the plan worker of one controller."""

    def __init__(self, members: int, replan_min: float = 15.0, horizon_h: float = 24.0,
                 worker: PlanWorker | None = None) -> None:
        self.profile = SlotProfile(members)
        self.worker = worker or PlanWorker(replan_min * 60.0, horizon_h * 3600.0, SLOT_S,
                                           forecast_name=FORECAST_NAME)

    def targets(self, now: float, fleet: Fleet, limits: CoopLimits) -> FloatArray | None:
        """Targets in force now; None (greedy) islanded, without a plan, or when expired."""
        if limits.islanded:
            return None
        return self.worker.targets(now, fleet)

    def tick(self, fleet: Fleet, state: FleetState, pv_w: FloatArray, load_w: FloatArray,
             valid: BoolArray, dt_s: float, policy: str, limits: CoopLimits,
             target_wh: FloatArray) -> TickResult:
        """The cycle's tick following ``target_wh`` inside every safety limit."""
        engine = PlannedEngine(fleet, policy, limits, fused=False)
        return engine.tick(state, pv_w, load_w, valid, dt_s, target_wh)

    def after_cycle(self, now: float, fleet: Fleet, stored_wh: FloatArray, pv_w: FloatArray,
                    load_w: FloatArray, valid: BoolArray, limits: CoopLimits) -> None:
        """Learn from the cycle's readings; start a re-plan when one is due (on-grid)."""
        self.profile.observe(now, pv_w, load_w, valid)
        if not limits.islanded:
            self.worker.maybe_replan(now, fleet, stored_wh, self.profile.forecast,
                                     CoopLimits(limits.import_cap_w, limits.export_cap_w))

    def close(self) -> None:
        """Stop the worker thread."""
        self.worker.close()
