"""End to end: the demo coop over real Modbus TCP for 120 cycles, checked to the Wh."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from api.app import create_app
from controller.ledger import LedgerReader
from dispatch import LEDGER_FIELDS
from tests.coop_harness import start_harness

CYCLES = 120


def test_demo_coop_end_to_end(tmp_path: Path) -> None:
    reports = []

    async def run() -> None:
        harness = await start_harness(tmp_path)
        try:
            for _ in range(CYCLES):
                reports.append(await harness.step())
        finally:
            await harness.close()

    asyncio.run(run())
    assert all(r.image.valid.all() for r in reports), "every device answered over Modbus TCP"

    # every dispatch result balances per household (float, Wh)
    for r in reports[1:]:
        res, dt_h = r.result, (r.end_ts - r.start_ts) / 3600
        np.testing.assert_allclose(res.load, r.image.load_w * dt_h, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(res.pv, r.image.pv_production_w * dt_h, rtol=1e-12, atol=1e-9)

    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    intervals = db.execute("SELECT COUNT(*) FROM intervals").fetchone()[0]
    assert intervals == CYCLES
    # peers in equals peers out in every interval, to the Wh
    rows = db.execute(
        "SELECT interval_id, SUM(to_peers), SUM(from_peers) FROM member_energy GROUP BY interval_id"
    ).fetchall()
    assert len(rows) == CYCLES
    assert all(to == frm for _, to, frm in rows)
    assert sum(to for _, to, _ in rows) > 100, "the evening coop shares energy peer to peer"
    # liberated never exceeds served, in any row
    bad = db.execute(
        "SELECT COUNT(*) FROM member_energy WHERE own_pv_used + from_battery_coop + from_peers"
        " + from_coop_battery_coop"
        " > own_pv_used + from_battery + from_peers + from_coop_battery + from_grid"
    ).fetchone()[0]
    assert bad == 0
    # integer ledger follows the float dispatch, with the rest carried (never lost)
    float_total = sum(r.result.from_grid.sum() for r in reports)
    booked = db.execute("SELECT SUM(from_grid) FROM member_energy").fetchone()[0]
    assert abs(float_total - booked) < len(reports[0].image.member_ids)

    # the API's totals equal the ledger's
    client = TestClient(create_app(LedgerReader(tmp_path / "ledger.sqlite")))
    members = client.get("/api/v1/members").json()
    assert [m["id"] for m in members] == [f"h{i:02d}" for i in range(1, 11)]
    columns = ", ".join(f"SUM({f})" for f in LEDGER_FIELDS)
    for member in members:
        sums = dict(zip(LEDGER_FIELDS, db.execute(
            f"SELECT {columns} FROM member_energy WHERE member_id = ?", (member["id"],)
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
        assert energy["intervals"] == CYCLES
    summary = client.get("/api/v1/coop/summary").json()
    coop_from_peers = db.execute("SELECT SUM(from_peers) FROM member_energy").fetchone()[0]
    assert summary["from_peers_kwh"] == round(coop_from_peers / 1000, 3)
    assert summary["from_peers_kwh"] == summary["to_peers_kwh"]
