"""Weather days from the ledger's own history: the coop's booked PV over the clear sky."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from controller.island.forecast import pv_forecast_w
from controller.island.site import ArrayConfig, SiteConfig
from controller.island_day.weather import MIN_DAYS, ledger_weather
from controller.ledger import LedgerReader
from dispatch.rounding import LEDGER_FIELDS
from tests.ledger_helpers import write_ledger

IDS = ("h01", "h02")
SITE = SiteConfig(latitude=45.76, longitude=4.84, tz="+01:00", arrays=[
    ArrayConfig(member="h01", kwp=4.0), ArrayConfig(member="h02", kwp=2.0, azimuth=135.0)])
PLAN_DAY = datetime(2026, 6, 21, tzinfo=SITE.tzinfo)
SHARE = 0.6  # every booked day gave 60 % of the clear sky


def booked_days(days: int) -> list[dict[str, np.ndarray]]:
    """``days`` days before the plan's day, 15-minute cycles, PV booked as own use."""
    cycles = []
    for d in range(days, 0, -1):
        day = PLAN_DAY - timedelta(days=d)
        clear = pv_forecast_w(SITE, list(IDS), day, 96, "clear")  # W per quarter hour
        for q in range(96):
            flows = {f: np.zeros(len(IDS)) for f in LEDGER_FIELDS}
            flows["own_pv_used"] = clear[q] * SHARE * 0.25  # Wh
            cycles.append(flows)
    return cycles


def test_the_seasons_booked_days_give_the_share_of_the_clear_sky(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    first = (PLAN_DAY - timedelta(days=MIN_DAYS)).timestamp()
    write_ledger(path, IDS, 900, first, 900.0, booked_days(MIN_DAYS))
    weather = ledger_weather(LedgerReader(path), SITE, list(IDS), PLAN_DAY, 96)
    assert weather is not None and weather.source.startswith(f"ledger: {MIN_DAYS} booked")
    assert weather.index.shape == (MIN_DAYS, 96)
    # In daylight every day reads back the 60 % it was booked at (integer Wh: ±1 %).
    midday = weather.index[:, 8 * 4:17 * 4]
    assert midday == pytest.approx(np.full(midday.shape, SHARE), abs=0.01)
    # Too few days: no weather from the ledger (the plan falls back on the synthetic days).
    short = tmp_path / "short.sqlite"
    write_ledger(short, IDS, 900, first, 900.0, booked_days(MIN_DAYS)[:96 * 10])
    assert ledger_weather(LedgerReader(short), SITE, list(IDS), PLAN_DAY, 96) is None
