"""The federation's Wh in the ledger: each member's ``to_federation`` and ``from_federation``.

Federation intervals settle after the coop's own interval is committed (the
offers are built from it), and ``member_wh`` rows are never updated, so the
shares live beside them in their own tables, keyed like ``member_wh``:

* ``federation_interval``: one row per settled interval with the result hash
  every coop agreed on; its primary key makes booking an interval twice
  impossible;
* ``federation_wh``: one row per member and interval;
* ``federation_event``: what every coop books the same way beside the flows:
  a coop that equivocated (with the proof), one silent past the deadline, an
  offer above the coop's metered totals (the excess).

The tables are created with ``IF NOT EXISTS`` when a ledger is opened for
writing, so ledgers written before the federation existed keep working
unchanged and readers that do not know the tables ignore them.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from controller.ledger.schema import MEMBER_MASK, key_range, row_key

if TYPE_CHECKING:
    from controller.federation.apportion import MemberShares

FEDERATION_FIELDS = ("to_federation", "from_federation")
DDL = """
CREATE TABLE IF NOT EXISTS federation_interval (
    start_ts INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    to_federation INTEGER NOT NULL,
    from_federation INTEGER NOT NULL,
    booked_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS federation_wh (
    key INTEGER PRIMARY KEY,
    to_federation INTEGER NOT NULL,
    from_federation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS federation_event (
    start_ts INTEGER NOT NULL,
    coop TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (start_ts, coop, kind)
);
"""


def ensure_tables(conn: sqlite3.Connection) -> None:
    """Create the federation tables where they do not exist yet."""
    for statement in DDL.split(";"):
        if statement.strip():
            conn.execute(statement)


def grid_flows(conn: sqlite3.Connection, start_ts: int, step: int, member_ids: tuple[str, ...],
               numbers: dict[str, int]) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
    """Members' booked ``to_grid`` and ``from_grid`` in one interval; ``None`` if not committed."""
    if conn.execute("SELECT 1 FROM intervals WHERE start_ts = ?", (start_ts,)).fetchone() is None:
        return None
    lo, hi = key_range(start_ts, start_ts + step, step)
    rows = {k & MEMBER_MASK: (t, f) for k, t, f in conn.execute(
        "SELECT key, to_grid, from_grid FROM member_wh WHERE key >= ? AND key < ?", (lo, hi))}
    flows = np.array([rows.get(numbers[m], (0, 0)) for m in member_ids],
                     dtype=np.int64).reshape(-1, 2)
    return flows[:, 0].copy(), flows[:, 1].copy()


def write_shares(conn: sqlite3.Connection, shares: MemberShares, numbers: dict[str, int],
                 step: int, events: list[tuple[str, str, str]] | None = None) -> bool:
    """Book one settled interval's shares and ``(coop, kind, detail)`` events atomically.

    ``False`` if the interval was booked already.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = conn.execute("SELECT digest FROM federation_interval WHERE start_ts = ?",
                            (shares.interval,)).fetchone()
        if done is not None:
            conn.execute("ROLLBACK")
            return False
        conn.execute("INSERT INTO federation_interval VALUES (?, ?, ?, ?, ?)",
                     (shares.interval, shares.digest, int(shares.to_federation.sum()),
                      int(shares.from_federation.sum()), time.time()))
        conn.executemany(
            "INSERT INTO federation_wh(key, to_federation, from_federation) VALUES (?, ?, ?)",
            sorted((row_key(shares.interval, numbers[m], step), int(t), int(f))
                   for m, t, f in zip(shares.member_ids, shares.to_federation,
                                      shares.from_federation, strict=True) if t or f))
        conn.executemany("INSERT INTO federation_event VALUES (?, ?, ?, ?)",
                         [(shares.interval, c, k, d) for c, k, d in events or []])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def member_totals(conn: sqlite3.Connection, numbers: dict[str, int], step: int,
                  start: int | None = None, end: int | None = None
                  ) -> dict[str, dict[str, int]]:
    """Each member's ``to_federation`` and ``from_federation`` over ``[start, end)``."""
    lo, hi = key_range(start or 0, end or 2**40 * step, step)
    by_no = {no: m for m, no in numbers.items()}
    out = {m: dict.fromkeys(FEDERATION_FIELDS, 0) for m in numbers}
    for no, to_fed, from_fed in conn.execute(
            f"SELECT key & {MEMBER_MASK}, SUM(to_federation), SUM(from_federation) "
            "FROM federation_wh WHERE key >= ? AND key < ? GROUP BY key & ?",
            (lo, hi, MEMBER_MASK)):
        if no in by_no:
            out[by_no[no]] = {"to_federation": int(to_fed), "from_federation": int(from_fed)}
    return out


def booked_intervals(conn: sqlite3.Connection) -> list[tuple[int, str, int, int]]:
    """``(start_ts, digest, to_federation, from_federation)`` of every booked interval."""
    return [tuple(r) for r in conn.execute(
        "SELECT start_ts, digest, to_federation, from_federation FROM federation_interval "
        "ORDER BY start_ts")]


def events(conn: sqlite3.Connection) -> list[tuple[int, str, str, str]]:
    """``(start_ts, coop, kind, detail)`` of every federation event booked."""
    return [tuple(r) for r in conn.execute(
        "SELECT start_ts, coop, kind, detail FROM federation_event ORDER BY start_ts, coop, kind")]
