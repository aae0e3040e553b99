"""The energy ledger: SQLite in WAL mode, integer Wh per member per interval.

One transaction per cycle commits the interval, every member's row, and the
state needed to carry on after a restart (sub-Wh carries and the batteries'
coop-origin pools). A crash or ``kill -9`` therefore loses at most the
interval being written, never a committed one. Booked rows are never
updated: corrections go into later intervals.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dispatch.rounding import LEDGER_FIELDS

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS members (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS intervals (
    id INTEGER PRIMARY KEY,
    start_ts REAL NOT NULL,
    end_ts REAL NOT NULL,
    islanded INTEGER NOT NULL DEFAULT 0,
    committed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS intervals_end ON intervals(end_ts);
CREATE TABLE IF NOT EXISTS member_energy (
    interval_id INTEGER NOT NULL REFERENCES intervals(id),
    member_id TEXT NOT NULL REFERENCES members(id),
    {", ".join(f"{f} INTEGER NOT NULL" for f in LEDGER_FIELDS)},
    PRIMARY KEY (interval_id, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class LedgerState:
    """What the controller needs to resume exactly where it stopped."""

    last_end_ts: float | None
    carries: dict[str, list[float]]
    pools_wh: dict[str, float]
    held: frozenset[str] = frozenset()


def connect(path: Path | str, readonly: bool = False) -> sqlite3.Connection:
    """Open the ledger with WAL journaling and full fsync on commit."""
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Ledger:
    """Writes committed intervals; reads totals for the API."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn = connect(self.path)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def register_members(self, members: list[tuple[str, str]]) -> None:
        """Insert or rename members (``(id, display name)``)."""
        with self._lock:
            self._conn.executemany(
                "INSERT INTO members(id, name) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET name = excluded.name",
                members,
            )

    def load_state(self, member_ids: list[str]) -> LedgerState:
        """Carries and pools saved with the last committed interval, aligned to ``member_ids``."""
        rows = dict(self._conn.execute("SELECT key, value FROM state").fetchall())
        saved_ids: list[str] = json.loads(rows.get("member_ids", "[]"))
        saved_carries: dict[str, list[float]] = json.loads(rows.get("carries", "{}"))
        index = {m: i for i, m in enumerate(saved_ids)}
        carries = {
            field: [
                saved_carries[field][index[m]] if field in saved_carries and m in index else 0.0
                for m in member_ids
            ]
            for field in LEDGER_FIELDS
        }
        last = self._conn.execute("SELECT MAX(end_ts) FROM intervals").fetchone()[0]
        return LedgerState(last, carries, json.loads(rows.get("pools_wh", "{}")),
                           frozenset(json.loads(rows.get("held", "[]"))))

    def commit_interval(
        self,
        start_ts: float,
        end_ts: float,
        member_ids: list[str],
        booked: dict[str, np.ndarray],
        carries: dict[str, np.ndarray],
        pools_wh: dict[str, float],
        committed_at: float,
        islanded: bool = False,
        held: list[str] | None = None,
    ) -> int:
        """Write one interval atomically and return its id.

        ``held`` names the members whose battery reserve latch is set, so that a
        restart does not release a battery that was recharging to its reserve.
        """
        columns = ", ".join(LEDGER_FIELDS)
        marks = ", ".join("?" for _ in LEDGER_FIELDS)
        stacked = np.stack([booked[f] for f in LEDGER_FIELDS], axis=1).tolist()
        state = {
            "member_ids": json.dumps(member_ids),
            "carries": json.dumps({f: carries[f].tolist() for f in LEDGER_FIELDS}),
            "pools_wh": json.dumps(pools_wh),
            "held": json.dumps(sorted(held or [])),
        }
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute(
                    "INSERT INTO intervals(start_ts, end_ts, islanded, committed_at) "
                    "VALUES (?, ?, ?, ?)",
                    (start_ts, end_ts, int(islanded), committed_at),
                )
                interval_id = int(cur.lastrowid or 0)
                cur.executemany(
                    f"INSERT INTO member_energy(interval_id, member_id, {columns}) "
                    f"VALUES (?, ?, {marks})",
                    [(interval_id, m, *row) for m, row in zip(member_ids, stacked, strict=True)],
                )
                cur.executemany(
                    "INSERT INTO state(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(state.items()),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return interval_id


class LedgerReader:
    """Read-only queries over the ledger, safe to use from the API's threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        Ledger(self.path).close()  # make sure the schema exists
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
        return conn

    def members(self) -> list[tuple[str, str]]:
        """``(id, name)`` of every member, by id."""
        return self._conn().execute("SELECT id, name FROM members ORDER BY id").fetchall()

    def totals(
        self, member_id: str | None = None, start: float | None = None, end: float | None = None
    ) -> dict[str, int]:
        """Sums of every ledger field (Wh) over intervals inside ``[start, end]``."""
        sums = ", ".join(f"COALESCE(SUM(e.{f}), 0)" for f in LEDGER_FIELDS)
        where, args = ["1=1"], []
        if member_id is not None:
            where.append("e.member_id = ?")
            args.append(member_id)
        if start is not None:
            where.append("i.start_ts >= ?")
            args.append(start)
        if end is not None:
            where.append("i.end_ts <= ?")
            args.append(end)
        row = self._conn().execute(
            f"SELECT {sums}, COUNT(DISTINCT i.id) FROM member_energy e "
            f"JOIN intervals i ON i.id = e.interval_id WHERE {' AND '.join(where)}",
            args,
        ).fetchone()
        out = dict(zip(LEDGER_FIELDS, (int(v) for v in row[:-1]), strict=True))
        out["intervals"] = int(row[-1])
        return out

    def span(self) -> tuple[float | None, float | None, int]:
        """First start, last end and number of committed intervals."""
        row = self._conn().execute(
            "SELECT MIN(start_ts), MAX(end_ts), COUNT(*) FROM intervals"
        ).fetchone()
        return row[0], row[1], int(row[2])

    def islanded_seconds(self) -> float:
        """Total length of intervals run off-grid."""
        row = self._conn().execute(
            "SELECT COALESCE(SUM(end_ts - start_ts), 0) FROM intervals WHERE islanded = 1"
        ).fetchone()
        return float(row[0])
