"""The household, coop and installer pages in a real browser (Debian's chromium, headless,
through Selenium) against uvicorn on 127.0.0.1: logging in by pasted token and by one-time
link, the rendered numbers the API's, a member's page free of other members' data, no
sideways scrolling at 390 px, text from config and devices shown as text. Phone (390 px)
and desktop (1280 px) screenshots go to ``tests/artifacts/`` (gitignored)."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from controller.accounts import pseudonym
from controller.accounts.export import pseudonym_salt
from controller.governance import TokenStore
from controller.governance.tokens import ONCE_TTL_S
from tests.browser import full_page_png, to_fixed
from tests.pages_world import MEMBERS, PagesWorld, build, push_cycle, served

WIDTHS = ((390, 844), (1280, 800))
ARTIFACTS = Path(__file__).parent / "artifacts"



@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> PagesWorld:
    world = build(tmp_path_factory.mktemp("pages"))
    push_cycle(world.app, time.time())
    return world


@pytest.fixture()
def server(pages: PagesWorld) -> Iterator[str]:
    with served(pages) as url:
        yield url


def _ready(driver: Any, timeout: float = 20) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.dataset.ready") in ("1", "error"))
    assert driver.execute_script("return document.body.dataset.ready") == "1"


def _text(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _no_sideways_scroll(driver: Any, width: int) -> None:
    inner = driver.execute_script("return window.innerWidth")
    assert inner == width
    scroll = driver.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= inner, f"page is {scroll} px wide in a {inner} px viewport"


def _shoot(driver: Any, name: str, tmp_path: Path) -> None:
    png = full_page_png(driver)
    ARTIFACTS.mkdir(exist_ok=True)
    for folder in (tmp_path, ARTIFACTS):
        (folder / name).write_bytes(png)


def _no_markup_ran(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    assert driver.execute_script(
        "return document.querySelectorAll('main img, main script, main b:not([id])').length"
    ) == 0
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def _api(url: str, secret: str | None, path: str) -> Any:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    got = httpx.get(url + path, headers=headers)
    assert got.status_code == 200, (path, got.text)
    return got.json()


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_household_page(browser: Any, pages: PagesWorld, server: str,  # noqa: F811
                        tmp_path: Path, width: int, height: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(width, height)
    browser.delete_all_cookies()
    browser.get(server + "/me")  # not logged in: a clear prompt, no figures
    WebDriverWait(browser, 10).until(lambda d: d.find_element("id", "prompt").is_displayed())
    assert not browser.find_element("id", "home").is_displayed()
    assert browser.find_element("css selector", "#prompt a.button").get_attribute(
        "href").endswith("/login")
    # log in by pasting the member's token: the login lands on the household page
    browser.get(server + "/login")
    browser.find_element("name", "token").send_keys(pages.member_secret)
    browser.find_element("css selector", "form[action='/login'] button").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/me"))
    _ready(browser)
    wait = WebDriverWait(browser, 10)
    wait.until(lambda d: _text(d, "live-mode") == "live, every cycle")
    secret = pages.member_secret
    assert _text(browser, "who") == dict(MEMBERS)["h02"]  # markup in the name, as text
    # live: h02's own battery and meter
    live = _api(server, secret, "/api/v1/live")["member"]
    assert _text(browser, "now-soc") == f"{live['soc_pct']:.0f} %"
    assert _text(browser, "now-battery") == f"giving {live['battery_w']:.0f} W"
    assert _text(browser, "now-load") == f"{live['load_w']:.0f} W"
    # today, this month, this year: the API's figures over the same UTC periods
    starts = browser.execute_script("return [CW.dayStart(), CW.monthStart(), CW.yearStart()]")
    for key, start in zip(("today", "month", "year"), starts, strict=True):
        e = _api(server, secret, f"/api/v1/members/h02/energy?from={start}")
        cells = browser.execute_script(
            f"return [...document.querySelectorAll('tr[data-period={key}] td')]"
            ".map(td => td.firstChild.textContent)")
        assert cells[1:] == [f"{to_fixed(e['liberated_kwh'])}", _pct(e["self_sufficiency"]),
                             f"{to_fixed(e['load_kwh'])}", f"{to_fixed(e['pv_kwh'])}"], key
    # the day before the one shown (today, or the last booked day just after midnight):
    # the legend's sums are the series', a bar an hour with energy
    shown = calendar.timegm(time.strptime(_text(browser, "day"), "%Y-%m-%d"))
    assert shown in (starts[0], starts[0] - 86400)
    browser.find_element("id", "day-prev").click()
    day = shown - 86400
    wait.until(lambda d: _text(d, "day") == time.strftime("%Y-%m-%d", time.gmtime(day)))
    series = _api(server, secret, f"/api/v1/members/h02/series?from={day}&to={day + 86400}"
                  "&step=hour")["points"]
    assert len(series) == 24
    sums = {"own": sum(p["own_pv_used_kwh"] for p in series),
            "grid": sum(p["from_grid_kwh"] for p in series),
            "battery": sum(p["from_battery_kwh"] for p in series),
            "peers": sum(p["from_peers_kwh"] + p["from_coop_battery_kwh"] for p in series),
            "shed": sum(p["shed_kwh"] for p in series)}
    legend = browser.execute_script("return Object.fromEntries([...document.querySelectorAll("
                                    "'#day-legend li')].map(li => [li.dataset.key, "
                                    "parseFloat(li.textContent.match(/([0-9.]+) kWh/)[1])]))")
    for key, value in sums.items():
        assert abs(legend[key] - value) <= 0.0051, (key, legend[key], value)
    assert browser.execute_script("return document.querySelectorAll('#day-chart rect').length"
                                  ) >= 24
    _balances_add_up(browser, pages, day)
    # the month's statement, with money from the tariff
    month = _text(browser, "month")  # the shown day's month
    assert month == time.strftime("%Y-%m", time.gmtime(shown))
    st = _api(server, secret, f"/api/v1/members/h02/statement?month={month}")
    assert _text(browser, "st-liberated") == f"{to_fixed(st['totals']['liberated_kwh'])}"
    assert _text(browser, "st-self") == _pct(st["totals"]["self_sufficiency"])
    net = st["money"]["net_cents"]
    assert _text(browser, "st-net") == ("-" if net < 0 else "") + f"€{abs(net) / 100:,.2f}"
    lines = browser.execute_script("return [...document.querySelectorAll('#money-rows tr')]"
                                   ".map(tr => tr.dataset.line)")
    assert "net_between_members_cents" in lines and "grid_import_cents" in lines
    # nothing of any other private member, nor of the public one, on this page
    source = browser.page_source
    for other in ("h01", "h03", "Ada Lovelace", "Chidi", pseudonym(
            pseudonym_salt(pages.reader), "h03")):
        assert other not in source, other
    _no_markup_ran(browser)
    _no_sideways_scroll(browser, width)
    _shoot(browser, f"me_{width}.png", tmp_path)


#: The ledger fields each balance of the household page lists, and its total.
SUN_FIELDS = ("own_pv_used", "to_battery", "to_peers", "to_coop_battery", "to_grid", "curtailed")
USE_FIELDS = ("own_pv_used", "from_battery", "from_peers", "from_coop_battery", "from_grid",
              "shed")


def _balances_add_up(driver: Any, pages: PagesWorld, day: int) -> None:
    """The day's two balances, read off the page: every row is the ledger's own sum for
    that flow, and the rows add up to the total shown, which is the day's PV (or load)
    from the ledger, to the Wh."""
    from selenium.webdriver.support.ui import WebDriverWait

    iso = time.strftime("%Y-%m-%d", time.gmtime(day))
    WebDriverWait(driver, 10).until(lambda d: _text(d, "balance-note").startswith(iso))
    ledger = pages.reader.totals("h02", day, day + 86400)  # committed intervals of the day
    assert ledger["intervals"] == 96
    for table, fields in (("sun-rows", SUN_FIELDS), ("use-rows", USE_FIELDS)):
        shown = driver.execute_script(  # pairs, in the page's order
            f"return [...document.querySelectorAll('#{table} tr')]"
            ".map(tr => [tr.dataset.key, tr.querySelectorAll('td')[1].textContent])")
        wh = {k: round(float(v) * 1000) for k, v in shown}
        assert list(wh) == [*fields, "total"], table
        assert {k: wh[k] for k in fields} == {k: ledger[k] for k in fields}, table
        assert sum(wh[k] for k in fields) == wh["total"] == sum(ledger[k] for k in fields)
    assert round(float(_total(driver, "sun-rows")) * 1000) > 0  # a day with sun


def _total(driver: Any, table: str) -> str:
    return driver.find_element(
        "css selector", f"#{table} tr[data-key=total] td:last-child").text


@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_coop_page(browser: Any, pages: PagesWorld, server: str,  # noqa: F811
                   tmp_path: Path, width: int, height: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(width, height)
    browser.delete_all_cookies()
    browser.get(server + "/coop")  # the public: no login
    _ready(browser)
    WebDriverWait(browser, 10).until(lambda d: _text(d, "live-mode") == "live, every cycle")
    summary = _api(server, None, "/api/v1/coop/summary")
    assert _text(browser, "t-liberated") == f"{to_fixed(summary['liberated_kwh'])}"
    assert _text(browser, "t-shared") == f"{to_fixed(summary['shared_peer_to_peer_kwh'])}"
    assert _text(browser, "t-self") == _pct(summary["self_sufficiency"])
    assert f"{summary['jain_fairness']:.3f}" in _text(browser, "fair-explain")
    assert _text(browser, "fair-words").startswith("The coop's sun")
    # the live flow picture, and the households between them under the API's names
    assert _text(browser, "flow-sun") == "1.50 kW"
    assert _text(browser, "flow-shared") == "shared 400 W"
    salt = pseudonym_salt(pages.reader)
    shown = browser.execute_script("return [...document.querySelectorAll('#pairs .pair')]"
                                   ".map(p => [p.dataset.member, p.querySelector('.name')"
                                   ".textContent, p.querySelector('.gave small').textContent])")
    assert sorted(s[0] for s in shown) == sorted(summary["by_member"])
    assert {s[1] for s in shown} == {"Ada Lovelace", pseudonym(salt, "h02"),
                                     pseudonym(salt, "h03")}
    for member, _, gave in shown:
        assert gave == f"{to_fixed(summary['by_member'][member]['to_peers_kwh'])} kWh"
    # the month's budget, balanced, and each household's net
    month = time.strftime("%Y-%m", time.gmtime())
    report = _api(server, None, f"/api/v1/coop/report?month={month}")
    budget = report["budget"]
    assert _text(browser, "b-flowed") == f"€{budget['flowed_between_members_cents'] / 100:,.2f}"
    assert _text(browser, "b-fund") == f"€{budget['coop_fund_cents'] / 100:,.2f}"
    assert _text(browser, "b-note").startswith("Balanced to the cent")
    assert len(browser.find_elements("css selector", "#budget-rows tr")) == len(MEMBERS)
    # the audit log and its verdict
    check = _api(server, None, "/api/v1/audit/verify")
    assert check["ok"] and _text(browser, "verdict").startswith(
        f"The hash chain checks out: {check['rows']} rows")
    audit = browser.execute_script("return [...document.querySelectorAll('#audit-rows tr')]"
                                   ".map(tr => tr.textContent)")
    assert len(audit) == len(_api(server, None, "/api/v1/audit")["rows"])
    assert "Ana <b>x</b>" in audit[0] and "island.command" in audit[0]  # newest first
    # the public sees no private member's id, name or token label
    source = browser.page_source
    for hidden in ("h02", "h03", "Bea", "Chidi", "Bea at home"):
        assert hidden not in source, hidden
    _no_markup_ran(browser)
    _no_sideways_scroll(browser, width)
    _shoot(browser, f"coop_{width}.png", tmp_path)


@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_installer_page(browser: Any, pages: PagesWorld, server: str,  # noqa: F811
                        tmp_path: Path, width: int, height: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(width, height)
    browser.delete_all_cookies()
    browser.get(server + "/installer")  # the public: asked to log in, no device shown
    WebDriverWait(browser, 10).until(lambda d: d.find_element("id", "prompt").is_displayed())
    assert "h01/meter" not in browser.page_source
    # a one-time link logs the installer in and lands on the device table
    code = TokenStore.beside(pages.reader.path).add_secret(pages.installer_id, "once",
                                                           ONCE_TTL_S)
    browser.get(f"{server}/login?once={code}")
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/installer"))
    _ready(browser)
    devices = {d["name"]: d for d in _api(server, pages.installer_secret, "/api/v1/devices")}
    rows = browser.execute_script("""
        return Object.fromEntries([...document.querySelectorAll('#rows tr')].map(tr =>
          [tr.dataset.device, Object.fromEntries([...tr.children].map(td =>
            [td.dataset.label, td.textContent]))]));""")
    assert set(rows) == set(devices)
    assert rows["h01/battery"]["Live value"].startswith("64 %giving 600 W")
    assert rows["h01/meter"]["Live value"] == "420 Wimporting"
    assert rows["h03/pv"]["State"] == "backoff"
    backoff = devices["h03/pv"]["backoff_remaining_s"]
    assert abs(float(rows["h03/pv"]["Back-off"].split()[0]) - backoff) <= 2.5  # refreshed
    assert rows["h03/pv"]["Errors"].startswith("3 of 3")
    assert rows["h03/pv"]["Last error or event"] == "timeout <script>alert(2)</script>"
    counters = devices["h01/meter"]["counters"]  # its import counter runs 3 % fast
    counted, power = counters["counted_wh"]["import_wh"], counters["integrated_power_wh"][
        "import_wh"]
    assert f"(+{100 * (counted - power) / power:.1f} %)" in rows["h01/meter"]["Counters vs power"]
    drift = devices["h02/meter"]["drift"]["import"]["drift_kwh"]
    assert f"import {'+' if drift >= 0 else ''}{drift:.3f} kWh" in rows["h02/meter"][
        "Meter vs books (24 h)"]
    assert _text(browser, "n-ok") == f"{sum(d['state'] == 'ok' for d in devices.values())} of 7"
    _no_markup_ran(browser)
    _no_sideways_scroll(browser, width)
    _shoot(browser, f"installer_{width}.png", tmp_path)


def test_the_pages_are_self_contained_and_escape(pages: PagesWorld) -> None:
    client = TestClient(pages.app)
    for path in ("/me", "/coop", "/installer", "/assets/commonwatt.js"):
        text = client.get(path).text
        for outside in ('src="http', 'href="http', "@import", "@font-face", "//fonts."):
            assert outside not in text, (path, outside)
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, path
        assert "document.write" not in text, path
    assert client.get("/assets/../app.py").status_code == 404
