"""The island plan: a hand-computed day, tiers, invariants on random coops, forecasts, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.config import ConfigError
from controller.island.plan import Problem, battery_classes, plan_island
from dispatch.fleet import Fleet

# ---------------------------------------------------------------- the hand-built day
# Two members, a and b, four steps of 15 min (h = 0.25 h), one battery owned by a:
# capacity 2000 Wh, floor 200 Wh, 2000 W either way, round trip 0.81, so each leg
# is η = 0.9. Loads are constant: a 1200 W, b 800 W, the coop 2000 W = 500 Wh a
# step; each member's load is 25 % critical, 25 % essential, 50 % flexible, so
# per step the coop has 125 Wh critical, 125 Wh essential and 250 Wh flexible.
# PV shines in step 0 only: a 2000 W + b 800 W = 2800 W = 700 Wh.
H = 0.25
FLEET = Fleet(capacity_wh=[2000.0], soc_min_wh=[200.0], max_charge_w=[2000.0],
              max_discharge_w=[2000.0], efficiency=[0.81])
PV = np.array([[2000.0, 800.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
LOAD = np.array([[1200.0, 800.0]] * 4)


def hand_problem(stored_wh: float) -> Problem:
    return Problem.from_shares(PV, LOAD, [0.25, 0.25], [0.25, 0.25], FLEET, [stored_wh], [0],
                               member_ids=["a", "b"])


def test_hand_built_day_sheds_only_flexible_and_needs_the_computed_start() -> None:
    plan = plan_island(hand_problem(1000.0))
    # Step 0: surplus 700 - 500 = 200 Wh charges the battery: 1000 + 0.9 * 200 = 1180 Wh.
    # Steps 1-3 need 3 * 500 = 1500 Wh; the battery delivers (1180 - 200) * 0.9 = 882 Wh.
    # Shed 1500 - 882 = 618 Wh, all flexible (3 * 250 = 750 Wh of it are on offer).
    assert plan.stored_wh[1, 0] == pytest.approx(1180.0)
    assert plan.stored_wh[-1, 0] == pytest.approx(200.0)
    shed = plan.shed_by_tier_wh()
    assert shed["critical"] == pytest.approx(0.0, abs=1e-6)
    assert shed["essential"] == pytest.approx(0.0, abs=1e-6)
    assert shed["flexible"] == pytest.approx(618.0)
    assert plan.feasible == {"critical": True, "essential": True, "flexible": False}
    # Shed as late as possible: 250 Wh in steps 3 and 2, the remaining 118 Wh in step 1.
    assert plan.shed_wh[2].sum(axis=1) == pytest.approx([0.0, 118.0, 250.0, 250.0])
    # Split pro rata to flexible load, a 600 W : b 400 W -> 60 % : 40 % of 618 Wh.
    assert plan.shed_wh.sum(axis=(0, 1)) == pytest.approx([370.8, 247.2])
    # Required start for critical + essential (flexible may go, even at noon):
    # shed all 250 Wh flexible in step 0, so 700 - 250 = 450 Wh charge -> +405 Wh stored;
    # steps 1-3 need 3 * 250 = 750 Wh delivered = 750 / 0.9 = 833.33 Wh above the floor
    # at the end of step 0: e0 + 405 = 200 + 833.33 -> e0 = 628.33 Wh = 31.42 %.
    assert plan.required_start_wh["essential"][0] == pytest.approx(628.3333, abs=1e-3)
    assert plan.required_start_pct("essential")[0] == pytest.approx(31.41667, abs=1e-4)
    # Required start for every load: step 0 surplus 200 Wh -> +180 Wh; steps 1-3 need
    # 1500 / 0.9 = 1666.67 Wh above the floor: e0 + 180 = 1866.67 -> e0 = 1686.67 Wh.
    assert plan.required_start_wh["flexible"][0] == pytest.approx(1686.6667, abs=1e-3)
    assert plan.coop_required_pct("flexible") == pytest.approx(84.3333, abs=1e-3)
    assert plan.required_holds == {"essential": True, "flexible": True}
    # Autonomy, no PV: (1000 - 200) * 0.9 = 720 Wh at 2000 W -> 0.36 h; critical alone
    # (500 W) 1.44 h. With PV: step 0 stores 180 Wh (0.25 h), then 980 * 0.9 = 882 Wh
    # at 2000 W = 0.441 h: 0.691 h.
    assert plan.autonomy_h["load_no_pv"] == pytest.approx(0.36)
    assert plan.autonomy_h["critical_no_pv"] == pytest.approx(1.44)
    assert plan.autonomy_h["load_with_pv"] == pytest.approx(0.691)
    # The battery is empty (at its floor) in step 3 while 250 Wh flexible are shed. A kWh
    # more in it then (or a floor 1 kWh lower) gives 0.9 kWh in step 3: 0.9 kWh less
    # flexible shed, less the 0.4 % throughput cost on the 0.9 kWh discharged: 0.8964.
    (empty,) = [b for b in plan.binding if b.limit == "empty"]
    assert (empty.battery, empty.start, empty.end) == (0, 3, 4)
    assert empty.energy_wh == pytest.approx(250.0)
    assert empty.saves == "flexible" and empty.per_kwh == pytest.approx(0.8964, abs=1e-3)
    assert {b.limit for b in plan.binding} == {"empty", "floor"}
    assert plan.battery_w[0, 0] == pytest.approx(-800.0)  # charging in step 0


def test_critical_holds_while_essential_and_flexible_are_shed() -> None:
    plan = plan_island(hand_problem(200.0))  # starts at its floor
    # Critical in steps 1-3 is 3 * 125 = 375 Wh, i.e. 375 / 0.9 = 416.67 Wh stored,
    # i.e. 416.67 / 0.9 = 462.96 Wh charged in step 0. Step 0 has 700 Wh: serve its
    # critical 125, charge 462.96, leaves 112.04 of the 125 Wh essential (shed 12.96)
    # and none of the 250 Wh flexible. Steps 1-3: critical only (essential 375 and
    # flexible 750 shed). Essential shed 12.96 + 375 = 387.96 Wh, flexible 1000 Wh.
    shed = plan.shed_by_tier_wh()
    assert shed["critical"] == pytest.approx(0.0, abs=1e-6)
    assert shed["essential"] == pytest.approx(387.963, abs=1e-3)
    assert shed["flexible"] == pytest.approx(1000.0)
    assert plan.feasible == {"critical": True, "essential": False, "flexible": False}
    assert plan.battery_w[0, 0] == pytest.approx(-462.963 / H, abs=1e-2)
    assert plan.autonomy_h["load_no_pv"] == 0.0
    # At the floor in step 3, 1 kWh more stored means 1 / 0.9 kWh less to charge in
    # step 0, which then serves 1.11 kWh more essential load (worth more than the
    # 0.9 kWh it would give in step 3).
    (empty,) = [b for b in plan.binding if b.limit == "empty"]
    assert empty.saves == "essential" and empty.per_kwh == pytest.approx(1.111, abs=2e-3)


def test_a_battery_below_its_floor_keeps_the_plan_feasible() -> None:
    plan = plan_island(hand_problem(50.0))
    assert plan.stored_wh.min() >= 50.0 - 1e-6
    assert plan.feasible["flexible"] is False


def test_identical_batteries_merge_into_classes() -> None:
    fleet = Fleet(capacity_wh=[5e3, 1e4, 5e3], soc_min_wh=[250.0, 500.0, 250.0],
                  max_charge_w=[3e3] * 3, max_discharge_w=[3e3] * 3, efficiency=[0.9] * 3)
    merged, member_of, count = battery_classes(fleet)
    assert merged.size == 2 and member_of[0] == member_of[2] != member_of[1]
    assert merged.capacity_wh[member_of[0]] == 1e4 and count[member_of[0]] == 2
    assert merged.max_charge_w[member_of[0]] == 6e3


# ---------------------------------------------------------------- invariants
@st.composite
def problems(draw: st.DrawFn) -> Problem:
    n, b, t = draw(st.integers(1, 4)), draw(st.integers(0, 3)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cap = rng.choice([1000.0, 2500.0, 5000.0], size=b)
    fleet = Fleet(capacity_wh=cap, soc_min_wh=cap * rng.choice([0.0, 0.1], size=b),
                  max_charge_w=rng.uniform(200, 3000, size=b),
                  max_discharge_w=rng.uniform(200, 3000, size=b),
                  efficiency=rng.choice([0.8, 0.92, 1.0], size=b))
    pv = rng.uniform(0, 3000, size=(t, n)) * (rng.random((t, n)) < 0.5)
    load = rng.uniform(50, 2500, size=(t, n))
    crit = rng.uniform(0, 0.5, size=n)
    return Problem.from_shares(pv, load, crit, rng.uniform(0, 0.5, size=n), fleet,
                               rng.uniform(0, 1, size=b) * cap, rng.integers(0, n, size=b),
                               member_ids=[f"m{i}" for i in range(n)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_balance_holds_every_step_and_batteries_stay_in_bounds(problem: Problem) -> None:
    plan = plan_island(problem)
    h, fleet = problem.hours, problem.fleet
    load = problem.tier_load_w.sum(axis=(0, 2)) * h
    served = load - plan.shed_wh.sum(axis=(0, 2))
    supply = (problem.pv_w.sum(axis=1) * h - plan.curtailed_wh.sum(axis=1)
              + plan.battery_w.sum(axis=1) * h)
    assert served == pytest.approx(supply, abs=1e-2)
    assert (plan.shed_wh <= problem.tier_load_w * h + 1e-6).all()
    assert (plan.curtailed_wh <= problem.pv_w * h + 1e-6).all()
    assert plan.shed_wh.min() >= 0 and plan.curtailed_wh.min() >= 0
    assert (plan.stored_wh >= problem.lower_wh - 1e-6).all()
    assert (plan.stored_wh <= fleet.capacity_wh + 1e-6).all()
    assert (plan.battery_w <= fleet.max_discharge_w + 1e-3).all()
    assert (plan.battery_w >= -fleet.max_charge_w - 1e-3).all()
    # Starting at the required SoC, critical and essential hold (when they can at all).
    if plan.required_holds["essential"]:
        again = plan_island(Problem(problem.pv_w, problem.tier_load_w, fleet,
                                    plan.required_start_wh["essential"],
                                    problem.battery_member, problem.step_s))
        assert again.shed_wh[:2].sum() <= 0.5


# ---------------------------------------------------------------- forecasts
SITE = {"latitude": 45.76, "longitude": 4.84, "tz": "Europe/Paris",
        "arrays": [{"member": "a", "kwp": 5.0}, {"member": "b", "kwp": 2.0, "azimuth": 90},
                   {"member": "a", "kwp": 1.0, "tilt": 10, "azimuth": 270}]}


def test_pv_scenarios_order_and_night() -> None:
    from controller.island.forecast import CLOUDY_FACTOR, pv_forecast_w
    from controller.island.site import SiteConfig

    site = SiteConfig.model_validate(SITE)
    start = datetime(2026, 6, 21, tzinfo=site.tzinfo)
    day = {s: pv_forecast_w(site, ["a", "b", "c"], start, 96, s)
           for s in ("clear", "typical", "cloudy")}
    assert day["clear"].shape == (96, 3)
    kwh = {s: v.sum(axis=0) / 4000 for s, v in day.items()}
    assert (kwh["clear"][:2] > kwh["typical"][:2]).all() and kwh["clear"][2] == 0
    assert kwh["cloudy"] == pytest.approx(kwh["typical"] * CLOUDY_FACTOR)
    assert 4.0 < kwh["clear"][0] / 6.0 < 8.0  # kWh per kWp on a clear solstice at 46° N
    assert day["clear"][:16].max() == 0.0  # midnight to 04:00 local


def test_load_forecast_prefers_ledger_history(tmp_path: Path) -> None:
    from controller.island.forecast import load_forecast_w, read_history
    from controller.ledger import LedgerReader
    from dispatch import LEDGER_FIELDS
    from tests.ledger_helpers import write_ledger

    t0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()

    def hour(k: int) -> dict[str, np.ndarray]:
        flows = {f: np.zeros(1) for f in LEDGER_FIELDS}
        flows["from_grid"] = np.array([100.0 + 10 * (k % 24)])  # Wh in hour of day k % 24
        return flows

    write_ledger(tmp_path / "l.sqlite", ("a",), 3600, t0, 3600, (hour(k) for k in range(240)))
    start = datetime(2026, 3, 11, tzinfo=UTC)
    history = read_history(LedgerReader(tmp_path / "l.sqlite"), ["a", "b"], start, UTC)
    load, used = load_forecast_w(start, 96, UTC, np.array([3500.0, 3500.0]), history)
    assert used.tolist() == [True, False]
    assert load[::4, 0] == pytest.approx(100.0 + 10 * np.arange(24))
    assert 3500 / 365 * 0.8 < load[:, 1].sum() / 4000 < 3500 / 365 * 1.2  # H25, kWh/day


# ---------------------------------------------------------------- config and CLI
CONFIG = """
name = "Rue Verte"
[storage]
ledger = "{ledger}"

[[members]]
id = "h01"
name = "Ada"
devices = [
  {{ kind = "meter", host = "127.0.0.1", port = 5020, unit = 2 }},
  {{ kind = "battery", host = "127.0.0.1", port = 5020, unit = 3, max_power_w = 3000 }},
]
[[members]]
id = "h02"
name = "Bram"
devices = [{{ kind = "meter", host = "127.0.0.1", port = 5021, unit = 2 }}]

[site]
latitude = 45.76
longitude = 4.84
tz = "+01:00"

[[site.arrays]]
member = "h01"
kwp = 4.0

[[site.arrays]]
member = "h02"
kwp = 2.0
azimuth = 135

[island]
annual_kwh = 3000

[[island.members]]
member = "h02"
critical_share = 0.3

[[island.batteries]]
member = "h01"
capacity_kwh = 10
soc_pct = 40
"""


def write_config(tmp_path: Path, change: tuple[str, str] = ("", "")) -> Path:
    path = tmp_path / "coop.toml"
    path.write_text(CONFIG.format(ledger=tmp_path / "none.sqlite").replace(*change))
    return path


@pytest.mark.parametrize(("change", "expected"), [
    (("kwp = 4.0", "kwp = 4.0\ntilt = 120"), "site.arrays[0].tilt = 120"),
    (('member = "h02"\nkwp', 'member = "h99"\nkwp'), "site.arrays[1].member = 'h99'"),
    (('tz = "+01:00"', 'tz = "Mars/Olympus"'), "site.tz = 'Mars/Olympus'"),
    (("annual_kwh = 3000", "anual_kwh = 3000"), "island.anual_kwh: unknown key"),
    (("critical_share = 0.3", "critical_share = 0.8"), "island.members[0]: critical_share"),
    (("soc_pct = 40", "soc_pct = 140"), "island.batteries[0].soc_pct = 140"),
    ((", max_power_w = 3000", ""), "island.batteries[0].max_charge_w: required"),
    (("[site]\nlatitude = 45.76", "[sight]\nlatitude = 45.76"), "site.latitude: required key"),
])
def test_bad_island_config_names_the_field(tmp_path: Path, change: tuple[str, str],
                                           expected: str) -> None:
    from controller.island.site import load_island_config, resolve

    path = write_config(tmp_path, change)
    with pytest.raises(ConfigError) as err:
        resolve(*load_island_config(path), str(path), {})  # {}: no battery answered
    assert expected in str(err.value)
    assert str(err.value).startswith(str(path))


def test_config_without_site_says_what_to_add(tmp_path: Path) -> None:
    from controller.island.site import load_island_config

    path = tmp_path / "coop.toml"
    path.write_text(CONFIG.format(ledger="x").split("[site]")[0])
    with pytest.raises(ConfigError, match=r"coop.toml: site: required table is missing"):
        load_island_config(path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_plans_a_winter_night_in_text_and_json(tmp_path: Path) -> None:
    path = str(write_config(tmp_path))
    out = run_cli("island", "plan", path, "--start", "2026-12-21T18:00", "--scenario",
                  "cloudy")
    assert out.returncode == 0, out.stderr
    for text in ("Island plan for Rue Verte: from 2026-12-21 18:00 (+01:00)", "critical",
                 "Required starting SoC", "h01", "Autonomy from now", "Shed schedule",
                 "Binding limits", "no ledger at"):
        assert text in out.stdout
    out = run_cli("island", "plan", path, "--start", "2026-06-21T06:00+02:00", "--hours", "12",
                  "--soc", "90", "--json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["start"] == "2026-06-21T05:00:00+01:00" and plan["steps"] == 48
    assert set(plan["feasible"]) == {"critical", "essential", "flexible"}
    assert plan["batteries"][0]["soc_now_pct"] == 90.0
    assert len(plan["batteries"][0]["target_w"]) == 48
    assert plan["required_start"]["essential"]["batteries_pct"].keys() == {"h01"}
    assert plan["forecast"]["pv_kwh"] > 0


@pytest.mark.parametrize(("args", "expected"), [
    (("--start", "yesterday"), "--start = 'yesterday'"),
    (("--start", "2026-06-21T06:00", "--hours", "0"), "--hours"),
])
def test_cli_bad_input_exits_2_naming_the_field(tmp_path: Path, args: tuple[str, ...],
                                                expected: str) -> None:
    out = run_cli("island", "plan", str(write_config(tmp_path)), *args)
    assert out.returncode == 2 and expected in out.stderr


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, ("kwp = 4.0", "kwp = -4.0"))
    out = run_cli("island", "plan", str(path), "--start", "2026-06-21T06:00")
    assert out.returncode == 2 and "site.arrays[0].kwp = -4.0" in out.stderr
