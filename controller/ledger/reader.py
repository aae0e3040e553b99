"""Reading the ledger: totals over any range from rollups, series for charts, raw rows.

A ``[from, to]`` query is cut into the coarsest whole periods that fit
(months, days, hours) plus single settlement intervals at the edges
(:func:`~controller.ledger.periods.plan_range`), so its cost does not grow
with the ledger's age, and it sums to exactly the same integers as the raw
intervals would.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from controller.ledger import federation_rows, schema, store
from controller.ledger.periods import (
    ALL,
    INTERVAL,
    align_range,
    period_end,
    period_start,
    plan_range,
)
from controller.ledger.schema import (
    INTERVAL_COUNTS,
    MEMBER_BITS,
    MEMBER_COLUMNS,
    MEMBER_MASK,
    METER_FIELDS,
    key_range,
    row_key,
)

_SUMS = ", ".join(f"SUM({c})" for c in MEMBER_COLUMNS)
LEVEL_BY_STEP = {"hour": 1, "day": 2, "month": 3}


class LedgerMissingError(FileNotFoundError):
    """No ledger at the configured path (the controller has not run yet)."""


def _totals(row: tuple, names: tuple[str, ...]) -> dict[str, int | None]:
    return {n: (None if v is None else int(v)) for n, v in zip(names, row, strict=True)}


class LedgerReader:
    """Read-only queries, safe from the API's threads (one connection per thread)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise LedgerMissingError(f"{self.path}: no ledger here yet (run the controller "
                                     "first, or check [storage] ledger in the config)")
        self._local = threading.local()
        conn = self._conn()
        if schema.version(conn) != schema.SCHEMA_VERSION:
            raise LedgerMissingError(f"{self.path}: ledger schema {schema.version(conn)}; "
                                     "start the controller once to upgrade it")
        self.step = store.ledger_settlement_s(conn) or 900

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = store.connect(self.path, readonly=True)
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def consistent(self) -> Iterator[None]:
        """Every query inside reads one state of the ledger (one read transaction), so a
        commit by the writer in between is never seen half: a span without its totals
        would count an interval twice, or not at all, against the open one."""
        conn = self._conn()
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def members(self) -> list[tuple[str, str]]:
        """``(id, name)`` of every member, by id."""
        return self._conn().execute("SELECT id, name FROM members ORDER BY id").fetchall()

    def member_numbers(self) -> dict[str, int]:
        """Member id → the small number rows use."""
        return dict(self._conn().execute("SELECT id, no FROM members").fetchall())

    def member_number(self, member_id: str) -> int | None:
        """The small number of one member's rows; ``None`` for an id that is no member.

        One indexed row, where :meth:`member_numbers` reads every member: a request
        about one member of 10,000 spent most of its time there (bench/api_bench.py).
        """
        row = self._conn().execute("SELECT no FROM members WHERE id = ?",
                                   (member_id,)).fetchone()
        return None if row is None else int(row[0])

    def span(self) -> tuple[int | None, int | None, int]:
        """First start, last end and number of committed intervals."""
        # Each on its own: SQLite answers MIN/MAX of the rowid key from the b-tree's
        # edges, and the count from the lifetime rollup, so this does not grow with age.
        conn = self._conn()
        first = conn.execute("SELECT MIN(start_ts) FROM intervals").fetchone()[0]
        if first is None:
            return None, None, 0
        last = conn.execute("SELECT MAX(start_ts) FROM intervals").fetchone()[0] + self.step
        row = conn.execute("SELECT intervals FROM rollup_coop WHERE level = ? AND start_ts = 0",
                           (ALL,)).fetchone()
        return int(first), int(last), int(row[0]) if row else 0

    def booked_until(self) -> float | None:
        """Time up to which the ledger has booked: the open interval's end, else the last commit."""
        row = self._conn().execute(
            "SELECT header FROM open_interval WHERE part = 'acc'").fetchone()
        end = json.loads(row[0]).get("end_ts") if row else None
        last = self.span()[1]
        if end is None:
            return None if last is None else float(last)
        return max(float(end), float(last or 0))

    def _plan(self, start: float | None, end: float | None) -> list[tuple[int, int, int]]:
        first, last, count = self.span()
        if not count:
            return []
        lo, hi = align_range(start, end, self.step, first, last)
        if lo <= first and hi >= last:
            return [(ALL, 0, 1)]
        return plan_range(lo, hi, self.step)

    def totals(self, member_id: str | None = None, start: float | None = None,
               end: float | None = None) -> dict[str, int | None]:
        """Sums of every column over the whole intervals inside ``[start, end]``.

        For a member: its columns; for the coop (``member_id=None``): the coop's
        sums plus ``cycles``, ``covered_s``, ``gap_s_coop``, ``islanded_s``. Both
        have ``intervals``, the number of committed intervals summed.
        """
        conn = self._conn()
        no = None if member_id is None else self.member_number(member_id)
        names = (*MEMBER_COLUMNS, "intervals", *INTERVAL_COUNTS)
        acc: dict[str, int | None] = {n: None if n in METER_FIELDS else 0 for n in names}
        for level, a, b in self._plan(start, end):
            if level == INTERVAL:
                if no is None:
                    row = conn.execute(
                        f"SELECT {_SUMS}, COUNT(*), "
                        f"{', '.join(f'SUM({c})' for c in INTERVAL_COUNTS)} FROM intervals "
                        "WHERE start_ts >= ? AND start_ts < ?", (a, b)).fetchone()
                else:
                    keys = [row_key(t, no, self.step) for t in range(a, b, self.step)]
                    row = conn.execute(
                        f"SELECT {_SUMS}, COUNT(*) FROM member_wh WHERE key IN "
                        f"({', '.join('?' * len(keys))})", keys).fetchone()
            elif no is None:
                row = conn.execute(
                    f"SELECT {_SUMS}, SUM(intervals), "
                    f"{', '.join(f'SUM({c})' for c in INTERVAL_COUNTS)} FROM rollup_coop "
                    "WHERE level = ? AND start_ts >= ? AND start_ts < ?", (level, a, b)).fetchone()
            else:
                starts = period_starts(level, a, b)
                row = conn.execute(
                    f"SELECT {_SUMS}, NULL FROM rollup_member WHERE level = ? AND member_no = ? "
                    f"AND start_ts IN ({', '.join('?' * len(starts))})",
                    (level, no, *starts)).fetchone()
            _add(acc, _totals(row, names[:len(row)]))
        if no is not None:
            acc["intervals"] = self._count_intervals(start, end)
            for c in INTERVAL_COUNTS:
                acc.pop(c)
        acc.update(federation_rows.sums(conn, *self._range(start, end), self.step, no))
        return acc

    def _range(self, start: float | None, end: float | None) -> tuple[int, int]:
        """The whole booked intervals inside ``[start, end]`` as ``[lo, hi)``."""
        first, last, count = self.span()
        return align_range(start, end, self.step, first, last) if count else (0, 0)

    def _count_intervals(self, start: float | None, end: float | None) -> int:
        first, last, count = self.span()
        if not count:
            return 0
        lo, hi = align_range(start, end, self.step, first, last)
        return int(self._conn().execute(
            "SELECT COUNT(*) FROM intervals WHERE start_ts >= ? AND start_ts < ?",
            (lo, hi)).fetchone()[0])

    def totals_by_member(self, start: float | None = None, end: float | None = None,
                         ) -> dict[str, dict[str, int | None]]:
        """Every member's sums over ``[start, end]`` (rollups and edge intervals)."""
        conn = self._conn()
        by_no = {no: m for m, no in self.member_numbers().items()}
        out = {m: {c: None if c in METER_FIELDS else 0 for c in MEMBER_COLUMNS}
               for m in by_no.values()}
        for level, a, b in self._plan(start, end):
            if level == INTERVAL:
                rows = conn.execute(
                    f"SELECT key & {MEMBER_MASK}, {_SUMS} FROM member_wh WHERE key >= ? AND "
                    f"key < ? GROUP BY key & {MEMBER_MASK}",
                    key_range(a, b, self.step)).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT member_no, {_SUMS} FROM rollup_member WHERE level = ? AND "
                    "start_ts >= ? AND start_ts < ? GROUP BY member_no", (level, a, b)).fetchall()
            for no, *values in rows:
                _add(out[by_no[no]], _totals(tuple(values), MEMBER_COLUMNS))
        fed = federation_rows.sums_by_member(conn, *self._range(start, end), self.step)
        for no, member in by_no.items():
            out[member].update(fed.get(no, dict.fromkeys(federation_rows.SUM_FIELDS, 0)))
        return out

    def series(self, member_id: str | None, start: float, end: float, step: str,
               ) -> list[tuple[int, dict[str, int | None]]]:
        """``(period start, sums)`` per interval, hour, day or month inside ``[start, end]``."""
        conn = self._conn()
        no = None if member_id is None else self.member_number(member_id)
        if step == "interval":
            if no is None:
                rows = conn.execute(f"SELECT start_ts, {', '.join(MEMBER_COLUMNS)} FROM "
                                    "intervals WHERE start_ts >= ? AND end_ts <= ? ORDER BY "
                                    "start_ts", (start, end)).fetchall()
            else:
                first = -(-int(start) // self.step) * self.step
                keys = [row_key(t, no, self.step)
                        for t in range(first, int(end) - self.step + 1, self.step)]
                rows = [(((k >> MEMBER_BITS) * self.step), *r) for k, *r in _chunked(
                    conn, f"SELECT key, {', '.join(MEMBER_COLUMNS)} FROM member_wh "
                    "WHERE key IN ({}) ORDER BY key", keys)]
        elif no is None:
            rows = conn.execute(f"SELECT start_ts, {', '.join(MEMBER_COLUMNS)} FROM rollup_coop "
                                "WHERE level = ? AND start_ts >= ? AND start_ts < ? "
                                "ORDER BY start_ts", (LEVEL_BY_STEP[step], start, end)).fetchall()
        else:
            level = LEVEL_BY_STEP[step]
            starts = period_starts(level, period_start(level, start), end)
            starts = [t for t in starts if t >= start]
            rows = _chunked(conn, f"SELECT start_ts, {', '.join(MEMBER_COLUMNS)} FROM "
                            f"rollup_member WHERE level = {level} AND member_no = {int(no)} AND "
                            "start_ts IN ({}) ORDER BY start_ts", starts)
        out = [(int(r[0]), _totals(r[1:], MEMBER_COLUMNS)) for r in rows]
        zero = dict.fromkeys(federation_rows.SUM_FIELDS, 0)
        if step == "interval" and out:
            fed = federation_rows.sums_by_interval(conn, out[0][0], out[-1][0] + self.step,
                                                   self.step, no)
            for ts, sums in out:
                sums.update(fed.get(ts, zero))
        else:
            for ts, sums in out:  # hours, days or months: one small indexed query each
                hi = period_end(LEVEL_BY_STEP[step], ts)
                sums.update(federation_rows.sums(conn, ts, hi, self.step, no))
        return out

    def intervals(self, start: float | None = None, end: float | None = None,
                  ) -> list[dict[str, object]]:
        """Committed intervals' coop rows (counts, what was missing, meters whose counters
        disagreed with their power: ``flagged``), oldest first."""
        conn = self._conn()
        # A ledger no writer has opened since meters were flagged has no such column.
        has_flagged = any(r[1] == "flagged" for r in conn.execute("PRAGMA table_info(intervals)"))
        rows = conn.execute(
            f"SELECT start_ts, end_ts, missing, {'flagged' if has_flagged else 'NULL'}, "
            f"{', '.join(INTERVAL_COUNTS)} FROM intervals "
            "WHERE start_ts >= ? AND end_ts <= ? ORDER BY start_ts",
            (start or 0, end if end is not None else 2**62)).fetchall()
        return [{"start_ts": r[0], "end_ts": r[1], "missing": r[2], "flagged": r[3],
                 **dict(zip(INTERVAL_COUNTS, r[4:], strict=True))} for r in rows]

    def raw_rows(self, start: float | None = None, end: float | None = None,
                 ) -> Iterator[tuple]:
        """``(start_ts, member id, *MEMBER_COLUMNS)`` for every member and interval, in order."""
        lo = -(-int(start or 0) // self.step) * self.step
        hi = (int(end) // self.step * self.step) if end is not None else 2**40
        names = {no: m for m, no in self.member_numbers().items()}
        cursor = self._conn().execute(
            f"SELECT key, {', '.join(MEMBER_COLUMNS)} FROM member_wh WHERE key >= ? AND "
            "key < ? ORDER BY key", key_range(lo, hi, self.step))
        for start_ts, rows in itertools.groupby(
                cursor, key=lambda r: (r[0] >> MEMBER_BITS) * self.step):
            for row in sorted(rows, key=lambda r: names[r[0] & MEMBER_MASK]):
                yield (start_ts, names[row[0] & MEMBER_MASK], *row[1:])

    def federation_by_member(self, start: float | None = None, end: float | None = None,
                             ) -> dict[str, dict[str, int]]:
        """Each member's ``to_federation`` and ``from_federation`` Wh over ``[start, end)``.

        Zero for every member of a ledger that never took part in a federation.
        """
        numbers = self.member_numbers()
        try:
            return federation_rows.member_totals(
                self._conn(), numbers, self.step, None if start is None else int(start),
                None if end is None else int(end))
        except sqlite3.OperationalError:  # a ledger from before the federation tables
            return {m: dict.fromkeys(federation_rows.FEDERATION_FIELDS, 0) for m in numbers}

    def grid_transitions(self, limit: int = 1000) -> list[dict[str, object]]:
        """The last ``limit`` grid transitions, refused commands and sheds, oldest first;
        ``reason`` is the row's code (:mod:`controller.island.reasons`), None before it."""
        conn = self._conn()
        cols = {r[1] for r in conn.execute("PRAGMA table_info(grid_transitions)")}
        reason = "reason" if "reason" in cols else "NULL"  # a ledger opened read-only
        rows = conn.execute(
            f"SELECT ts, from_state, to_state, cause, requested_by, refused, {reason} FROM "
            "grid_transitions ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
        keys = ("ts", "from", "to", "cause", "requested_by", "refused", "reason")
        return [dict(zip(keys, (*r[:5], bool(r[5]), r[6]), strict=True))
                for r in reversed(rows)]

    def islanded_seconds(self, start: float | None = None, end: float | None = None) -> float:
        """Seconds run off-grid inside the range."""
        return float(self.totals(None, start, end).get("islanded_s") or 0)


def period_starts(level: int, start: int, end: int) -> list[int]:
    """Starts of the ``level`` periods from ``start`` (a period start) up to ``end``."""
    if level == ALL:
        return [0]
    out, t = [], int(start)
    while t < end:
        out.append(t)
        t = period_end(level, t)
    return out


def _chunked(conn: sqlite3.Connection, sql: str, values: list[int], size: int = 500,
             ) -> list[tuple]:
    """Run ``sql`` with ``IN ({})`` over ``values`` in chunks (SQLite limits parameters)."""
    out: list[tuple] = []
    for i in range(0, len(values), size):
        chunk = values[i:i + size]
        out += conn.execute(sql.format(", ".join("?" * len(chunk))), chunk).fetchall()
    return out


def _add(acc: dict[str, int | None], more: dict[str, int | None]) -> None:
    for k, v in more.items():
        if v is None:
            continue
        acc[k] = v if acc.get(k) is None else acc[k] + v  # type: ignore[operator]
