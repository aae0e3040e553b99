"""The plan for the next hours on /me and /coop, and the forecast's skill on /installer,
in real chromium against uvicorn on 127.0.0.1. The plan is a real one (the LP and both
dispatch runs over a day's forecast for the pages' three households); a member's page
shows only its own battery, and another member's plan is refused as any member data is.
Screenshots at 390 and 1280 px go to tests/artifacts/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from controller.planning.expected import plan_and_expect
from controller.planning.outlook import outlook
from dispatch import Fleet
from tests.browser import to_fixed
from tests.pages_world import FakeLive, PagesWorld, build, device_health, served
from tests.test_pages import WIDTHS, _no_sideways_scroll, _ready, _shoot, _text

SKILL = {"days": 21, "pv": {"forecast": "clear sky × cloudiness", "mae_w": 410.5,
                            "rmse_w": 600.0, "persistence_mae_w": 820.0, "skill": 0.4994,
                            "slots": 2016},
         "load": {"forecast": "history", "mae_w": 150.0, "rmse_w": 210.0,
                  "persistence_mae_w": 180.0, "skill": 0.1667, "slots": 2016}}


def real_plan(now: float):  # noqa: ANN201 - (solved_at, Expected)
    """A day's plan for h01 (offered battery, big PV), h02 (own battery), h03 (none)."""
    steps = 96
    hours = (now + np.arange(steps) * 900.0) / 3600 % 24
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    pv = sun[:, None] * np.array([7000.0, 3000.0, 0.0])
    load = np.full((steps, 3), 400.0) + (hours[:, None] >= 18) * np.array([300.0, 900.0, 1200.0])
    cap = np.array([10_000.0, 8_000.0, 0.0])
    fleet = Fleet(cap, cap * 0.05, np.full(3, 4000.0), np.full(3, 4000.0), np.full(3, 0.9),
                  reserve_wh=cap * 0.1, offered=np.array([True, False, False]))
    ahead = plan_and_expect(fleet, cap * 0.3, pv, load, 900.0, booked_s=900.0)
    return now, ahead.expected


class PlanLive(FakeLive):
    """The pages' running controller, with a rolling plan in force."""

    def __init__(self, devices: list[dict[str, Any]], plan: tuple) -> None:
        super().__init__(devices)
        self.plan = plan

    def plan_ahead(self, member_id: str | None = None) -> dict[str, object] | None:
        ids = ["h01", "h02", "h03"]
        return outlook(*self.plan, None if member_id is None else ids.index(member_id))

    def rolling_plan(self) -> dict[str, object]:
        return {"status": "ok", "solved_at": self.plan[0], "solve_s": 0.2, "message": "",
                "forecast": "PV: clear sky; load: history", "skill": SKILL,
                "solves": {"ok": 1, "failed": 0, "late": 0}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> PagesWorld:
    w = build(tmp_path_factory.mktemp("plan_pages"))
    w.app = create_app(w.reader, PlanLive(device_health(time.time()), real_plan(time.time())),
                       w.config)
    return w


@pytest.fixture(scope="module")
def server(world: PagesWorld) -> Iterator[str]:
    with served(world) as url:
        yield url


def _login(browser: Any, server: str, secret: str, lands: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    browser.delete_all_cookies()
    browser.get(server + "/login")
    browser.find_element("name", "token").send_keys(secret)
    browser.find_element("css selector", "form[action='/login'] button").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith(lands))


def _rows(browser: Any, tbody: str) -> list[list[str]]:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 10).until(
        lambda d: d.find_elements("css selector", f"#{tbody} tr"))
    return [[td.text for td in tr.find_elements("css selector", "td, th")]
            for tr in browser.find_elements("css selector", f"#{tbody} tr")]


def _expected_rows(plan: dict) -> list[list[str]]:
    return [[time.strftime("%H:%M", time.gmtime(_ts(h["at"]))),
             "—" if h["target_pct"] is None else f"{to_fixed(h['target_pct'], 0)} %",
             to_fixed(h["shared_kwh"])] for h in plan["hours"]]


def _ts(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_plan_on_the_pages(browser: Any, world: PagesWorld, server: str, tmp_path: Path,
                           width: int, height: int) -> None:
    browser.set_window_size(width, height)
    member = {"Authorization": f"Bearer {world.member_secret}"}
    mine = httpx.get(server + "/api/v1/members/h02/plan/ahead", headers=member).json()
    assert mine["plan"] and mine["has_battery"] and len(mine["hours"]) == 12
    # another household's plan is member data: refused as if it were no member
    assert httpx.get(server + "/api/v1/members/h03/plan/ahead",
                     headers=member).status_code == 404
    coop = httpx.get(server + "/api/v1/plan/ahead").json()
    # /me: h02's own battery and sharing, as the API gives them
    _login(browser, server, world.member_secret, "/me")
    _ready(browser)
    assert _rows(browser, "plan-rows") == _expected_rows(mine)
    assert "your battery aims at" in _text(browser, "plan-note")
    _no_sideways_scroll(browser, width)
    _shoot(browser, f"plan_me_{width}.png", tmp_path)
    # /coop: every battery together
    browser.get(server + "/coop")
    _ready(browser)
    assert _rows(browser, "plan-rows") == _expected_rows(coop)
    _no_sideways_scroll(browser, width)
    _shoot(browser, f"plan_coop_{width}.png", tmp_path)
    # /installer: the forecast's skill against persistence
    _login(browser, server, world.installer_secret, "/installer")
    _ready(browser)
    rows = _rows(browser, "skill-rows")
    assert rows[0][0] == "Sun (PV)" and rows[0][-1] == "50 %"
    assert rows[1][0] == "Use (load)" and rows[1][-1] == "17 %"
    assert "last 21 days" in _text(browser, "skill-note")
    _no_sideways_scroll(browser, width)
    _shoot(browser, f"plan_installer_{width}.png", tmp_path)
