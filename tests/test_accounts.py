"""Accounts: statements and reports are the ledger's rows summed, and the API says the same."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from api.accounts import MAX_POINTS, accounts_router
from controller.accounts import coop_report, member_statement, parse_month, report_dict
from controller.accounts.figures import (
    ENERGY,
    AccountsInputError,
    UnknownMemberError,
    drift,
    energy_wh,
    figures,
    parse_time,
)
from controller.accounts.report import expected_intervals, render_text
from controller.accounts.statement import render_csv, render_json, statement_dict
from controller.config import CoopConfig, LedgerConfig, TariffConfig, parse_config
from controller.ledger import LedgerReader
from controller.ledger.schema import MEMBER_COLUMNS, METER_FIELDS
from dispatch.metrics import jain_index
from dispatch.rounding import LIBERATED_FIELDS
from tests.accounts_ledgers import build_ledger, config_text
from tests.auth_helpers import public_authority

MEMBERS = ("a", "b", "c")
TARIFF = TariffConfig(peer_price_per_kwh=0.15, grid_import_per_kwh=0.30,
                      grid_export_per_kwh=0.07, coop_fee_per_kwh=0.01)
JAN, FEB = parse_month("2026-01")[0], parse_month("2026-02")[0]
MONTHS = [JAN, FEB]


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> LedgerReader:
    path = tmp_path_factory.mktemp("accounts") / "ledger.sqlite"
    # 12 h of 5-minute cycles from 4 h before February; a's import counter runs 40 % fast
    build_ledger(path, MEMBERS, seed=7, cycles=144, import_error=(0.4, 0.0, 0.0))
    return LedgerReader(path)


def config_for(reader: LedgerReader) -> CoopConfig:
    return parse_config(config_text(reader.path, MEMBERS))


def raw(reader: LedgerReader, start: int, end: int) -> dict[str, dict[str, int | None]]:
    """Per member sums of the raw rows (meter columns None where every row is None)."""
    out = {m: {c: None if c in METER_FIELDS else 0 for c in MEMBER_COLUMNS} for m in MEMBERS}
    for _, member, *values in reader.raw_rows(start, end):
        for c, v in zip(MEMBER_COLUMNS, values, strict=True):
            if v is not None:
                out[member][c] = (out[member][c] or 0) + v
    return out


def coop_sum(per_member: dict[str, dict[str, int | None]]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for sums in per_member.values():
        for c, v in sums.items():
            out[c] = out.get(c) if v is None else (out.get(c) or 0) + v
    return out


def starts(reader: LedgerReader, start: int, end: int) -> list[int]:
    return sorted({ts for ts, *_ in reader.raw_rows(start, end)})


@pytest.mark.parametrize("month", MONTHS)
@pytest.mark.parametrize("member", MEMBERS)
def test_statement_totals_are_the_raw_rows(reader: LedgerReader, member: str,
                                           month: int) -> None:
    st = member_statement(reader, member, month, tariff=TARIFF)
    end = st.end
    expected = raw(reader, month, end)[member]
    assert {c: st.totals[c] for c in MEMBER_COLUMNS} == expected
    assert st.totals["intervals"] == len(starts(reader, month, end)) > 0
    served = sum(expected[f] for f in ("own_pv_used", "from_battery", "from_peers",
                                       "from_coop_battery", "from_grid"))
    liberated = sum(expected[f] for f in LIBERATED_FIELDS)
    totals = statement_dict(st)["totals"]
    assert totals["served_kwh"] == served / 1000
    assert totals["load_kwh"] == (served + expected["shed"]) / 1000
    assert totals["liberated_kwh"] == liberated / 1000
    assert totals["self_sufficiency"] == round(liberated / (served + expected["shed"]), 4)
    assert totals["gap_s"] == expected["gap_s"]
    if expected["meter_import"] is None:
        assert totals["import_drift_kwh"] is None and not st.drift["import"].flagged
    else:
        # everything that passes the member's meter, peers' energy included
        booked = sum(expected[f] for f in ("from_grid", "grid_to_battery", "from_peers",
                                           "from_coop_battery", "battery_from_coop",
                                           "unallocated_import"))
        # the books are settled on the counters (tests/test_settle.py); the drift is what
        # the counter said beyond the estimate before that
        assert booked >= 0
        assert st.drift["import"].drift == expected["meter_import_drift"]


@pytest.mark.parametrize("month", MONTHS)
def test_statement_days_are_the_raw_rows_by_day(reader: LedgerReader, month: int) -> None:
    st = member_statement(reader, "a", month)
    by_day: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(MEMBER_COLUMNS, 0))
    for ts, member, *values in reader.raw_rows(month, st.end):
        if member == "a":
            for c, v in zip(MEMBER_COLUMNS, values, strict=True):
                by_day[ts // 86400 * 86400][c] += v or 0
    assert [ts for ts, _ in st.days] == sorted(by_day)
    for ts, sums in st.days:
        assert {c: sums[c] or 0 for c in MEMBER_COLUMNS} == by_day[ts]
    rows = render_csv(st).splitlines()
    assert len(rows) == 1 + len(st.days) + 1 and rows[-1].startswith("total,")
    assert rows[0].split(",")[:4] == ["day", "load_kwh", "served_kwh", "liberated_kwh"]


def test_drift_is_flagged_for_a_fast_meter_only(reader: LedgerReader) -> None:
    flagged = {m: [member_statement(reader, m, month).drift["import"].flagged
                   for month in MONTHS] for m in MEMBERS}
    assert any(flagged["a"]) and not any(flagged["b"]) and not any(flagged["c"])
    assert "FLAGGED" in "".join(
        render_text_statement(reader, "a", month) for month in MONTHS)
    no_meter = member_statement(reader, "c", FEB)
    assert no_meter.drift["import"].metered is None
    assert "import: no meter counter" in render_text_statement(reader, "c", FEB)
    for month in MONTHS:
        assert coop_report(reader, month).drift_flagged == [
            m for m in MEMBERS
            if any(d.flagged for d in member_statement(reader, m, month).drift.values())]


def render_text_statement(reader: LedgerReader, member: str, month: int) -> str:
    from controller.accounts.statement import render_text as statement_text

    return statement_text(member_statement(reader, member, month, tariff=TARIFF))


@pytest.mark.parametrize("month", MONTHS)
def test_report_is_the_raw_rows_summed(reader: LedgerReader, month: int) -> None:
    report = coop_report(reader, month, TARIFF)
    d = report_dict(report)
    per_member = raw(reader, month, report.end)
    coop = coop_sum(per_member)
    assert {c: report.totals[c] for c in MEMBER_COLUMNS if c not in METER_FIELDS} == {
        c: coop[c] for c in MEMBER_COLUMNS if c not in METER_FIELDS}
    wh = energy_wh(coop)
    assert d["liberated_kwh"] == wh["liberated"] / 1000
    assert d["shared_peer_to_peer_kwh"] == coop["to_peers"] / 1000 == coop["from_peers"] / 1000
    assert d["unserved_kwh"] == coop["shed"] / 1000
    assert d["curtailed_kwh"] == coop["curtailed"] / 1000
    member_wh = {m: energy_wh(s) for m, s in per_member.items()}
    assert d["members_served"] == sum(1 for w in member_wh.values() if w["load"] > 0)
    assert d["jain_fairness"] == jain_index(
        round(w["liberated"] / w["load"], 4) for w in member_wh.values() if w["load"])
    committed = starts(reader, month, report.end)
    db = sqlite3.connect(reader.path)
    where = "FROM intervals WHERE start_ts >= ? AND start_ts < ?"
    with_gaps = db.execute(f"SELECT COUNT(*) {where} AND gap_s_coop > 0",
                           (month, report.end)).fetchone()[0]
    gap_s, islanded_s = db.execute(f"SELECT SUM(gap_s_coop), SUM(islanded_s) {where}",
                                   (month, report.end)).fetchone()
    db.close()
    assert d["intervals"] == {"committed": len(committed), "expected": len(committed),
                              "missing": with_gaps, "with_gaps": with_gaps, "absent": 0}
    assert with_gaps > 0
    assert d["gap_hours"] == round(gap_s / 3600, 3)
    assert d["hours_islanded"] == round(islanded_s / 3600, 3)
    # the members' statements add up to the report
    statements = [member_statement(reader, m, month, tariff=TARIFF) for m in MEMBERS]
    for key in ENERGY:
        assert sum(round(statement_dict(s)["totals"][f"{key}_kwh"] * 1000)
                   for s in statements) == round(d["totals"][f"{key}_kwh"] * 1000)
    assert d["budget"]["balanced"]
    text = render_text(report)
    assert "balanced to the cent" in text and "yes" in text


def test_expected_intervals_table() -> None:
    month, end, step = JAN, FEB, 900
    assert expected_intervals(month, end, step, None, None) == 0
    assert expected_intervals(month, end, step, month, end) == 31 * 96
    assert expected_intervals(month, end, step, month - 86400, end + 86400) == 31 * 96
    assert expected_intervals(month, end, step, end - 3600, end + 86400) == 4
    assert expected_intervals(month, end, step, month, month + 1800) == 2
    assert expected_intervals(month, end, step, end, end + 900) == 0


def test_empty_month_is_zero_not_an_error(reader: LedgerReader) -> None:
    december = parse_month("2025-12")[0]
    st = member_statement(reader, "a", december, tariff=TARIFF)
    assert st.days == [] and st.totals["intervals"] == 0
    d = statement_dict(st)
    assert d["totals"]["load_kwh"] == 0 and d["totals"]["self_sufficiency"] is None
    assert d["money"]["net_cents"] == 0
    r = report_dict(coop_report(reader, december, TARIFF))
    assert r["intervals"]["expected"] == 0 and r["jain_fairness"] is None


def test_unknown_member_names_the_members(reader: LedgerReader) -> None:
    with pytest.raises(UnknownMemberError,
                       match=r"member 'x' is not in this coop \(members: a, b, c\)"):
        member_statement(reader, "x", FEB)


@pytest.fixture(scope="module")
def client(reader: LedgerReader) -> TestClient:
    app = FastAPI(dependencies=[Depends(public_authority(reader).authorize)])
    app.include_router(accounts_router(reader, config_for(reader)))
    return TestClient(app)


def _json(value: object) -> object:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("month", MONTHS)
def test_api_statement_and_report_equal_the_accounts(reader: LedgerReader, client: TestClient,
                                                     month: int) -> None:
    label = datetime.fromtimestamp(month, UTC).strftime("%Y-%m")
    config = config_for(reader)
    for m in MEMBERS:
        body = client.get(f"/api/v1/members/{m}/statement", params={"month": label})
        assert body.status_code == 200
        st = member_statement(reader, m, month, config.ledger, config.tariff)
        assert body.json() == _json(statement_dict(st)) == json.loads(render_json(st))
    body = client.get("/api/v1/coop/report", params={"month": label})
    assert body.status_code == 200
    assert body.json() == _json(report_dict(coop_report(reader, month, config.tariff,
                                                        config.ledger)))


@pytest.mark.parametrize("step", ["interval", "hour", "day", "month"])
def test_api_series_sums_to_the_statement(reader: LedgerReader, client: TestClient,
                                          step: str) -> None:
    st = statement_dict(member_statement(reader, "b", FEB))
    points = client.get("/api/v1/members/b/series",
                        params={"from": st["from"], "to": int(parse_month("2026-02")[1]),
                                "step": step}).json()["points"]
    assert points
    for key in ENERGY:
        assert sum(round(p[f"{key}_kwh"] * 1000) for p in points) == round(
            st["totals"][f"{key}_kwh"] * 1000)
    assert sum(p["gap_s"] for p in points) == st["totals"]["gap_s"]


def test_statement_equals_the_energy_endpoint(reader: LedgerReader) -> None:
    """The app's own ``/energy`` over the same month gives the statement's totals."""
    from tests.auth_helpers import public_app

    energy_client = TestClient(public_app(reader))
    for month in MONTHS:
        st = member_statement(reader, "a", month)
        d = statement_dict(st)
        energy = energy_client.get("/api/v1/members/a/energy",
                                   params={"from": d["from"], "to": d["to"]}).json()
        assert energy["intervals"] == d["intervals"]
        shared = [k for k in d["totals"] if k in energy]
        assert len(shared) >= 20
        assert {k: energy[k] for k in shared} == {k: d["totals"][k] for k in shared}


@pytest.mark.parametrize(
    ("url", "params", "status", "needle"),
    [
        ("/api/v1/members/x/statement", {"month": "2026-02"}, 404, "member_id 'x'"),
        ("/api/v1/members/a/statement", {"month": "2026-13"}, 422,
         "month = '2026-13': expected YYYY-MM"),
        ("/api/v1/members/a/statement", {}, 422, '"query","month"'),
        ("/api/v1/coop/report", {"month": "feb"}, 422, '"query","month"'),
        ("/api/v1/members/x/series", {}, 404, "member_id 'x'"),
        ("/api/v1/members/a/series", {"from": "yesterday"}, 422, '"query","from"'),
        ("/api/v1/members/a/series", {"step": "week"}, 422, '"query","step"'),
        ("/api/v1/members/a/series", {"from": 2000, "to": 1000}, 422, "'from' must not be"),
    ],
)
def test_api_bad_requests_name_the_field(client: TestClient, url: str, params: dict,
                                         status: int, needle: str) -> None:
    response = client.get(url, params=params)
    assert response.status_code == status
    assert needle in response.text


def test_api_series_is_capped(reader: LedgerReader, client: TestClient,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    intervals = reader.span()[2]
    whole = client.get("/api/v1/members/a/series", params={"from": 0, "to": 10**10,
                                                           "step": "interval"})
    assert whole.status_code == 200  # only what is booked counts
    assert len(whole.json()["points"]) == intervals < MAX_POINTS
    monkeypatch.setattr("api.accounts.MAX_POINTS", intervals - 1)
    capped = client.get("/api/v1/members/a/series", params={"step": "interval"})
    assert capped.status_code == 422
    assert f"capped at {intervals - 1} points" in capped.text and '"query","step"' in capped.text
    assert client.get("/api/v1/members/a/series", params={"step": "hour"}).status_code == 200


def test_api_series_default_is_the_whole_ledger_by_day(reader: LedgerReader,
                                                       client: TestClient) -> None:
    points = client.get("/api/v1/members/c/series").json()["points"]
    assert [p["start"] for p in points] == ["2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z"]
    lifetime = figures(reader.totals("c"))
    for key in ENERGY:
        assert sum(round(p[f"{key}_kwh"] * 1000) for p in points) == round(
            lifetime[f"{key}_kwh"] * 1000)
    later = client.get("/api/v1/members/c/series", params={"from": "2027-01-01"})
    assert later.json()["points"] == []


def test_api_without_tariff_has_no_money(reader: LedgerReader) -> None:
    app = FastAPI(dependencies=[Depends(public_authority(reader).authorize)])
    app.include_router(accounts_router(reader, None))
    c = TestClient(app)
    assert c.get("/api/v1/members/a/statement", params={"month": "2026-02"}).json()[
        "money"] is None
    assert c.get("/api/v1/coop/report", params={"month": "2026-02"}).json()["budget"] is None
    assert "/api/v1/coop/report" in c.app.openapi()["paths"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-01", ((2026, 1), (2026, 2))), ("2026-12", ((2026, 12), (2027, 1))),
     ("2024-02", ((2024, 2), (2024, 3))), (" 1970-01 ", ((1970, 1), (1970, 2)))],
)
def test_parse_month(text: str, expected: tuple[tuple[int, int], ...]) -> None:
    assert parse_month(text) == tuple(
        int(datetime(y, m, 1, tzinfo=UTC).timestamp()) for y, m in expected)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "",
                                  "1969-12"])
def test_parse_month_rejects(text: str) -> None:
    with pytest.raises(AccountsInputError, match=rf"--month = {text!r}: expected YYYY-MM"):
        parse_month(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-02-01", FEB), ("2026-02-01T00:00:00Z", FEB), ("2026-02-01T01:00:00+01:00", FEB),
     (str(FEB), FEB), ("2026-02-01T00:15", FEB + 900)],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, "--from") == expected


@pytest.mark.parametrize("text", ["yesterday", "nan", "2026-02-30"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(AccountsInputError, match=rf"--to = {text!r}"):
        parse_time(text, "--to")


@pytest.mark.parametrize(
    ("metered", "booked", "pct", "min_wh", "limit", "flagged"),
    [
        (None, 500, 3.0, 100, 100, False),   # no counter: never flagged
        (1000, 1000, 3.0, 100, 100, False),
        (1000, 899, 3.0, 100, 100, True),    # 101 Wh > max(100, 30)
        (1000, 900, 3.0, 100, 100, False),   # exactly at the limit
        (10_000, 9_690, 3.0, 100, 300, True),
        (10_000, 9_700, 3.0, 100, 300, False),
        (10_000, 10_301, 3.0, 100, 300, True),  # either direction
        (0, 150, 3.0, 100, 100, True),       # metered nothing, booked something
    ],
)
def test_drift_table(metered: int | None, booked: int, pct: float, min_wh: int, limit: int,
                     flagged: bool) -> None:
    d = drift(metered, booked, pct, min_wh)
    assert (d.limit, d.flagged) == (limit, flagged)
    assert d.drift == (None if metered is None else metered - booked)


def test_figures_of_nothing() -> None:
    f = figures({})
    assert f["load_kwh"] == 0 and f["self_sufficiency"] is None
    assert f["meter_import_kwh"] is None and f["import_drift_kwh"] is None


def test_statement_uses_the_configured_drift_thresholds(reader: LedgerReader) -> None:
    strict = LedgerConfig(drift_threshold_pct=0, drift_min_wh=0)
    lax = LedgerConfig(drift_threshold_pct=100, drift_min_wh=10**9)
    st = member_statement(reader, "b", FEB, strict)
    assert st.drift["import"].flagged == (st.drift["import"].drift != 0)
    assert not member_statement(reader, "a", FEB, lax).drift["import"].flagged

