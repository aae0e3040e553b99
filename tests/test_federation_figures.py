"""Federation energy in every figure: statement, report, export rows, API, series.

A random ledger (the accounts tests' generator, real writer) gets federation
shares booked on top of it as the booking does: apportioned from each
interval's real grid flows and written by ``write_shares``. The totals the
statement, the report and the API publish are then checked against the
``federation_wh`` table read with plain SQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from controller.accounts import coop_report, member_statement, parse_month, report_dict
from controller.accounts.statement import statement_dict
from controller.federation.apportion import apportion
from controller.ledger import LedgerReader, LedgerWriter
from controller.ledger.federation_rows import grid_flows, write_shares
from controller.ledger.schema import MEMBER_MASK
from tests.accounts_ledgers import build_ledger
from tests.auth_helpers import public_app

MEMBERS = ("a", "b", "c")
STEP = 900
FEB, FEB_END = parse_month("2026-02")


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> LedgerReader:
    path = tmp_path_factory.mktemp("fedfig") / "ledger.sqlite"
    build_ledger(path, MEMBERS, seed=11, cycles=144)
    rng = np.random.default_rng(4)
    starts = [r[0] for r in sqlite3.connect(path).execute(
        "SELECT start_ts FROM intervals ORDER BY start_ts")]
    writer = LedgerWriter(path, STEP, [(m, m.upper()) for m in MEMBERS])

    def book(conn: sqlite3.Connection, numbers: dict[str, int], start: int, k: int) -> None:
        to_grid, from_grid = grid_flows(conn, start, STEP, MEMBERS, numbers)
        # Some of the coop's export went to other coops, some of its import came from them.
        out = int(rng.integers(0, int(to_grid.sum()) + 1))
        into = int(rng.integers(0, int(from_grid.sum()) + 1))
        shares = apportion(start, f"h{start}", MEMBERS, out, into, to_grid, from_grid,
                           "prorata")
        # One interval in three under a charter that does not count it as liberated.
        assert write_shares(conn, shares, numbers, STEP, liberated=k % 3 != 0)

    for k, start in enumerate(starts):
        writer.submit(lambda conn, numbers, start=start, k=k: book(conn, numbers, start, k))
    assert writer.flush()
    writer.close()
    return LedgerReader(path)


def table(path: Path, member: str | None, start: int, end: int) -> dict[str, int]:
    """The federation table, summed with plain SQL (the independent reference)."""
    conn = sqlite3.connect(path)
    no = None if member is None else conn.execute("SELECT no FROM members WHERE id = ?",
                                                  (member,)).fetchone()[0]
    total = {"to": 0, "from": 0, "liberated": 0}
    for key, t, f, lib in conn.execute(
            "SELECT key, to_federation, from_federation, liberated FROM federation_wh"):
        ts = (key >> 20) * STEP
        if start <= ts < end and (no is None or key & MEMBER_MASK == no):
            total["to"] += t
            total["from"] += f
            total["liberated"] += lib
    conn.close()
    return total


def test_statement_report_and_api_totals_equal_the_federation_tables(
        reader: LedgerReader) -> None:
    api = TestClient(public_app(reader))
    report = report_dict(coop_report(reader, FEB))
    coop = table(reader.path, None, FEB, int(FEB_END))
    assert coop["from"] > 0 and coop["to"] > 0 and 0 < coop["liberated"] < coop["from"]
    assert round(report["totals"]["from_federation_kwh"] * 1000) == coop["from"]
    assert round(report["totals"]["to_federation_kwh"] * 1000) == coop["to"]
    without = {k: v for k, v in reader.totals(None, FEB, FEB_END).items()
               if k != "from_federation_liberated"}
    for member in MEMBERS:
        ref = table(reader.path, member, FEB, int(FEB_END))
        d = statement_dict(member_statement(reader, member, FEB))
        assert round(d["totals"]["from_federation_kwh"] * 1000) == ref["from"]
        assert round(d["totals"]["to_federation_kwh"] * 1000) == ref["to"]
        energy = api.get(f"/api/v1/members/{member}/energy",
                         params={"from": d["from"], "to": d["to"]}).json()
        assert round(energy["from_federation_kwh"] * 1000) == ref["from"]
        assert round(energy["to_federation_kwh"] * 1000) == ref["to"]
        # Liberated: the coop's own generation plus what the charter counts of the
        # federation's, in the statement and the API alike.
        assert energy["liberated_kwh"] == d["totals"]["liberated_kwh"]
        assert energy["from_federation_kwh"] <= energy["from_grid_kwh"]
    assert without["from_federation"] == coop["from"]
    # The report's liberated is the statements' liberated summed, federation included.
    statements = [statement_dict(member_statement(reader, m, FEB)) for m in MEMBERS]
    assert sum(round(s["totals"]["liberated_kwh"] * 1000) for s in statements) == round(
        report["totals"]["liberated_kwh"] * 1000)
    summary = api.get("/api/v1/coop/summary").json()
    everything = table(reader.path, None, 0, 2**40)
    assert round(summary["from_federation_kwh"] * 1000) == everything["from"]
    assert round(summary["to_federation_kwh"] * 1000) == everything["to"]


@pytest.mark.parametrize("step", ["interval", "hour", "day"])
def test_series_sums_to_the_federation_table(reader: LedgerReader, step: str) -> None:
    points = reader.series("b", FEB, FEB_END, step)
    ref = table(reader.path, "b", FEB, int(FEB_END))
    assert sum(p["from_federation"] for _, p in points) == ref["from"]
    assert sum(p["to_federation"] for _, p in points) == ref["to"]


def test_liberated_counts_federation_where_the_charter_says(reader: LedgerReader) -> None:
    from controller.accounts.figures import energy_wh

    totals = reader.totals("a", FEB, FEB_END)
    ref = table(reader.path, "a", FEB, int(FEB_END))
    base = energy_wh({**totals, "from_federation_liberated": 0})["liberated"]
    assert energy_wh(totals)["liberated"] == base + ref["liberated"]
