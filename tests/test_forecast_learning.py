"""The rolling plan learns from its ledger and survives a restart: cloudiness and skill
from a ledger booked through the real booking path, checked against the PV that was
booked; the profile seeded from it; the plan and what was learned kept in a 0600 file
beside the ledger and followed again after a restart until they expire."""

from __future__ import annotations

import json
import stat
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from controller.island.site_config import SiteConfig
from controller.planning import store
from controller.planning.calibrate import calibrate
from controller.planning.hook import FORECAST_NAME, RollingPlan
from controller.planning.learner import learn_from_ledger
from controller.planning.providers import ClearSkyProvider, clear_sky_w
from dispatch import LEDGER_FIELDS, CoopLimits, Fleet
from tests.ledger_helpers import write_ledger

IDS = ("a", "b", "c")
SITE = SiteConfig.model_validate({
    "latitude": 45.76, "longitude": 4.84, "tz": "UTC",
    "arrays": [{"member": "a", "kwp": 5, "tilt": 30, "azimuth": 180},
               {"member": "b", "kwp": 3, "tilt": 15, "azimuth": 90}]})
DAYS = 15
T0 = 1_780_272_000 - 14 * 86400  # a UTC midnight; the ledger ends 2026-06-02 00:00
SHARE = np.array([0.8, 0.5])  # each roof's share of clear sky (shade, soiling, kWp)
FLEET = Fleet(np.array([10_000.0, 0.0, 5000.0]), np.array([500.0, 0, 250]),
              np.full(3, 3000.0), np.full(3, 3000.0), np.full(3, 0.9),
              offered=np.array([True, False, True]))
STORED = np.array([3000.0, 0.0, 1500.0])


def booked() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PV (clear sky × roof share × the day's clearness; c: a sine) and load, hourly
    (settlement_s = 3600: a quarter of the booking work, and the learner's resampling
    to 15-minute slots is exercised)."""
    rng = np.random.default_rng(5)
    clearness = rng.uniform(0.3, 1.0, DAYS)
    clear = clear_sky_w(SITE, list(IDS), T0, DAYS * 96, 900).reshape(-1, 4, 3).mean(axis=1)
    pv = clear.copy()
    pv[:, :2] *= SHARE[None, :] * np.repeat(clearness, 24)[:, None]
    hours = np.arange(DAYS * 24) % 24 + 0.5
    pv[:, 2] = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None) * 2000
    load = 400.0 * rng.lognormal(0, 0.3, (DAYS * 24, 3))
    return np.round(pv), np.round(load), clearness


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    path = tmp_path_factory.mktemp("learn") / "ledger.sqlite"
    pv, load, clearness = booked()

    def cycles():
        for t in range(len(pv)):
            flows = {f: np.zeros(3) for f in LEDGER_FIELDS}
            flows["to_grid"], flows["from_grid"] = pv[t], load[t]
            yield flows

    write_ledger(path, IDS, 3600, T0, 3600, cycles())
    return path, pv, load, clearness


def test_learned_from_the_ledger_is_what_was_booked(ledger) -> None:
    path, pv, load, clearness = ledger
    now = T0 + 14 * 86400 + 3600.0  # 01:00 on the last day: the window is days 0-13
    learned = learn_from_ledger(path, list(IDS), now, SITE)
    cloud = learned.cloudiness
    # Yesterday's clearness × the roof's share; the week's median by hour likewise.
    np.testing.assert_allclose(cloud.recent[:2], SHARE * clearness[13], rtol=0.01)
    midday = slice(9, 15)  # hourly means over 15-min clear sky: exact but for the curvature
    np.testing.assert_allclose(cloud.by_hour[midday, 0], SHARE[0] * np.median(clearness[7:14]),
                               rtol=0.02)
    assert np.isnan(cloud.recent[2])  # no array: no cloudiness
    # Persistence's coop MAE over days 7-13, counted here from what was booked.
    coop = pv[:14 * 24].sum(axis=1).reshape(14, 24)
    expected = np.abs(coop[6:13] - coop[7:14]).mean()
    assert learned.skill["pv"]["persistence_mae_w"] == pytest.approx(expected, rel=0.01)
    assert learned.skill["days"] == 7 and learned.skill["pv"]["slots"] == 7 * 96
    assert learned.skill["pv"]["forecast"] == "clear sky × cloudiness"
    # Without a site: the history forecast is scored.
    plain = learn_from_ledger(path, list(IDS), now)
    assert plain.cloudiness is None and plain.skill["pv"]["forecast"] == "history"
    # calibrate reports the same forecast over the whole ledger, beside history.
    report = calibrate(path, SITE)
    assert set(report) >= {"pv", "pv_sky", "load"}
    assert report["pv_sky"]["members"]["c"] == report["pv"]["members"]["c"]  # no array


def _wait(until, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if until():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _plan(path: Path, tmp: Path) -> RollingPlan:
    plan = RollingPlan(3, 15, 24, store_path=tmp / store.FILE_NAME, member_ids=list(IDS),
                       learn=partial(learn_from_ledger, path, list(IDS), site=SITE))
    plan.providers.append(ClearSkyProvider(SITE, list(IDS), lambda: plan.cloudiness))
    return plan


def test_seeded_from_the_ledger_then_kept_across_a_restart(ledger, tmp_path: Path) -> None:
    path, *_ = ledger
    now = T0 + 14 * 86400 + 8 * 3600.0
    limits, valid, zeros = CoopLimits(), np.ones(3, bool), np.zeros(3)
    plan = _plan(path, tmp_path)
    try:
        plan.after_cycle(now, FLEET, STORED, zeros, zeros, valid, limits)  # learning starts
        assert plan.worker.state.status == "no forecast"  # nothing seen yet: greedy
        _wait(lambda: plan._learning is not None and plan._learning.done())
        plan.after_cycle(now + 30, FLEET, STORED, zeros, zeros, valid, limits)
        assert plan.cloudiness is not None
        # Seeded from the ledger: a forecast, and a solve at once rather than in 15 min.
        assert plan.worker.state.status == "solving"
        believed = plan.forecast(now, 96)
        assert believed is not None and np.isfinite(believed[0]).all()
        _wait(lambda: plan.targets(now + 40, FLEET, limits) is not None)
        assert plan.worker.state.forecast.startswith("PV: pvlib clear sky")
        assert "history" in plan.worker.state.forecast  # member c has no array
        before = plan.targets(now + 60, FLEET, limits)
        status = plan.status()
        assert status["status"] == "ok" and status["skill"]["pv"]["skill"] is not None
        file = tmp_path / store.FILE_NAME
        _wait(file.exists)
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    finally:
        plan.close()
    again = _plan(path, tmp_path)  # a restart: the file is read at the first call
    try:
        after = again.targets(now + 60, FLEET, limits)
        assert after is not None
        np.testing.assert_allclose(after, before, atol=0.05, equal_nan=True)  # kept to 0.1 Wh
        assert again.status()["message"] == "restored after a restart"
        assert again.status()["forecast"] == status["forecast"]
        assert again.status()["skill"] == json.loads(json.dumps(status["skill"]))
        assert again.cloudiness is not None
        start, pv, load = again.worker.last_forecast  # the coop's forecast the plan trusted
        assert start == plan.worker.last_forecast[0] and len(pv) == len(load) == 96
        np.testing.assert_allclose(pv, plan.worker.last_forecast[1], atol=0.05)
        _healthz_shows(path, again)
        # The first cycle after the restart: no forecast until the ledger is read again, but
        # the restored plan is still followed.
        again.after_cycle(now + 60, FLEET, STORED, zeros, zeros, valid, limits)
        assert again.worker.state.status == "no forecast"
        assert again.targets(now + 61, FLEET, limits) is not None
        expiry = again.worker.state.solved_at + again.worker.expire_s
        assert again.targets(expiry - 1, FLEET, limits) is not None
        assert again.targets(expiry, FLEET, limits) is None  # expired: greedy
    finally:
        again.close()


class _Live:
    """A running controller as the API sees it, with a real rolling plan behind it."""

    cycle_s, settlement_s = 1.0, 3600

    def __init__(self, plan: RollingPlan) -> None:
        self.plan = plan

    def devices(self) -> list[dict]:
        return [{"name": "a/meter", "state": "ok"}]

    def last_cycle_age_s(self) -> float:
        return 0.5

    def ledger_status(self) -> dict:
        return {"state": "ok", "reason": None}

    def unwritten_wh(self, after_ts: int | None) -> dict:
        return {}

    def open_interval_start(self) -> None:
        return None

    def rolling_plan(self) -> dict:
        return self.plan.status()


def _healthz_shows(path: Path, plan: RollingPlan) -> None:
    """/healthz states which forecast the plan trusted and how well it has done."""
    from fastapi.testclient import TestClient

    from controller.ledger import LedgerReader
    from tests.auth_helpers import public_app

    body = TestClient(public_app(LedgerReader(path), live=_Live(plan))).get("/healthz").json()
    shown = body["rolling_plan"]
    assert shown["status"] == "ok" and shown["forecast"].startswith("PV: pvlib clear sky")
    assert set(shown["skill"]["pv"]) >= {"mae_w", "persistence_mae_w", "skill"}
    assert shown["skill"]["load"]["forecast"] == "history"


def test_a_file_for_another_coop_or_too_old_is_not_trusted(tmp_path: Path) -> None:
    from controller.planning.cloudiness import Cloudiness

    cloud = Cloudiness(np.full((24, 3), 0.5), np.full(3, 0.4), learned_at=1000.0)
    file = tmp_path / store.FILE_NAME
    store.save(file, list(IDS), 1000.0, "x", (1000.0, np.ones((4, 3))), cloud, None)
    assert store.load(file, list(IDS), 2000.0)["cloudiness"] is not None
    assert store.load(file, list(IDS), 1000.0 + 3 * 86400)["cloudiness"] is None  # too old
    assert store.load(file, ["a", "b"], 2000.0) is None  # other members
    file.write_text("{not json")
    assert store.load(file, list(IDS), 2000.0) is None
    plan = RollingPlan(3, store_path=file, member_ids=list(IDS))
    assert plan.targets(2000.0, FLEET, CoopLimits()) is None  # starts afresh: greedy
    assert plan.worker.forecast_name == FORECAST_NAME
    plan.close()
