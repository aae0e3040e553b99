"""Operating reserve of an island plan: headroom on the grid-formers, step by step.

Islanded, the grid-forming inverters take every instantaneous imbalance: a
kettle switched on, a cloud over the PV. An energy plan that has them
discharging at their rating has nothing left for either, and the island trips
on the first surprise. So, as HOMER does, every step must keep

    headroom ≥ reserve_load_pct % × served load + reserve_pv_pct % × PV in use

(defaults 10 % and 25 %, ``[island]``), where a grid-former's headroom is how
much more it could discharge: its discharge rating minus what the plan has it
deliver (a charging battery can swing from charging to its full rating), and
no more than the energy behind it allows over the whole step: η × its content
above the floor at the step's end, and η × that at its start less what it
delivers (at its floor, only the charge it could stop).

The plan's LP keeps this reserve as rows of its own when the problem names the
grid-formers (:mod:`.plan_rows`); this check computes it again from the
finished plan, by the same definition, as the referee of what the LP reports.

A shortfall is a **capacity shortage**, kept apart from shed energy (nothing
is shed for it; the plan is one surprise from a trip). A plan whose tiers hold
on energy but not on reserve is **fragile**, never feasible (:func:`verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from controller.island.limits import TOL_WH
from controller.island.plan import TIERS, Plan

FloatArray = NDArray[np.float64]

RESERVE_LOAD_PCT = 10.0
RESERVE_PV_PCT = 25.0


@dataclass(frozen=True, slots=True)
class ReserveCheck:
    """The reserve a plan keeps.

    Attributes:
        need_w, headroom_w, shortfall_w: per step (T,).
        shortage_kwh: the shortfall over the day, kWh (power × step length).
        short_steps: indices of steps with a shortfall.
    """

    need_w: FloatArray
    headroom_w: FloatArray
    shortfall_w: FloatArray
    shortage_kwh: float
    short_steps: list[int]

    @property
    def met(self) -> bool:
        """No step short of reserve."""
        return not self.short_steps


def check_reserve(plan: Plan, grid_forming: NDArray[np.bool_],
                  reserve_load_pct: float = RESERVE_LOAD_PCT,
                  reserve_pv_pct: float = RESERVE_PV_PCT) -> ReserveCheck:
    """Headroom against need in every step of ``plan``."""
    p = plan.problem
    if np.shape(grid_forming) != (p.fleet.size,):
        raise ValueError(f"grid_forming: expected one flag per battery ({p.fleet.size}), got "
                         f"shape {np.shape(grid_forming)}")
    for name, pct in (("reserve_load_pct", reserve_load_pct),
                      ("reserve_pv_pct", reserve_pv_pct)):
        if not 0 <= pct <= 100:
            raise ValueError(f"{name}: expected 0 to 100 %, got {pct}")
    h = p.hours
    served_w = (p.tier_load_w.sum(axis=(0, 2)) - plan.shed_wh.sum(axis=(0, 2)) / h)
    pv_used_w = p.pv_w.sum(axis=1) - plan.curtailed_wh.sum(axis=1) / h
    need = reserve_load_pct / 100.0 * np.maximum(served_w, 0.0) + \
        reserve_pv_pct / 100.0 * np.maximum(pv_used_w, 0.0)
    gf = np.asarray(grid_forming, dtype=bool)
    power = plan.battery_w[:, gf]  # T × G, discharge > 0
    lower = p.lower_wh[gf][None, :]
    eta = p.fleet.leg_efficiency[gf][None, :]
    stored = plan.stored_wh[:, gf]
    above = np.maximum(stored - lower, 0.0)
    above = np.where(above <= TOL_WH, 0.0, above)  # HiGHS's tolerance at the floor
    rating = p.fleet.max_discharge_w[gf][None, :]
    headroom = np.minimum.reduce([rating - power, eta * above[1:] / h,
                                  eta * above[:-1] / h - power])
    total = np.maximum(headroom, 0.0).sum(axis=1)
    shortfall = np.maximum(need - total, 0.0)
    shortfall[shortfall <= TOL_WH / h] = 0.0  # the LP's tolerance, not a shortage
    short = np.flatnonzero(shortfall > 0)
    return ReserveCheck(need, total, shortfall, float(shortfall.sum()) * h / 1000.0,
                        short.tolist())


def verdict(plan: Plan, reserve: ReserveCheck) -> dict[str, str]:
    """Per tier: ``shed`` (energy short), ``fragile`` (served, but the reserve is short in a
    step where it is served) or ``feasible``."""
    out = {}
    for k, tier in enumerate(TIERS):
        if not plan.feasible[tier]:
            out[tier] = "shed"
            continue
        served = plan.problem.tier_load_w[k].sum(axis=1) > 0
        fragile = bool((reserve.shortfall_w[served] > 1e-6).any())
        out[tier] = "fragile" if fragile else "feasible"
    return out
