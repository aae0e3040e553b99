"""PV held back, estimated and booked with its cause, against what the simulator held back.

A sunny island from 09:00: the batteries fill, the grid-forming inverter can take no more
and the island sheds PV by frequency (the simulator's ``island_curtailed_wh``), and the
controller caps inverters (the simulator's ``limit_curtailed_wh``). Before the estimate
the books said a few kWh curtailed of ~170 kWh held back.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from controller.island.curtail_estimate import CurtailEstimator, former_saturated
from controller.island_day.rehearse import Rehearsal, RehearsalOptions, rehearse

ALL = np.ones(2, dtype=bool)
NONE = np.zeros(2, dtype=bool)


def test_the_estimate_learns_the_ratio_while_nothing_holds_pv_back_then_names_the_cause(
        ) -> None:
    est = CurtailEstimator(2)
    forecast = np.array([1000.0, 2000.0])
    for _ in range(10):  # an hour unheld: the roofs give 80 % and 50 % of the forecast
        out = est.step(360.0, np.array([800.0, 1000.0]), ALL, forecast, NONE, False)
        assert out.held_w.sum() == 0.0
    assert est.ratio == pytest.approx([0.8, 0.5])
    capped = np.array([True, False])
    out = est.step(60.0, np.array([300.0, 1000.0]), ALL, forecast, capped, False)
    assert out.held_w == pytest.approx([500.0, 0.0])
    assert out.by_cause_w["command"] == pytest.approx([500.0, 0.0])
    out = est.step(60.0, np.array([300.0, 400.0]), ALL, forecast, capped, True)
    assert out.by_cause_w["grid_former"] == pytest.approx([0.0, 600.0])
    assert est.ratio == pytest.approx([0.8, 0.5])  # nothing learnt while held back


def test_without_a_forecast_or_a_reading_nothing_is_estimated() -> None:
    est = CurtailEstimator(2)
    out = est.step(60.0, np.array([100.0, 100.0]), ALL, None, ALL, True)
    assert out.held_w.sum() == 0.0
    out = est.step(60.0, np.array([np.nan, 100.0]), np.array([True, False]),
                   np.array([1000.0, 1000.0]), ALL, True)
    assert out.held_w.sum() == 0.0


@pytest.mark.parametrize(("islanded", "battery_w", "soc", "expected", "why"), [
    (True, -3300.0, 60.0, True, "charging at its rating"),
    (True, -1000.0, 99.8, True, "full"),
    (True, 0.0, 100.0, True, "full and idle"),
    (True, 800.0, 100.0, False, "full but supplying the island: a cloud, nothing held back"),
    (True, -1000.0, 80.0, False, "room and power to spare"),
    (False, -3300.0, 100.0, False, "on the grid, the grid takes the surplus"),
])
def test_the_grid_former_can_take_no_more(islanded: bool, battery_w: float, soc: float,
                                         expected: bool, why: str) -> None:
    former = np.array([True, False])
    got = former_saturated(islanded, former, np.array([battery_w, -5000.0]),
                           np.array([soc, 100.0]), np.array([3300.0, 5000.0]))
    assert got is expected, why


@pytest.fixture(scope="module")
def sunny(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    options = RehearsalOptions(hours=6, speed=1440, start="09:00",
                               out=tmp_path_factory.mktemp("sunny"), households=10,
                               cloud=None, dropout_hour=None, progress=False)
    return asyncio.run(rehearse(options))


def test_booked_curtailment_is_what_the_simulator_held_back_within_5_percent(
        sunny: Rehearsal) -> None:
    c = sunny.summary["curtailment"]
    sim = c["simulator"]
    # a sunny island: most of the PV could not be used, and both causes held some back
    assert sim["held_back_kwh"] > 0.4 * sim["available_kwh"], c
    assert sim["by_cap_kwh"] > 0 and sim["by_island_kwh"] > 0, c
    # measured 0.962 and 0.995 of the simulator's figure (the last, uncommitted interval's
    # share is not in the books)
    assert c["booked_kwh"] == pytest.approx(sim["held_back_kwh"], rel=0.05), c
    est = c["estimated_kwh"]
    assert est["command"] > 0 and est["grid_former"] > est["command"], est
