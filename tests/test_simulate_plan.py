"""``commonwatt simulate --dispatch plan``: the rolling plan beside greedy and the LP bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.planning.offline import compare
from controller.simulate import load_study
from dispatch import Fleet, FleetState
from dispatch.lp import lp_copper_plate_import
from dispatch.rolling import history_forecast, perfect_forecast, run_rolling
from dispatch.series import run_series
from simulators.profiles import cloudy_day, load_w_per_mwh_year, pv_w_per_kwp, sunny_day

FLEET = (
    "member,battery_wh,battery_max_charge_w,battery_max_discharge_w,soc_start_pct,soc_min_pct,"
    "efficiency,offered\n"
) + """a,10000,3000,3000,50,10,0.9,1
b,0,0,0,0,0,1,0
c,5000,2500,2500,20,10,0.81,0
d,13500,5000,5000,10,5,0.9,1
e,0,0,0,0,0,1,0
"""


def series(days: int = 4) -> str:
    """Hourly rows; an evening peak, and a cloudy third day."""
    lines = ["timestamp,member,pv_w,load_w"]
    for t in range(24 * days):
        stamp = f"2026-06-{21 + t // 24}T{t % 24:02d}:00:00Z"
        cloud = 0.3 if t // 24 == 2 else 1.0
        sun = cloud * max(0.0, float(np.sin((t % 24 - 6) / 12 * np.pi)))
        peak = 2.5 if 18 <= t % 24 <= 21 else 1.0
        lines += [f"{stamp},a,{8000 * sun:.1f},{400 * peak}", f"{stamp},b,{6000 * sun:.1f},600",
                  f"{stamp},c,{2000 * sun:.1f},{500 * peak}", f"{stamp},d,0,{700 * peak}",
                  f"{stamp},e,0,{900 * peak}"]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    fleet, data = tmp_path / "fleet.csv", tmp_path / "series.csv"
    fleet.write_text(FLEET)
    data.write_text(series())
    return fleet, data


def bench_like_fleet() -> tuple[Fleet, np.ndarray, np.ndarray, np.ndarray]:
    """Six households, a sunny then a cloudy day (hourly), as bench.dispatch_bench draws them:
    one where greedy imports 1.85 times the bound (measured)."""
    days = [sunny_day(), cloudy_day()]
    pv_day = np.concatenate([pv_w_per_kwp(d) for d in days]).reshape(-1, 60).mean(axis=1)
    load_day = np.concatenate([load_w_per_mwh_year(d) for d in days]).reshape(-1, 60).mean(1)
    n, rng = 6, np.random.default_rng(1)
    pv = pv_day[:, None] * rng.choice([0.0, 3.0, 5.0, 8.0], n)[None, :]
    load = load_day[:, None] * rng.uniform(3.0, 6.0, n)[None, :]
    cap = np.where(rng.random(n) < 0.6, rng.choice([5000.0, 10000.0, 13500.0], n), 0.0)
    fleet = Fleet(cap, cap * 0.05, np.full(n, 3300.0), np.full(n, 3300.0), np.full(n, 0.9),
                  offered=np.ones(n, bool))
    return fleet, cap * 0.3, pv, load


def test_plan_with_perfect_forecast_reaches_the_bound_where_greedy_does_not() -> None:
    fleet, start, pv, load = bench_like_fleet()
    bound = lp_copper_plate_import(fleet, start, pv, load, 3600.0)
    greedy = run_series(fleet, FleetState.start(start), pv, load, 3600.0).coop
    plan, stats = run_rolling(fleet, FleetState.start(start), pv, load, 3600.0,
                              perfect_forecast(pv, load), horizon_steps=24, hold=True)
    assert greedy["from_grid"] > 1.5 * bound
    assert bound - 1e-6 <= plan.coop["from_grid"] <= 1.001 * bound  # measured 1.0000
    assert plan.coop["liberated"] > greedy["liberated"]
    assert stats.failures == 0 and stats.solves == len(pv)


def test_planned_series_conserves_energy_per_member() -> None:
    fleet, start, pv, load = bench_like_fleet()
    result, _ = run_rolling(fleet, FleetState.start(start), pv, load, 3600.0,
                            history_forecast(pv, load, 3600.0), horizon_steps=24)
    t = result.totals
    np.testing.assert_allclose(t["load"], load.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        t["load"], t["own_pv_used"] + t["from_battery"] + t["from_peers"]
        + t["from_coop_battery"] + t["from_grid"] + t["shed"], atol=1e-6)
    np.testing.assert_allclose(
        t["pv"], t["own_pv_used"] + t["to_battery"] + t["to_peers"] + t["to_coop_battery"]
        + t["to_grid"] + t["curtailed"], atol=1e-6)
    np.testing.assert_allclose(
        t["battery_end"] - t["battery_start"],
        t["to_battery"] + t["battery_from_coop"] + t["grid_to_battery"] - t["from_battery"]
        - t["battery_to_coop"] - t["losses"], atol=1e-6)
    assert (t["battery_end"] >= fleet.soc_min_wh - 1e-9).all()


def test_file_study_plan_never_imports_more_than_greedy(files) -> None:
    out = compare(load_study(*files), forecast="perfect", replan_min=60)
    assert out["bound_import_kwh"] - 1e-6 <= out["plan"]["import_kwh"]
    assert out["plan"]["import_kwh"] <= out["greedy"]["import_kwh"] + 1e-6
    assert out["plan"]["ratio_to_bound"] <= 1.01  # measured 1.0000 (greedy 1.0166)
    assert out["plan_stats"]["failures"] == 0


def test_cli_prints_both_dispatches_and_the_bound(files) -> None:
    args = [sys.executable, "-m", "controller.cli", "simulate", "--fleet", str(files[0]),
            "--series", str(files[1]), "--dispatch", "plan", "--forecast", "perfect",
            "--replan-min", "60"]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "LP bound" in text and "greedy" in text and "rolling plan: perfect forecast" in text
    report = json.loads(subprocess.run([*args, "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    c = report["comparison"]
    assert c["plan"]["import_kwh"] == report["coop"]["from_grid"]
    assert c["plan"]["import_kwh"] < c["greedy"]["import_kwh"]
    assert c["plan"]["ratio_to_bound"] <= c["greedy"]["ratio_to_bound"]
    island = subprocess.run([*args, "--island"], capture_output=True, text=True)
    assert island.returncode == 2 and "island plan" in island.stderr
