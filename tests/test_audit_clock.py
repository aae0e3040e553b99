"""Audit rows say which clock their time is on: the wall's, or the controller's simulated
clock in a process that runs one (the demo, ``island rehearse``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controller.governance.audit import (
    WALL,
    AuditLog,
    clock_of,
    merged,
    row_hash,
    simulated_label,
    use_clock,
)

SIM_TS = 1_790_000_000.0  # the simulated clock stands here


@pytest.fixture()
def log(tmp_path: Path):  # noqa: ANN201
    audit = AuditLog(tmp_path / "audit.sqlite")
    yield audit
    use_clock(audit.path, None)


def test_rows_are_on_the_controllers_clock_and_say_which(log: AuditLog) -> None:
    wall = log.append("cli:ana", "cli", "token.create", {"role": "member"}, "created")
    use_clock(log.path, lambda: SIM_TS, simulated_label(60))
    assert clock_of(log.path) == "simulated 60×"
    sim = log.append("coordinator", "coordinator", "island.command", {"hours": 2}, "accepted")
    given = log.append("coordinator", "coordinator", "island.return", {}, "done", now=SIM_TS + 5)
    use_clock(log.path, None)
    back = log.append("cli:ana", "cli", "token.revoke", {"id": 1}, "revoked")
    assert [r["clock"] for r in log.rows()] == [WALL, "simulated 60×", "simulated 60×", WALL]
    assert sim["ts"] == SIM_TS and given["ts"] == SIM_TS + 5
    assert abs(wall["ts"] - back["ts"]) < 60 and wall["ts"] != SIM_TS
    assert log.verify().ok
    # A wall row hashes as it did before rows had a clock; a simulated one covers its clock.
    assert wall["hash"] == row_hash(*[wall[c] for c in ("seq", "ts", "who", "role", "action",
                                                         "detail", "outcome", "prev_hash")])
    assert sim["hash"] != row_hash(*[sim[c] for c in ("seq", "ts", "who", "role", "action",
                                                       "detail", "outcome", "prev_hash")])


def test_relabelling_a_rows_clock_breaks_the_chain(log: AuditLog) -> None:
    use_clock(log.path, lambda: SIM_TS, simulated_label(1440))
    log.append("coordinator", "coordinator", "island.command", {"hours": 24}, "accepted")
    conn = sqlite3.connect(log.path)
    conn.execute("DROP TRIGGER audit_no_update")  # what someone with the file can do
    conn.execute("UPDATE audit SET clock = 'wall'")
    conn.commit()
    conn.close()
    verdict = log.verify()
    assert not verdict.ok and "seq 1: its hash does not match" in verdict.problems[0]


def test_a_log_from_before_the_clock_column_verifies_and_grows(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, who TEXT NOT "
                 "NULL, role TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL, "
                 "outcome TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
    old = (1, 1_780_000_000.5, "cli:bo", "cli", "token.create", "{}", "created", "0" * 64)
    conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*old, row_hash(*old)))
    conn.commit()
    conn.close()
    log = AuditLog(path)
    assert log.rows()[0]["clock"] == WALL and log.verify().ok  # read as it was
    use_clock(path, lambda: SIM_TS, simulated_label(60))
    try:
        log.append("coordinator", "coordinator", "island.command", {}, "accepted")
    finally:
        use_clock(path, None)
    assert [r["clock"] for r in log.rows()] == [WALL, "simulated 60×"]
    assert log.verify().ok


def test_the_ledgers_transitions_are_on_the_controllers_clock() -> None:
    rows = merged([], [{"ts": SIM_TS, "from": "ON_GRID", "to": "GOING_OFF_GRID"}],
                  "simulated 60×")
    assert rows[0]["clock"] == "simulated 60×" and rows[0]["source"] == "ledger"
