"""``commonwatt demo --federation 2``: two simulated coops, two bridged mosquittos, one command."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.demo_process import running_demo

ROOT = Path(__file__).resolve().parents[1]


def booked(ledger: Path) -> list[tuple]:
    if not ledger.exists():
        return []
    conn = sqlite3.connect(ledger)
    try:
        return conn.execute("SELECT start_ts, digest, to_federation, from_federation "
                            "FROM federation_interval ORDER BY start_ts").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_demo_federation_settles_between_two_coops(tmp_path: Path) -> None:
    ledgers = [tmp_path / "federation" / c / "ledger.sqlite" for c in ("coop-1", "coop-2")]
    with running_demo(tmp_path, "--federation", "2", "--households", "4", start="11:00") as demo:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(len(booked(p)) >= 3 for p in ledgers):
            time.sleep(0.5)
    text = demo.banner + demo.output
    assert demo.proc.returncode == 0, text
    assert "coop-1 (houses with PV)" in text and "coop-2 (flats, no PV)" in text
    a, b = (booked(p) for p in ledgers)
    common = sorted({r[0] for r in a} & {r[0] for r in b})
    assert len(common) >= 3, text
    rows_a, rows_b = {r[0]: r for r in a}, {r[0]: r for r in b}
    for start in common:
        assert rows_a[start][1] == rows_b[start][1]  # one agreed hash
        assert rows_a[start][2] + rows_b[start][2] == rows_a[start][3] + rows_b[start][3]
    # At 11:00 the houses with PV have surplus and the flats need it: energy moved.
    assert sum(rows_a[s][2] for s in common) > 0
