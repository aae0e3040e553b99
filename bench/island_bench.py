"""``python -m bench island``: the 24-hour island plan for 100 and 1,000 members, and the rehearsal.

A synthetic coop at 45.8° N (Lyon) on an overcast winter solstice (the
``cloudy`` scenario: a hard day, on which flexible load is shed and batteries
run empty, so the LP has limits to bind), PV of 0-9 kWp per member in a few
orientations, H25 load (2,200-5,500 kWh/a) with the default tier shares, and
six in ten members with a battery (5-13.5 kWh, 2.5-5 kW) at 20-80 % SoC. The
timed part is :func:`plan_island`: the plan's LP, the two required-start LPs,
autonomy and the binding limits. The forecasts are built once, outside that
timing (``forecast_s``). Each size reports the median of a few runs beside
its target.

The rehearsal half runs ``commonwatt island rehearse`` as shipped: 24 simulated
hours at 1440x on 10 simulated households over Modbus TCP, the cloudy afternoon
and the battery dropout included (``--quick``: 2 h at 4000x on 3). It reports
the wall time of the simulated day (from the island command to the controller's
stop) beside the hours' length at that speed, the whole run's time (servers,
plan, report included), cycles and cycles missed, and the controller's cycle
times (median, p99 from its own reports) beside the cycle's wall slot.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from controller.island.forecast import h25_load_w, pv_forecast_w
from controller.island.plan import Problem, plan_island
from controller.island.site import ArrayConfig, SiteConfig
from dispatch.fleet import Fleet

#: Members → target plan time, s (issue "The 24-hour energy island").
TARGETS_S = {100: 5.0, 1000: 60.0}
STEPS = 96
#: The rehearsal: (hours, speed, households); a day in about a minute.
REHEARSAL = (24.0, 1440.0, 10)
REHEARSAL_QUICK = (2.0, 4000.0, 3)
#: Wall time of the simulated day may exceed its length at speed by this factor.
WALL_SLACK = 1.15
#: At most this share of the cycles may be missed.
MISSED_SHARE = 0.02


def synthetic_problem(members: int, seed: int = 3) -> Problem:
    """A coop of ``members`` for one overcast winter day, forecasts included."""
    rng = np.random.default_rng(seed)
    ids = [f"m{i:05d}" for i in range(members)]
    kwp = rng.choice([0.0, 3.0, 4.5, 6.0, 7.5, 9.0], size=members)
    tilt = rng.choice([15.0, 30.0, 45.0], size=members)
    azimuth = rng.choice([90.0, 135.0, 180.0, 225.0, 270.0], size=members)
    site = SiteConfig(latitude=45.76, longitude=4.84, tz="Europe/Paris", arrays=[
        ArrayConfig(member=ids[i], kwp=float(kwp[i]), tilt=float(tilt[i]),
                    azimuth=float(azimuth[i])) for i in range(members) if kwp[i] > 0])
    start = datetime(2026, 12, 21, tzinfo=site.tzinfo)
    pv = pv_forecast_w(site, ids, start, STEPS, "cloudy")
    load = h25_load_w(start, STEPS, site.tzinfo, rng.uniform(2200, 5500, size=members))
    owners = np.flatnonzero(rng.random(members) < 0.6)
    b = owners.size
    capacity = rng.choice([5000.0, 7700.0, 10000.0, 13500.0], size=b)
    power = rng.choice([2500.0, 3300.0, 5000.0], size=b)
    fleet = Fleet(capacity_wh=capacity, soc_min_wh=0.05 * capacity, max_charge_w=power,
                  max_discharge_w=power, efficiency=np.full(b, 0.92))
    stored = rng.uniform(0.2, 0.8, size=b) * capacity
    return Problem.from_shares(pv, load, np.full(members, 0.15), np.full(members, 0.35), fleet,
                               stored, owners, member_ids=ids,
                               start_ts=start.timestamp())


def with_reserve(problem: Problem) -> Problem:
    """The same coop keeping the operating reserve (issue 21.2) on one battery in ten as
    grid-former, and their AC-coupled charge ceiling at 95 %."""
    gf = np.arange(problem.fleet.size) % 10 == 0
    cap = problem.fleet.capacity_wh
    return replace(problem, grid_forming=gf, charge_ceiling_wh=np.where(gf, 0.95 * cap, cap))


def time_plan(members: int, runs: int, reserve: bool = False) -> dict:
    """Median wall time of :func:`plan_island` over ``runs`` for a coop of ``members``
    (``reserve``: keeping the operating reserve, :func:`with_reserve`)."""
    began = time.perf_counter()
    problem = synthetic_problem(members)
    if reserve:
        problem = with_reserve(problem)
    forecast_s = time.perf_counter() - began
    times = []
    plan = None
    for _ in range(runs):
        began = time.perf_counter()
        plan = plan_island(problem)
        times.append(time.perf_counter() - began)
    assert plan is not None
    short = plan.reserve_shortfall_w
    return {
        "members": members,
        "reserve": reserve,
        "capacity_shortage_kwh": None if short is None else round(
            float(short.sum()) * problem.hours / 1000.0, 2),
        "batteries": problem.fleet.size,
        "steps": STEPS,
        "runs": runs,
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "forecast_s": round(forecast_s, 3),
        "feasible": plan.feasible,
        "shed_kwh": {k: round(v / 1000.0, 2) for k, v in plan.shed_by_tier_wh().items()},
    }


def time_rehearsal(hours: float, speed: float, households: int) -> dict:
    """One rehearsal as the command runs it (no progress bar), with its figures and targets."""
    from controller.island_day.rehearse import RehearsalOptions, rehearse

    with tempfile.TemporaryDirectory(prefix="commonwatt-rehearsal-") as tmp:
        options = RehearsalOptions(hours=hours, speed=speed, households=households,
                                   out=Path(tmp), progress=False)
        began = time.perf_counter()
        result = asyncio.run(rehearse(options))
        total_s = time.perf_counter() - began
    s = result.summary
    ideal_s = s["simulated"]["hours"] * 3600.0 / speed
    cycle_ms = s["cycle_ms"]
    slot_ms = options.cycle_s * 1000.0
    return {
        "hours": hours, "speed": speed, "households": households,
        "cycle_s": options.cycle_s, "nominal_cycle_s": options.cycle_s * speed,
        "wall_s": s["wall_s"], "target_wall_s": round(ideal_s * WALL_SLACK, 1),
        "wall_met": s["wall_s"] <= ideal_s * WALL_SLACK,
        "total_s": round(total_s, 2),
        "cycles": s["cycles"], "cycles_missed": s["cycles_missed"],
        "target_cycles_missed": int(s["cycles"] * MISSED_SHARE),
        "missed_met": s["cycles_missed"] <= s["cycles"] * MISSED_SHARE,
        "cycle_median_ms": cycle_ms["median"], "cycle_p99_ms": cycle_ms["p99"],
        "cycle_max_ms": cycle_ms["max"], "target_cycle_p99_ms": slot_ms,
        "p99_met": cycle_ms["p99"] <= slot_ms,
        "islanded_hours": s["grid"]["islanded_hours"],
        "unserved_kwh": round(sum(s["simulator"]["unserved_kwh"].values()), 3),
        "device_errors": s["device_errors"],
    }


def run(quick: bool = False, sizes: tuple[int, ...] | None = None,
        rehearsal: bool | None = None) -> dict:
    """The island benchmark: each plan size's median beside its target, then the
    rehearsal (by default only when no ``sizes`` are given)."""
    do_rehearsal = sizes is None if rehearsal is None else rehearsal
    sizes = sizes or ((10, 30) if quick else tuple(TARGETS_S))
    rows = []
    for members in sizes:
        for reserve in (False, True):  # the plan's figures from before, and with reserve
            row = time_plan(members, runs=3, reserve=reserve)
            target = TARGETS_S.get(members)
            if target is not None:
                row["target_s"] = target
                row["met"] = row["median_s"] < target
            rows.append(row)
    report: dict = {"plan": rows}
    from bench.survival_bench import run as run_survival  # issue 21: the odds, beside LPs

    report["survival"] = run_survival(quick, sizes)
    if do_rehearsal:
        report["rehearsal"] = time_rehearsal(*(REHEARSAL_QUICK if quick else REHEARSAL))
    return report
