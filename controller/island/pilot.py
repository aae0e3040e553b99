"""Following the island plan in the running controller (pure: no I/O, time passed in).

``commonwatt island plan --json`` (and the rehearsal) save the plan with its
inputs: per member and 15-minute step the PV forecast and the load of each tier,
and the batteries it may use. Islanded, the controller's :class:`IslandPilot`
plans the rest of the island again every ``[island] replan_min`` minutes from
fresh readings:

* each battery's content now (a battery that does not answer is left out: a
  dropped battery is not planned on);
* the forecast from the current step on, corrected by what the meters see now:
  the ratio of measured to forecast coop PV (and load) is applied now and fades
  towards the forecast over :data:`FADE_S` (a cloud now says little about
  tomorrow morning).

The controller follows the plan's battery targets the only way an island can
steer its batteries' content, through the demand: each cycle it sheds what the
plan sheds in the current step (:meth:`IslandPilot.shed_w`), flexible loads
first, even while the batteries could still carry them, so the content stays
on the planned path that gets the critical loads through the night. Safety is
not the plan's: the hard floors stay in the dispatch and the setpoint clamp,
and what the batteries and sun cannot cover is shed anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from controller.island.plan import TIERS, Plan, Problem
from controller.island.plan_rows import steps_covered
from dispatch.fleet import Fleet

FloatArray = NDArray[np.float64]
#: How long a measured deviation from the forecast keeps weight (e-folding time), s.
FADE_S = 3 * 3600.0
#: Forecast coop power below this (W) is too small to scale by (night PV, say).
MIN_SCALE_W = 50.0
#: Measured/forecast ratios are kept within this range: one odd reading must not
#: plan a day on ten times the sun.
RATIO_RANGE = (0.0, 2.0)
_FLEET_KEYS = ("capacity_wh", "soc_min_wh", "max_charge_w", "max_discharge_w", "efficiency")


def problem_json(problem: Problem) -> dict[str, Any]:
    """A plan's inputs, JSON-ready (W rounded to 0.1), for :meth:`BaseForecast.from_json`."""
    fleet = problem.fleet
    out = {
        "start_ts": problem.start_ts,
        "step_s": problem.step_s,
        "member_ids": list(problem.member_ids),
        "pv_w": np.round(problem.pv_w, 1).tolist(),
        "tier_load_w": np.round(problem.tier_load_w, 1).tolist(),
        "battery_member": problem.battery_member.tolist(),
        "batteries": {k: getattr(fleet, k).tolist() for k in _FLEET_KEYS},
        **({} if problem.end_floor_wh is None else
           {"end_floor_wh": np.round(problem.end_floor_wh, 1).tolist()}),
    }
    if problem.grid_forming is not None:  # re-plans keep the reserve (issue 21.2)
        out["grid_forming"] = [bool(g) for g in problem.grid_forming]
        out["reserve_pct"] = [problem.reserve_load_pct, problem.reserve_pv_pct]
    if problem.charge_ceiling_wh is not None:  # and the AC-coupled charge ceiling (21.3)
        out["charge_ceiling_wh"] = np.round(problem.charge_ceiling_wh, 1).tolist()
    return out


@dataclass(frozen=True, slots=True)
class LoadLock:
    """A switchable load the plan may not switch yet (issue 21.8).

    Attributes:
        member: its member's index in the running controller.
        tier: the load's tier.
        power_w: what it draws (running) or drew when switched off (held off).
        running: True: on within its ``min_on_s`` (no shed before then); False: held
            off by Commonwatt within its ``min_off_s`` (stays off until then).
        remaining_s: how long the lock still holds.
    """

    member: int
    tier: str
    power_w: float
    running: bool
    remaining_s: float


@dataclass(frozen=True, slots=True)
class BaseForecast:
    """The saved plan's forecast and batteries, which every re-plan starts from."""

    start_ts: float
    step_s: float
    member_ids: list[str]
    pv_w: FloatArray  # T × N
    tier_load_w: FloatArray  # 3 × T × N
    battery_member: NDArray[np.int64]  # B
    fleet: Fleet  # B
    end_floor_wh: FloatArray | None = None  # B: black-start reserves (plan_black_start.py)
    grid_forming: NDArray[np.bool_] | None = None  # B; None: no reserve kept
    reserve_pct: tuple[float, float] = (10.0, 25.0)
    charge_ceiling_wh: FloatArray | None = None  # B

    @classmethod
    def from_json(cls, data: object) -> BaseForecast:
        """From a saved plan (its ``inputs``); :class:`ValueError` naming the key if bad."""
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
            raise ValueError("inputs: missing (plan saved before Commonwatt saved its inputs; "
                             "make it again with 'commonwatt island plan --json')")
        raw = data["inputs"]
        try:
            ids = [str(m) for m in raw["member_ids"]]
            pv = np.asarray(raw["pv_w"], dtype=np.float64).reshape(-1, len(ids))
            load = np.asarray(raw["tier_load_w"], dtype=np.float64).reshape(3, -1, len(ids))
            owners = np.asarray(raw["battery_member"], dtype=np.int64).reshape(-1)
            fleet = Fleet(**{k: np.asarray(raw["batteries"][k], dtype=np.float64)
                             for k in _FLEET_KEYS})
            start, step = float(raw["start_ts"]), float(raw["step_s"])
            floor = (None if raw.get("end_floor_wh") is None else
                     np.asarray(raw["end_floor_wh"], dtype=np.float64).reshape(-1))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"inputs: {type(exc).__name__}: {exc}") from None
        if load.shape[1] != pv.shape[0] or fleet.size != owners.size or not (
                math.isfinite(start) and step > 0):
            raise ValueError("inputs: shapes or times do not agree")
        if not (np.isfinite(pv).all() and np.isfinite(load).all()):
            raise ValueError("inputs: pv_w and tier_load_w must be finite")
        if floor is not None and (floor.size != owners.size or not np.isfinite(floor).all()):
            raise ValueError("inputs.end_floor_wh: expected one finite number per battery")
        if owners.size and not ((owners >= 0) & (owners < len(ids))).all():
            raise ValueError("inputs.battery_member: index outside member_ids")
        options: dict[str, Any] = {}
        try:
            if "grid_forming" in raw:
                options["grid_forming"] = np.asarray(raw["grid_forming"], dtype=bool)
                load_pct, pv_pct = (float(x) for x in raw.get("reserve_pct", (10.0, 25.0)))
                options["reserve_pct"] = (load_pct, pv_pct)
            if "charge_ceiling_wh" in raw:
                options["charge_ceiling_wh"] = np.asarray(raw["charge_ceiling_wh"],
                                                          dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"inputs.grid_forming/reserve_pct/charge_ceiling_wh: {exc}"
                             ) from None
        for key in ("grid_forming", "charge_ceiling_wh"):
            if key in options and options[key].shape != (owners.size,):
                raise ValueError(f"inputs.{key}: expected one value per battery")
        return cls(start, step, ids, pv, load, owners, fleet, floor, **options)

    @property
    def end_ts(self) -> float:
        """End of the forecast."""
        return self.start_ts + self.pv_w.shape[0] * self.step_s


def _fade(steps: int, step_s: float, ratio: float) -> FloatArray:
    """Per step, the factor that takes ``ratio`` now back to 1 over :data:`FADE_S`."""
    weight = np.exp(-np.arange(steps) * step_s / FADE_S)
    return 1.0 + (ratio - 1.0) * weight


def _ratio(measured: float, forecast: float) -> float:
    if forecast < MIN_SCALE_W or not math.isfinite(measured):
        return 1.0
    return float(np.clip(measured / forecast, *RATIO_RANGE))


@dataclass(frozen=True, slots=True)
class Readings:
    """Fresh readings, per member of the running controller (its order).

    Attributes:
        stored_wh: battery content now (NaN where unknown).
        battery_ok: whether the member's battery answers and may be planned on.
        pv_w, demand_w: now; demand includes loads Commonwatt holds off.
    """

    stored_wh: FloatArray
    battery_ok: NDArray[np.bool_]
    pv_w: FloatArray
    demand_w: FloatArray


class IslandPilot:
    """Re-plans the island from fresh readings and says what the plan sheds now.

    Args:
        base: the saved plan's inputs.
        member_ids: the running controller's members, in its order.
        replan_s: how often to plan again, s (``[island] replan_min`` × 60).
    """

    def __init__(self, base: BaseForecast, member_ids: list[str], replan_s: float) -> None:
        self.base = base
        self.replan_s = replan_s
        index = {m: i for i, m in enumerate(member_ids)}
        #: For each of the base's members, its index in the controller (-1: not there).
        self._to_live = np.array([index.get(m, -1) for m in base.member_ids], dtype=np.int64)
        self.n = len(member_ids)
        self.plan: Plan | None = None
        self.planned_at: float | None = None
        self.plans_made = 0
        #: Index into the base's batteries of each battery in :attr:`plan`.
        self._batteries = np.zeros(0, dtype=np.int64)
        self._pending = self._batteries

    def due(self, now: float) -> bool:
        """Whether a new plan is due (none yet, or the last is ``replan_s`` old)."""
        return self.planned_at is None or now - self.planned_at >= self.replan_s

    def problem(self, now: float, readings: Readings, end_ts: float | None = None,
                locks: Sequence[LoadLock] = ()) -> Problem | None:
        """The rest of the island from ``now`` (to ``end_ts`` or the forecast's end) as a
        planning problem from ``readings``; None when less than a step is left.

        ``locks``: switchable loads within their minimum on or off time, carried into
        the plan over the whole steps they still cover (:mod:`.plan_rows`)."""
        base = self.base
        first = int((now - base.start_ts) // base.step_s)
        last = base.pv_w.shape[0]
        if end_ts is not None:
            last = min(last, math.ceil((end_ts - base.start_ts) / base.step_s))
        first = max(first, 0)
        if last - first < 1:
            return None
        live = self._to_live
        here = live >= 0
        pv = base.pv_w[first:last].copy()
        load = base.tier_load_w[:, first:last].copy()
        steps = last - first
        pv_ratio = _ratio(float(readings.pv_w[live[here]].sum()), float(pv[0, here].sum()))
        load_ratio = _ratio(float(readings.demand_w[live[here]].sum()),
                            float(load[:, 0][:, here].sum()))
        pv *= _fade(steps, base.step_s, pv_ratio)[:, None]
        load *= _fade(steps, base.step_s, load_ratio)[None, :, None]
        owners_live = live[base.battery_member]
        content = np.full(base.fleet.size, np.nan)
        known = owners_live >= 0
        content[known] = readings.stored_wh[owners_live[known]]
        ok = known & np.isfinite(content)
        ok[known] &= readings.battery_ok[owners_live[known]]
        keep = np.flatnonzero(ok)
        f = base.fleet
        fleet = Fleet(**{k: getattr(f, k)[keep] for k in _FLEET_KEYS})
        stored = np.clip(content[keep], fleet.soc_min_wh, fleet.capacity_wh)
        self._pending = keep
        on, off = self._locks(locks, load.shape)
        return Problem(pv, load, fleet, stored, base.battery_member[keep], base.step_s,
                       list(base.member_ids), now,
                       end_floor_wh=None if base.end_floor_wh is None else base.end_floor_wh[keep],
                       grid_forming=None if base.grid_forming is None else base.grid_forming[keep],
                       reserve_load_pct=base.reserve_pct[0], reserve_pv_pct=base.reserve_pct[1],
                       charge_ceiling_wh=(None if base.charge_ceiling_wh is None
                                          else base.charge_ceiling_wh[keep]),
                       locked_on_w=on, held_off_w=off)

    def _locks(self, locks: Sequence[LoadLock], shape: tuple[int, ...]
               ) -> tuple[FloatArray | None, FloatArray | None]:
        """Running and held-off loads as 3 × T × N W over the steps they cover."""
        if not locks:
            return None, None
        base_of = {int(live): j for j, live in enumerate(self._to_live) if live >= 0}
        on, off = np.zeros(shape), np.zeros(shape)
        for lock in locks:
            j = base_of.get(lock.member)
            steps = steps_covered(lock.remaining_s, self.base.step_s)
            if j is None or steps == 0 or lock.tier not in TIERS or not lock.power_w > 0:
                continue
            (on if lock.running else off)[TIERS.index(lock.tier), :steps, j] += lock.power_w
        return on, off

    def adopt(self, plan: Plan, now: float) -> None:
        """Follow ``plan`` (made by :meth:`problem` at ``now``) from now on."""
        self.plan, self.planned_at = plan, now
        self._batteries = self._pending
        self.plans_made += 1

    def _step(self, now: float) -> int | None:
        plan = self.plan
        if plan is None:
            return None
        k = int((now - plan.problem.start_ts) // plan.problem.step_s)
        return k if 0 <= k < plan.shed_wh.shape[1] else None

    def shed_w(self, now: float) -> FloatArray:
        """Per controller member, the power the plan sheds now (all tiers), W."""
        out = np.zeros(self.n)
        k = self._step(now)
        if k is None:
            return out
        plan = self.plan
        assert plan is not None
        per_member = plan.shed_wh[:, k, :].sum(axis=0) / (plan.problem.step_s / 3600.0)
        here = self._to_live >= 0
        out[self._to_live[here]] = per_member[here]
        return out

    def demand_forecast_w(self, now: float) -> FloatArray | None:
        """Per controller member, the saved forecast's demand (all tiers) at ``now``, W; NaN
        for members the forecast does not know, None outside the forecast."""
        tiers = self.tier_forecast_w(now)
        return None if tiers is None else tiers.sum(axis=0)

    def tier_forecast_w(self, now: float) -> FloatArray | None:
        """Per tier (critical, essential, flexible) and controller member, the saved
        forecast's demand at ``now``, W; NaN for members the forecast does not know, None
        outside the forecast."""
        base = self.base
        k = int((now - base.start_ts) // base.step_s)
        if not 0 <= k < base.pv_w.shape[0]:
            return None
        out = np.full((3, self.n), np.nan)
        here = self._to_live >= 0
        out[:, self._to_live[here]] = base.tier_load_w[:, k, here]
        return out

    def pv_forecast_w(self, now: float) -> FloatArray | None:
        """Per controller member, the saved forecast's PV at ``now``, W; NaN for members the
        forecast does not know, None outside the forecast."""
        base = self.base
        k = int((now - base.start_ts) // base.step_s)
        if not 0 <= k < base.pv_w.shape[0]:
            return None
        out = np.full(self.n, np.nan)
        here = self._to_live >= 0
        out[self._to_live[here]] = base.pv_w[k, here]
        return out

    def targets_wh(self, now: float) -> dict[int, float]:
        """Per controller member with a planned battery, the plan's content at ``now``."""
        k = self._step(now)
        plan = self.plan
        if k is None or plan is None:
            return {}
        p = plan.problem
        frac = (now - p.start_ts - k * p.step_s) / p.step_s
        at = plan.stored_wh[k] + (plan.stored_wh[k + 1] - plan.stored_wh[k]) * frac
        owners = self._to_live[p.battery_member]
        return {int(m): float(e) for m, e in zip(owners, at, strict=True) if m >= 0}

    def status(self, now: float) -> dict[str, Any]:
        """For the API: when the plan was made, what it sheds now and holds."""
        plan = self.plan
        if plan is None:
            return {"planned_at": None, "plans_made": self.plans_made}
        shed = self.shed_w(now)
        return {
            "planned_at": self.planned_at,
            "plans_made": self.plans_made,
            "replan_s": self.replan_s,
            "feasible": plan.feasible,
            "autonomy_h": plan.autonomy_h,
            "shed_now_w": float(shed.sum()),
            "shed_tiers_kwh": {t: float(plan.shed_wh[i].sum()) / 1000.0
                               for i, t in enumerate(TIERS)},
            # Issue 21: the reserve the plan cannot keep, and running loads it must cut.
            "capacity_shortage_kwh": None if plan.reserve_shortfall_w is None else float(
                plan.reserve_shortfall_w.sum()) * plan.problem.hours / 1000.0,
            "cut_mid_run_kwh": 0.0 if plan.cut_mid_run_wh is None else float(
                plan.cut_mid_run_wh.sum()) / 1000.0,
        }
