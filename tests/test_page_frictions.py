"""Small frictions, in a real browser: durations in words, the styled login page and the
favicon every page names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pages_world import PagesWorld, build, push_cycle, served


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> PagesWorld:
    world = build(tmp_path_factory.mktemp("frictions"))
    push_cycle(world.app, time.time())
    return world


@pytest.fixture()
def server(pages: PagesWorld) -> Iterator[str]:
    with served(pages) as url:
        yield url


def test_durations_read_as_words(browser: Any, server: str) -> None:  # noqa: F811
    browser.get(server + "/installer")
    words = browser.execute_script(
        "return [0.4, 9.96, 45, 59.6, 61, 720, 3600, 16658.8, 90000, 86400, null]"
        ".map(CW.duration);")
    assert words == ["0.4 s", "10 s", "45 s", "1 min", "1 min", "12 min", "1 h",
                     "4 h 38 min", "1 d 1 h", "1 d", "—"]


def test_the_login_page_is_styled_and_every_page_has_the_favicon(
        browser: Any, server: str, tmp_path: Path) -> None:  # noqa: F811
    for path in ("/", "/coop", "/me", "/island", "/installer", "/login"):
        html = httpx.get(server + path, timeout=10).text
        assert '<link rel="icon" href="/assets/favicon.svg"' in html, path
    icon = httpx.get(server + "/assets/favicon.svg", timeout=10)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    for width in (390, 1280):
        browser.set_window_size(width, 900)
        browser.get(server + "/login")
        header = browser.find_element("css selector", "header")
        # the shared stylesheet: the dark header band, the green button, no sideways scroll
        assert header.value_of_css_property("background-color") == "rgba(29, 42, 36, 1)"
        button = browser.find_element("css selector", "form[action='/login'] button")
        assert button.value_of_css_property("background-color") == "rgba(47, 143, 91, 1)"
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(tmp_path / f"login-{width}.png"))
