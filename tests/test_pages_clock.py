"""One clock on the pages: a controller on a simulated clock (the demo at 60×) shows every
page's times on it, marked "simulated HH:MM UTC (60×)", and the audit log says which clock
each row is on. Real chromium against uvicorn on 127.0.0.1; phone and desktop screenshots
go to ``tests/artifacts/`` (gitignored)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from controller.governance.audit import AuditLog, simulated_label, use_clock
from tests.browser import full_page_png, serve
from tests.pages_world import FakeLive, PagesWorld, build, device_health, push_cycle

SPEED = 60.0
#: The simulated clock starts 45 days ahead of the wall's: another month, another day.
AHEAD_S = 45 * 86400.0
PAGES = ("/", "/coop", "/me", "/island", "/installer")
ARTIFACTS = Path(__file__).parent / "artifacts"


class SimulatedLive(FakeLive):
    """The pages' fake controller on a simulated clock running 60 times wall time."""

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        super().__init__(devices)
        self.start_wall, self.start_sim = time.monotonic(), time.time() + AHEAD_S

    def now(self) -> float:
        return self.start_sim + (time.monotonic() - self.start_wall) * SPEED

    def clock(self) -> dict[str, object]:
        return {"now": self.now(), "clock": simulated_label(SPEED), "simulated": True,
                "speed": SPEED}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PagesWorld, str, float]]:
    pages = build(tmp_path_factory.mktemp("pages-clock"))
    live = SimulatedLive(device_health(time.time()))
    app = create_app(pages.reader, live, pages.config)
    push_cycle(app, time.time())
    # A command through the API of a controller on the simulated clock: its audit row is on it.
    log = AuditLog.beside(pages.config.storage.ledger)
    use_clock(log.path, live.now, simulated_label(SPEED))
    try:
        row = log.append("Ana", "coordinator", "island.return", {}, "done")
    finally:
        use_clock(log.path, None)
    with serve(app) as url:
        try:
            yield pages, url, float(row["ts"])
        finally:
            from api.surface import close_streams
            close_streams(app)  # open streams would hold up the server's stop


def _badge(driver: Any) -> str:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 10).until(
        lambda d: d.find_elements("id", "sim-clock") and d.find_element("id", "sim-clock").text)
    return str(driver.find_element("id", "sim-clock").text)


@pytest.mark.parametrize("width", (390, 1280), ids=("390px", "1280px"))
def test_every_page_is_on_the_controllers_simulated_clock_and_says_so(
        browser: Any, world: tuple[PagesWorld, str, float], width: int) -> None:  # noqa: F811
    from selenium.webdriver.support.ui import WebDriverWait

    pages, url, sim_row_ts = world
    browser.set_window_size(width, 844 if width == 390 else 800)
    browser.delete_all_cookies()
    for path in PAGES:
        browser.get(url + path)
        shown = _badge(browser)
        sim_now = httpx.get(url + "/api/v1/clock").json()["now"]
        match = re.fullmatch(r"simulated (\d\d):(\d\d) UTC \(60×\)", shown)
        assert match, (path, shown)
        # the badge's minute is the controller's (60×: a simulated minute per wall second)
        at = datetime.fromtimestamp(sim_now, UTC)
        shown_min = int(match[1]) * 60 + int(match[2])
        assert abs((at.hour * 60 + at.minute - shown_min + 720) % 1440 - 720) <= 3, (path, shown)
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        ARTIFACTS.mkdir(exist_ok=True)
        name = "home" if path == "/" else path.strip("/")
        (ARTIFACTS / f"clock_{name}_{width}.png").write_bytes(full_page_png(browser))
    # /coop: the budget's month is the controller's, and each audit row names its clock
    browser.get(url + "/coop")
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    sim_month = datetime.fromtimestamp(httpx.get(url + "/api/v1/clock").json()["now"],
                                       UTC).strftime("%Y-%m")
    assert browser.find_element("id", "month").text == sim_month
    assert sim_month != time.strftime("%Y-%m", time.gmtime())  # 45 days ahead: not the wall's
    when = browser.execute_script(
        "return [...document.querySelectorAll('#audit-rows tr')].map(tr => "
        "[tr.textContent, tr.querySelector('td').textContent])")
    by_action = {next(a for a in ("island.return", "island.command", "token.create")
                      if a in text): stamp for text, stamp in when}
    stamp = datetime.fromtimestamp(sim_row_ts, UTC).strftime("%Y-%m-%d %H:%M")
    assert by_action["island.return"] == f"{stamp} UTC (simulated 60×)"
    assert by_action["token.create"].endswith(" UTC (wall clock)")  # the CLI's, on the wall
