"""Ledger at scale: a synthetic year of 1,000 members, read from rollups vs a raw scan.

The ledger is built with the bulk path of :mod:`bench.ledger_data` (the same
rows as committing interval by interval) in a temporary directory under
``/tmp``, measured, and deleted. Every read is timed beside a naive query of
the raw member rows (``member_wh``) of the same time range, and their results compared
(``rollup_equals_raw``). The writes are timed on the full-size file, with
commits appended after the year. Medians after a warm-up; slow naive scans
stop repeating once their time budget is spent (their run count is reported).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ledger_data import GENERATOR, STEP_S, YEAR_START, CoopGenerator, bulk_write
from bench.progress import Progress
from controller.ledger import store
from controller.ledger.periods import month_start, next_month
from controller.ledger.reader import LedgerReader
from controller.ledger.schema import MEMBER_BITS, MEMBER_COLUMNS, MEMBER_MASK, key_range

_SUMS = ", ".join(f"SUM({c})" for c in MEMBER_COLUMNS)
_MEMBER = f"(key & {MEMBER_MASK})"
BATCH_INTERVALS = 96
CYCLE_S = 60
#: (name, target, unit, where the measurement is in the report)
TARGETS = (
    ("member_month_statement", 50.0, "ms", ("reads", "member_month_statement", "fast_ms")),
    ("coop_summary", 50.0, "ms", ("reads", "coop_summary", "fast_ms")),
    ("coop_month_report", 50.0, "ms", ("reads", "coop_month_report", "fast_ms")),
    ("member_hour_series_month", 50.0, "ms", ("reads", "member_hour_series_month", "fast_ms")),
    ("save_open", 2.0, "ms", ("writes", "save_open_ms")),
    ("write_commit", 50.0, "ms", ("writes", "write_commit_ms")),
    ("bytes_per_member_year", 2.0, "MB", ("disk", "mb_per_member_year")),
)


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _timed(fn: Callable[[int], Any], repeats: int, budget_s: float | None = None,
           ) -> tuple[list[float], list[Any]]:
    """Call ``fn(0)`` as a warm-up, then ``fn(1..repeats)`` timed; results of every call.

    With ``budget_s``, stop once that much time was spent timing (after one run at least);
    a warm-up that alone takes ``budget_s`` is the only sample (a scan of the whole ledger).
    """
    start = time.perf_counter()
    results, samples = [fn(0)], []
    warm_up = time.perf_counter() - start
    if budget_s is not None and warm_up >= budget_s:
        return [warm_up], results
    for k in range(1, repeats + 1):
        start = time.perf_counter()
        results.append(fn(k))
        samples.append(time.perf_counter() - start)
        if budget_s is not None and sum(samples) >= budget_s:
            break
    return samples, results


def _row_dict(row: tuple) -> dict[str, int | None]:
    return {c: (None if v is None else int(v)) for c, v in zip(MEMBER_COLUMNS, row, strict=False)}


def _same(fast: dict[str, Any], raw: dict[str, Any]) -> bool:
    return all(fast[c] == raw[c] for c in MEMBER_COLUMNS)


class Naive:
    """Sums of the raw rows of a time range, the way one would without rollups.

    They read ``member_wh`` by the key range of the time range and filter the
    member (``key & MEMBER_MASK``): the plain ``member_energy`` view with
    ``start_ts BETWEEN`` would scan every row of the ledger instead.
    """

    def __init__(self, path: Path, step: int) -> None:
        self.conn = store.connect(path, readonly=True)
        self.step = step

    def _where(self, no: int | None) -> str:
        who = "" if no is None else f" AND {_MEMBER} = {int(no)}"
        return f"WHERE key >= ? AND key < ?{who}"

    def totals(self, no: int | None, a: int, b: int) -> tuple[dict, int]:
        """Sums (and row count) of one member, or of every member, over ``[a, b)``."""
        row = self.conn.execute(f"SELECT {_SUMS}, COUNT(*) FROM member_wh {self._where(no)}",
                                key_range(a, b, self.step)).fetchone()
        return _row_dict(row), int(row[-1])

    def by_member(self, a: int, b: int) -> dict[int, dict]:
        """Every member's sums over ``[a, b)``."""
        rows = self.conn.execute(
            f"SELECT {_MEMBER}, {_SUMS} FROM member_wh {self._where(None)} GROUP BY {_MEMBER}",
            key_range(a, b, self.step)).fetchall()
        return {r[0]: _row_dict(r[1:]) for r in rows}

    def series(self, no: int, a: int, b: int, period_s: int) -> list[tuple[int, dict]]:
        """One member's sums per hour or day over ``[a, b)``."""
        start = f"(key >> {MEMBER_BITS}) * {self.step}"
        rows = self.conn.execute(
            f"SELECT {start} / {period_s} * {period_s} AS p, {_SUMS} FROM member_wh "
            f"{self._where(no)} GROUP BY p ORDER BY p", key_range(a, b, self.step)).fetchall()
        return [(int(r[0]), _row_dict(r[1:])) for r in rows]


def _series_equal(fast: list[tuple[int, dict]], raw: list[tuple[int, dict]]) -> bool:
    return len(fast) == len(raw) and all(
        f[0] == r[0] and _same(f[1], r[1]) for f, r in zip(fast, raw, strict=True))


def _by_member_equal(fast: dict[str, dict], raw: dict[int, dict], numbers: dict[str, int],
                     ) -> bool:
    return len(fast) == len(raw) and all(_same(fast[m], raw[numbers[m]]) for m in fast)


def bench_reads(path: Path, member_ids: tuple[str, ...], repeats: int, budget_s: float,
                ) -> dict[str, dict]:
    """Each read through :class:`LedgerReader` beside its naive scan; results compared."""
    reader = LedgerReader(path)
    naive = Naive(path, reader.step)
    numbers = reader.member_numbers()
    first, last, _ = reader.span()
    a = month_start((first + last) / 2)  # the month in the middle of the ledger
    b = next_month(a)
    lo, hi = max(a, first), min(b, last)  # what the raw rows of that month cover
    pick = [member_ids[(k * 7919) % len(member_ids)] for k in range(repeats + 1)]

    def statement(k: int) -> tuple:
        return reader.totals(pick[k], a, b), reader.series(pick[k], a, b, "day")

    def statement_raw(k: int) -> tuple:
        no = numbers[pick[k]]
        return naive.totals(no, lo, hi), naive.series(no, lo, hi, 86_400)

    def statement_equal(f: tuple, r: tuple) -> bool:
        (totals, days), ((raw, count), raw_days) = f, r
        return _same(totals, raw) and totals["intervals"] == count and _series_equal(
            days, raw_days)

    def coop(start: int | None, end: int | None) -> Callable[[int], tuple]:
        return lambda k: (reader.totals(None, start, end), reader.totals_by_member(start, end))

    def coop_raw(start: int, end: int) -> Callable[[int], tuple]:
        return lambda k: (naive.totals(None, start, end)[0], naive.by_member(start, end))

    def coop_equal(f: tuple, r: tuple) -> bool:
        return _same(f[0], r[0]) and _by_member_equal(f[1], r[1], numbers)

    queries = {
        "member_month_statement": (statement, statement_raw, statement_equal),
        "coop_summary": (coop(None, None), coop_raw(first, last), coop_equal),
        "coop_month_report": (coop(a, b), coop_raw(lo, hi), coop_equal),
        "member_hour_series_month": (
            lambda k: reader.series(pick[k], a, b, "hour"),
            lambda k: naive.series(numbers[pick[k]], lo, hi, 3_600), _series_equal),
    }
    out: dict[str, dict] = {}
    for name, (fast_fn, raw_fn, equal) in queries.items():
        Progress.say(f"reads: {name}")
        fast_s, fast_results = _timed(fast_fn, repeats)
        raw_s, raw_results = _timed(raw_fn, repeats, budget_s)
        fast_ms, raw_ms = statistics.median(fast_s) * 1e3, statistics.median(raw_s) * 1e3
        out[name] = {
            "fast_ms": round(fast_ms, 3), "fast_max_ms": _ms(max(fast_s)),
            "naive_ms": round(raw_ms, 3), "naive_runs": len(raw_s),
            "naive_over_fast": round(raw_ms / fast_ms, 1),
            "equal": all(equal(f, r) for f, r in zip(fast_results, raw_results, strict=False)),
        }
    out["member_month_statement"]["month_start"] = a
    # Not targets: what every call pays before its rollups (span() reads the whole
    # intervals table), and a caller looping totals(member) instead of totals_by_member.
    span_s, _ = _timed(lambda k: reader.span(), repeats)
    Progress.say("reads: lifetime totals(member), one call per member")
    loop_s, _ = _timed(lambda k: {m: reader.totals(m) for m, _ in reader.members()},
                       min(repeats, 5), budget_s)
    out["span_ms"] = _ms(statistics.median(span_s))
    out["totals_one_call_per_member"] = {"fast_ms": _ms(statistics.median(loop_s)),
                                         "runs": len(loop_s)}
    naive.conn.close()
    return out


def _interval(conn: sqlite3.Connection, gen: CoopGenerator, numbers: dict[str, int], t: int,
              saves: list[float], packs: list[float], commits: list[float],
              frames: list[int] | None = None) -> None:
    """One interval of 1-min cycles from ``t``, each saved; the commit of the one it closes.

    With ``frames``: empty the WAL before the commit and count the pages it wrote.
    """
    for k in range(STEP_S // CYCLE_S):
        for interval, parts in gen.cycle(t + k * CYCLE_S, t + (k + 1) * CYCLE_S):
            if frames is not None:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            start = time.perf_counter()
            store.write_commit(conn, interval, numbers, parts)
            commits.append(time.perf_counter() - start)
            if frames is not None:
                frames.append(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
        start = time.perf_counter()
        parts = gen.book.open_parts()
        packed = time.perf_counter()
        store.save_open(conn, parts)
        packs.append(packed - start)
        saves.append(time.perf_counter() - packed)


def bench_writes(conn: sqlite3.Connection, gen: CoopGenerator, numbers: dict[str, int],
                 repeats: int) -> dict[str, Any]:
    """The controller's writes appended after the ledger: 1-min cycles, a save each, commits.

    ``repeats + 1`` intervals of 15 cycles; the first interval's commit and saves warm up.
    """
    saves, packs, commits = [], [], []
    for interval, parts in gen.pending:  # closed already: committed before the timed ones
        store.write_commit(conn, interval, numbers, parts)
    gen.pending.clear()
    t = gen.next_start
    cycles = STEP_S // CYCLE_S
    with Progress(repeats + 1, f"writes: {cycles} saves and a commit per interval") as progress:
        for _ in range(repeats + 1):
            _interval(conn, gen, numbers, t, saves, packs, commits)
            t += STEP_S
            progress.advance(1)
    saves, packs, commits = saves[cycles:], packs[cycles:], commits[1:]
    frames: list[int] = []
    for _ in range(3):  # not timed: how many pages a commit writes to the WAL
        _interval(conn, gen, numbers, t, [], [], [], frames)
        t += STEP_S
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    blob = sum(len(h) + len(b) for h, b in gen.book.open_parts().values())
    return {
        "members": gen.n, "cycles_per_interval": cycles,
        "save_open_ms": _ms(statistics.median(saves)), "save_open_max_ms": _ms(max(saves)),
        "save_open_bytes": blob, "open_parts_pack_ms": _ms(statistics.median(packs)),
        "write_commit_ms": _ms(statistics.median(commits)),
        "write_commit_max_ms": _ms(max(commits)), "commits_timed": len(commits),
        "saves_timed": len(saves),
        "wal_pages_per_commit": statistics.median(frames),
        "wal_mb_per_commit": round(statistics.median(frames) * page / 1e6, 2),
    }


def disk_usage(conn: sqlite3.Connection, path: Path, members: int, days: int,
               member_rows: int) -> dict[str, Any]:
    """File size after a checkpoint, per member-year, and per table (``dbstat``).

    ``cells`` counts a b-tree's cells as ``dbstat`` does: a rowid table's interior
    cells too. ``member_rows``: how many rows ``member_wh`` holds (members x intervals).
    """
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(path)
    member_years = members * days / 365
    out: dict[str, Any] = {"file_bytes": size, "member_years": round(member_years, 4),
                           "mb_per_member_year": round(size / member_years / 1e6, 4),
                           "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
                           "freelist_pages": conn.execute("PRAGMA freelist_count").fetchone()[0]}
    try:
        rows = conn.execute("SELECT name, SUM(pgsize), SUM(payload), SUM(unused), SUM(ncell) "
                            "FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.OperationalError:  # SQLite built without dbstat
        out["tables"] = None
        return out
    out["tables"] = {name: {"bytes": pages, "mb_per_member_year": round(
        pages / member_years / 1e6, 4), "payload_bytes": payload, "fill": round(
        1 - unused / pages, 3), "cells": cells} for name, pages, payload, unused, cells in rows}
    step = int(conn.execute("SELECT value FROM meta WHERE key = 'settlement_s'").fetchone()[0])
    out["member_wh_row"] = row_bytes(conn, out["tables"].get("member_wh"), step, member_rows)
    return out


def _varint_len(v: int) -> int:
    return max(1, -(-v.bit_length() // 7))


def row_bytes(conn: sqlite3.Connection, table: dict | None, step: int, rows: int,
              ) -> dict[str, Any]:
    """Where a ``member_wh`` row's bytes go, from SQLite's record format (one middle day).

    A cell is the payload length and the rowid (the key) as varints, then the
    record: a header of one serial type per column (the key column, an alias
    of the rowid, is stored as NULL) and the values; 0 and 1 take no bytes.
    """
    size = ("CASE WHEN {c} IS NULL OR {c} IN (0, 1) THEN 0 WHEN {c} BETWEEN -128 AND 127 "
            "THEN 1 WHEN {c} BETWEEN -32768 AND 32767 THEN 2 WHEN {c} BETWEEN -8388608 AND "
            "8388607 THEN 3 WHEN {c} BETWEEN -2147483648 AND 2147483647 THEN 4 ELSE 6 END")
    first, last = conn.execute("SELECT MIN(start_ts), MAX(start_ts) FROM intervals").fetchone()
    day = (first + last) // 2 // 86_400 * 86_400
    lo, hi = key_range(day, day + 86_400, step)
    avg = conn.execute(
        f"SELECT {', '.join('AVG(' + size.format(c=c) + ')' for c in MEMBER_COLUMNS)}, "
        f"AVG({' + '.join(f'({c} IS NULL OR {c} = 0)' for c in MEMBER_COLUMNS)}) "
        "FROM member_wh WHERE key >= ? AND key < ?", (lo, hi)).fetchone()
    out: dict[str, Any] = {"record_header": 2 + len(MEMBER_COLUMNS),
                           "rowid_varint": _varint_len(hi), "values": round(sum(avg[:-1]), 2),
                           "zero_or_null_columns": round(avg[-1], 2),
                           "columns": len(MEMBER_COLUMNS),
                           "value_bytes_by_column": {c: round(v, 2) for c, v in
                                                     zip(MEMBER_COLUMNS, avg[:-1], strict=True)}}
    if table and rows:
        out["on_disk_per_row"] = round(table["bytes"] / rows, 1)
        out["payload_per_row"] = round(table["payload_bytes"] / rows, 1)
    return out


def build(conn: sqlite3.Connection, gen: CoopGenerator, numbers: dict[str, int],
          intervals: int) -> dict[str, Any]:
    """Book ``intervals`` with the generator and write them with the bulk path."""
    conn.execute("PRAGMA synchronous=OFF")  # a scratch file: no fsync while bulk loading
    gen_s = write_s = 0.0
    stream = gen.intervals(intervals)
    with Progress(intervals, f"building {gen.n} members x {intervals} intervals") as progress:
        done = 0
        while done < intervals:
            start = time.perf_counter()
            batch = [b for _, b in zip(range(BATCH_INTERVALS), stream, strict=False)]
            booked = time.perf_counter()
            bulk_write(conn, batch, numbers)
            gen_s += booked - start
            write_s += time.perf_counter() - booked
            done += len(batch)
            progress.advance(len(batch))
    conn.execute("PRAGMA synchronous=FULL")
    return {"intervals": intervals, "member_rows": intervals * gen.n,
            "generate_s": round(gen_s, 1), "bulk_write_s": round(write_s, 1)}


def _targets(report: dict) -> list[dict[str, Any]]:
    out = []
    for name, target, unit, where in TARGETS:
        value: Any = report
        for key in where:
            value = value[key]
        out.append({"name": name, "target": target, "measured": value, "unit": unit,
                    "met": value < target})
    return out


def run(members: int = 1000, days: int = 365, repeats: int = 21, naive_budget_s: float = 20.0,
        tmp_root: str = "/tmp") -> dict[str, Any]:
    """Build, measure and delete a ledger of ``members`` x ``days``; a JSON-ready report."""
    tmp = Path(tempfile.mkdtemp(prefix="commonwatt-ledger-bench-", dir=tmp_root))
    try:
        path = tmp / "ledger.sqlite"
        gen = CoopGenerator(members)
        conn, lock = store.open_writer(path, STEP_S)
        try:
            numbers = store.register_members(conn, gen.members())
            report: dict[str, Any] = {
                "members": members, "days": days, "settlement_s": STEP_S,
                "start": YEAR_START, "repeats": repeats, "sqlite": sqlite3.sqlite_version,
                "generator": GENERATOR, "build": build(conn, gen, numbers, days * 86_400 // STEP_S),
            }
            load = {"start": os.getloadavg()[0]}
            Progress.say("disk: checkpoint, dbstat")
            report["disk"] = disk_usage(conn, path, members, days,
                                        report["build"]["member_rows"])
            load["reads"] = os.getloadavg()[0]
            report["reads"] = bench_reads(path, gen.member_ids, repeats, naive_budget_s)
            load["writes"] = os.getloadavg()[0]
            report["writes"] = bench_writes(conn, gen, numbers, repeats)
            load["end"] = os.getloadavg()[0]
            # Other work on a shared machine slows every figure: its 1-min load, CPUs.
            report["load_average_1min"] = load | {"cpus": os.cpu_count()}
        finally:
            conn.close()
            lock.release()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["rollup_equals_raw"] = all(
        q["equal"] for q in report["reads"].values() if isinstance(q, dict) and "equal" in q)
    report["targets"] = _targets(report)
    return report

