"""The live page ``/`` in a real browser (Debian's chromium, headless, through Selenium):
at 390 px no sideways scrolling and every household figure visible, the numbers the
API's, member names shown as text, and the live figures pushed by the SSE stream (or
polled when the browser has no ``EventSource``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.surface import close_streams
from controller.ledger import LedgerReader
from tests.auth_helpers import public_app
from tests.test_island_page import (  # noqa: F401 - browser and world are fixtures
    MEMBERS,
    NOW,
    XSS,
    World,
    full_page_png,
    island_image,
    serve,
    world,
)

WIDTHS = ((390, 844), (1280, 800))
CELLS = 7  # name and six figures a household


@pytest.fixture()
def page_app(world: World) -> FastAPI:  # noqa: F811 - the fixture imported above
    # every member public, so the page shows names (the pseudonyms are tests/test_pages.py's)
    return public_app(LedgerReader(world.ledger), live=world.live)


def push(app: FastAPI, world: World, soc: tuple[float, float], at: float) -> None:  # noqa: F811
    """A cycle of the island image with the batteries at ``soc``, as the runtime hands it."""
    image = replace(island_image(), soc_pct=np.array([*soc, np.nan]))
    report = SimpleNamespace(image=image, start_ts=at - 1, end_ts=at, result=None)
    app.state.live_hub.publish(report, world.live.grid_supervisor().status())


def text(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_live_page_in_a_browser(browser: Any, world: World, page_app: FastAPI,  # noqa: F811
                                tmp_path: Path, width: int, height: int) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.support.ui import WebDriverWait

    summary = TestClient(page_app).get("/api/v1/coop/summary").json()
    push(page_app, world, (64.0, 62.0), NOW)
    browser.set_window_size(width, height)
    with serve(page_app) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d: d.execute_script(
            "return document.querySelectorAll('#rows tr').length === 3"
            " && document.getElementById('live-mode').textContent === 'live, every cycle'"))
        inner = browser.execute_script("return window.innerWidth")
        assert inner == width
        # the live figures, pushed: capacity-weighted SoC, batteries delivering 1.1 kW
        assert text(browser, "grid-state") == "Running as an island"
        assert text(browser, "now-soc") == "63 %"
        assert text(browser, "now-battery") == "giving 1.10 kW"
        assert text(browser, "now-pv") == "1.50 kW"
        # a later cycle reaches the open page without a reload
        push(page_app, world, (80.0, 70.0), NOW + 1)
        wait.until(lambda d: d.find_element("id", "now-soc").text == "75 %")
        # the ledger's figures are the API's
        assert text(browser, "t-liberated") == f"{summary['liberated_kwh']:.2f}"
        assert text(browser, "t-shared") == f"{summary['shared_peer_to_peer_kwh']:.2f}"
        rows = browser.execute_script("""
            return [...document.querySelectorAll('#rows tr')].map(tr => ({
              id: tr.dataset.member,
              cells: [...tr.children].map(td => {
                const r = td.getBoundingClientRect();
                return {text: td.firstChild ? td.firstChild.textContent : td.textContent,
                        label: td.dataset.label, left: r.left, right: r.right,
                        width: r.width, height: r.height};
              })}));""")
        for row in rows:
            m = summary["by_member"][row["id"]]
            cells = row["cells"]
            assert len(cells) == CELLS
            # every figure is on screen, inside the viewport: none hidden, none cut off
            for c in cells:
                assert c["width"] > 0 and c["height"] > 0, c
                assert c["left"] >= 0 and c["right"] <= inner + 0.5, (width, c)
            assert cells[1]["text"] == f"{m['liberated_kwh']:.2f}"
            assert cells[5]["text"] == f"{m['from_grid_kwh']:.2f}"
        # no sideways scrolling
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= inner, f"page is {scroll} px wide in a {inner} px viewport"
        # the name full of markup is shown as typed, and made nothing
        names = [r["cells"][0]["text"] for r in rows]
        assert sorted(names) == sorted(name for _, name in MEMBERS)
        assert f"Bea {XSS}" in names
        assert browser.execute_script("return document.querySelectorAll('img').length") == 0
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        if width < 600:  # households as cards: labels shown, the header row out of sight
            assert browser.execute_script(
                "return getComputedStyle(document.querySelector('#rows td')).display") == "block"
            assert browser.execute_script(
                "return document.querySelector('#households thead').getBoundingClientRect()"
                ".height") <= 1
        png = full_page_png(browser)
        close_streams(page_app)  # the open stream would hold up the server's stop
    (tmp_path / f"live_{width}.png").write_bytes(png)
    if out := os.environ.get("COMMONWATT_SCREENSHOTS"):
        Path(out, f"live_{width}.png").write_bytes(png)


def test_live_page_polls_without_event_source(browser: Any, world: World,  # noqa: F811
                                              page_app: FastAPI) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    push(page_app, world, (64.0, 62.0), NOW)
    browser.set_window_size(390, 844)
    # a browser (or a proxy) with no Server-Sent Events: the page must still be live
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                     {"source": "delete window.EventSource;"})
    try:
        with serve(page_app) as url:
            browser.get(url + "/")
            WebDriverWait(browser, 20).until(lambda d: d.execute_script(
                "return document.getElementById('live-mode').textContent"
                " === 'updating every 2 s'"))
            assert text(browser, "now-soc") == "63 %"
            push(page_app, world, (80.0, 70.0), NOW + 1)
            WebDriverWait(browser, 20).until(
                lambda d: d.find_element("id", "now-soc").text == "75 %")
            close_streams(page_app)
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": script["identifier"]})


def test_the_page_is_self_contained_and_escapes(page_app: FastAPI) -> None:
    html = TestClient(page_app).get("/").text
    for outside in ('src="http', 'href="http', "@import", "@font-face", "//fonts."):
        assert outside not in html, outside
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html
    assert 'new EventSource("/api/v1/live/stream")' in html
