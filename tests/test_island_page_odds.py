"""The /island page shows the survival odds the saved plan gave before the day (#21),
in a real browser at a phone's width and a desktop's."""

from __future__ import annotations

import json
import os
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from controller.island.plan import Problem, plan_island
from controller.island.site_config import IslandConfig
from controller.island_day.survival import Weather
from controller.island_day.trust import assess, to_json
from controller.ledger import LedgerReader
from dispatch.fleet import Fleet
from tests.auth_helpers import public_app
from tests.test_island_page import (  # noqa: F401  (browser: a fixture)
    MEMBERS,
    START,
    STEP,
    WIDTHS,
    World,
    build_world,
    full_page_png,
    island_plan,
    serve,
)


def plan_with_odds() -> dict[str, Any]:
    """The page tests' plan, with the odds and reserve of ``island plan`` added: one of its
    two batteries forms the grid, so the day cannot be robust."""
    plan = island_plan()
    # island_plan()'s problem, again (the page tests' module builds it inline).
    steps = 96
    hour = (9 + np.arange(steps) * STEP / 3600) % 24
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    fleet = Fleet(capacity_wh=[10_000.0, 10_000.0], soc_min_wh=[500.0, 500.0],
                  max_charge_w=[3000.0, 3000.0], max_discharge_w=[3000.0, 3000.0],
                  efficiency=[0.9, 0.9])
    problem = Problem.from_shares(np.stack([2500 * sun, 0 * sun, 1500 * sun], axis=1),
                                  np.full((steps, 3), 700.0), [0.2] * 3, [0.3] * 3, fleet,
                                  [6400.0, 6200.0], [0, 1], STEP, [m for m, _ in MEMBERS],
                                  float(START))
    made = plan_island(problem)
    assert made.feasible == {k: v for k, v in plan["feasible"].items()}
    days = np.repeat(np.linspace(0.3, 1.0, 30)[:, None], problem.pv_w.shape[0], axis=1)
    trust = assess(made, problem.pv_w, Weather(days, "test days"), np.array([True, False]),
                   IslandConfig(), start_hour=9.0)
    plan.update(to_json(trust, made, UTC))
    return plan


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    tmp = tmp_path_factory.mktemp("island_odds")
    world: World = build_world(tmp)
    (tmp / "plan.json").write_text(json.dumps(plan_with_odds()), encoding="utf-8")
    return public_app(LedgerReader(world.ledger), live=world.live)


def test_progress_carries_the_odds(app: FastAPI) -> None:
    client = TestClient(app)
    got = client.get("/api/v1/island/plan/progress")
    assert got.status_code == 200, got.text
    odds = got.json()["survival"]
    # One grid-former up with p = 0.97 (+ the sampling noise of two or more down).
    assert odds["robust"] is False and odds["p_held"]["critical"] <= 0.97 + 1e-3
    assert odds["weak_points"][0]["component"] == "grid-former h01"


@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_the_page_shows_the_odds(browser: Any, app: FastAPI, tmp_path: Path, width: int,  # noqa: F811
                                 height: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(width, height)
    with serve(app) as url:
        browser.get(url + "/island")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script(
            "return !document.getElementById('plan-odds').hidden"))
        text = browser.find_element("id", "plan-odds").text
        assert "critical loads held with probability 0.9" in text
        assert "Not a robust day" in text and "Weakest point: grid-former h01" in text
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        png = full_page_png(browser)
    (tmp_path / f"island_odds_{width}.png").write_bytes(png)
    if out := os.environ.get("COMMONWATT_SCREENSHOTS"):
        Path(out, f"island_odds_{width}.png").write_bytes(png)
