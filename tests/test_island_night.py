"""A night island whose plan holds every tier sheds nothing, and the rehearsal's verdicts
(controller/island_day/rehearse_verdicts.py) fail when they should, exit status included.

Measured before the grid-former was spent last (dispatch/island.py), on this very run
(12 h from 18:00, 10 households, no events): the grid-former h01 reached its 5 % floor at
04:51 while h08 held 1.8 kWh above its own, and the island dropped 0.51 kWh.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from controller.cli import island_cmd
from controller.island.plan import TIERS
from controller.island_day.rehearse import CycleLog, Rehearsal, RehearsalOptions, rehearse
from controller.island_day.rehearse_verdicts import render, verdicts
from dispatch.island import FORMER_MARGIN


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    out = tmp_path_factory.mktemp("night")
    # The issue's own run (1440x: a 72 s cycle); faster, a loaded machine's stalls outlast
    # the batteries' setpoints and the grid-former is left alone (measured at 2000x: 90 of
    # 440 cycles missed, once 3.2 kWh dropped).
    options = RehearsalOptions(hours=12, speed=1440, start="18:00", out=out, households=10,
                               cloud=None, dropout_hour=None, progress=False)
    return asyncio.run(rehearse(options))


def test_a_night_island_whose_plan_holds_every_tier_sheds_nothing(night: Rehearsal) -> None:
    s = night.summary
    why = {k: s[k] for k in ("cycles", "cycles_missed", "cycle_ms", "verdicts")}
    assert all(s["plan"]["feasible"].values()), s["plan"]
    # islanded for the whole command (the ledger's islanded seconds leave out the gaps a
    # loaded machine's stalls book, so the transitions say how long it was)
    steps = {t["to"]: t["ts"] for t in s["grid"]["transitions"]
             if t["from"] != t["to"]}  # changes of state, not the shedding's rows
    assert steps["RETURNING"] - steps["OFF_GRID"] > 11.9 * 3600, s["grid"]
    # on the simulator: nothing dropped by the island, nothing held off by a switch
    assert night.unserved_wh.sum() < 1.0, (night.unserved_wh, why)
    # what a switch held off, only while a re-plan shed its tier (the verdict's check)
    v = s["verdicts"]
    assert v["ok"], why
    assert all(v["plan_tiers"][t]["plan_held_cycles"] > 100 for t in TIERS)
    # the grid-former kept its margin while the other batteries had energy to give
    g = night.former
    assert g is not None
    others = [i for i in range(len(night.member_ids)) if night.has_battery[i] and i != g]
    lowest = night.soc_pct[:, g].min()
    assert lowest >= night.floor_pct[g] + 100 * FORMER_MARGIN - 1.0, lowest
    # ... and the others were used: they ended nearer their floors than it did
    end = night.soc_pct[-1]
    assert np.mean(end[others] - night.floor_pct[others]) < end[g] - night.floor_pct[g]


def _fake(islanded: bool, shed_essential_wh: float, former_low_pct: float):  # noqa: ANN202
    """A finished rehearsal's figures: 4 cycles of 15 min, the day plan holding every tier
    and, from the third cycle, a re-plan that sheds essential load."""
    t0 = 0.0
    log = CycleLog(end_ts=[900.0, 1800.0, 2700.0, 3600.0])
    replan = {"critical": True, "essential": False, "flexible": False}
    log.plan_holds = [None, None, replan, replan]
    soc_t = np.array([0.0, 900.0, 1800.0, 2700.0, 3600.0])
    cum = np.zeros((5, 3))
    cum[2:, 1] = shed_essential_wh  # shed in the second cycle, while the day plan held it
    cum[4, 1] += 500.0  # and in the last, when the re-plan said so: not a failure
    plan = SimpleNamespace(feasible=dict.fromkeys(TIERS, True))
    return SimpleNamespace(
        options=RehearsalOptions(cycle_s=0.05, speed=100.0),  # a 300 s mandate: 1/3 cycle
        cycles=log, start_ts=t0, soc_t=soc_t, shed_tier_cum_wh=cum,
        prep=SimpleNamespace(plan=plan), former=0, member_ids=["h01", "h02"],
        soc_pct=np.array([[50.0, 0.0], [former_low_pct, 0.0]]), floor_pct=np.array([5.0, 0.0]))


def test_the_verdicts_pass_only_when_nothing_they_check_went_wrong() -> None:
    assert verdicts(_fake(True, 0.0, 20.0), 3600.0)["ok"]
    v = verdicts(_fake(True, 300.0, 20.0), 3600.0)
    assert not v["ok"] and not v["plan_tiers"]["essential"]["held"]
    assert v["plan_tiers"]["essential"]["shed_kwh"] == 0.3  # the re-plan's 0.5 kWh not counted
    assert "  FAILED: essential load shed while the plan in force held it: 0.300 kWh" in render(v)
    v = verdicts(_fake(True, 0.0, 5.0), 3600.0)
    assert not v["ok"] and not v["grid_former"]["held"]
    v = verdicts(_fake(False, 0.0, 20.0), 0.0)
    assert not v["ok"] and "  FAILED: the coop never islanded" in render(v)


@pytest.mark.parametrize(("ok", "status"), [(True, 0), (False, 3)])
def test_island_rehearse_exits_non_zero_when_a_verdict_fails(
        ok: bool, status: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    v = verdicts(_fake(ok, 0.0, 20.0), 3600.0 if ok else 0.0)

    async def ran(options: RehearsalOptions) -> SimpleNamespace:
        return SimpleNamespace(summary={"verdicts": v}, options=options)

    monkeypatch.setattr("controller.island_day.rehearse.rehearse", ran)
    monkeypatch.setattr("controller.island_day.rehearse_report.render_text",
                        lambda r: "\n".join(render(r.summary["verdicts"])) + "\n")
    args = argparse.Namespace(hours=1.0, speed=1440.0, start="00:00", out=tmp_path,
                              households=3, no_events=True)
    assert island_cmd.rehearse_command(args) == status
    assert ("FAILED" in capsys.readouterr().out) is not ok


def test_a_plug_held_off_under_a_plan_that_shed_its_tier_is_not_blamed_on_the_next() -> None:
    fake = _fake(True, 0.0, 20.0)
    fake.cycles.plan_holds[3] = None  # the day plan again (holds every tier) in the last cycle
    # the last cycle's 500 Wh of essential shed came from the re-plan before it ...
    fake.options = RehearsalOptions(cycle_s=0.05, speed=6000.0)  # a 900 s mandate
    assert verdicts(fake, 3600.0)["plan_tiers"]["essential"]["held"]
    # ... unless that re-plan's mandate had run out by then
    fake.options = RehearsalOptions(cycle_s=0.05, speed=100.0)  # a 300 s mandate
    assert verdicts(fake, 3600.0)["plan_tiers"]["essential"]["shed_kwh"] == 0.5
