"""How far to trust an island plan: survival odds and operating reserve, text and JSON.

``island plan`` calls :func:`assess` after the LP and adds :func:`to_json` to
its JSON (keys ``survival``, ``reserve``, ``verdict``) and :func:`render_text`
to its text. The odds are computed on the coop's clear-sky PV profile scaled
by the weather days (:mod:`.weather`); the reserve on the plan itself
(:mod:`.reserve`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from controller.island.plan import TIERS, Plan, Problem
from controller.island_day.black_start import BlackStart, check_black_start
from controller.island_day.reserve import ReserveCheck, check_reserve, verdict
from controller.island_day.survival import ROBUST_P, Components, Odds, Weather, survival_odds

if TYPE_CHECKING:
    from controller.config import CoopConfig
    from controller.island.site import Coop, IslandConfig

#: Durations shown in the text (the JSON has every hour from 1 to 48).
SHOWN_HOURS = (1, 4, 8, 12, 24, 48)


@dataclass(frozen=True, slots=True)
class Assessment:
    """The odds, the reserve and the verdict per tier of one plan."""

    odds: Odds
    reserve: ReserveCheck
    verdict: dict[str, str]
    components: Components
    reserve_pct: tuple[float, float]
    black_start: BlackStart | None = None


def grid_forming_mask(config: CoopConfig, coop: Coop) -> NDArray[np.bool_]:
    """Per planned battery: whether its member's battery device forms the grid."""
    out = []
    for member in coop.battery_member:
        device = config.members[int(member)].device("battery")
        out.append(bool(device is not None and device.grid_forming))
    return np.array(out, dtype=bool)


def with_black_start(problem: Problem, config: CoopConfig, coop: Coop,
                     reserve_pct: float) -> Problem:
    """``problem`` with each grid-former's black-start reserve as a constraint of the plan
    (:mod:`controller.island.plan_black_start`)."""
    from controller.island.plan_black_start import end_floor_wh

    floor = end_floor_wh(problem.fleet.capacity_wh, grid_forming_mask(config, coop),
                         reserve_pct)
    return replace(problem, end_floor_wh=floor)


def medical_w(config: CoopConfig, member_ids: list[str]) -> NDArray[np.float64]:
    """Per member, the rated power of its load devices flagged ``medical`` (W)."""
    by_id = {m.id: m for m in config.members}
    return np.array([sum(d.rated_w or 0.0 for d in by_id[i].devices
                         if d.kind == "load" and d.medical) for i in member_ids], dtype=float)


def assess(plan: Plan, clear_pv_w: NDArray[np.float64], weather: Weather,
           grid_forming: NDArray[np.bool_], island: IslandConfig,
           start_hour: float = 0.0,
           medical: NDArray[np.float64] | None = None) -> Assessment:
    """Odds on ``clear_pv_w`` (T × N) × the weather days, and the plan's reserve."""
    comp = Components(np.asarray(grid_forming, dtype=bool), island.battery_availability,
                      island.pv_availability)
    odds = survival_odds(replace(plan.problem, pv_w=clear_pv_w), weather, comp, start_hour,
                         medical_w=medical)
    reserve = check_reserve(plan, comp.grid_forming, island.reserve_load_pct,
                            island.reserve_pv_pct)
    return Assessment(odds, reserve, verdict(plan, reserve), comp,
                      (island.reserve_load_pct, island.reserve_pv_pct),
                      check_black_start(plan, comp.grid_forming, island.black_start_pct))


def to_json(a: Assessment, plan: Plan, tz: tzinfo) -> dict:
    """``survival``, ``reserve`` and ``verdict`` for the plan's JSON."""
    o, r, p = a.odds, a.reserve, plan.problem

    def iso(step: int) -> str:
        return datetime.fromtimestamp(p.start_ts + step * p.step_s, tz).isoformat()

    return {
        "survival": {
            "p_held": o.p_held,
            "robust": o.robust,
            "robust_p": ROBUST_P,
            "not_robust_because": o.reasons(),
            "medical_warning": o.medical_warning,
            "held_on": o.held_on,
            "weak_points": o.weak_points[:20],
            "battery_availability": a.components.battery_availability,
            "pv_availability": a.components.pv_availability,
            "two_or_more_down_p": o.multi_mass,
            "two_or_more_down_draws": o.multi_sampled,
            "weather_days": o.weather_days,
            "weather_source": o.weather_source,
            "critical_by_duration_h": np.round(o.by_duration, 4).tolist(),
            "critical_by_start_hour": np.round(o.by_start_hour, 4).tolist(),
            "scenarios": o.scenarios,
            "solve_s": o.solve_s,
        },
        "reserve": {
            "reserve_load_pct": a.reserve_pct[0],
            "reserve_pv_pct": a.reserve_pct[1],
            "met": r.met,
            "capacity_shortage_kwh": r.shortage_kwh,
            "short_steps": len(r.short_steps),
            "short_from": [iso(s) for s in _starts(r.short_steps)][:20],
            "shortfall_w": np.round(r.shortfall_w, 1).tolist(),
        },
        "verdict": a.verdict,
        "black_start": None if a.black_start is None else {
            "reserve_pct": a.black_start.reserve_pct,
            "met": a.black_start.met,
            "end_soc_pct": {_label(p, b): pct for b, pct in a.black_start.end_pct.items()},
            "below": [_label(p, b) for b in a.black_start.below],
            "critical_hours_left": a.black_start.critical_hours_left,
        },
    }


def _label(p: Problem, b: int) -> str:
    ids = p.member_ids
    member = int(p.battery_member[b])
    name = ids[member] if ids else f"m{member}"
    nth = int((p.battery_member[:b] == member).sum())
    return name if nth == 0 else f"{name}#{nth + 1}"


def _starts(steps: list[int]) -> list[int]:
    """First step of each run of consecutive steps."""
    return [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s - 1]


def render_text(a: Assessment, plan: Plan, tz: tzinfo) -> str:
    """The coordinator's lines: odds per tier, robust or not, weak points, curves, reserve."""
    o, r, p = a.odds, a.reserve, plan.problem
    c = a.components
    lines = ["", f"Survival odds ({o.weather_days} weather days, {o.weather_source}; "
             f"battery up {c.battery_availability:g}, PV up {c.pv_availability:g}):"]
    for tier in TIERS:
        lines.append(f"  {tier:<10} P(fully served) = {o.p_held[tier]:.3f}   plan: "
                     f"{a.verdict[tier]}")
    if not a.components.grid_forming.any():
        lines.append("  No planned battery forms the grid (grid_forming = true on a battery "
                     "device): the coop cannot island at all")
    on = ", ".join(f"{q.upper()} {'holds' if v['critical'] else 'FAILS'}"
                   for q, v in o.held_on.items())
    lines.append(f"  critical on the PV quantile days (all up): {on}")
    if "medical" in o.p_held:
        lines.append(f"  {'medical':<10} P(fully served) = {o.p_held['medical']:.3f}   (within "
                     "critical, served first)")
    if o.medical_warning:
        lines.append("  " + o.medical_warning)
    if o.robust:
        lines.append(f"  ROBUST: P(critical) ≥ {ROBUST_P} and it holds on P10 PV")
    else:
        lines.append("  NOT ROBUST: " + "; ".join(o.reasons()))
    if o.weak_points:
        lines.append("  Single losses that cost the critical tier (worst first):")
        for w in o.weak_points[:5]:
            lines.append(f"    {w['component']}: down with p = {w['p_loss']:.2f}, then critical "
                         f"fails on {100 * w['critical_fails_share']:.0f} % of days "
                         f"(costs {w['costs_p']:.4f} of P)")
    if o.multi_mass > 0:
        how = (f"{o.multi_sampled} sampled states" if o.multi_sampled else
               "counted as not served")
        lines.append(f"  Two or more components down: p = {o.multi_mass:.4f} ({how})")
    curve = o.by_duration
    lines.append("  P(critical lasts), mean over start hours: " + ", ".join(
        f"{d} h {curve[d - 1]:.3f}" for d in SHOWN_HOURS))
    day = o.by_start_hour[:, 23]
    worst = int(np.argmin(day))
    if day.max() - day.min() < 5e-4:
        lines.append(f"  24 h island: P {day[worst]:.3f} whatever the start hour")
    else:
        lines.append(f"  24 h island: worst start {worst:02d}:00 (P {day[worst]:.3f}), best "
                     f"{int(np.argmax(day)):02d}:00 (P {day.max():.3f})")
    load_pct, pv_pct = a.reserve_pct
    if r.met:
        lines.append(f"\nOperating reserve ({load_pct:g} % of load + {pv_pct:g} % of PV on the "
                     "grid-formers): kept in every step")
    else:
        first = datetime.fromtimestamp(p.start_ts + r.short_steps[0] * p.step_s, tz)
        lines.append(f"\nOperating reserve ({load_pct:g} % of load + {pv_pct:g} % of PV on the "
                     f"grid-formers): SHORT in {len(r.short_steps)} steps from "
                     f"{first:%H:%M}, capacity shortage {r.shortage_kwh:.2f} kWh (not shed: "
                     "the plan is fragile, one surprise from a trip)")
    bs = a.black_start
    if bs is not None:
        hours = "≥ a week" if bs.critical_hours_left > 168 else f"{bs.critical_hours_left:.1f} h"
        state = "every grid-former ends at or above it" if bs.met else (
            "BELOW it at the end: " + ", ".join(
                f"{_label(p, b)} {bs.end_pct[b]:.0f} %" for b in bs.below))
        lines.append(f"Black-start reserve ({bs.reserve_pct:g} % on each grid-former): {state};"
                     f" critical load still held at the end: {hours}")
    return "\n".join(lines) + "\n"


def odds_summary(plan: dict) -> dict | None:
    """The odds and reserve of a saved plan (``island plan --json``), compact, for the
    report and the page; ``None`` if the plan has none (made with ``--no-odds`` or before)."""
    survival, reserve = plan.get("survival"), plan.get("reserve")
    if not isinstance(survival, dict) or not isinstance(reserve, dict):
        return None
    try:
        return {
            "p_held": {t: float(survival["p_held"][t]) for t in TIERS},
            "robust": bool(survival["robust"]),
            "not_robust_because": [str(x) for x in survival.get("not_robust_because", [])],
            "weak_points": [{"component": str(w["component"]),
                             "costs_p": float(w["costs_p"])}
                            for w in survival.get("weak_points", [])[:3]],
            "weather_days": int(survival["weather_days"]),
            "reserve_met": bool(reserve["met"]),
            "capacity_shortage_kwh": float(reserve["capacity_shortage_kwh"]),
            "verdict": {t: str(plan.get("verdict", {}).get(t, "")) for t in TIERS},
        }
    except (KeyError, TypeError, ValueError):
        return None  # a plan file edited by hand: the report goes on without the odds


def odds_html(summary: dict | None) -> str:
    """A paragraph for the report: the odds the plan gave before the day."""
    from html import escape

    if summary is None:
        return ""
    p = summary["p_held"]
    label = "robust" if summary["robust"] else "NOT robust (" + "; ".join(
        summary["not_robust_because"]) + ")"
    weak = ", ".join(f"{w['component']} (−{w['costs_p']:.3f})" for w in summary["weak_points"])
    reserve = ("operating reserve kept in every step" if summary["reserve_met"] else
               f"operating reserve short: {summary['capacity_shortage_kwh']:.2f} kWh of "
               "capacity shortage (fragile)")
    return (f"<p>Before the day, over {summary['weather_days']} weather days and a failed "
            f"battery: P(critical held) {p['critical']:.3f}, essential {p['essential']:.3f}, "
            f"flexible {p['flexible']:.3f}; {escape(label)}"
            + (f"; weakest: {escape(weak)}" if weak else "") + f"; {escape(reserve)}.</p>")
