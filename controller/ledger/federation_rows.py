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

from controller.ledger.schema import MEMBER_BITS, MEMBER_MASK, key_range, row_key

if TYPE_CHECKING:
    from controller.federation.apportion import MemberShares

FEDERATION_FIELDS = ("to_federation", "from_federation")
#: The part of ``from_federation`` the charter counts as liberated (booked with the row:
#: a charter that changes later does not rewrite what was booked).
LIBERATED = "from_federation_liberated"
SUM_FIELDS = (*FEDERATION_FIELDS, LIBERATED)
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
    from_federation INTEGER NOT NULL,
    liberated INTEGER NOT NULL DEFAULT 0
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
    columns = {r[1] for r in conn.execute("PRAGMA table_info(federation_wh)")}
    if "liberated" not in columns:  # a table from before the charter said what is liberated
        conn.execute("ALTER TABLE federation_wh ADD COLUMN liberated INTEGER NOT NULL "
                     "DEFAULT 0")
        conn.execute("UPDATE federation_wh SET liberated = from_federation")  # the old rule


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
                 step: int, events: list[tuple[str, str, str]] | None = None,
                 liberated: bool = True) -> bool:
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
            "INSERT INTO federation_wh(key, to_federation, from_federation, liberated) "
            "VALUES (?, ?, ?, ?)",
            sorted((row_key(shares.interval, numbers[m], step), int(t), int(f),
                    int(f) if liberated else 0)
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


def sums(conn: sqlite3.Connection, lo: int, hi: int, step: int, no: int | None = None
         ) -> dict[str, int]:
    """:data:`SUM_FIELDS` over intervals ``[lo, hi)``: one member's (number ``no``) or all."""
    zero = dict.fromkeys(SUM_FIELDS, 0)
    if hi <= lo:
        return zero
    a, b = key_range(lo, hi, step)
    where = "key >= ? AND key < ?" + ("" if no is None else f" AND key & {MEMBER_MASK} = ?")
    try:
        row = conn.execute("SELECT SUM(to_federation), SUM(from_federation), SUM(liberated) "
                           f"FROM federation_wh WHERE {where}",
                           (a, b) if no is None else (a, b, no)).fetchone()
    except sqlite3.OperationalError:  # a ledger from before the federation tables
        return zero
    return {k: int(v or 0) for k, v in zip(SUM_FIELDS, row, strict=True)}


def sums_by_member(conn: sqlite3.Connection, lo: int, hi: int, step: int
                   ) -> dict[int, dict[str, int]]:
    """:data:`SUM_FIELDS` per member number over intervals ``[lo, hi)`` (members with any)."""
    if hi <= lo:
        return {}
    try:
        rows = conn.execute(
            f"SELECT key & {MEMBER_MASK}, SUM(to_federation), SUM(from_federation), "
            f"SUM(liberated) FROM federation_wh WHERE key >= ? AND key < ? "
            f"GROUP BY key & {MEMBER_MASK}", key_range(lo, hi, step)).fetchall()
    except sqlite3.OperationalError:
        return {}
    return {no: dict(zip(SUM_FIELDS, map(int, values), strict=True)) for no, *values in rows}


def sums_by_interval(conn: sqlite3.Connection, lo: int, hi: int, step: int,
                     no: int | None = None) -> dict[int, dict[str, int]]:
    """:data:`SUM_FIELDS` per interval start in ``[lo, hi)`` (intervals with any), one query."""
    if hi <= lo:
        return {}
    a, b = key_range(lo, hi, step)
    where = "key >= ? AND key < ?" + ("" if no is None else f" AND key & {MEMBER_MASK} = ?")
    try:
        rows = conn.execute(
            f"SELECT key >> {MEMBER_BITS}, SUM(to_federation), SUM(from_federation), "
            f"SUM(liberated) FROM federation_wh WHERE {where} GROUP BY key >> {MEMBER_BITS}",
            (a, b) if no is None else (a, b, no)).fetchall()
    except sqlite3.OperationalError:
        return {}
    return {k * step: dict(zip(SUM_FIELDS, map(int, v), strict=True)) for k, *v in rows}
