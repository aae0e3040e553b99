"""End to end: the demo coop over real Modbus TCP for 120 cycles, checked to the Wh."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from controller.ledger import LedgerReader
from dispatch import LEDGER_FIELDS
from tests.auth_helpers import public_app
from tests.coop_harness import start_harness

CYCLES = 120
SETTLEMENT_S = 300


def test_demo_coop_end_to_end(tmp_path: Path) -> None:
    reports = []
    provisional: dict[str, np.ndarray] = {}

    async def run() -> None:
        harness = await start_harness(tmp_path, settlement_s=SETTLEMENT_S)
        try:
            for _ in range(CYCLES):
                reports.append(await harness.step())
            provisional.update(harness.controller.book.provisional())
        finally:
            await harness.close()

    asyncio.run(run())
    assert all(r.image.valid.all() for r in reports), "every device answered over Modbus TCP"

    # every dispatch result balances per household (float, Wh)
    for r in reports[1:]:
        dt_h = (r.end_ts - r.start_ts) / 3600
        for res in (r.result, r.booked):  # the plan, and the books (battery as measured)
            np.testing.assert_allclose(res.load, r.image.load_w * dt_h, rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(res.pv, r.image.pv_production_w * dt_h, rtol=1e-12,
                                       atol=1e-9)
        battery_w = np.where(r.image.has_battery, r.image.battery_w, 0.0)
        np.testing.assert_allclose(r.booked.battery_w, battery_w, atol=1e-9)

    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    # 120 cycles of 30 s make 3,600 s: the settlement intervals inside, each aligned to
    # the clock, committed once; the one still open is not in the table yet
    starts = [r[0] for r in db.execute("SELECT start_ts FROM intervals ORDER BY start_ts")]
    assert all(s % SETTLEMENT_S == 0 for s in starts)
    assert len(starts) == CYCLES * 30 // SETTLEMENT_S
    cycles = db.execute("SELECT SUM(cycles) FROM intervals").fetchone()[0]
    assert CYCLES - SETTLEMENT_S // 30 - 1 <= cycles <= CYCLES
    # peers in equals peers out in every interval, to the Wh
    rows = db.execute(
        "SELECT start_ts, SUM(to_peers), SUM(from_peers) FROM member_energy GROUP BY start_ts"
    ).fetchall()
    assert len(rows) == len(starts)
    assert all(to == frm for _, to, frm in rows)
    assert sum(to for _, to, _ in rows) > 100, "the evening coop shares energy peer to peer"
    # liberated never exceeds served, in any row
    bad = db.execute(
        "SELECT COUNT(*) FROM member_energy WHERE own_pv_used + from_battery_coop + from_peers"
        " + from_coop_battery_coop"
        " > own_pv_used + from_battery + from_peers + from_coop_battery + from_grid"
    ).fetchone()[0]
    assert bad == 0
    # integer ledger (committed + the open interval) follows the float booking, settled on
    # the meters' whole-Wh counters, with the rest carried (never lost)
    n = len(reports[0].image.member_ids)
    for field in ("from_grid", "own_pv_used", "to_peers"):
        float_total = sum(getattr(r.booked, field).sum() for r in reports)
        booked = db.execute(f"SELECT SUM({field}) FROM member_energy").fetchone()[0]
        assert abs(float_total - booked - provisional[field].sum()) < 2 * n, field

    # the API's totals equal the ledger's
    client = TestClient(public_app(LedgerReader(tmp_path / "ledger.sqlite")))
    members = client.get("/api/v1/members").json()
    assert [m["id"] for m in members] == [f"h{i:02d}" for i in range(1, 11)]
    columns = ", ".join(f"SUM({f})" for f in LEDGER_FIELDS)
    for member in members:
        sums = dict(zip(LEDGER_FIELDS, db.execute(
            f"SELECT {columns} FROM member_energy JOIN members ON no = member_no WHERE id = ?",
            (member["id"],)
        ).fetchone(), strict=True))
        energy = client.get(f"/api/v1/members/{member['id']}/energy").json()
        liberated = (sums["own_pv_used"] + sums["from_battery_coop"] + sums["from_peers"]
                     + sums["from_coop_battery_coop"])
        served = (sums["own_pv_used"] + sums["from_battery"] + sums["from_peers"]
                  + sums["from_coop_battery"] + sums["from_grid"])
        assert energy["liberated_kwh"] == round(liberated / 1000, 3)
        assert energy["served_kwh"] == round(served / 1000, 3)
        assert energy["from_peers_kwh"] == round(sums["from_peers"] / 1000, 3)
        assert energy["to_peers_kwh"] == round(sums["to_peers"] / 1000, 3)
        assert energy["from_grid_kwh"] == round(sums["from_grid"] / 1000, 3)
        assert energy["liberated_kwh"] <= energy["served_kwh"]
        assert energy["intervals"] == len(starts)
    summary = client.get("/api/v1/coop/summary").json()
    coop_from_peers = db.execute("SELECT SUM(from_peers) FROM member_energy").fetchone()[0]
    assert summary["from_peers_kwh"] == round(coop_from_peers / 1000, 3)
    assert summary["from_peers_kwh"] == summary["to_peers_kwh"]
