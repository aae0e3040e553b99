"""The ledger lasts: restarts, one writer, kill -9, gaps, a full disk, and the v1 upgrade."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from controller.ledger import (
    CycleEnergy,
    IntervalBook,
    LedgerLockedError,
    LedgerReader,
    LedgerWriter,
)
from controller.ledger.accumulator import CarryState, unpack_state
from dispatch import LEDGER_FIELDS
from dispatch.rounding import LIBERATED_FIELDS
from tests.coop_harness import start_harness
from tests.ledger_helpers import random_flows

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_780_000_200.0  # on a 900 s boundary (UTC)


def test_restart_resumes_carries_pools_and_interval_chain(tmp_path: Path) -> None:
    ends: list[float] = []

    async def first_run() -> None:
        h = await start_harness(tmp_path, settlement_s=300)
        try:
            for _ in range(25):
                ends.append((await h.step()).end_ts)
            carries = {f: c.copy() for f, c in h.controller.book.carry.carries.items()}
            acc = h.controller.book.acc.amounts.copy()
        finally:
            await h.close()
        writer = LedgerWriter(tmp_path / "ledger.sqlite", 300, [])
        parts, _ = writer.saved_parts()
        writer.close()
        saved_acc, saved = unpack_state(parts["acc"], parts["carry"], h.controller.member_ids)
        assert saved.end_ts == ends[-1]
        for f in LEDGER_FIELDS:
            np.testing.assert_allclose(saved.carries[f], carries[f])
        np.testing.assert_allclose(saved_acc.amounts, acc)

    asyncio.run(first_run())

    async def second_run() -> None:
        # a new controller on the same ledger continues the chain without a gap or overlap
        h = await start_harness(tmp_path, settlement_s=300)
        h.clock.advance(ends[-1] - h.clock.now())
        try:
            report = await h.step()
        finally:
            await h.close()
        assert report.start_ts == ends[-1]

    asyncio.run(second_run())
    reader = LedgerReader(tmp_path / "ledger.sqlite")
    first, last, count = reader.span()
    assert count == (last - first) // 300 and reader.totals()["gap_s_coop"] == 0


HOLDER = textwrap.dedent("""
    import sys, time
    from controller.ledger import LedgerWriter
    w = LedgerWriter(sys.argv[1], 900, [("a", "A")])
    print("holding", flush=True)
    time.sleep(60)
""")


def test_a_second_writer_is_refused_and_the_holder_named(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(LedgerLockedError, match=f"process {proc.pid} "):
            LedgerWriter(path, 900, [("a", "A")])
    finally:
        proc.kill()
        proc.wait()
    LedgerWriter(path, 900, [("a", "A")]).close()  # the kernel released the dead holder's lock


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from controller.ledger import CycleEnergy, IntervalBook, LedgerWriter
    from controller.ledger.accumulator import CarryState
    from dispatch import LEDGER_FIELDS
    ids = ("a", "b")
    w = LedgerWriter(sys.argv[1], 60, [(m, m) for m in ids])
    book = IntervalBook(ids, 60, None, CarryState.fresh(2))
    t = 1_780_000_020.0
    while True:
        flows = {f: np.array([1.0, 2.0]) for f in LEDGER_FIELDS}
        for interval, parts in book.add_cycle(CycleEnergy(t, t + 30, flows, np.ones(2, bool),
                                                          np.full((3, 2), np.nan))):
            w.commit(interval, parts)
            w.flush()
            print(interval.start_ts, flush=True)
        w.save(book.open_parts())
        t += 30
""")


def test_kill_9_never_loses_a_committed_interval(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    acknowledged: list[int] = []
    deadline = time.monotonic() + 30
    while len(acknowledged) < 100 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            acknowledged.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acknowledged) >= 100
    db = sqlite3.connect(path)
    starts = {r[0] for r in db.execute("SELECT start_ts FROM intervals")}
    assert set(acknowledged) <= starts  # every acknowledged interval is there, whole
    assert db.execute("SELECT COUNT(*) FROM member_energy").fetchone()[0] == 2 * len(starts)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # rollups were written in the same transactions as the intervals
    hours = db.execute("SELECT SUM(own_pv_used) FROM rollup_member WHERE level = 1").fetchone()
    assert hours[0] == db.execute("SELECT SUM(own_pv_used) FROM member_energy").fetchone()[0]


def test_reserve_latch_and_pools_survive_a_restart(tmp_path: Path) -> None:
    ids = ("a", "b")
    writer = LedgerWriter(tmp_path / "l.sqlite", 900, [(m, m) for m in ids])
    carry = CarryState.fresh(2)
    carry.held[:] = [False, True]
    carry.pools_wh[:] = [120.0, 0.0]
    book = IntervalBook(ids, 900, None, carry)
    book.add_cycle(CycleEnergy(T0, T0 + 30, random_flows(np.random.default_rng(1), 2),
                               np.ones(2, dtype=bool), np.full((3, 2), np.nan)))
    writer.save(book.open_parts())
    writer.close()
    writer = LedgerWriter(tmp_path / "l.sqlite", 900, [])
    parts, _ = writer.saved_parts()
    writer.close()
    _, restored = unpack_state(parts.get("acc"), parts.get("carry"), ("b", "a"))
    assert restored.held.tolist() == [True, False]  # aligned by member id, not position
    assert restored.pools_wh.tolist() == [0.0, 120.0]


def _book(book: IntervalBook, writer: LedgerWriter, cycle: CycleEnergy) -> None:
    for interval, parts in book.add_cycle(cycle):
        writer.commit(interval, parts)
    writer.save(book.open_parts())


def test_a_gap_is_booked_from_the_counters_as_unallocated_never_liberated(tmp_path: Path) -> None:
    """Controller down for 50 min: a and b have counters, c has none; then b goes unknown."""
    ids = ("a", "b", "c")
    writer = LedgerWriter(tmp_path / "l.sqlite", 900, [(m, m) for m in ids])
    book = IntervalBook(ids, 900, None, CarryState.fresh(3))
    flows = {f: np.full(3, 10.0) for f in LEDGER_FIELDS}
    ones = np.ones(3, dtype=bool)
    counters = np.array([[1000.0, 5000.0, np.nan], [0.0, 0.0, np.nan], [0.0, 0.0, np.nan]])
    t = T0  # an interval boundary
    _book(book, writer, CycleEnergy(t, t + 60, flows, ones, counters.copy()))
    # down for 3,000 s; the meters counted 500 Wh import (a) and 300 Wh export (b) meanwhile
    counters[0, 0] += 500.0
    counters[1, 1] += 300.0
    t += 60 + 3000
    _book(book, writer, CycleEnergy(t, t + 60, flows, ones, counters.copy()))
    # member b unknown for one cycle: not dispatched; its counter says 40 Wh imported
    counters[0, 1] += 40.0
    t += 60
    valid = np.array([True, False, True])
    _book(book, writer, CycleEnergy(t, t + 60, {f: np.where(valid, 10.0, 0.0) for f in flows},
                                    valid, counters.copy(), missing=("b/meter",)))
    assert book.acc.row("gap_s")[1] - book.acc.row("gap_s")[0] == 60  # b sat out one cycle
    assert "b/meter" in book.acc.missing
    t += 60  # b is back; this cycle ends on the 3,600 s boundary and closes the interval
    _book(book, writer, CycleEnergy(t, T0 + 3600, flows, ones, counters.copy()))
    writer.flush()
    writer.close()
    reader = LedgerReader(tmp_path / "l.sqlite")
    rows = reader.intervals()
    assert [r["start_ts"] - T0 for r in rows] == [0, 900, 1800, 2700]
    assert [r["gap_s_coop"] for r in rows] == [840, 900, 900, 360]
    assert rows[-1]["missing"] == '["b/meter"]' and rows[0]["missing"] is None
    a, b, c = (reader.totals(m) for m in ids)
    # the controller was down 3,000 s: a gap for everyone; b was also unknown 60 s
    assert (a["gap_s"], b["gap_s"], c["gap_s"]) == (3000, 3060, 3000)
    # what the counters recorded over the gap is booked, unallocated
    assert a["unallocated_import"] == pytest.approx(500 * 3000 / 3060, abs=1)
    assert b["unallocated_export"] == pytest.approx(300 * 3000 / 3060, abs=1)
    assert b["unallocated_import"] == 40
    assert a["meter_import"] == 500 and b["meter_import"] == 40
    # where no counter exists the gap's energy is unknown, not zero
    assert c["unknown_s"] == 3000 and a["unknown_s"] == b["unknown_s"] == 0
    assert c["meter_import"] is None and c["unallocated_import"] == 0
    # liberated is only what the dispatch booked: the 4 cycles' flows, never gap energy
    for m, t_ in (("a", a), ("b", b)):
        booked = 10 * (3 if m == "b" else 4)  # b sat out one cycle
        assert sum(t_[f] for f in LIBERATED_FIELDS) <= booked * len(LIBERATED_FIELDS), m


def test_a_full_disk_keeps_intervals_in_memory_and_commits_them_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, reliability) -> None:
    row = reliability("full-disk", "The ledger's disk fills up (SQLite max_page_count): the"
                      " writer reports 'failing' with the reason, logs it once, keeps the"
                      " intervals in memory, and commits them all once there is space; nothing"
                      " committed is touched")
    ids = tuple(f"m{i}" for i in range(20))
    rng = np.random.default_rng(3)
    writer = LedgerWriter(tmp_path / "l.sqlite", 60, [(m, m) for m in ids])
    book = IntervalBook(ids, 60, None, CarryState.fresh(len(ids)))
    t = 1_780_000_020.0
    nan = np.full((3, len(ids)), np.nan)
    for _ in range(6):
        _book(book, writer, CycleEnergy(t, t + 60, random_flows(rng, len(ids)),
                                        np.ones(len(ids), dtype=bool), nan))
        t += 60
    assert writer.flush()
    db = sqlite3.connect(tmp_path / "l.sqlite")
    before = db.execute("SELECT * FROM member_energy ORDER BY start_ts, member_no").fetchall()
    pages = writer._conn.execute("PRAGMA page_count").fetchone()[0]
    writer._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
    with caplog.at_level(logging.ERROR, logger="controller.ledger.writer"):
        for _ in range(10):
            _book(book, writer, CycleEnergy(t, t + 60, random_flows(rng, len(ids)),
                                            np.ones(len(ids), dtype=bool), nan))
            t += 60
        time.sleep(1.5)
        status = writer.status()
        assert status["state"] == "failing" and "full" in status["reason"]
        assert status["intervals_waiting"] >= 5  # a few fit in free pages
        row.observed = (f"status {status['state']} ({status['reason']!r}), "
                        f"{status['intervals_waiting']} intervals waiting in memory")
    assert len([r for r in caplog.records if "cannot write" in r.message]) == 1  # not per retry
    writer._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert writer.flush(15)
    assert writer.status()["state"] == "ok"
    writer.close()
    after = db.execute("SELECT * FROM member_energy ORDER BY start_ts, member_no").fetchall()
    assert after[:len(before)] == before  # nothing committed was touched
    assert len(after) == len(ids) * 16
    assert db.execute("SELECT COUNT(*) FROM intervals").fetchone()[0] == 16
    row.observed += ("; one 'cannot write' log line; with space again all 16 intervals "
                     "committed and the 6 earlier ones byte for byte unchanged")


V1_SCHEMA = f"""
CREATE TABLE members (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE intervals (id INTEGER PRIMARY KEY, start_ts REAL NOT NULL, end_ts REAL NOT NULL,
    islanded INTEGER NOT NULL DEFAULT 0, committed_at REAL NOT NULL);
CREATE TABLE member_energy (interval_id INTEGER NOT NULL, member_id TEXT NOT NULL,
    {", ".join(f"{f} INTEGER NOT NULL" for f in LEDGER_FIELDS)},
    PRIMARY KEY (interval_id, member_id)) WITHOUT ROWID;
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_a_v1_ledger_is_upgraded_in_place_without_losing_a_wh(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.executemany("INSERT INTO members VALUES (?, ?)", [("h01", "Ada"), ("h02", "Bram")])
    rng = np.random.default_rng(7)
    t = 1_780_000_000.0 - 7
    for cycle in range(1, 400):  # 1 s .. 20 s cycles with a restart gap in the middle
        dt = 60.0 if cycle == 200 else float(rng.integers(1, 20))
        db.execute("INSERT INTO intervals VALUES (?, ?, ?, ?, 0)",
                   (cycle, t, t + dt, int(cycle > 300)))
        for member in ("h01", "h02"):
            db.execute(f"INSERT INTO member_energy VALUES (?, ?, "
                       f"{', '.join('?' * len(LEDGER_FIELDS))})",
                       (cycle, member, *rng.integers(0, 30, len(LEDGER_FIELDS)).tolist()))
        t += dt
    db.execute("INSERT INTO state VALUES ('member_ids', ?)", (json.dumps(["h01", "h02"]),))
    db.execute("INSERT INTO state VALUES ('pools_wh', ?)", (json.dumps({"h02": 55.5}),))
    db.commit()
    columns = ", ".join(f"SUM({f})" for f in LEDGER_FIELDS)
    old = {m: db.execute(f"SELECT {columns} FROM member_energy WHERE member_id = ?",
                         (m,)).fetchone() for m in ("h01", "h02")}
    db.close()

    writer = LedgerWriter(path, 900, [("h01", "Ada"), ("h02", "Bram")])  # upgrades on open
    parts, _ = writer.saved_parts()
    writer.close()
    reader = LedgerReader(path)
    acc, carry = unpack_state(parts["acc"], parts["carry"], ("h01", "h02"))
    assert carry.end_ts == t and carry.pools_wh.tolist() == [0.0, 55.5]
    for j, m in enumerate(("h01", "h02")):
        committed = reader.totals(m)
        for k, f in enumerate(LEDGER_FIELDS):  # committed + still open == before, to the Wh
            assert committed[f] + acc.row(f)[j] == old[m][k], (m, f)
    coop = reader.totals()
    assert coop["cycles"] + acc.counts["cycles"] == 399
    assert coop["islanded_s"] > 0
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_another_process_holding_the_lock_never_stalls_the_caller(tmp_path: Path,
                                                                  reliability) -> None:
    """A second process holds the database's write lock for 3 s: handing intervals to the
    writer still returns at once, and everything is committed once the lock is free."""
    row = reliability("locked-db", "Another process holds the ledger database's write lock"
                      " (BEGIN IMMEDIATE, 3 s): the cycle's hand-over never waits for it, the"
                      " writer reports 'failing: locked', and commits everything once it is"
                      " free")
    ids = ("a", "b")
    path = tmp_path / "l.sqlite"
    writer = LedgerWriter(path, 60, [(m, m) for m in ids])
    book = IntervalBook(ids, 60, None, CarryState.fresh(2))
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sqlite3, time
            db = sqlite3.connect({str(path)!r}, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            print("locked", flush=True)
            time.sleep(3)
            db.execute("COMMIT")
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rng = np.random.default_rng(5)
        t, slowest = 1_780_000_020.0, 0.0
        for _ in range(6):
            started = time.perf_counter()
            _book(book, writer, CycleEnergy(t, t + 60, random_flows(rng, 2),
                                            np.ones(2, dtype=bool), np.full((3, 2), np.nan)))
            slowest = max(slowest, time.perf_counter() - started)
            t += 60
        assert slowest < 0.05, f"a cycle's hand-over took {slowest:.3f} s"
        time.sleep(2.5)
        assert writer.status()["state"] == "failing"
        assert "locked" in writer.status()["reason"]
    finally:
        holder.wait(10)
    assert writer.flush(15)
    writer.close()
    assert LedgerReader(path).span()[2] == 6
    row.observed = (f"slowest hand-over {slowest * 1000:.1f} ms while locked; status "
                    "failing with 'locked' in the reason; 6 of 6 intervals committed after")
