"""``python -m bench island`` (part): survival odds for 100 and 1,000 members, beside LPs.

The coop of :func:`bench.island_bench.synthetic_problem` (an overcast winter
solstice at Lyon), one battery in five forming the grid, and 30 weather days
(the synthetic typical-year ensemble of :mod:`controller.island_day.weather`
around the date) over its PV. Timed: :func:`survival_odds` as ``island plan``
runs it: every single battery and PV loss and the all-up state, 2+ losses
sampled, × 30 days, plus the curves (24 start hours × 48 h). Beside it, the
same question answered the plain way, one plan LP per (day × single-battery
state): a sample of those solves is timed in the same run and the loop's time
is their median × the count (running them all would take hours at 1,000).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from datetime import datetime

import numpy as np

from bench.island_bench import STEPS, synthetic_problem
from controller.island.plan import _solve_lp
from controller.island.site import SiteConfig
from controller.island_day.survival import Components, survival_odds
from controller.island_day.weather import synthetic_weather

#: Members → target time of the odds, s (issue 21).
TARGETS_S = {100: 10.0, 1000: 120.0}
WEATHER_DAYS = 30
LP_SAMPLE = 8
#: At 1,000 members one plan LP takes a minute or more on a loaded 2-core machine.
LP_SAMPLE_LARGE = 3


def time_odds(members: int, runs: int = 3) -> dict:
    """Median wall time of the odds for ``members``, and the LP loop's estimate."""
    problem = synthetic_problem(members)
    site = SiteConfig(latitude=45.76, longitude=4.84, tz="Europe/Paris")
    start = datetime.fromtimestamp(problem.start_ts, site.tzinfo)
    weather = synthetic_weather(site, start, STEPS, days=WEATHER_DAYS)
    b = problem.fleet.size
    grid_forming = np.arange(b) % 5 == 0
    comp = Components(grid_forming)
    times, odds = [], None
    for _ in range(runs):
        began = time.perf_counter()
        odds = survival_odds(problem, weather, comp)
        times.append(time.perf_counter() - began)
    assert odds is not None
    # The plain way: an LP per (weather day × state), states = all up + each battery lost.
    rng = np.random.default_rng(0)
    lp_times = []
    for _ in range(LP_SAMPLE if members <= 100 else LP_SAMPLE_LARGE):
        day = int(rng.integers(WEATHER_DAYS))
        lost = int(rng.integers(-1, b))
        keep = np.arange(b) != lost
        fleet = replace(problem.fleet)
        sub = replace(problem, pv_w=problem.pv_w * weather.index[day][:, None],
                      fleet=type(fleet)(capacity_wh=fleet.capacity_wh[keep],
                                        soc_min_wh=fleet.soc_min_wh[keep],
                                        max_charge_w=fleet.max_charge_w[keep],
                                        max_discharge_w=fleet.max_discharge_w[keep],
                                        efficiency=fleet.efficiency[keep]),
                      stored_wh=problem.stored_wh[keep],
                      battery_member=problem.battery_member[keep])
        began = time.perf_counter()
        _solve_lp(sub, None)
        lp_times.append(time.perf_counter() - began)
    solves = WEATHER_DAYS * (b + 1)
    lp_median = statistics.median(lp_times)
    median = statistics.median(times)
    return {
        "members": members, "batteries": b, "grid_formers": int(grid_forming.sum()),
        "weather_days": WEATHER_DAYS, "runs": runs,
        "median_s": round(median, 3), "max_s": round(max(times), 3),
        "scenarios_solved": odds.scenarios,
        "p_held": {k: round(v, 4) for k, v in odds.p_held.items()},
        "robust": odds.robust,
        "lp_loop": {"solves": solves, "sampled": len(lp_times),
                    "median_solve_s": round(lp_median, 4),
                    "estimated_s": round(lp_median * solves, 1)},
        "speedup": round(lp_median * solves / median, 1) if median > 0 else None,
    }


def run(quick: bool = False, sizes: tuple[int, ...] | None = None) -> list[dict]:
    """Each size's median beside its target and the LP loop."""
    sizes = sizes or ((10, 30) if quick else tuple(TARGETS_S))
    rows = []
    for members in sizes:
        row = time_odds(members, runs=3 if members <= 100 or quick else 2)
        target = TARGETS_S.get(members)
        if target is not None:
            row["target_s"] = target
            row["met"] = row["median_s"] < target
        rows.append(row)
    return rows
