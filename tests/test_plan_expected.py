"""The plan's expected saving against greedy: same forecast, same engine, only the targets
differ; booked once per re-plan and summed for the month."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controller.planning.expected import expect, plan_and_expect
from controller.planning.savings import book, month_saved
from dispatch import Fleet, FleetState
from dispatch.series import run_series
from tests.test_plan_lp import DT, case


def test_no_target_saves_nothing_and_greedy_is_the_series_greedy() -> None:
    fleet, start, pv, load = case(True)
    nan = np.full(pv.shape, np.nan)
    out = expect(fleet, start, pv, load, DT, nan, booked_steps=len(pv))
    assert (out.saved_import_wh == 0).all() and out.saved_money is None
    # greedy as the expectation runs it is the batch series' greedy (another code path)
    series = run_series(fleet, FleetState.start(start), pv, load, DT).coop
    greedy_import = series["from_grid"] + series["grid_to_battery"]
    assert abs(out.greedy_import_wh - greedy_import) <= 1e-6 * max(1.0, greedy_import)
    assert out.plan_import_wh == out.greedy_import_wh
    ahead = plan_and_expect(fleet, start, pv, load, DT, booked_s=len(pv) * DT).expected
    assert abs(ahead.greedy_import_wh - ahead.plan_import_wh
               - ahead.saved_import_wh.sum()) < 1e-6


def test_a_plan_that_keeps_room_saves_import_and_money() -> None:
    """An offered battery, full by noon under greedy: the plan keeps room for the
    afternoon's surplus and serves the neighbour's evening."""
    t = 24
    hours = np.arange(t)
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    pv = np.column_stack([sun * 6000.0, np.zeros(t)])
    load = np.column_stack([np.full(t, 300.0), np.where((hours >= 7) & (hours < 10), 2500.0,
                                                         np.where(hours >= 18, 1500.0, 300.0))])
    cap = np.array([10_000.0, 0.0])
    fleet = Fleet(cap, cap * 0.05, np.full(2, 5000.0), np.full(2, 5000.0), np.full(2, 0.9),
                  reserve_wh=cap * 0.1, offered=np.array([True, False]))
    price = np.full(t, 0.30 / 1000)
    ahead = plan_and_expect(fleet, cap * 0.1, pv, load, 3600.0, booked_s=t * 3600.0,
                            import_price=price, export_price=np.full(t, 0.05 / 1000))
    saved = ahead.expected.saved_import_wh.sum()
    assert saved > 500  # Wh over the day
    assert ahead.expected.saved_money is not None and ahead.expected.saved_money.sum() > 0
    assert ahead.expected.shared_wh[18:, 1].sum() > 0  # the neighbour's evening is served


def test_booked_once_per_start_and_summed_by_month(tmp_path: Path) -> None:
    fleet, start, pv, load = case(True)
    ahead = plan_and_expect(fleet, start, pv, load, DT, booked_s=2 * DT)
    path = tmp_path / "plan_savings.sqlite"
    ids = ["a", "b", "c"]
    book(path, 1000.0, ids, ahead.expected)
    book(path, 1000.0, ids, ahead.expected)  # the same plan twice: once
    book(path, 1000.0 + 2 * DT, ids, ahead.expected)
    got = month_saved(path, 0, 10**9)
    for i, m in enumerate(ids):
        assert abs(got[m][0] - 2 * ahead.expected.saved_import_wh[i] / 1000) < 1e-5
        assert got[m][1] is None
    assert month_saved(tmp_path / "none.sqlite", 0, 1) == {}


def test_statement_and_report_show_the_months_saving(tmp_path: Path) -> None:
    """The member sees its own saving, the coop report the sum; text and data agree."""
    from controller.accounts import coop_report, member_statement, report_dict, statement_dict
    from controller.accounts.report import render_text as report_text
    from controller.accounts.statement import render_text
    from controller.config import TariffConfig
    from controller.ledger import LedgerReader
    from controller.ledger.periods import month_start
    from tests.accounts_ledgers import JAN31_20H, build_ledger

    ledger = tmp_path / "ledger.sqlite"
    build_ledger(ledger)
    fleet, start, pv, load = case(True)
    ahead = plan_and_expect(fleet, start, pv, load, DT, booked_s=4 * DT,
                            import_price=np.full(len(pv), 3e-4))
    savings = tmp_path / "plan_savings.sqlite"
    book(savings, JAN31_20H, ["a", "b", "c"], ahead.expected)
    tariff = TariffConfig(peer_price_per_kwh=0.1, grid_import_per_kwh=0.3,
                          grid_export_per_kwh=0.05)
    month = month_start(JAN31_20H)
    reader = LedgerReader(ledger)
    st = member_statement(reader, "a", month, tariff=tariff, savings=savings)
    report = coop_report(reader, month, tariff, savings=savings)
    bare = statement_dict(member_statement(reader, "a", month, tariff=tariff))
    mine = statement_dict(st)["plan_saved"]
    exp = ahead.expected
    assert mine["import_kwh"] == round(exp.saved_import_wh[0] / 1000, 3)
    assert mine["money"] == round(float(exp.saved_money[0]), 2) and mine["currency"] == "EUR"
    coop = report_dict(report)["plan_saved"]
    assert coop["import_kwh"] == round(exp.saved_import_wh.sum() / 1000, 3)
    assert f"grid import saved       {coop['import_kwh']:.3f} kWh" in report_text(report)
    assert "grid import saved" in render_text(st)
    assert bare["plan_saved"] is None
