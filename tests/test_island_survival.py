"""Survival odds of an island day: the batch dispatch against the LP, robustness, weak points."""

from __future__ import annotations

import numpy as np
import pytest

from controller.island.plan import Problem, plan_island
from controller.island_day.survival import Components, Weather, survival_odds
from controller.island_day.survival_sim import merge, simulate
from dispatch.fleet import Fleet

STEPS = 96  # a day of 15-minute steps
HOURS = np.arange(STEPS) / 4.0


def sun(peak_w: float) -> np.ndarray:
    """A clear day's PV: a sine from 06:00 to 18:00."""
    return peak_w * np.clip(np.sin(np.pi * (HOURS - 6.0) / 12.0), 0.0, None)


def day_problem(capacity_wh: list[float], stored_pct: float, load_w: float,
                pv_peak_w: float, critical_share: float = 0.4) -> Problem:
    """Two members with constant load and PV on member 0; one battery per capacity, on
    members 0, 1, 0, 1…; floors 10 %, 3 kW each way, round trip 0.9."""
    b = len(capacity_wh)
    cap = np.array(capacity_wh)
    fleet = Fleet(capacity_wh=cap, soc_min_wh=0.1 * cap, max_charge_w=np.full(b, 3000.0),
                  max_discharge_w=np.full(b, 3000.0), efficiency=np.full(b, 0.9))
    pv = np.column_stack([sun(pv_peak_w), np.zeros(STEPS)])
    load = np.full((STEPS, 2), load_w / 2)
    return Problem.from_shares(pv, load, [critical_share] * 2, [0.3] * 2, fleet,
                               cap * stored_pct / 100.0, np.arange(b) % 2,
                               member_ids=["a", "b"])


def test_the_batch_dispatch_holds_the_tiers_the_lp_holds() -> None:
    # One battery: on this day the LP serves critical and essential and sheds flexible;
    # the batch dispatch, greedy in time, holds the same tiers here.
    problem = day_problem([20000.0], 50.0, 1000.0, 2000.0)
    plan = plan_island(problem)
    assert plan.feasible == {"critical": True, "essential": True, "flexible": False}
    fleet, lower = problem.fleet, problem.lower_wh
    storage = merge(fleet.capacity_wh - lower, problem.start_wh - lower,
                    fleet.max_charge_w / 4, fleet.max_discharge_w / 4, fleet.leg_efficiency,
                    np.array([True]), np.array([[True]]))
    out = simulate((problem.pv_w.sum(axis=1) / 4)[None, :], problem.tier_load_w.sum(axis=2) / 4,
                   storage)
    assert out.shed_wh[0, :2] == pytest.approx([0.0, 0.0], abs=1e-3)
    # Energy: on this day it sheds exactly the LP's flexible energy (measured: equal to
    # 1e-9 Wh); on harder days its greed may shed more (see survival_sim's docstring).
    lp_shed = plan.shed_by_tier_wh()["flexible"]
    assert out.shed_wh[0, 2] == pytest.approx(lp_shed, rel=1e-6)


def test_survives_p50_but_not_p10_pv_is_not_robust() -> None:
    # 30 days whose clear-sky index runs from 0.1 to 1.0: on the P50 day the sun refills
    # the battery for the night's critical load, on the P10 day it does not.
    problem = day_problem([10000.0, 10000.0], 30.0, 1000.0, 3000.0, critical_share=0.5)
    days = np.repeat(np.linspace(0.1, 1.0, 30)[:, None], STEPS, axis=1)
    weather = Weather(days, "test days")
    odds = survival_odds(problem, weather, Components(np.array([True, True]), 1.0, 1.0))
    assert odds.held_on["p50"]["critical"]
    assert not odds.held_on["p10"]["critical"]
    assert not odds.robust
    assert "the critical tier does not hold on the P10 PV day" in odds.reasons()
    # With every component up, P(critical) is the share of days that hold.
    assert 0.0 < odds.p_held["critical"] < 1.0


def test_losing_the_grid_formers_partner_battery_is_named() -> None:
    # Two grid-formers (either can form the island) and their partner battery b#2 carry
    # the night: without the partner the critical tier is shed, so P(critical) falls to
    # about P(partner up) = 0.97 < 0.99, and the plan names it first.
    problem = day_problem([6000.0, 6000.0, 8000.0], 90.0, 1000.0, 0.0, critical_share=0.6)
    problem = Problem(problem.pv_w, problem.tier_load_w, problem.fleet, problem.stored_wh,
                      np.array([0, 1, 1]), member_ids=["a", "b"])
    grid_forming = np.array([True, True, False])
    days = np.ones((30, STEPS))
    odds = survival_odds(problem, Weather(days, "test"), Components(grid_forming))
    assert odds.p_held["critical"] < 0.99
    assert not odds.robust
    worst = odds.weak_points[0]
    assert worst["component"] == "battery b#2"
    assert worst["critical_fails_share"] == pytest.approx(1.0)
    assert worst["costs_p"] == pytest.approx(0.03 * 0.97 ** 2, rel=1e-6)
    # Bigger grid-formers cover the partner's loss: robust.
    roomy = day_problem([12000.0, 12000.0, 8000.0], 90.0, 1000.0, 0.0, critical_share=0.6)
    roomy = Problem(roomy.pv_w, roomy.tier_load_w, roomy.fleet, roomy.stored_wh,
                    np.array([0, 1, 1]), member_ids=["a", "b"])
    odds = survival_odds(roomy, Weather(days, "test"), Components(grid_forming))
    assert odds.p_held["critical"] >= 0.99
    assert odds.robust and not odds.reasons()


def test_no_grid_former_up_serves_nothing_and_curves_fall_with_duration() -> None:
    problem = day_problem([10000.0], 80.0, 800.0, 3000.0)
    days = np.ones((30, STEPS))
    odds = survival_odds(problem, Weather(days, "test"), Components(np.array([True]), 0.97,
                                                                     1.0))
    # One grid-former: P(critical) can be no more than its availability.
    assert odds.p_held["critical"] <= 0.97 + 1e-9
    assert [w["kind"] for w in odds.weak_points] == ["grid-former"]
    curve = odds.by_duration
    assert curve.shape == (48,) and odds.by_start_hour.shape == (24, 48)
    assert (np.diff(curve) <= 1e-12).all()  # surviving longer is never likelier
    assert curve[0] == pytest.approx(0.97)


def test_synthetic_weather_spreads_around_the_clear_sky() -> None:
    from datetime import datetime

    from controller.island.site import SiteConfig
    from controller.island_day.weather import synthetic_weather

    site = SiteConfig(latitude=45.76, longitude=4.84, tz="Europe/Paris")
    weather = synthetic_weather(site, datetime(2026, 6, 21, tzinfo=site.tzinfo), STEPS)
    assert weather.index.shape == (30, STEPS)
    assert weather.index.min() >= 0.0 and weather.index.max() <= 1.3
    energy = {q: float(v.sum()) for q, v in weather.quantiles.items()}
    assert energy["p10"] < energy["p50"] < energy["p90"]
    assert weather.index[:, :16].max() == 0.0  # no sun before 04:00 local


def test_bad_weather_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="Weather.index"):
        Weather(np.full((3, 4), -1.0), "x")
    problem = day_problem([10000.0], 80.0, 800.0, 3000.0)
    with pytest.raises(ValueError, match="weather.index"):
        survival_odds(problem, Weather(np.ones((3, 4)), "x"), Components(np.array([True])))


def test_cli_plan_shows_the_odds_and_the_reserve_in_text_and_json(tmp_path) -> None:
    import json

    from tests.test_island_plan import run_cli, write_config

    path = write_config(tmp_path)
    text = path.read_text().replace("max_power_w = 3000 }", "max_power_w = 3000, "
                                    "grid_forming = true }")
    # Ada's medical device (private, #21): 100 W within her critical tier, served first.
    text = text.replace('[storage]', '[mqtt]\n[storage]').replace(
        'grid_forming = true },', 'grid_forming = true },\n  { protocol = "mqtt", '
        'kind = "load", family = "shelly-plug", topic = "p1", tier = "critical", '
        'medical = true, rated_w = 100 },')
    assert "medical = true" in text
    path.write_text(text.replace("annual_kwh = 3000", "annual_kwh = 3000\n"
                                 "battery_availability = 0.95"))
    out = run_cli("island", "plan", str(path), "--start", "2026-06-21T06:00", "--soc", "90",
                  "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    odds = plan["survival"]
    # One grid-former, up with p = 0.95: the island is no likelier than that.
    assert odds["battery_availability"] == 0.95
    assert 0.9 < odds["p_held"]["critical"] <= 0.95 + 1e-3  # + sampling noise of 2+ down
    assert not odds["robust"] and "P(critical held)" in odds["not_robust_because"][0]
    assert odds["weak_points"][0]["component"] == "grid-former h01"
    assert odds["weather_days"] == 30 and odds["weather_source"].startswith("synthetic")
    assert len(odds["critical_by_duration_h"]) == 48
    assert len(odds["critical_by_start_hour"]) == 24
    assert plan["reserve"]["reserve_load_pct"] == 10.0
    black = plan["black_start"]
    assert black["reserve_pct"] == 10.0 and "h01" in black["end_soc_pct"]
    assert set(plan["verdict"]) == {"critical", "essential", "flexible"}
    # The medical load, with one grid-former up 95 % of the time: below 0.99, warned.
    assert odds["p_held"]["medical"] < 0.99
    assert odds["medical_warning"].startswith("WARNING: medical loads held with P")
    # The report carries the odds the plan gave before the day.
    from controller.island_day.trust import odds_html, odds_summary

    summary = odds_summary(plan)
    assert summary is not None and summary["weak_points"][0]["component"] == "grid-former h01"
    html = odds_html(summary)
    assert "P(critical held) 0.9" in html and "NOT robust" in html
    assert odds_summary({"survival": {"p_held": {}}, "reserve": {}}) is None
    out = run_cli("island", "plan", str(path), "--start", "2026-06-21T06:00", "--soc", "90")
    assert out.returncode == 0, out.stderr
    for line in ("Survival odds (30 weather days", "NOT ROBUST", "grid-former h01",
                 "Operating reserve (10 % of load + 25 % of PV", "Black-start reserve (10 %",
                 "WARNING: medical loads held with P"):
        assert line in out.stdout


def test_medical_loads_are_served_first_within_critical_and_warned_about() -> None:
    # The P50-but-not-P10 day: critical holds on 70 % of the days. 100 W of member a's
    # 250 W critical load is medical: served first, it holds on more days (and never fewer).
    problem = day_problem([10000.0, 10000.0], 30.0, 1000.0, 3000.0, critical_share=0.5)
    days = np.repeat(np.linspace(0.1, 1.0, 30)[:, None], STEPS, axis=1)
    comp = Components(np.array([True, True]), 1.0, 1.0)
    plain = survival_odds(problem, Weather(days, "t"), comp)
    odds = survival_odds(problem, Weather(days, "t"), comp,
                         medical_w=np.array([100.0, 0.0]))
    assert "medical" not in plain.p_held
    assert odds.p_held["critical"] == pytest.approx(plain.p_held["critical"], abs=0.05)
    assert odds.p_held["medical"] > odds.p_held["critical"]
    if odds.p_held["medical"] < 0.99:
        assert odds.medical_warning and "medical loads held with P" in odds.medical_warning
    # With a single grid-former up 97 % of the time, medical odds are below 0.99: warned.
    one = survival_odds(problem, Weather(np.ones((30, STEPS)), "t"),
                        Components(np.array([True, False])), medical_w=np.array([100.0, 0.0]))
    assert one.p_held["medical"] < 0.99 and one.medical_warning is not None
    with pytest.raises(ValueError, match="medical_w"):
        survival_odds(problem, Weather(days, "t"), comp, medical_w=np.array([-1.0, 0.0]))
