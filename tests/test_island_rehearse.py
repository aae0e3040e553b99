"""The island rehearsal: the simulated island's physics, and the whole rehearsal over Modbus.

The acceptance run is a hard evening (6 simulated hours from 16:00 at 4000x, four
households): the afternoon goes cloudy (PV x 0.2 from 16:00 to 19:00), which the plan
does not know, and the second battery stops answering at 18:00.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.app import create_app
from controller.accounts.figures import SERVED_FIELDS, energy_wh, kwh
from controller.config import parse_config
from controller.governance import AuditLog
from controller.island.reasons import Reason
from controller.island_day.rehearse import Rehearsal, RehearsalOptions, rehearse
from controller.island_day.rehearse_report import tier_order_violations, tier_ranks
from controller.island_day.report import member_labels
from controller.island_day.report_inputs import load_report_config
from controller.ledger import LedgerReader
from controller.ledger.schema import MEMBER_COLUMNS
from dispatch.rounding import LEDGER_FIELDS, PAIRED, PARTS
from dispatch.sharing import drop_by_tier
from simulators.household import HouseholdPhysics, HouseholdSpec, demo_households
from tests.browser import serve

ROOT = Path(__file__).resolve().parents[1]
NIGHT = 2 * 3600.0  # 02:00 on the simulated clock: no PV


def _coop(former_w: float = 5000.0) -> HouseholdPhysics:
    specs = [
        HouseholdSpec("h01", "former", 0.0, 3000, battery_wh=10_000, battery_max_w=former_w,
                      soc_start_pct=50, grid_forming=True),
        HouseholdSpec("h02", "critical", 0.0, 3000, tier="critical"),
        HouseholdSpec("h03", "essential", 0.0, 3000),
    ]
    return HouseholdPhysics(specs)


def test_drop_by_tier_sheds_the_least_critical_first_and_pro_rata_within_a_tier() -> None:
    load = np.array([100.0, 200.0, 300.0])
    rank = np.array([0, 1, 1])
    assert np.allclose(drop_by_tier(load, 250.0, rank), [0.0, 100.0, 150.0])
    assert np.allclose(drop_by_tier(load, 550.0, rank), [50.0, 200.0, 300.0])
    assert np.allclose(drop_by_tier(load, 900.0, rank), load)  # never more than drawn


def test_islanded_the_grid_former_covers_the_imbalance_and_the_meters_balance() -> None:
    p = _coop()
    p.grid_connected = False
    p.advance_to(NIGHT)
    p.advance_to(NIGHT + 60)
    load = p.load_w(NIGHT + 60)
    assert p.battery_w[0] == pytest.approx(load.sum())  # the former is the slack
    assert p.unserved_w.sum() == 0.0
    assert p.meter_w(NIGHT + 60).sum() == pytest.approx(0.0, abs=1e-9)  # no utility


def test_beyond_the_former_load_is_dropped_by_tier_and_no_battery_crosses_its_floor() -> None:
    p = _coop(former_w=400.0)
    p.grid_connected = False
    t = NIGHT
    asked = np.zeros(3)
    for k in range(2000):  # 2000 min islanded at night: the battery runs down to its floor
        p.advance_to(t)
        load = p.load_w(t)
        asked += load / 60.0 if k else 0.0
        if p.unserved_w.sum() > 0 and p.stored_wh[0] > p.soc_min_wh[0] + 1.0:
            # short of power, not energy: essential load goes first, the critical house is whole
            assert p.unserved_w[1] == 0.0 or p.unserved_w[2] == pytest.approx(load[2])
            assert p.battery_w[0] == pytest.approx(400.0)
        assert p.stored_wh[0] >= p.soc_min_wh[0] - 1e-6
        t += 60.0
    assert p.soc_pct()[0] == pytest.approx(5.0, abs=0.01)
    assert p.unserved_wh.sum() > 0 and p.unserved_wh[2] > p.unserved_wh[1]
    # every Wh of load was either drawn or recorded as unserved
    assert p.served_wh + p.unserved_wh == pytest.approx(asked)
    assert p.meter_w(t - 60).sum() == pytest.approx(0.0, abs=1e-6)


def test_clouds_scale_pv_in_their_window_only_and_on_grid_meters_are_unchanged() -> None:
    p = HouseholdPhysics([HouseholdSpec("h01", "a", 5.0, 3000)])
    noon = 12 * 3600.0
    clear = p.pv_available_w(noon)[0]
    p.add_cloud(noon - 60, noon + 60, 0.3)
    assert p.pv_available_w(noon)[0] == pytest.approx(0.3 * clear)
    assert p.pv_available_w(noon + 120)[0] == pytest.approx(p.pv_clear_w(noon + 120)[0])
    p.advance_to(noon)
    assert p.meter_w(noon)[0] == p.load_w(noon)[0] - p.pv_w(noon)[0] - p.battery_w[0]
    with pytest.raises(ValueError):
        p.add_cloud(noon, noon - 1, 0.5)


# ------------------------------------------------------------------ the whole rehearsal
@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    # One run, no retry: device back-off runs on the controller's clock (DeviceClock), so
    # a Modbus hiccup at 2000x costs the grid-former a cycle or two, not its confirmation.
    out = tmp_path_factory.mktemp("rehearsal")
    options = RehearsalOptions(hours=6, speed=2000, start="16:00", out=out, households=4,
                               cloud=(16.0, 19.0, 0.2), dropout_hour=18.0, progress=False)
    return asyncio.run(rehearse(options))


def test_the_rehearsal_islands_and_returns_and_writes_its_report(rehearsal: Rehearsal) -> None:
    out = rehearsal.out
    for name in ("report.html", "summary.json", "rehearsal.json", "plan.json", "coop.toml"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.png"))
    reader = LedgerReader(rehearsal.ledger)
    assert reader.islanded_seconds() > 3 * 3600
    steps = [(t["from"], t["to"]) for t in reader.grid_transitions()]
    assert ("GOING_OFF_GRID", "OFF_GRID") in steps and steps[-1] == ("RETURNING", "ON_GRID")
    assert any("lapsed" in t["cause"] for t in reader.grid_transitions())
    # commanded over HTTP with the controller's local secret, not from a place (#18); the
    # secret went with the controller, and the plan was written owner-only
    command = next(r for r in AuditLog.beside(rehearsal.ledger).rows()
                   if r["action"] == "island.command")
    assert (command["who"], command["role"], command["outcome"]) == (
        "this host (local secret)", "local", "accepted")
    assert not (rehearsal.ledger.parent / "local.secret").exists()
    assert (out / "plan.json").stat().st_mode & 0o777 == 0o600
    s = json.loads((out / "rehearsal.json").read_text())
    assert s["cycles"] > 50 and s["cycle_ms"]["p99"] > 0 and s["wall_s"] > 0
    assert [e["kind"] for e in s["events"]] == ["cloud", "battery_dropout"]
    assert s["device_errors"].get("h03/battery", 0) > 0, "the second battery stopped answering"
    # islanded ~6 h, re-planned every 15 simulated minutes from fresh readings
    assert s["plan_followed"]["plans_made"] >= 12, s["plan_followed"]


def test_the_ledger_conserves_energy_per_member_and_interval(rehearsal: Rehearsal) -> None:
    reader = LedgerReader(rehearsal.ledger)
    col = {f: MEMBER_COLUMNS.index(f) for f in MEMBER_COLUMNS}
    by_interval: dict[int, list[list[int]]] = {}
    for ts, _member, *values in reader.raw_rows():
        by_interval.setdefault(ts, []).append(values)
        for f in LEDGER_FIELDS:
            assert values[col[f]] >= 0, (ts, f)
        for part, whole in PARTS.items():
            assert values[col[part]] <= values[col[whole]]
    islanded = {r["start_ts"] for r in reader.intervals() if r["islanded_s"] == reader.step}
    assert islanded
    for ts, rows in by_interval.items():
        for receiving, sending in PAIRED.items():
            assert sum(r[col[receiving]] for r in rows) == sum(r[col[sending]] for r in rows)
        if ts in islanded:
            for f in ("from_grid", "to_grid", "grid_to_battery"):
                assert all(r[col[f]] == 0 for r in rows), (ts, f)
    first, last, _ = reader.span()
    totals = reader.totals_by_member(int(rehearsal.start_ts), last)
    for m in rehearsal.member_ids:
        wh = energy_wh(totals[m])
        assert wh["load"] == wh["served"] + wh["shed"]


def _books_and_world(rehearsal: Rehearsal) -> dict[str, np.ndarray]:
    """Per member, booked and simulated served and shed over the intervals it was booked
    whole (no gap), from the rehearsal's start up to where the controller booked (it stops
    part way through its last interval; the simulator runs on a little)."""
    reader = LedgerReader(rehearsal.ledger)
    col = {f: MEMBER_COLUMNS.index(f) for f in MEMBER_COLUMNS}
    index = {m: i for i, m in enumerate(rehearsal.member_ids)}
    end = reader.booked_until()
    assert end is not None
    out = {k: np.zeros(len(index)) for k in ("served", "drawn", "shed", "dropped")}
    for ts, member, *values in reader.raw_rows(rehearsal.start_ts):
        if values[col["gap_s"]]:
            continue
        i, to = index[member], min(ts + reader.step, end)
        out["served"][i] += sum(values[col[f]] for f in SERVED_FIELDS)
        out["shed"][i] += values[col["shed"]]
        out["drawn"][i] += rehearsal.served_between_wh(ts, to)[i]
        out["dropped"][i] += rehearsal.shed_between_wh(ts, to)[i]
    return out


#: Booked served over the simulator's drawn, per member (intervals without a gap):
#: measured 0.968-1.038 over 4 runs of the final code on a shared 2-core machine
#: (docs/island_truth.md): the issue's 5 %.
SERVED_REL = 0.05
#: Booked shed over the simulator's (dropped by the island and held off by a switch), all
#: members: measured 0.964-1.039 over 15 runs (docs/island_truth.md): the issue's 5 %.
SHED_REL = 0.05
#: ... and per member: measured 0.939-1.089 (h03, whose held plug is booked from the
#: forecast, 0.955-1.089; the others 0.939-1.020: the blackout's dropped load is estimated
#: from one reading per cycle of a load that varies between readings, and no meter counts it).
SHED_MEMBER_RANGE = (0.93, 1.10)


def test_served_and_shed_are_the_simulators_own(rehearsal: Rehearsal) -> None:
    """Served as the houses drew it on the simulator (the meters measure it, whoever
    supplied it: a silent neighbour's battery too); shed as the simulator dropped it or a
    switch held it off (booked from the demand forecast, not from the power a load drew
    when switched off)."""
    w = _books_and_world(rehearsal)
    assert (w["drawn"] > 500).all(), w  # every member was booked whole most of the day
    for i, m in enumerate(rehearsal.member_ids):
        assert w["served"][i] == pytest.approx(w["drawn"][i], rel=SERVED_REL), (m, w)
    assert w["dropped"].sum() > 1000, w  # the evening runs out of energy: something is shed
    assert w["shed"].sum() == pytest.approx(w["dropped"].sum(), rel=SHED_REL), w
    # the critical house too (it is dropped last, so an estimate short of the coop's drop
    # came out of its share: 0.23 before the held plugs were left out of the estimate)
    ratio = w["shed"] / np.maximum(w["dropped"], 1.0)
    for i, m in enumerate(rehearsal.member_ids):
        if w["dropped"][i] > 100:  # a member the island hardly shed says nothing of a ratio
            assert SHED_MEMBER_RANGE[0] <= ratio[i] <= SHED_MEMBER_RANGE[1], (m, ratio, w)


CHARGED = ("to_battery", "battery_from_coop", "grid_to_battery", "battery_from_batteries")
DISCHARGED = ("from_battery", "battery_to_coop", "battery_to_grid", "battery_to_batteries")


def test_the_soc_rebuilt_from_the_books_follows_every_battery_that_answered(
        rehearsal: Rehearsal) -> None:
    """From the SoC at the start, interval by interval: charged - discharged - losses as
    booked, against the SoC the simulator's battery had at the interval's end. The battery
    that stopped answering is left out (its SoC is unknown from then on). A member in a gap
    (its devices unknown for part of an interval) restarts from the reported SoC: that time
    is not booked (a stall is: controller/ledger/gap.py)."""
    reader = LedgerReader(rehearsal.ledger)
    col = {f: MEMBER_COLUMNS.index(f) for f in MEMBER_COLUMNS}
    lost = {e["member"] for e in rehearsal.events if e["kind"] == "battery_dropout"}
    end = reader.booked_until()
    assert end is not None
    t, soc = rehearsal.soc_t, rehearsal.soc_pct
    checked = 0
    for i, spec in enumerate(demo_households(rehearsal.options.households)):
        capacity = spec.battery_wh
        if not capacity or spec.member_id in lost:
            continue
        stored = np.interp(rehearsal.start_ts, t, soc[:, i]) / 100.0 * capacity
        worst = 0.0
        for ts, m, *values in reader.raw_rows(rehearsal.start_ts):
            if m != spec.member_id:
                continue
            at = np.interp(min(ts + reader.step, end), t, soc[:, i])
            if values[col["gap_s"]]:
                stored = at / 100.0 * capacity
                continue
            stored += (sum(values[col[f]] for f in CHARGED)
                       - sum(values[col[f]] for f in DISCHARGED) - values[col["losses"]])
            worst = max(worst, abs(stored / capacity * 100.0 - at))
            checked += 1
        assert worst <= 2.0, (spec.member_id, worst)
    assert checked > 30
def test_no_battery_goes_below_its_floor(rehearsal: Rehearsal) -> None:
    soc = rehearsal.soc_pct[:, rehearsal.has_battery]
    assert soc.shape[0] > 100
    assert (soc.min(axis=0) >= rehearsal.floor_pct[rehearsal.has_battery] - 1e-6).all()


def test_the_dispatch_never_sheds_a_member_while_a_less_critical_one_is_fed(
        rehearsal: Rehearsal) -> None:
    config = parse_config(rehearsal.config_path.read_text(), str(rehearsal.config_path))
    tiers = [m.tier for m in config.members]
    assert "critical" in tiers and tiers.count("critical") < len(tiers)
    log = rehearsal.cycles
    n = len(tiers)
    shed = np.array(log.shed).reshape(-1, n)
    received = np.array(log.received).reshape(-1, n)
    assert sum(log.islanded) > 50
    assert tier_order_violations(shed, received, tier_ranks(tiers)) == []
    plan = json.loads((rehearsal.out / "plan.json").read_text())
    critical = [i for i, t in enumerate(tiers) if t == "critical"]
    # The day's plan did not know its events (a cloud, a battery dropping out); islanded the
    # controller plans again from fresh readings every 15 minutes. In every cycle whose plan
    # in force said the critical tier holds, it held. (A day with 4 houses, a 20 % cloud for
    # 3 h and a battery lost can run out of energy: the re-plan then says so first.)
    holds = np.array([h is True for h in log.plan_critical_holds])
    assert holds.any(), "a re-plan was in force"
    assert shed[holds][:, critical].sum() < 1e-6, shed[holds][:, critical].sum()
    if plan["feasible"]["critical"] and holds.all():  # nothing changed the day's verdict
        assert shed[:, critical].sum() < 1e-6, shed[:, critical].sum()


def test_the_report_totals_are_the_ledger_totals(rehearsal: Rehearsal) -> None:
    summary = json.loads((rehearsal.out / "summary.json").read_text())
    window = summary["window"]
    reader = LedgerReader(rehearsal.ledger)
    coop = energy_wh(reader.totals(None, window["from_ts"], window["to_ts"]))
    by_member = reader.totals_by_member(window["from_ts"], window["to_ts"])
    # no demo household is public: each is shown under its pseudonym
    label = member_labels(reader, load_report_config(rehearsal.config_path))
    assert set(summary["members"]) == set(label.values()) and not set(label) & set(label.values())
    for key in ("load", "served", "shed", "liberated", "pv", "curtailed"):
        assert summary["coop"][f"{key}_kwh"] == kwh(coop[key]), key
        for m, shown in label.items():
            figures = summary["members"][shown]
            assert figures[f"{key}_kwh"] == kwh(energy_wh(by_member[m])[key]), (m, key)
    islanded_s = reader.totals(None, window["from_ts"], window["to_ts"])["islanded_s"]
    assert summary["coop"]["hours_islanded"] == round(islanded_s / 3600, 3) > 0


def test_cli_rehearse_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "day"
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "island", "rehearse", "--hours", "2",
         "--speed", "4000", "--out", str(out), "--households", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Island rehearsal" in done.stdout
    # stderr: what it does, the island going as it goes, and nothing from the libraries
    said = done.stderr.splitlines()
    assert said and all(line.startswith("island rehearse: ") for line in said), done.stderr
    assert any("planning a 2 h island" in line for line in said)
    assert any(", OFF_GRID, islanded " in line for line in said)
    assert said[-1].startswith("island rehearse: writing the report to ")
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()
    assert list(out.glob("*.png"))
    # the short run islands too, now that a hiccup cannot back the grid-former off
    assert json.loads((out / "rehearsal.json").read_text())["grid"]["islanded_hours"] > 0


def test_the_report_draws_the_lost_battery_as_unknown_from_when_it_stopped(
        rehearsal: Rehearsal) -> None:
    summary = json.loads((rehearsal.out / "summary.json").read_text())
    lost = next(e for e in rehearsal.events if e["kind"] == "battery_dropout")
    label = member_labels(LedgerReader(rehearsal.ledger),
                          load_report_config(rehearsal.config_path))
    b = summary["batteries"][label[lost["member"]]]
    # the interval in which it stopped answering, then nothing: no end SoC, no net change
    since = datetime.fromisoformat(b["unknown_from"]).timestamp()
    assert lost["at_ts"] - 900 < since <= lost["at_ts"] + 900, (b, lost)
    assert b["end_soc_pct"] is None and b["net_kwh"] is None
    others = [v for m, v in summary["batteries"].items() if m != label[lost["member"]]]
    assert others and all(v["unknown_from"] is None and v["end_soc_pct"] is not None
                          for v in others)
    html = (rehearsal.out / "report.html").read_text()
    assert "unknown from" in html and "stopped answering" in html


def test_a_shed_carries_its_reason_code_in_the_api_the_ledger_and_the_page(
        rehearsal: Rehearsal, browser: Any) -> None:
    """Issue 21: every shed has a reason code (controller/island/reasons.py) in what the
    controller's API served (rehearsal.json's ``shedding``), in the ledger's transitions and
    on the /island page."""
    from selenium.webdriver.support.ui import WebDriverWait

    codes = {r.value for r in Reason} - {"other"}
    api = [e for e in rehearsal.summary["shedding"]["events"] if e["kind"] == "shed"]
    assert api and all(e["reason"] in codes for e in api), rehearsal.summary["shedding"]
    reader = LedgerReader(rehearsal.ledger)
    rows = [r for r in reader.grid_transitions(10_000) if str(r["cause"]).startswith("shed ")]
    assert {(e["ts"], e["reason"]) for e in api} <= {(r["ts"], r["reason"]) for r in rows}
    config = parse_config(rehearsal.config_path.read_text(), str(rehearsal.config_path))
    browser.set_window_size(390, 844)
    with serve(create_app(reader, None, config)) as url:
        browser.get(url + "/island")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "return document.querySelectorAll('#transitions td.code').length > 3"))
        shown = browser.execute_script(
            "return [...document.querySelectorAll('#transitions tr')].map(tr => "
            "[...tr.querySelectorAll('td')].map(td => td.textContent))")
    sheds = [r for r in shown if len(r) == 5 and r[1] == "shed"]
    assert sheds and {r[2] for r in sheds} <= codes and rows[-1]["reason"] in {
        r[2] for r in sheds}, shown
