"""A synthetic coop's ledger, booked by the real code, and a bulk path to write it fast.

:class:`CoopGenerator` dispatches a synthetic coop cycle by cycle with the real
:class:`~dispatch.tick.DispatchEngine` and books every cycle with the real
:class:`~controller.ledger.book.IntervalBook`, so the committed intervals hold
what the controller would book (paired flows balance to the Wh, gaps, meter
counters, unallocated energy). :data:`GENERATOR` says what it simulates.

:func:`bulk_write` writes many committed intervals in one transaction: their
member rows by ``executemany`` and each rollup level by one
``INSERT ... SELECT ... GROUP BY`` upsert, with the same sums (and the same
NULL rules for meter columns) as :func:`controller.ledger.store.write_commit`,
which writes them one interval at a time. ``tests/test_ledger_bench.py`` shows
both give the same rows in every table.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from functools import cache

import numpy as np
from numpy.typing import NDArray

from controller.ledger import schema, store
from controller.ledger.accumulator import CarryState, CommittedInterval
from controller.ledger.book import CycleEnergy, IntervalBook, Parts
from controller.ledger.periods import ALL, DAY, HOUR, LEVELS, MONTH
from controller.ledger.schema import INTERVAL_COUNTS, MEMBER_COLUMNS, METER_FIELDS
from dispatch import Fleet, FleetState
from dispatch.rounding import LEDGER_FIELDS
from dispatch.tick import DispatchEngine

#: 2025-01-01T00:00:00Z: a year of 365 days, 35,040 quarter hours.
YEAR_START = 1_735_689_600
STEP_S = 900
Booked = tuple[CommittedInterval, Parts]

GENERATOR = {
    "dispatch": "real DispatchEngine (prorata) and IntervalBook, one cycle per 15-min interval",
    "pv": "pvlib TMY3 Greensboro day profile per kWp (local time used as UTC); kWp of 0/3/5/8 "
          "(p 0.25/0.25/0.3/0.2), orientation factor U(0.8, 1.05), per-interval noise "
          "N(1, 0.1) per member",
    "load": "BDEW H25 profile x annual U(5, 12) MWh x lognormal noise (mean 1, sigma 0.5) "
            "per member and interval: ~240 Wh per 15 min on average (195 on a July day, "
            "275 in January, evening means up to ~460, 10 % of member-intervals above ~500)",
    "batteries": "60 % of members, 5/10/13.5 kWh, 3.3 kW, 90 % round trip; half of them "
                 "offered to the coop",
    "meters": "90 % of members have import/export/pv counters (the rest: meter columns NULL)",
    "gaps": "0.2 % of member-intervals a device does not answer; the controller is down for "
            "30 min every 30 days (first on day 10, 13:00)",
    "seed": 0,
}
#: Devices not answering, per member and cycle; controller outages (first, period, length).
INVALID_P = 0.002
OUTAGE_AT_S, OUTAGE_EVERY_S, OUTAGE_S = 10 * 86_400 + 13 * 3_600, 30 * 86_400, 1_800


@cache
def _day_profiles(day: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-minute PV (W per kWp) and load (W per MWh/year) of a day of the typical year."""
    from simulators.profiles import load_w_per_mwh_year, pv_w_per_kwp

    return pv_w_per_kwp(day % 365), load_w_per_mwh_year(day % 365)


class CoopGenerator:
    """A synthetic coop of ``n`` members dispatched and booked cycle by cycle (deterministic)."""

    def __init__(self, n: int, start_ts: int = YEAR_START, seed: int = 0,
                 step: int = STEP_S, outage_at_s: int = OUTAGE_AT_S) -> None:
        """``outage_at_s``: seconds after ``start_ts`` of the first 30-min outage."""
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.n, self.step, self.start_ts, self.outage_at_s = n, step, start_ts, outage_at_s
        self.member_ids = tuple(f"m{j:05d}" for j in range(n))
        self.kwp = rng.choice([0.0, 3.0, 5.0, 8.0], n, p=[0.25, 0.25, 0.3, 0.2])
        self.orientation = rng.uniform(0.8, 1.05, n)
        self.annual_mwh = rng.uniform(5.0, 12.0, n)
        cap = np.where(rng.random(n) < 0.6, rng.choice([5000.0, 10000.0, 13500.0], n), 0.0)
        offered = (cap > 0) & (rng.random(n) < 0.5)
        self.fleet = Fleet(cap, cap * 0.05, np.full(n, 3300.0), np.full(n, 3300.0),
                           np.full(n, 0.9), offered=offered)
        self.state = FleetState.start(cap * 0.5)
        self.engine = DispatchEngine(self.fleet)
        self.has_meter = rng.random(n) < 0.9
        self.counters = np.where(self.has_meter, 0.0, np.nan)[None, :] * np.ones((3, 1))
        self.book = IntervalBook(self.member_ids, step, None, CarryState.fresh(n))
        self.next_start = start_ts
        #: Intervals closed by a cycle but not yet handed out by :meth:`intervals`.
        self.pending: list[Booked] = []

    def members(self) -> list[tuple[str, str]]:
        """``(id, name)`` to register."""
        return [(m, f"Member {j}") for j, m in enumerate(self.member_ids)]

    def _powers(self, start: int, end: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean PV and load power (W) of every member over ``[start, end)`` (inside one day)."""
        day, offset = divmod(start - YEAR_START, 86_400)  # the profiles' day of year
        pv_day, load_day = _day_profiles(int(day))
        m0 = offset // 60
        m1 = max(m0 + 1, m0 + (end - start) // 60)
        pv_base, load_base = float(pv_day[m0:m1].mean()), float(load_day[m0:m1].mean())
        pv = pv_base * self.kwp * self.orientation * np.maximum(
            self.rng.normal(1.0, 0.1, self.n), 0.0)
        load = load_base * self.annual_mwh * self.rng.lognormal(-0.125, 0.5, self.n)
        return pv, load

    def cycle(self, start: int, end: int) -> list[Booked]:
        """Dispatch ``[start, end]`` and book it; return the intervals that closed."""
        pv_w, load_w = self._powers(start, end)
        valid = self.rng.random(self.n) >= INVALID_P
        r = self.engine.tick(self.state, pv_w, load_w, valid, float(end - start))
        flows = {f: np.maximum(getattr(r, f), 0.0) for f in LEDGER_FIELDS}
        self.state = r.state.copy()
        h = (end - start) / 3600.0
        own_import = np.maximum(load_w - pv_w, 0.0) * h  # what an unanswering house still does
        own_export = np.maximum(pv_w - load_w, 0.0) * h
        self.counters[0] += np.where(valid, flows["from_grid"] + flows["grid_to_battery"],
                                     own_import)
        self.counters[1] += np.where(valid, flows["to_grid"], own_export)
        self.counters[2] += pv_w * h
        read = np.where(valid, self.counters, np.nan)
        return self.book.add_cycle(CycleEnergy(float(start), float(end), flows, valid, read))

    def intervals(self, count: int) -> Iterator[Booked]:
        """The next ``count`` committed intervals, one cycle per interval, with outages.

        A cycle after an outage closes several intervals; those not handed out
        yet wait in :attr:`pending` for the next call.
        """
        made = 0
        while made < count:
            if self.pending:
                yield self.pending.pop(0)
                made += 1
                continue
            start = self.next_start
            self.next_start += self.step
            if (start - self.start_ts - self.outage_at_s) % OUTAGE_EVERY_S < OUTAGE_S:
                continue  # the controller is down: the next cycle books the gap
            self.pending.extend(self.cycle(start, start + self.step))


_COLS = ", ".join(MEMBER_COLUMNS)
_SUMS = ", ".join(f"SUM({c})" for c in MEMBER_COLUMNS)
_METER_AT = [1 + MEMBER_COLUMNS.index(c) for c in METER_FIELDS]
#: Rollup period start of a settlement start, in SQL (as periods.period_start does).
PERIOD_SQL = {
    HOUR: "start_ts / 3600 * 3600",
    DAY: "start_ts / 86400 * 86400",
    MONTH: "CAST(strftime('%s', start_ts, 'unixepoch', 'start of month') AS INTEGER)",
    ALL: "0",
}


def member_rows(batch: Sequence[Booked], numbers: dict[str, int]) -> list[list]:
    """``(key, *MEMBER_COLUMNS)`` of every member of every interval, in key order."""
    out: list[list] = []
    for interval, _ in batch:
        n = len(interval.member_ids)
        step = interval.end_ts - interval.start_ts
        block = np.empty((n, 1 + len(MEMBER_COLUMNS)), dtype=np.int64)
        block[:, 0] = [schema.row_key(interval.start_ts, numbers[m], step)
                       for m in interval.member_ids]
        block[:, 1:] = interval.values.T
        order = np.argsort(block[:, 0], kind="stable")
        rows = block[order].tolist()
        known = interval.meter_known[order]
        for j in np.flatnonzero(~known):
            for k in _METER_AT:
                rows[j][k] = None
        out.extend(rows)
    return out


def interval_row(interval: CommittedInterval) -> tuple:
    """The coop row of ``intervals``, as :func:`store.write_commit` writes it."""
    counts = [interval.counts.get(k, 0) for k in INTERVAL_COUNTS]
    missing = json.dumps(list(interval.missing)) if interval.missing else None
    flagged = json.dumps(list(interval.flagged)) if interval.flagged else None
    return (interval.start_ts, interval.end_ts, missing, flagged, time.time(), *counts,
            *store.coop_sums(interval))


def bulk_write(conn: sqlite3.Connection, batch: Sequence[Booked],
               numbers: dict[str, int]) -> None:
    """Commit ``batch`` (consecutive intervals, oldest first) and its rollups in one transaction.

    The open-interval state saved is the one after the batch's last interval.
    """
    if not batch:
        return
    first, last = batch[0][0].start_ts, batch[-1][0].end_ts
    marks = ", ".join("?" for _ in MEMBER_COLUMNS)
    counts = ", ".join(INTERVAL_COUNTS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            f"INSERT INTO intervals(start_ts, end_ts, missing, flagged, committed_at, {counts}, "
            f"{_COLS}) VALUES (?, ?, ?, ?, ?, {', '.join('?' for _ in INTERVAL_COUNTS)}, {marks})",
            [interval_row(i) for i, _ in batch])
        conn.executemany(f"INSERT INTO member_wh(key, {_COLS}) VALUES (?, {marks})",
                         member_rows(batch, numbers))
        _rollups(conn, first, last, batch[0][0].end_ts - first)
        conn.executemany("INSERT OR REPLACE INTO open_interval(part, header, arrays) "
                         "VALUES (?, ?, ?)", [(k, h, b) for k, (h, b) in batch[-1][1].items()])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _rollups(conn: sqlite3.Connection, first: int, last: int, step: int) -> None:
    """Upsert every level's sums of the rows in ``[first, last)`` (inside the transaction).

    Member hours are summed from the raw rows once, into a temporary table;
    days, months and the lifetime row are summed from those hours (the same
    integers, and NULL where every meter value is NULL, as summing raw rows).
    """
    member_upsert = schema.upsert_sums(("level", "start_ts", "member_no"))
    coop_upsert = schema.upsert_sums(("level", "start_ts"), ("intervals", *INTERVAL_COUNTS))
    counts = ", ".join(INTERVAL_COUNTS)
    count_sums = ", ".join(f"SUM({c})" for c in INTERVAL_COUNTS)
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS batch_hours (member_no INTEGER, "
                 f"start_ts INTEGER, {_COLS})")
    conn.execute("DELETE FROM temp.batch_hours")
    member = f"key & {schema.MEMBER_MASK}"
    hour = f"(key >> {schema.MEMBER_BITS}) * {int(step)} / 3600 * 3600"
    conn.execute(f"INSERT INTO temp.batch_hours SELECT {member}, {hour}, {_SUMS} "
                 f"FROM member_wh WHERE key >= ? AND key < ? GROUP BY {hour}, {member}",
                 schema.key_range(first, last, step))
    for level in LEVELS:
        period = PERIOD_SQL[level]
        # A literal in GROUP BY is a column number: the lifetime row groups by nothing.
        by_period = "" if level == ALL else f", {period}"
        sums, group = ((_COLS, "") if level == HOUR
                       else (_SUMS, f"GROUP BY member_no{by_period}"))
        # "WHERE true" tells SQLite's parser the ON CONFLICT is an upsert, not a join's ON.
        conn.execute(
            f"INSERT INTO rollup_member(level, member_no, start_ts, {_COLS}) "
            f"SELECT {level}, member_no, {period}, {sums} FROM temp.batch_hours WHERE true "
            f"{group} ORDER BY 3, 2 {member_upsert}")
        conn.execute(
            f"INSERT INTO rollup_coop(level, start_ts, intervals, {counts}, {_COLS}) "
            f"SELECT {level}, {period}, COUNT(*), {count_sums}, {_SUMS} FROM intervals "
            f"WHERE start_ts >= ? AND start_ts < ? {'GROUP BY ' if by_period else ''}"
            f"{by_period[2:]} {coop_upsert}", (first, last))


def commit_each(conn: sqlite3.Connection, batch: Sequence[Booked],
                numbers: dict[str, int]) -> None:
    """The controller's path: :func:`store.write_commit` once per interval."""
    for interval, parts in batch:
        store.write_commit(conn, interval, numbers, parts)


def table_rows(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every row of every table as text (``repr``, so 1 and 1.0 differ), in key order.

    Left out: ``intervals.committed_at`` (wall time of the write) and the meta
    ``pseudonym_salt`` (random per ledger file).
    """
    out = {}
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for table in tables:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")
                if r[1] != "committed_at"]
        keys = [r[1] for r in sorted(conn.execute(f"PRAGMA table_info({table})"),
                                     key=lambda r: r[5]) if r[5]] or cols
        rows = conn.execute(f"SELECT {', '.join(cols)} FROM {table} "
                            f"ORDER BY {', '.join(keys)}").fetchall()
        if table == "meta":
            rows = [r for r in rows if r[0] != "pseudonym_salt"]
        out[table] = [repr(r) for r in rows]
    return out
