"""``commonwatt island report``: an island day booked by the real dispatch and ledger path.

The day: three households on the 21st of June, on the grid from 22:00 UTC the
day before, islanded from midnight to midnight UTC, on the grid again for two
hours. Ada (critical) has 5 kWp and a 10 kWh battery, Bob & Co (essential,
named ``<b>Bob & Co</b>`` to test escaping) 3 kWp and 5 kWh, Cyd (flexible)
neither. The dispatch (islanded, tiered) decides each 5-minute cycle, its
result is booked in whole Wh (:class:`~dispatch.rounding.WhBook`) and written
through :class:`~controller.ledger.IntervalBook` and
:class:`~controller.ledger.LedgerWriter`, as the controller does. The night
empties the batteries (load is shed), noon fills them (PV is curtailed).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import numpy as np
import pytest

from controller.accounts.figures import energy_wh, kwh
from controller.config import ConfigError
from controller.island_day.report import attribute_shed, build_report, run
from controller.island_day.report_batteries import DEFAULT_SOC_PCT
from controller.island_day.report_inputs import (
    island_window,
    last_episode,
    load_report_config,
    read_plan,
)
from controller.ledger import CycleEnergy, IntervalBook, LedgerReader, LedgerWriter
from controller.ledger.accumulator import CarryState
from controller.ledger.schema import MEMBER_COLUMNS
from dispatch.fleet import CoopLimits, Fleet, FleetState
from dispatch.rounding import LEDGER_FIELDS, WhBook
from dispatch.tick import DispatchEngine

MEMBERS = (("h01", "Ada"), ("bob", "<b>Bob & Co</b>"), ("h03", "Cyd"))
IDS = tuple(m for m, _ in MEMBERS)
ISLAND_START = int(datetime(2026, 6, 21, tzinfo=UTC).timestamp())
ISLAND_END = ISLAND_START + 86400
STEP, CYCLE = 900, 300
FLEET = Fleet(capacity_wh=[10_000.0, 5_000.0, 0.0], soc_min_wh=[500.0, 250.0, 0.0],
              max_charge_w=[3000.0, 2500.0, 0.0], max_discharge_w=[3000.0, 2500.0, 0.0],
              efficiency=[0.92] * 3, offered=[False, True, False], tier=[0, 1, 2])
# Ada (critical) keeps her battery to herself: with it offered, the islanded dispatch now
# serves the others from it, and the day would no longer be hard enough to shed anyone.
KWP = np.array([5.0, 3.0, 0.0])
SUMMARY_KEYS = {"plan", "coop", "members", "tiers", "batteries"}
COOP_KEYS = {"load_kwh", "served_kwh", "shed_kwh", "liberated_kwh", "pv_kwh", "curtailed_kwh",
             "shared_kwh", "self_sufficiency", "hours_islanded", "intervals",
             "intervals_with_gaps"}
MEMBER_KEYS = {"load_kwh", "served_kwh", "shed_kwh", "liberated_kwh", "pv_kwh",
               "curtailed_kwh", "self_sufficiency", "tier"}
PNGS = ("pv_load", "soc", "shared", "shed_curtailed", "liberated")


def pv_w(ts: float) -> np.ndarray:
    """Clear-sky-ish PV: a sine from 04:00 to 19:00 UTC, 1 kW per kWp at its peak."""
    hour = (ts % 86400) / 3600.0
    return KWP * 1000.0 * max(0.0, math.sin(math.pi * (hour - 4.0) / 15.0))


def load_w(ts: float) -> np.ndarray:
    """Base loads with a morning and an evening peak."""
    hour = (ts % 86400) / 3600.0
    morning = 1.0 if 5.0 <= hour < 8.0 else 0.0
    evening = 1.0 if 17.0 <= hour < 22.0 else 0.0
    return np.array([500.0 + 600 * evening + 400 * morning, 350.0 + 500 * evening,
                     300.0 + 400 * evening + 300 * morning])


def build_island_day(path: Path, island: bool = True,
                     start_stored: tuple[float, ...] = (7000.0, 3500.0, 0.0),
                     down: tuple[int, int] | None = None) -> dict[int, np.ndarray]:
    """Write the day into a ledger at ``path``; the dispatch's battery content (Wh) at every
    interval boundary. ``island=False``: the same day entirely on the grid; ``down``: the
    controller books nothing in ``[start, end)``."""
    n = len(IDS)
    writer = LedgerWriter(path, STEP, list(MEMBERS))
    book = IntervalBook(IDS, STEP, None, CarryState.fresh(n))
    wh = WhBook(n)
    on_grid = DispatchEngine(FLEET, "prorata", CoopLimits())
    islanded = DispatchEngine(FLEET, "prorata", CoopLimits(islanded=True))
    state = FleetState.start(np.array(start_stored))
    stored = {}
    t = float(ISLAND_START - 2 * 3600)
    try:
        while t < ISLAND_END + 2 * 3600:
            off = island and ISLAND_START <= t < ISLAND_END
            if down is not None and down[0] <= t < down[1]:
                t += CYCLE
                continue
            engine = islanded if off else on_grid
            result = engine.tick(state, pv_w(t + CYCLE / 2), load_w(t + CYCLE / 2), None, CYCLE)
            flows = {f: v.astype(float) for f, v in wh.book(result).items()}
            state = result.state.copy()
            cycle = CycleEnergy(t, t + CYCLE, flows, np.ones(n, dtype=bool),
                                np.full((3, n), np.nan), islanded=off)
            for interval, parts in book.add_cycle(cycle):
                writer.commit(interval, parts)
            t += CYCLE
            if t % STEP == 0:
                stored[int(t)] = state.stored_wh.copy()
        writer.save(book.open_parts())
        assert writer.flush()
    finally:
        writer.close()
    stored[ISLAND_START - 2 * 3600] = np.array(start_stored)
    return stored


CONFIG = """
name = "Rue Verte"
[storage]
ledger = "{ledger}"

[[members]]
id = "h01"
name = "Ada"
tier = "critical"
public = true
[[members.devices]]
kind = "meter"
host = "127.0.0.1"
port = 5020
[[members.devices]]
kind = "battery"
host = "127.0.0.1"
port = 5020
unit = 2
max_power_w = 3000
floor_pct = 5
offered = true

[[members]]
id = "bob"
name = "<b>Bob & Co</b>"
tier = "essential"
public = true
[[members.devices]]
kind = "meter"
host = "127.0.0.1"
port = 5021
[[members.devices]]
kind = "battery"
host = "127.0.0.1"
port = 5021
unit = 2
max_power_w = 2500
floor_pct = 5
offered = true

[[members]]
id = "h03"
name = "Cyd"
tier = "flexible"
[[members.devices]]
kind = "meter"
host = "127.0.0.1"
port = 5022
"""
ISLAND = """
[site]
latitude = 45.76
longitude = 4.84
tz = "Europe/Paris"

[[site.arrays]]
member = "h01"
kwp = 5.0

[[site.arrays]]
member = "bob"
kwp = 3.0

[island]
annual_kwh = 4000

[[island.members]]
member = "h03"
critical_share = 0.05
essential_share = 0.25

[[island.batteries]]
member = "h01"
capacity_kwh = 10
soc_pct = {soc_h01}

[[island.batteries]]
member = "bob"
capacity_kwh = 5
soc_pct = {soc_bob}
"""


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, np.ndarray]]:
    """The ledger and the dispatch's true battery content at each boundary."""
    path = tmp_path_factory.mktemp("island_report") / "ledger.sqlite"
    return path, build_island_day(path)


def write_config(directory: Path, ledger: Path, stored: dict[int, np.ndarray] | None,
                 name: str = "coop.toml") -> Path:
    """The coop's config; with ``stored``, [site] and [island] with the true starting SoC."""
    text = CONFIG.format(ledger=ledger)
    if stored is not None:
        start = stored[ISLAND_START][:2] / FLEET.capacity_wh[:2] * 100
        text += ISLAND.format(soc_h01=round(float(start[0]), 4), soc_bob=round(float(start[1]), 4))
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def island_config(day: tuple[Path, dict[int, np.ndarray]]) -> Path:
    ledger, stored = day
    return write_config(ledger.parent, ledger, stored, "island.toml")


@pytest.fixture(scope="module")
def plan_file(island_config: Path) -> Path:
    """A plan for the day, written by ``commonwatt island plan --json`` as a coordinator would."""
    out = run_cli("island", "plan", str(island_config), "--start", "2026-06-21T02:00",
                  "--json")
    assert out.returncode == 0, out.stderr
    path = island_config.parent / "plan.json"
    path.write_text(out.stdout, encoding="utf-8")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True,
                          text=True, timeout=180)


def ledger_sums(reader: LedgerReader, start: int, end: int) -> dict[str, dict[str, int]]:
    """Each member's and the coop's sums of the raw interval rows in ``[start, end)``."""
    sums = {m: dict.fromkeys(LEDGER_FIELDS, 0) for m in (*IDS, "coop")}
    for _ts, member, *values in reader.raw_rows(start, end):
        for f in LEDGER_FIELDS:
            v = values[MEMBER_COLUMNS.index(f)] or 0
            sums[member][f] += v
            sums["coop"][f] += v
    return sums


def test_only_public_members_are_named(island_config: Path, tmp_path: Path) -> None:
    run(island_config, tmp_path)
    for path in (tmp_path / "report.html", tmp_path / "summary.json"):
        text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", path.read_text())  # the charts' bytes
        assert "Cyd" not in text and "h03" not in text, path  # not public
        assert "Ada" in text and "h01" in text, path  # public = true
    key = private_key(json.loads((tmp_path / "summary.json").read_text()))
    assert key in (tmp_path / "report.html").read_text()


def private_key(summary: dict) -> str:
    """The one member the report shows under a pseudonym (h03, not public)."""
    (key,) = [m for m in summary["members"] if re.fullmatch(r"m-[0-9a-f]{10}", m)]
    assert summary["members"][key]["name"] == key
    return key


def check_shape(summary: dict) -> None:
    assert set(summary) >= SUMMARY_KEYS
    assert set(summary["coop"]) >= COOP_KEYS
    # Ada and Bob are public; Cyd (h03) is not: a pseudonym, never her id or name
    assert set(summary["members"]) == {"h01", "bob", private_key(summary)}
    for figures in summary["members"].values():
        assert set(figures) >= MEMBER_KEYS
    assert set(summary["tiers"]) == {"critical", "essential", "flexible"}
    for tier in summary["tiers"].values():
        assert {"load_kwh", "shed_kwh"} <= set(tier)
    for battery in summary["batteries"].values():
        assert {"min_soc_pct", "floor_pct"} <= set(battery)
    if summary["plan"] is not None:
        assert set(summary["plan"]["feasible"]) == {"critical", "essential", "flexible"}
        assert all(isinstance(v, bool) for v in summary["plan"]["feasible"].values())


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 8_000, (path, len(data))
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1200 and height >= 700, (path, width, height)


def test_window_is_the_islanded_day(day: tuple[Path, dict[int, np.ndarray]]) -> None:
    reader = LedgerReader(day[0])
    window = island_window(reader)
    assert (window.start, window.end, window.source) == (ISLAND_START, ISLAND_END,
                                                         "islanded intervals")
    given = island_window(reader, ISLAND_START + 3600 + 60, None)  # one alone: 24 h
    assert (given.start, given.end) == (ISLAND_START + 3600 + STEP, ISLAND_START + 25 * 3600)


def test_episodes_join_across_short_breaks() -> None:
    rows = [{"start_ts": a, "end_ts": a + 900} for a in (0, 900, 20_000, 21_000, 23_400)]
    assert last_episode(rows) == (20_000, 24_300)  # 21_900 -> 23_400 is under an hour


def test_window_without_islanding_is_the_last_24_hours(tmp_path: Path) -> None:
    build_island_day(tmp_path / "grid.sqlite", island=False)
    reader = LedgerReader(tmp_path / "grid.sqlite")
    window = island_window(reader)
    last = reader.span()[1]
    assert (window.start, window.end) == (last - 86400, last)
    assert window.source.startswith("last 24 h")


def test_report_totals_are_the_ledger_totals(day: tuple[Path, dict[int, np.ndarray]],
                                             island_config: Path, tmp_path: Path) -> None:
    report = run(island_config, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    check_shape(summary)
    assert summary["plan"] is None
    reader = LedgerReader(day[0])
    raw = ledger_sums(reader, ISLAND_START, ISLAND_END)
    for who, figures in [("coop", summary["coop"]), *summary["members"].items()]:
        wh = energy_wh(raw["h03" if who == private_key(summary) else who])
        for name in ("load", "served", "shed", "liberated", "pv", "curtailed"):
            assert figures[f"{name}_kwh"] == kwh(wh[name]), (who, name)
        assert figures["self_sufficiency"] == round(wh["liberated"] / wh["load"], 4)
    # the same through the reader's rollups (what the report reads), and the ledger's own counts
    totals = reader.totals(None, ISLAND_START, ISLAND_END)
    assert summary["coop"]["load_kwh"] == kwh(energy_wh(totals)["load"])
    assert summary["coop"]["shared_kwh"] == kwh(totals["to_peers"] + totals["battery_to_coop"])
    assert summary["coop"]["hours_islanded"] == 24.0 == totals["islanded_s"] / 3600
    assert summary["coop"]["intervals"] == 96 == totals["intervals"]
    assert summary["coop"]["intervals_with_gaps"] == 0
    # the day is a hard one: load shed at night, PV curtailed at noon, energy shared
    assert summary["coop"]["shed_kwh"] > 1 and summary["coop"]["curtailed_kwh"] > 1
    assert summary["coop"]["shared_kwh"] > 1 and summary["coop"]["pv_kwh"] > 40
    assert raw["coop"]["from_grid"] == 0 and raw["coop"]["to_grid"] == 0
    # tiers by the [island] shares: they add up to the coop's load and shed
    tiers = summary["tiers"]
    assert summary["tier_source"] == "[island] shares"
    assert sum(t["load_kwh"] for t in tiers.values()) == pytest.approx(
        summary["coop"]["load_kwh"], abs=0.003)
    assert sum(t["shed_kwh"] for t in tiers.values()) == pytest.approx(
        summary["coop"]["shed_kwh"], abs=0.003)
    shares = summary["members"][private_key(summary)]["tier_shares"]
    assert shares == {"critical": 0.05, "essential": 0.25, "flexible": 0.7}
    assert report.summary == summary


def test_controller_down_on_the_day_is_a_gap_not_zero(tmp_path: Path) -> None:
    down = (ISLAND_START + 10 * 3600, ISLAND_START + 10 * 3600 + 2700)  # 45 min: one episode
    build_island_day(tmp_path / "down.sqlite", down=down)
    config = write_config(tmp_path, tmp_path / "down.sqlite", None)
    report = run(config, tmp_path / "out")
    s = report.summary
    assert (s["window"]["from_ts"], s["window"]["to_ts"]) == (ISLAND_START, ISLAND_END)
    # the ledger commits the missed intervals as gaps (nothing booked, not islanded)
    reader = LedgerReader(tmp_path / "down.sqlite")
    rows = reader.intervals(ISLAND_START, ISLAND_END)
    gaps = [r for r in rows if r["gap_s_coop"]]
    assert s["coop"]["intervals"] == len(rows) == s["coop"]["intervals_expected"] == 96
    assert s["coop"]["intervals_with_gaps"] == len(gaps) >= 3
    assert s["coop"]["hours_islanded"] == 23.25
    assert s["coop"]["intervals_islanded"] == 93
    raw = energy_wh(ledger_sums(reader, ISLAND_START, ISLAND_END)["coop"])
    for name in ("load", "liberated", "shed", "pv"):
        assert s["coop"][f"{name}_kwh"] == kwh(raw[name])
    assert "0 with a gap" not in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_shed_goes_to_flexible_first_then_essential() -> None:
    load = np.array([[1000.0], [1000.0], [1000.0]])
    shed = np.array([[300.0], [700.0], [1000.0]])
    shares = np.array([[0.2, 0.3, 0.5]])
    tier_load, tier_shed = attribute_shed(load, shed, shares[None])
    assert tier_load[0, 0].tolist() == [200.0, 300.0, 500.0]
    assert tier_shed[:, 0].tolist() == [[0.0, 0.0, 300.0], [0.0, 200.0, 500.0],
                                        [200.0, 300.0, 500.0]]


def test_tiers_by_member_tier_without_an_island_table(day: tuple[Path, dict[int, np.ndarray]],
                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path, day[0], None)
    cfg = load_report_config(config)
    assert cfg.island is None
    reader = LedgerReader(day[0])
    report = build_report(reader, cfg, island_window(reader))
    s = report.summary
    # each member's whole load is in its tier: Ada critical, Bob essential, Cyd flexible
    for member, tier in (("h01", "critical"), ("bob", "essential"), ("h03", "flexible")):
        figures = s["members"][private_key(s) if member == "h03" else member]
        assert figures["tier"] == tier
        assert s["tiers"][tier]["load_kwh"] == figures["load_kwh"]
        assert s["tiers"][tier]["shed_kwh"] == figures["shed_kwh"]
    # the dispatch shed the flexible household first and kept the critical one whole
    assert s["tiers"]["critical"]["held"] and not s["tiers"]["flexible"]["held"]
    # no capacity without [island.batteries] or a plan: no SoC, said so; floors from the devices
    assert s["batteries"]["h01"] == pytest.approx({**s["batteries"]["h01"], "min_soc_pct": None,
                                                   "floor_pct": 5.0})
    assert s["batteries"]["h01"]["start_soc_pct"] == DEFAULT_SOC_PCT
    assert any("capacity unknown" in n for n in s["notes"])


def test_soc_is_rebuilt_from_the_booked_flows(day: tuple[Path, dict[int, np.ndarray]],
                                              island_config: Path) -> None:
    ledger, stored = day
    reader = LedgerReader(ledger)
    report = build_report(reader, load_report_config(island_config), island_window(reader))
    boundaries = range(ISLAND_START, ISLAND_END + 1, STEP)
    truth = np.array([stored[t] for t in boundaries])
    assert sorted(b.member for b in report.batteries) == ["bob", "h01"]
    for battery in report.batteries:
        k = IDS.index(battery.member)
        assert battery.start_soc_source == "[[island.batteries]] soc_pct"
        # whole-Wh booking with carries: within a few Wh of the dispatch's own content
        assert np.abs(battery.stored_wh - truth[:, k]).max() < 10
        b = report.summary["batteries"][IDS[k]]
        assert b["min_soc_pct"] == pytest.approx(truth[:, k].min() / FLEET.capacity_wh[k] * 100,
                                                 abs=0.1)
        assert b["floor_pct"] == 5.0 and b["capacity_kwh"] == FLEET.capacity_wh[k] / 1000
    # the night took Bob's battery down to its floor, never below it
    batteries = report.summary["batteries"]
    assert batteries["bob"]["min_soc_pct"] == pytest.approx(5.0, abs=0.2)
    assert batteries["bob"]["above_floor"] and batteries["h01"]["above_floor"]


def test_plan_is_read_and_drawn_against_the_day(island_config: Path, plan_file: Path,
                                                tmp_path: Path) -> None:
    plan = json.loads(plan_file.read_text())
    report = run(island_config, tmp_path, plan=plan_file)
    s = report.summary
    check_shape(s)
    assert s["plan"]["feasible"] == plan["feasible"]
    assert s["plan"]["shed_kwh"] == pytest.approx(plan["shed_kwh"])
    for m in ("h01", "bob"):
        assert s["batteries"][m]["start_soc_source"] == "plan"
        assert s["plan"]["batteries"][m]["start_soc_pct"] == pytest.approx(
            s["batteries"][m]["start_soc_pct"], abs=0.01)
    edges, kw = report.plan_shed_kw  # type: ignore[misc]
    assert float((kw * np.diff(edges) / 3600).sum()) == pytest.approx(
        sum(plan["shed_kwh"].values()), abs=1e-6)
    for name in (*PNGS, "plan_vs_actual"):
        check_png(tmp_path / f"{name}.png")


def test_bad_plan_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"feasible": {"critical": True}}))
    with pytest.raises(ValueError, match=r"feasible: expected true or false for each of "):
        read_plan(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_plan(path)


def test_island_without_site_is_read_and_bad_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "coop.toml"
    path.write_text(CONFIG.format(ledger="x") + "[island]\ncritical_share = 0.4\n")
    assert load_report_config(path).island.critical_share == 0.4  # type: ignore[union-attr]
    path.write_text(CONFIG.format(ledger="x") + "[island]\ncritical_shares = 0.4\n")
    with pytest.raises(ConfigError, match=r"island.critical_shares: unknown key"):
        load_report_config(path)


def test_cli_writes_a_self_contained_page(day: tuple[Path, dict[int, np.ndarray]],
                                          island_config: Path, plan_file: Path,
                                          tmp_path: Path) -> None:
    # the config names a ledger that is not there: --ledger overrides it
    config = write_config(tmp_path, tmp_path / "absent.sqlite", day[1])
    out = run_cli("island", "report", str(config), "--ledger", str(day[0]), "--plan",
                  str(plan_file), "--out", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr
    assert "Island report for Rue Verte" in out.stdout and "islanded 24 h" in out.stdout
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    check_shape(summary)
    assert summary["plan"] is not None and summary["window"]["tz"] == "Europe/Paris"
    for name in (*PNGS, "plan_vs_actual"):
        check_png(tmp_path / "report" / f"{name}.png")
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert 'name="viewport"' in html and html.count("data:image/png;base64,") == len(PNGS) + 1
    assert escape("<b>Bob & Co</b>") in html and "<b>Bob & Co</b>" not in html
    assert "<script" not in html and "<link" not in html
    # without a plan the plan column says so
    out = run_cli("island", "report", str(island_config), "--out", str(tmp_path / "bare"),
                  "--from", "2026-06-21T02:00", "--to", "2026-06-22T02:00")
    assert out.returncode == 0, out.stderr
    bare = json.loads((tmp_path / "bare" / "summary.json").read_text())
    assert bare["plan"] is None and bare["window"]["from_ts"] == ISLAND_START
    assert bare["window"]["source"] == "--from/--to"
    assert bare["coop"] == summary["coop"]
    assert "no plan" in (tmp_path / "bare" / "report.html").read_text(encoding="utf-8")
    assert not (tmp_path / "bare" / "plan_vs_actual.png").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (("--from", "yesterday"), "--from = 'yesterday'"),
    (("--plan", "missing.json"), "--plan missing.json: cannot read"),
    (("--ledger", "missing.sqlite"), "--ledger = missing.sqlite: no ledger here yet"),
    (("--from", "2030-01-01T00:00", "--to", "2030-01-01T00:10"), "holds no whole settlement"),
])
def test_cli_bad_input_exits_2(island_config: Path, tmp_path: Path, args: tuple[str, ...],
                               expected: str) -> None:
    out = run_cli("island", "report", str(island_config), "--out", str(tmp_path), *args)
    assert out.returncode == 2 and expected in out.stderr, out.stderr


def test_the_day_s_edges_eve_soc_at_the_start_and_black_start(
        day: tuple[Path, dict[int, np.ndarray]], tmp_path: Path) -> None:
    """#21: the SoC each battery reached at the island's start against the plan (the eve's
    audit row, as the controller writes it), and the black-start verdict at the end
    against the dispatch's own battery content, which can fail."""
    import shutil

    from controller.governance.audit import AuditLog
    from controller.governance.events import record

    source, stored = day
    ledger = tmp_path / "ledger.sqlite"
    shutil.copy(source, ledger)
    start_pct = stored[ISLAND_START][:2] / FLEET.capacity_wh[:2] * 100
    record(ledger, "controller", "island_eve", {
        "from": "holding", "to": "restoring", "cause": "island started",
        "island_ts": ISLAND_START, "batteries": {
            "h01": {"target_pct": float(start_pct[0]) - 1.0, "soc_pct": float(start_pct[0])},
            "bob": {"target_pct": float(start_pct[1]) + 10.0, "soc_pct": float(start_pct[1])}}})
    record(ledger, "controller", "island_eve", {  # another island's eve: not this day's
        "from": "charging", "to": "restoring", "cause": "cancelled by Bo",
        "island_ts": ISLAND_START - 86400, "batteries": {}})
    assert len(AuditLog.beside(ledger).rows()) == 2

    def report(reserve: str) -> dict:
        text = write_config(tmp_path, ledger, stored).read_text()
        text = text.replace("max_power_w = 3000\n", "max_power_w = 3000\ngrid_forming = true\n")
        path = tmp_path / "edges.toml"
        path.write_text(text.replace("annual_kwh = 4000", f"annual_kwh = 4000\n{reserve}"))
        reader = LedgerReader(ledger)
        return build_report(reader, load_report_config(path), island_window(reader)).summary

    s = report("")
    eve = s["eve"]
    assert eve["cause"] == "island started" and eve["at_island_start"]
    assert eve["batteries"]["h01"]["reached"] and not eve["batteries"]["bob"]["reached"]
    assert eve["all_reached"] is False
    bs = s["black_start"]
    end_pct = float(stored[ISLAND_END][0] / FLEET.capacity_wh[0] * 100)  # the dispatch's own
    assert bs["end_soc_pct"]["h01"] == pytest.approx(end_pct, abs=0.1)
    assert list(bs["end_soc_pct"]) == ["h01"], "only the grid-former forms a black start"
    assert bs["reserve_pct"] == 10.0 and bs["met"] == (end_pct >= 10.0)
    critical_w = s["tiers"]["critical"]["load_kwh"] * 1000.0 / 24.0
    left_wh = (end_pct - 5.0) / 100.0 * 10_000.0 * math.sqrt(0.92)
    assert bs["critical_hours_left"] == pytest.approx(left_wh / critical_w, rel=0.01)
    # A reserve above where the day ended: the verdict fails, naming the grid-former.
    high = report(f"black_start_pct = {math.ceil(end_pct) + 5}")["black_start"]
    assert not high["met"] and high["below"] == ["h01"]
