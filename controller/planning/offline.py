"""``commonwatt simulate --dispatch plan``: the rolling plan over a study, beside greedy.

Both dispatches run over the same fleet and series; both are set against the
copper-plate LP bound (:func:`dispatch.lp.lp_copper_plate_import`), the least grid
import any dispatch of these batteries could reach with perfect foresight.
"""

from __future__ import annotations

import numpy as np

from controller.simulate import Study, report_totals, run_study
from dispatch import CoopLimits, FleetState
from dispatch.lp import lp_copper_plate_import
from dispatch.rolling import history_forecast, perfect_forecast, run_rolling

FORECASTS = ("perfect", "history")
#: The plan's own step: finer series are averaged to it.
PLAN_STEP_S = 900.0


def plan_steps(step_s: float, replan_min: float, horizon_h: float) -> dict[str, int]:
    """Series steps per plan step, per re-plan and per horizon, for a series of ``step_s``."""
    every = max(1, round(PLAN_STEP_S / step_s)) if step_s < PLAN_STEP_S else 1
    return {"plan_every": every,
            "replan_steps": max(1, round(replan_min * 60 / step_s)),
            "horizon_steps": max(every, round(horizon_h * 3600 / step_s) // every * every)}


def run_planned(study: Study, policy: str = "prorata", forecast: str = "perfect",
                replan_min: float = 15.0, horizon_h: float = 24.0) -> dict:
    """The study dispatched by the rolling plan: :func:`run_study`'s report plus ``plan``.

    A perfect forecast is trusted both ways (targets held down as well as up); a history
    forecast only to keep room (see :mod:`dispatch.planned` for why, measured).
    """
    if forecast not in FORECASTS:
        raise ValueError(f"forecast {forecast!r}: expected one of {', '.join(FORECASTS)}")
    believe = (perfect_forecast(study.pv_w, study.load_w) if forecast == "perfect"
               else history_forecast(study.pv_w, study.load_w, study.step_s))
    steps = plan_steps(study.step_s, replan_min, horizon_h)
    result, stats = run_rolling(study.fleet, FleetState.start(study.soc_start_wh), study.pv_w,
                                study.load_w, study.step_s, believe, policy, CoopLimits(),
                                hold=forecast == "perfect", **steps)
    report = report_totals(study, result)
    report["plan"] = {
        "forecast": forecast, "trusted": "hold and room" if forecast == "perfect" else "room",
        "replan_min": steps["replan_steps"] * study.step_s / 60, "horizon_h": horizon_h,
        "solves": stats.solves, "failures": stats.failures, "greedy_ticks": stats.greedy_ticks,
        "median_solve_s": round(float(np.median(stats.solve_s)), 4) if stats.solve_s else None,
    }
    return report


def side_by_side(study: Study, greedy: dict, plan: dict) -> dict:
    """Greedy's and the plan's reports (:func:`run_study`, :func:`run_planned`) in a few
    figures each, with their ratio to the copper-plate LP bound."""
    bound = lp_copper_plate_import(study.fleet, study.soc_start_wh, study.pv_w, study.load_w,
                                   study.step_s) / 1000
    out: dict = {"bound_import_kwh": round(bound, 6)}
    for name, report in (("greedy", greedy), ("plan", plan)):
        coop = report["coop"]
        out[name] = {"import_kwh": coop["from_grid"], "liberated_kwh": coop["liberated"],
                     "export_kwh": coop["to_grid"],
                     "ratio_to_bound": round(coop["from_grid"] / bound, 4) if bound > 1e-3
                     else None}
    out["plan_saved_import_kwh"] = round(greedy["coop"]["from_grid"] - plan["coop"]["from_grid"],
                                         6)
    return out


def compare(study: Study, policy: str = "prorata", forecast: str = "perfect",
            replan_min: float = 15.0, horizon_h: float = 24.0) -> dict:
    """Greedy and the rolling plan over ``study``: :func:`side_by_side` plus the plan's stats."""
    plan = run_planned(study, policy, forecast, replan_min, horizon_h)
    return side_by_side(study, run_study(study, policy), plan) | {"plan_stats": plan["plan"]}
