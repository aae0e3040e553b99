"""The ledger's tables (schema version 2) and the upgrade from version 1.

Version 1 wrote one row per member per control cycle. Version 2 books per
settlement interval and keeps hour, day, month and lifetime rollups in the
same transaction. Every amount is an integer: Wh, or seconds for ``*_s``.

Tables:

* ``members``: a small integer ``no`` per member id, so rows stay small;
* ``intervals``: one row per committed settlement interval, with the coop's
  sums and what was missing in it (cycles booked, seconds not covered,
  seconds islanded, devices that were unknown) and the meters whose counters
  disagreed with their measured power (``flagged``, :mod:`controller.ledger.settle`);
* ``member_wh``: one row per member and interval, never updated. Its key packs
  the interval and the member (:func:`row_key`), so rows are appended in key
  order to full pages (about 10 % smaller than a two-column key, measured on a
  year of 1,000 members); the view ``member_energy`` shows the same rows with
  ``start_ts`` and ``member_no`` columns for anyone reading the file;
* ``rollup_member`` / ``rollup_coop``: sums per hour, day, month and lifetime;
* ``open_interval``: part ``acc`` holds the accumulators of the interval still
  open, rewritten every cycle in one small write; part ``carry`` holds the
  sub-Wh carries and battery pools, rewritten with each committed interval;
* ``grid_transitions``: every change of the grid state and every refused island
  command, and every load shed islanded, with time, cause, who asked and a reason
  code (:mod:`controller.island.reasons`; NULL in rows from before the column);
* ``meta``: the settlement step the ledger was written with, and the salt of
  the pseudonyms used in open-data exports.
"""

from __future__ import annotations

import secrets
import sqlite3

from dispatch.rounding import LEDGER_FIELDS

SCHEMA_VERSION = 2

#: Per-member amounts besides the dispatch's flows.
#: ``gap_s``: seconds of the interval in which the member was not booked (controller
#: down, or a device of the member unknown). ``unknown_s``: the part of the gap for
#: which no meter counter exists, so its energy is unknown (never zero).
#: ``unallocated_*``: Wh that the meters' counters recorded over gaps, booked when
#: read; never liberated. ``meter_*``: the meter's own import/export counters over
#: the interval (NULL where the meter has none), beside the booked grid flows.
GAP_FIELDS = ("gap_s", "unknown_s", "unallocated_import", "unallocated_export",
              "unallocated_pv")
#: ``meter_*_drift``: the meter's counter less what its measured power estimated over the interval
#: (signed Wh, before the books were settled on the counter, :mod:`controller.ledger.settle`).
DRIFT_FIELDS = ("meter_import_drift", "meter_export_drift")
METER_FIELDS = ("meter_import", "meter_export", *DRIFT_FIELDS)
#: Why PV was held back (:mod:`controller.island.curtail_estimate`): ``command``, a cap
#: Commonwatt set islanded (the island's surplus); ``export_cap``, on the grid, export past
#: the cap at the point of common coupling (the dispatch's, or a cap set for it);
#: ``grid_former``, islanded, a full grid-forming battery shifting the frequency.
CURTAIL_CAUSES = ("command", "export_cap", "grid_former")
#: ``curtailed_<cause>``: the member's ``curtailed`` Wh split by cause, summing to it in
#: every interval booked since the columns exist (0 in rows booked before: cause not recorded).
CAUSE_FIELDS = tuple(f"curtailed_{c}" for c in CURTAIL_CAUSES)
MEMBER_AMOUNTS = (*LEDGER_FIELDS, *GAP_FIELDS, *CAUSE_FIELDS)
MEMBER_COLUMNS = (*MEMBER_AMOUNTS, *METER_FIELDS)
#: Coop-level columns of an interval besides the member sums.
INTERVAL_COUNTS = ("cycles", "covered_s", "gap_s_coop", "islanded_s")

_member_cols = ", ".join(
    [f"{c} INTEGER NOT NULL" for c in MEMBER_AMOUNTS] + [f"{c} INTEGER" for c in METER_FIELDS]
)
_sum_cols = ", ".join(
    [f"{c} INTEGER NOT NULL DEFAULT 0" for c in MEMBER_AMOUNTS]
    + [f"{c} INTEGER" for c in METER_FIELDS]
)
_count_cols = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in INTERVAL_COUNTS)

DDL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    no INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS intervals (
    start_ts INTEGER PRIMARY KEY,
    end_ts INTEGER NOT NULL,
    missing TEXT,
    committed_at REAL NOT NULL,
    {_count_cols},
    {_sum_cols},
    flagged TEXT
);
CREATE TABLE IF NOT EXISTS member_wh (
    key INTEGER PRIMARY KEY,
    {_member_cols}
);
CREATE TABLE IF NOT EXISTS rollup_member (
    level INTEGER NOT NULL,
    start_ts INTEGER NOT NULL,
    member_no INTEGER NOT NULL,
    {_sum_cols},
    PRIMARY KEY (level, start_ts, member_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_coop (
    level INTEGER NOT NULL,
    start_ts INTEGER NOT NULL,
    intervals INTEGER NOT NULL DEFAULT 0,
    {_count_cols},
    {_sum_cols},
    PRIMARY KEY (level, start_ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grid_transitions (
    ts REAL NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    cause TEXT NOT NULL,
    requested_by TEXT,
    refused INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS open_interval (
    part TEXT PRIMARY KEY,
    header TEXT NOT NULL,
    arrays BLOB NOT NULL
);
"""


#: A row key is ``interval number << MEMBER_BITS | member number``.
MEMBER_BITS = 20
MEMBER_MASK = (1 << MEMBER_BITS) - 1


def row_key(start_ts: int, member_no: int, settlement_s: int) -> int:
    """The ``member_wh`` key of one member's row in the interval starting at ``start_ts``."""
    return (start_ts // settlement_s) << MEMBER_BITS | member_no


def key_range(start_ts: int, end_ts: int, settlement_s: int) -> tuple[int, int]:
    """``[lo, hi)`` of the keys of every member's rows in intervals inside ``[start, end)``."""
    return ((start_ts // settlement_s) << MEMBER_BITS,
            (-(-end_ts // settlement_s)) << MEMBER_BITS)


def _add_nullable(col: str) -> str:
    """``col`` plus ``excluded.col`` where NULL means "no counter" on either side."""
    return (f"{col} = CASE WHEN excluded.{col} IS NULL THEN {col} "
            f"ELSE COALESCE({col}, 0) + excluded.{col} END")


def upsert_sums(key: tuple[str, ...], extra: tuple[str, ...] = ()) -> str:
    """``ON CONFLICT`` clause adding every amount of the new row to the stored one."""
    adds = [f"{c} = {c} + excluded.{c}" for c in (*extra, *MEMBER_AMOUNTS)]
    adds += [_add_nullable(c) for c in METER_FIELDS]
    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(adds)}"


def version(conn: sqlite3.Connection) -> int:
    """Schema version of an open ledger: 0 (empty), 1 (per-cycle rows) or 2."""
    user_version = conn.execute("PRAGMA user_version").fetchone()[0]
    if user_version:
        return int(user_version)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "member_wh" in tables:
        return SCHEMA_VERSION
    if "member_energy" in tables:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(member_energy)")}
        return 1 if "interval_id" in cols else 0
    return 0


_start = DDL.index("CREATE TABLE IF NOT EXISTS grid_transitions")
GRID_TRANSITIONS_DDL = DDL[_start:DDL.index(";", _start)]


def create(conn: sqlite3.Connection, settlement_s: int) -> None:
    """Create the version 2 tables in an empty ledger (inside the caller's transaction)."""
    for statement in DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(_view_ddl(settlement_s))
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('settlement_s', ?)",
                 (str(settlement_s),))
    # Open-data exports name members by a keyed hash: stable for this ledger, but not
    # recomputable from a member id by someone who only has the export.
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('pseudonym_salt', ?)",
                 (secrets.token_hex(16),))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")



def _view_ddl(settlement_s: int) -> str:
    return (f"CREATE VIEW IF NOT EXISTS member_energy AS SELECT (key >> {MEMBER_BITS}) * "
            f"{int(settlement_s)} AS start_ts, key & {MEMBER_MASK} AS member_no, "
            f"{', '.join(MEMBER_COLUMNS)} FROM member_wh")


def ensure_columns(conn: sqlite3.Connection, settlement_s: int) -> None:
    """Give a version 2 ledger written before a column existed that column (amounts as 0,
    ``intervals.flagged`` as NULL) and a view that shows it; committed rows keep their values.
    """
    added = False
    for table in ("intervals", "member_wh", "rollup_member", "rollup_coop"):
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for c in MEMBER_AMOUNTS:
            if c not in cols:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {c} INTEGER NOT NULL DEFAULT 0")
                added = True
        for c in METER_FIELDS:
            if c not in cols:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {c} INTEGER")
                added = True
        if table == "intervals" and "flagged" not in cols:
            conn.execute("ALTER TABLE intervals ADD COLUMN flagged TEXT")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(grid_transitions)")}
    if cols and "reason" not in cols:  # reason codes (#21): NULL for the rows before
        conn.execute("ALTER TABLE grid_transitions ADD COLUMN reason TEXT")
    if added:
        conn.execute("DROP VIEW IF EXISTS member_energy")
        conn.execute(_view_ddl(settlement_s))
