"""Writing the ledger: open (lock, create, upgrade), commit an interval with its rollups.

Every function here runs on the ledger's writer thread, never on the event
loop. A committed interval, its rollups and the new open-interval state are
one transaction written with ``synchronous=FULL``; the per-cycle save of the
open interval is one small row written with ``synchronous=NORMAL`` (it
survives a process kill, which is what it is for; a power cut loses at most
the cycles since the last commit, never a committed interval).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from controller.files import private_file
from controller.ledger import federation_rows, schema
from controller.ledger.accumulator import CommittedInterval
from controller.ledger.lock import WriterLock
from controller.ledger.periods import LEVELS, period_start
from controller.ledger.schema import INTERVAL_COUNTS, MEMBER_COLUMNS, METER_FIELDS


class LedgerSchemaError(RuntimeError):
    """The ledger file was written with settings this controller cannot continue."""


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite ends some on its own, e.g. on a full
    disk), so the original error is the one raised."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode; writers commit with full fsync."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        private_file(path)  # every household's energy: owner-only (controller.files)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=2000")
    return conn


def open_writer(path: Path, settlement_s: int) -> tuple[sqlite3.Connection, WriterLock]:
    """Take the single-writer lock, then create or upgrade the ledger."""
    lock = WriterLock(path)
    try:
        conn = connect(path)
        found = schema.version(conn)
        if found == 1:
            from controller.ledger.migrate import migrate_v1

            migrate_v1(conn, settlement_s)
        elif found == 0:
            conn.execute("BEGIN IMMEDIATE")
            schema.create(conn, settlement_s)
            conn.execute("COMMIT")
        elif found > schema.SCHEMA_VERSION:
            raise LedgerSchemaError(f"{path}: schema version {found} is newer than this "
                                    f"Commonwatt ({schema.SCHEMA_VERSION}); upgrade Commonwatt")
        conn.execute(schema.GRID_TRANSITIONS_DDL)  # ledgers from before the table existed
        federation_rows.ensure_tables(conn)  # likewise: added beside, never altering rows
        if found == schema.SCHEMA_VERSION:  # columns added since, in one transaction
            conn.execute("BEGIN IMMEDIATE")
            try:
                schema.ensure_columns(conn, ledger_settlement_s(conn) or settlement_s)
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
        stored = ledger_settlement_s(conn)
        if stored is not None and stored != settlement_s:
            raise LedgerSchemaError(
                f"{path}: the ledger settles every {stored} s but [ledger] settlement_s = "
                f"{settlement_s}; a ledger keeps one step for life: set it back to {stored} "
                "or start a new ledger file")
    except BaseException:
        lock.release()
        raise
    return conn, lock


def ledger_settlement_s(conn: sqlite3.Connection) -> int | None:
    """The settlement step a ledger was created with."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'settlement_s'").fetchone()
    return None if row is None else int(row[0])


def register_members(conn: sqlite3.Connection, members: list[tuple[str, str]]) -> dict[str, int]:
    """Insert or rename members; return each id's number."""
    conn.executemany(
        "INSERT INTO members(id, name) VALUES (?, ?) "
        "ON CONFLICT(id) DO UPDATE SET name = excluded.name", members)
    return dict(conn.execute("SELECT id, no FROM members").fetchall())


def load_parts(conn: sqlite3.Connection) -> dict[str, tuple[str, bytes]]:
    """The saved ``acc`` and ``carry`` parts of the open interval."""
    rows = conn.execute("SELECT part, header, arrays FROM open_interval").fetchall()
    return {part: (header, bytes(blob)) for part, header, blob in rows}


def last_committed_end(conn: sqlite3.Connection) -> int | None:
    """End of the last committed interval."""
    return conn.execute("SELECT MAX(end_ts) FROM intervals").fetchone()[0]


def save_open(conn: sqlite3.Connection, parts: dict[str, tuple[str, bytes]]) -> None:
    """The per-cycle save: one small row per part, no fsync (survives a process kill)."""
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _put_parts(conn, parts)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def record_transition(conn: sqlite3.Connection, row: tuple) -> None:
    """Append one grid transition (or refusal, or shed): ``(ts, from, to, cause, by,
    refused[, reason])``."""
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("INSERT INTO grid_transitions (ts, from_state, to_state, cause, requested_by, "
                 "refused, reason) VALUES (?, ?, ?, ?, ?, ?, ?)", (*row, None)[:7])


def _put_parts(conn: sqlite3.Connection, parts: dict[str, tuple[str, bytes]]) -> None:
    conn.executemany("INSERT OR REPLACE INTO open_interval(part, header, arrays) "
                     "VALUES (?, ?, ?)", [(k, h, b) for k, (h, b) in parts.items()])


_MARKS = ", ".join("?" for _ in MEMBER_COLUMNS)
_COLS = ", ".join(MEMBER_COLUMNS)


def _rows(interval: CommittedInterval, numbers: dict[str, int], step: int) -> list[tuple]:
    values = interval.values.T.tolist()
    meter = [MEMBER_COLUMNS.index(c) for c in METER_FIELDS]
    out = []
    for j, member in enumerate(interval.member_ids):
        row = values[j]
        if not interval.meter_known[j]:
            for k in meter:
                row[k] = None
        out.append((schema.row_key(interval.start_ts, numbers[member], step), *row))
    return out


def coop_sums(interval: CommittedInterval) -> list[int | None]:
    """The coop's sum of every member column (meters only over members that have them)."""
    sums: list[int | None] = [int(v) for v in interval.values.sum(axis=1)]
    for c in METER_FIELDS:
        k = MEMBER_COLUMNS.index(c)
        known = interval.meter_known
        sums[k] = int(interval.values[k][known].sum()) if known.any() else None
    return sums


def write_commit(conn: sqlite3.Connection, interval: CommittedInterval, numbers: dict[str, int],
                 parts: dict[str, tuple[str, bytes]], in_transaction: bool = False) -> None:
    """Commit one interval, its rollups and the next open-interval state atomically.

    With ``in_transaction`` the caller owns the transaction (the upgrade does).
    """
    if in_transaction:
        _insert_interval(conn, interval, numbers, parts)
        return
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _insert_interval(conn, interval, numbers, parts)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _insert_interval(conn: sqlite3.Connection, interval: CommittedInterval,
                     numbers: dict[str, int], parts: dict[str, tuple[str, bytes]]) -> None:
    counts = [interval.counts.get(k, 0) for k in INTERVAL_COUNTS]
    sums = coop_sums(interval)
    count_marks = ", ".join("?" for _ in INTERVAL_COUNTS)
    conn.execute(
        f"INSERT INTO intervals(start_ts, end_ts, missing, flagged, committed_at, "
        f"{', '.join(INTERVAL_COUNTS)}, {_COLS}) VALUES (?, ?, ?, ?, ?, {count_marks}, {_MARKS})",
        (interval.start_ts, interval.end_ts,
         json.dumps(list(interval.missing)) if interval.missing else None,
         json.dumps(list(interval.flagged)) if interval.flagged else None, time.time(),
         *counts, *sums))
    step = interval.end_ts - interval.start_ts
    # Sorted keys: the rows append in order to the end of the table.
    conn.executemany(f"INSERT INTO member_wh(key, {_COLS}) VALUES (?, {_MARKS})",
                     sorted(_rows(interval, numbers, step)))
    lo, hi = schema.key_range(interval.start_ts, interval.end_ts, step)
    member_upsert = schema.upsert_sums(("level", "start_ts", "member_no"))
    coop_upsert = schema.upsert_sums(("level", "start_ts"), ("intervals", *INTERVAL_COUNTS))
    for level in LEVELS:
        start = period_start(level, interval.start_ts)
        # "AND true" tells SQLite's parser the ON CONFLICT is an upsert, not a join's ON.
        conn.execute(
            f"INSERT INTO rollup_member(level, start_ts, member_no, {_COLS}) "
            f"SELECT ?, ?, key & {schema.MEMBER_MASK}, {_COLS} FROM member_wh "
            f"WHERE key >= ? AND key < ? AND true {member_upsert}", (level, start, lo, hi))
        conn.execute(
            f"INSERT INTO rollup_coop(level, start_ts, intervals, {', '.join(INTERVAL_COUNTS)}, "
            f"{_COLS}) VALUES (?, ?, 1, {count_marks}, {_MARKS}) {coop_upsert}",
            (level, start, *counts, *sums))
    _put_parts(conn, parts)
