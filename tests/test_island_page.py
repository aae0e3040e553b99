"""The island page ``/island``: served, its API (the saved plan, the plan against the day,
hours of autonomy), and in a real browser (Debian's chromium, headless, through Selenium)
at a phone's width and a desktop's: the grid state in words, no sideways scrolling, and a
member's name full of markup shown as text."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass, replace
from datetime import UTC
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.island import NOT_DISCHARGING_W, coop_autonomy, planned_coop_soc
from controller.island.grid_model import GridInputs, IslandCommand, TransitionRecord
from controller.island.live import GridSupervisor
from controller.island.plan import Problem, plan_island
from controller.island_day.plan_render import Context, to_dict
from controller.ledger import CycleEnergy, IntervalBook, LedgerReader, LedgerWriter
from controller.ledger.accumulator import CarryState
from controller.process_image import ProcessImage
from dispatch.fleet import Fleet
from tests.auth_helpers import bearer, public_app
from tests.browser import full_page_png, serve
from tests.coop_harness import DAY0, start_harness
from tests.ledger_helpers import random_flows

XSS = "<img src=x onerror=alert(1)>"
MEMBERS = (("h01", "Ada Lovelace"), ("h02", f"Bea {XSS}"), ("h03", "Chidi"))
STEP = 900
START = DAY0 + 9 * 3600  # the island day starts at 09:00 UTC
NOW = START + 3 * 3600 + 120  # three hours in
WIDTHS = ((390, 844), (1280, 800))


# ------------------------------------------------------------------ the coop of the tests

class _FakeController:
    """What the island API reads from a running controller: its last image and floors."""

    def __init__(self, image: ProcessImage, floor_pct: np.ndarray) -> None:
        self.last_report = SimpleNamespace(image=image)
        self._floor_pct = floor_pct

    def fleet(self, image: ProcessImage) -> SimpleNamespace:
        capacity = np.where(image.has_battery, np.nan_to_num(image.capacity_wh), 0.0)
        return SimpleNamespace(capacity_wh=capacity, soc_min_wh=capacity * self._floor_pct / 100)


class _FakeLive:
    """The API's live view of a controller three hours into an island day."""

    cycle_s = 1.0
    settlement_s = STEP

    def __init__(self, supervisor: GridSupervisor, controller: _FakeController) -> None:
        self._supervisor = supervisor
        self.controller = controller

    def grid_supervisor(self) -> GridSupervisor:
        return self._supervisor

    def now(self) -> float:
        return float(NOW)

    def devices(self) -> list[dict[str, Any]]:
        return []

    def last_cycle_age_s(self) -> float:
        return 0.1

    def ledger_status(self) -> dict[str, object]:
        return {"state": "ok"}

    def unwritten_wh(self, after_ts: int | None) -> dict[str, dict[str, int]]:
        return {}

    def open_interval_start(self) -> int | None:
        return NOW // STEP * STEP


def island_image() -> ProcessImage:
    """Two 10 kWh batteries at 64 % and 62 % delivering 1.1 kW; h03 has PV only."""
    nan = np.nan
    return ProcessImage(
        timestamp=float(NOW), member_ids=tuple(m for m, _ in MEMBERS),
        has_pv=np.array([True, False, True]), has_battery=np.array([True, True, False]),
        pv_w=np.array([800.0, nan, 700.0]), meter_w=np.zeros(3),
        battery_w=np.array([600.0, 500.0, nan]), soc_pct=np.array([64.0, 62.0, nan]),
        capacity_wh=np.array([10_000.0, 10_000.0, nan]),
        max_charge_w=np.array([3000.0, 3000.0, nan]),
        max_discharge_w=np.array([3000.0, 3000.0, nan]),
        import_wh=np.full(3, nan), export_wh=np.full(3, nan), pv_energy_wh=np.full(3, nan))


def island_plan() -> dict[str, Any]:
    """A real plan for the day (``commonwatt island plan --json``'s shape): more load than
    sun and batteries, so flexible load is shed in the night."""
    steps = 96
    hour = (9 + np.arange(steps) * STEP / 3600) % 24
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    pv = np.stack([2500 * sun, 0 * sun, 1500 * sun], axis=1)
    load = np.full((steps, 3), 700.0)
    fleet = Fleet(capacity_wh=[10_000.0, 10_000.0], soc_min_wh=[500.0, 500.0],
                  max_charge_w=[3000.0, 3000.0], max_discharge_w=[3000.0, 3000.0],
                  efficiency=[0.9, 0.9])
    problem = Problem.from_shares(pv, load, [0.2] * 3, [0.3] * 3, fleet, [6400.0, 6200.0],
                                  [0, 1], STEP, [m for m, _ in MEMBERS], float(START))
    return to_dict(plan_island(problem), Context("Sunny Lane", UTC, "UTC", "typical", []))


@dataclass
class World:
    """A ledger booked from 08:00 to now (islanded from 09:00), its grid log and a live view."""

    ledger: Path
    live: _FakeLive


def build_world(tmp: Path) -> World:
    """Book the ledger and drive a real grid supervisor into ``OFF_GRID``, logging to it."""
    path = tmp / "ledger.sqlite"
    ids = tuple(m for m, _ in MEMBERS)
    writer = LedgerWriter(path, STEP, list(MEMBERS))
    book = IntervalBook(ids, STEP, None, CarryState.fresh(len(ids)))
    rng = np.random.default_rng(7)
    try:
        t, cycle = START - 3600, 300
        while t + cycle <= NOW:
            flows = random_flows(rng, len(ids))
            on_grid = t < START
            if not on_grid:
                flows["from_grid"] = flows["to_grid"] = flows["grid_to_battery"] = np.zeros(3)
            for interval, parts in book.add_cycle(CycleEnergy(
                    t, t + cycle, flows, np.ones(len(ids), dtype=bool), np.full((3, 3), np.nan),
                    islanded=not on_grid)):
                writer.commit(interval, parts)
            t += cycle
        writer.save(book.open_parts())

        def record(r: TransitionRecord) -> None:
            writer.record((r.ts, r.from_state.name, r.to_state.name, r.cause, r.requested_by,
                           int(r.refused)))

        sup = GridSupervisor(on_record=record)
        sup.update(GridInputs("on", True, 66.0), START - 1800)
        sup.request_island("<b>Mallory</b>", START, START + 86400, 99.0, START)  # refused
        cmd = sup.request_island("Ada (coordinator)", START, START + 86400, 50.0, START)
        assert isinstance(cmd, IslandCommand), cmd
        sup.update(GridInputs("on", True, 66.0, (), sup.command), START)
        sup.update(GridInputs("off", True, 63.0, (), sup.command), START + 20)
        assert sup.status()["state"] == "OFF_GRID"
    finally:
        writer.close()
    (tmp / "plan.json").write_text(json.dumps(island_plan()), encoding="utf-8")
    controller = _FakeController(island_image(), np.array([5.0, 5.0, 0.0]))
    return World(path, _FakeLive(sup, controller))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("island_page"))


@pytest.fixture(scope="module")
def app(world: World) -> FastAPI:
    return public_app(LedgerReader(world.ledger), live=world.live)


# ------------------------------------------------------------------ the page and its API

def test_the_page_is_served_self_contained(app: FastAPI) -> None:
    page = TestClient(app).get("/island")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert "<title>Commonwatt — the energy island</title>" in html
    # no CDN, no external font, no script or style from elsewhere
    for outside in ('src="http', "href=\"http", "@import", "@font-face", "//fonts."):
        assert outside not in html, outside
    # API text is only ever inserted as text
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html
    assert "setInterval" not in html and "REFRESH_MS = 5000" in html


def test_status_has_the_clock_and_the_hours_of_autonomy(app: FastAPI) -> None:
    status = TestClient(app).get("/api/v1/island").json()
    assert status["state"] == "OFF_GRID" and status["now"] == NOW
    assert status["command"]["end_ts"] == START + 86400
    a = status["autonomy"]
    # (6400 - 500) + (6200 - 500) Wh above the floors, at a net load of 1100 W
    assert a["above_floor_kwh"] == pytest.approx(11.6)
    assert a["net_load_w"] == pytest.approx(1100.0) and a["battery_w"] == pytest.approx(1100.0)
    assert a["hours"] == pytest.approx(11600 / 1100, abs=0.01)


def test_autonomy_is_none_when_not_discharging() -> None:
    image = island_image()
    floors = np.array([500.0, 500.0, 0.0])
    sunny = replace(image, pv_w=np.array([2000.0, np.nan, 700.0]),
                    meter_w=np.array([-1200.0, 0.0, 0.0]))
    # h01: load = -1200 + 2000 + 600 = 1400 W; the coop: 1400 + 500 + 700 - 2700 = -100 W
    a = coop_autonomy(sunny, floors)
    assert a["net_load_w"] == pytest.approx(-100.0) and a["hours"] is None
    barely = replace(image, battery_w=np.array([NOT_DISCHARGING_W / 2, 0.0, np.nan]),
                     pv_w=np.array([0.0, np.nan, 0.0]))
    assert coop_autonomy(barely, floors)["hours"] is None
    unknown = replace(image, soc_pct=np.array([np.nan, 62.0, np.nan]))
    b = coop_autonomy(unknown, floors)
    assert b["batteries_known"] == 1 and b["above_floor_kwh"] == pytest.approx(5.7)


def test_plan_route_returns_the_saved_plan_or_404(world: World, app: FastAPI,
                                                  tmp_path: Path) -> None:
    # the whole plan holds every household's forecast: coordinators and installers only
    assert TestClient(app).get("/api/v1/island/plan").status_code == 401
    api = TestClient(app, headers=bearer(LedgerReader(world.ledger), "coordinator"))
    saved = (world.ledger.parent / "plan.json").read_text(encoding="utf-8")
    answer = api.get("/api/v1/island/plan")
    assert answer.status_code == 200 and answer.json() == json.loads(saved)
    # a ledger with no plan beside it
    other = tmp_path / "ledger.sqlite"
    shutil.copy(world.ledger, other)
    none = TestClient(public_app(LedgerReader(other), live=world.live),
                      headers=bearer(LedgerReader(other), "installer"))
    gone = none.get("/api/v1/island/plan")
    assert gone.status_code == 404 and "plan.json" in gone.json()["detail"]
    assert none.get("/api/v1/island/plan/progress").status_code == 404
    (tmp_path / "plan.json").write_text("{not json", encoding="utf-8")
    bad = none.get("/api/v1/island/plan")
    assert bad.status_code == 500 and "plan.json" in bad.json()["detail"]
    (tmp_path / "plan.json").write_text('{"start": "2026-06-21T09:00:00+00:00"}')
    partial = none.get("/api/v1/island/plan/progress")
    assert partial.status_code == 500 and "'end'" in partial.json()["detail"]


def test_progress_sets_the_plan_against_the_booked_day(world: World, app: FastAPI) -> None:
    p = TestClient(app).get("/api/v1/island/plan/progress").json()
    plan = json.loads((world.ledger.parent / "plan.json").read_text(encoding="utf-8"))
    reader = LedgerReader(world.ledger)
    until = reader.span()[1]
    assert p["start_ts"] == START and p["end_ts"] == START + 86400 and p["now"] == NOW
    # booked: the committed intervals from the plan's start, as the ledger sums them
    assert p["booked"]["until"] == until == NOW // STEP * STEP
    totals = reader.totals(None, START, until)
    assert p["booked"]["hours_islanded"] == pytest.approx(totals["islanded_s"] / 3600)
    assert p["booked"]["hours_islanded"] == pytest.approx(3.0)
    assert p["booked"]["shed_kwh"] == pytest.approx(totals["shed"] / 1000, abs=1e-3)
    # planned: the coop SoC, capacity-weighted, at now; the shed up to the booked time
    soc = planned_coop_soc(plan)
    assert soc[0] == pytest.approx(63.0) and len(soc) == 97
    at = (NOW - START) / STEP
    i = int(at)
    assert p["planned"]["coop_soc_pct_now"] == pytest.approx(
        soc[i] + (soc[i + 1] - soc[i]) * (at - i), abs=0.01)
    runs = plan["shed_schedule"]
    assert runs, "the test plan sheds"
    nxt = p["next_shed"]
    assert nxt is not None and nxt["tier"] == runs[0]["tier"] and nxt["end_ts"] > NOW
    assert set(nxt["members"]) <= {m for m, _ in MEMBERS}
    assert p["planned"]["shed_kwh_so_far"] == pytest.approx(0.0)  # the plan sheds at night
    assert p["feasible"] == plan["feasible"]


def test_autonomy_from_a_running_controller(tmp_path: Path) -> None:
    """The island API reads the real Controller the way it reads the fake."""

    class Live:
        cycle_s, settlement_s = 1.0, 300

        def __init__(self, h: Any) -> None:
            self.h = h
            self.controller = h.controller

        def grid_supervisor(self) -> GridSupervisor:
            return self.h.controller.grid

        def now(self) -> float:
            return self.h.clock.now()

        def devices(self) -> list[dict[str, Any]]:
            return self.h.controller.poller.health()

        def last_cycle_age_s(self) -> float:
            return 0.1

        def ledger_status(self) -> dict[str, object]:
            return self.h.controller.writer.status()

        def unwritten_wh(self, after_ts: int | None) -> dict[str, dict[str, int]]:
            return {}

        def open_interval_start(self) -> int | None:
            return None

    async def go() -> tuple[dict[str, Any], dict[str, Any], ProcessImage, np.ndarray]:
        h = await start_harness(tmp_path, households=4, start_hour=20.0, settlement_s=300)
        api = TestClient(public_app(LedgerReader(tmp_path / "ledger.sqlite"), live=Live(h)))
        try:
            before = api.get("/api/v1/island").json()
            report = await h.step()
            after = api.get("/api/v1/island").json()
            return before, after, report.image, h.controller.fleet(report.image).soc_min_wh
        finally:
            await h.close()

    before, after, image, floors = asyncio.run(go())
    assert before["autonomy"] is None  # no cycle yet
    assert after["autonomy"] == coop_autonomy(image, floors)
    assert after["autonomy"]["batteries_known"] > 0 and after["autonomy"]["capacity_kwh"] > 0


# ------------------------------------------------------------------ in a real browser

@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_page_in_a_browser(browser: Any, app: FastAPI, tmp_path: Path, width: int,
                           height: int) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(width, height)
    with serve(app) as url:
        browser.get(url + "/island")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "return document.querySelectorAll('#members tr').length === 3"
            " && document.querySelectorAll('#plan-rows tr').length > 0"
            " && document.querySelectorAll('#transitions tr').length > 1"))
        inner = browser.execute_script("return window.innerWidth")
        assert inner == width
        state = browser.find_element("id", "state").text
        assert state == "Running as an island since 09:00, until 09:00 tomorrow", state
        # 11.6 kWh above the floors at 1.1 kW: 10.55 h
        assert browser.find_element("id", "autonomy").text == "10.6 h"
        assert browser.find_element("id", "soc").text == "63 %"
        assert "Flexible loads" in browser.find_element("id", "shed-next").text
        # not wider than the viewport: no sideways scrolling
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= inner, f"page is {scroll} px wide in a {inner} px viewport"
        # the name is text: shown as typed, no element made of it, no alert
        names = browser.execute_script(
            "return [...document.querySelectorAll('#members td.head')].map(e => e.textContent)")
        assert f"Bea {XSS}" in names
        assert browser.execute_script("return document.querySelectorAll('img').length") == 0
        log = browser.find_element("id", "transitions").get_attribute("textContent")
        assert "<b>Mallory</b>" in log
        assert browser.execute_script("return document.querySelectorAll('#transitions b').length") \
            == 0
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        if width < 600:  # cards in one column, tables as stacked rows
            lefts = browser.execute_script(
                "return [...document.querySelectorAll('.card')].map(c => c.offsetLeft)")
            assert len(set(lefts)) == 1, lefts
            assert browser.execute_script(
                "return getComputedStyle(document.querySelector('#members td')).display") == "flex"
        png = full_page_png(browser)
    (tmp_path / f"island_{width}.png").write_bytes(png)
    if out := os.environ.get("COMMONWATT_SCREENSHOTS"):
        Path(out, f"island_{width}.png").write_bytes(png)


def test_every_grid_state_in_words(browser: Any, app: FastAPI) -> None:
    """The page's words for each state, from its own function, on the controller's clock."""
    with serve(app) as url:
        browser.get(url + "/island")
        words = browser.execute_script("""
            const now = arguments[0], start = arguments[1];
            const cmd = {kind: "island", requested_by: "Ada", start_ts: start,
                         end_ts: start + 86400, required_soc_pct: 50};
            return ["UNDEFINED", "ON_GRID", "GOING_OFF_GRID", "OFF_GRID", "RETURNING"].map(
                state => stateWords({state, now, since: start, command: cmd})[0])
              .concat([stateWords({state: "ON_GRID", now, since: 0, command: null})[0]]);
        """, START - 3600, START)
    assert words == [
        "Grid state not known yet",
        "Connected to the utility",
        "Leaving the utility grid",
        "Running as an island since 09:00, until 09:00 tomorrow",
        "Reconnecting to the utility",
        "Connected to the utility",
    ]


def test_page_without_a_controller_or_a_plan(browser: Any, world: World,
                                             tmp_path: Path) -> None:
    """Ledger only: the state says so, the plan section says how to save one, still 390 px."""
    from selenium.webdriver.support.ui import WebDriverWait

    ledger = tmp_path / "ledger.sqlite"
    shutil.copy(world.ledger, ledger)
    browser.set_window_size(390, 844)
    with serve(public_app(LedgerReader(ledger))) as url:
        browser.get(url + "/island")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "return document.querySelectorAll('#members tr').length === 3"))
        assert browser.find_element("id", "state").text == "No controller is running"
        assert "No island plan is saved" in browser.find_element("id", "plan-note").text
        assert browser.find_element("id", "autonomy").text == "—"
        assert browser.find_element("id", "shed-next").text == "Nothing"
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
