"""Upgrade a version-1 ledger (one row per member per cycle) to settlement intervals.

Each old cycle row goes to the settlement interval that holds the middle of
its cycle; its integer Wh are added there unchanged, so every member's total
of every field is the same after the upgrade as before, to the Wh. The
interval still open when the old controller stopped (the one holding the
last cycle) becomes the open interval's accumulators, so the new controller
continues it instead of committing it early. Old carries and battery pools
carry over. All of it is one transaction: a crash mid-upgrade leaves the
version-1 ledger as it was.

A version-2 ledger written before a column existed (the causes of curtailment,
``curtailed_<cause>``) gets it in place when opened (:func:`schema.ensure_columns`, 0 in
the rows already committed: their curtailment keeps no cause), and its saved open
interval is re-aligned by column name (:func:`open_rows`).
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from controller.ledger import schema
from controller.ledger.accumulator import (
    ROW,
    CarryState,
    CommittedInterval,
    OpenInterval,
    pack_carries,
    pack_open,
)
from controller.ledger.periods import interval_start
from controller.ledger.schema import CAUSE_FIELDS, MEMBER_COLUMNS
from dispatch.rounding import LEDGER_FIELDS


def migrate_v1(conn: sqlite3.Connection, settlement_s: int) -> int:
    """Upgrade in place; return how many settlement intervals were committed."""
    from controller.ledger.store import register_members, rollback, write_commit

    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in ("members", "intervals", "member_energy", "state"):
            conn.execute(f"ALTER TABLE {table} RENAME TO v1_{table}")
        schema.create(conn, settlement_s)
        members = conn.execute("SELECT id, name FROM v1_members ORDER BY rowid").fetchall()
        numbers = register_members(conn, members)
        ids = tuple(m for m, _ in members)
        column = {m: j for j, m in enumerate(ids)}
        cycles = conn.execute(
            "SELECT id, start_ts, end_ts, islanded FROM v1_intervals ORDER BY start_ts").fetchall()
        buckets: dict[int, list[tuple]] = {}
        for cycle in cycles:
            middle = (cycle[1] + cycle[2]) / 2.0
            buckets.setdefault(interval_start(middle, settlement_s), []).append(cycle)
        state = dict(conn.execute("SELECT key, value FROM v1_state").fetchall())
        carry = _carry(state, ids)
        carry.end_ts = cycles[-1][2] if cycles else None
        # Version 1 knew fewer flows (no battery_to_grid): those it lacks were zero.
        v1_cols = {r[1] for r in conn.execute("PRAGMA table_info(v1_member_energy)")}
        v1_fields = [f for f in LEDGER_FIELDS if f in v1_cols]
        fields = ", ".join(v1_fields)
        order = sorted(buckets)
        committed = 0
        for k, start in enumerate(order):
            acc = OpenInterval.empty(start, len(ids))
            members_wh = np.zeros((len(v1_fields), len(ids)))
            for cycle_id, a, b, islanded in buckets[start]:
                acc.counts["cycles"] += 1
                acc.counts["covered_s"] += b - a
                acc.counts["islanded_s"] += (b - a) if islanded else 0.0
                for member, *row in conn.execute(
                        f"SELECT member_id, {fields} FROM v1_member_energy "
                        "WHERE interval_id = ?", (cycle_id,)):
                    members_wh[:, column[member]] += row
            for i, f in enumerate(v1_fields):
                acc.amounts[ROW[f]] = members_wh[i]
            if k == len(order) - 1:  # still open when the old controller stopped
                parts = {"acc": pack_open(acc, carry, ids), "carry": pack_carries(carry, ids)}
                conn.executemany("INSERT OR REPLACE INTO open_interval VALUES (?, ?, ?)",
                                 [(p, h, b) for p, (h, b) in parts.items()])
                break
            values = np.rint(acc.amounts).astype(np.int64)
            counts = {key: int(round(v)) for key, v in acc.counts.items()}
            counts["gap_s_coop"] = max(0, settlement_s - counts["covered_s"])
            interval = CommittedInterval(start, start + settlement_s, ids, values,
                                         np.zeros(len(ids), dtype=bool), counts, ())
            write_commit(conn, interval, numbers, {}, in_transaction=True)
            committed += 1
        for table in ("member_energy", "intervals", "state", "members"):
            conn.execute(f"DROP TABLE v1_{table}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    conn.execute("VACUUM")
    return committed


#: The open interval's rows as saved before the curtailment causes were booked.
COLUMNS_BEFORE_CAUSES = tuple(c for c in MEMBER_COLUMNS if c not in CAUSE_FIELDS)


def open_rows(saved_columns: list[str] | None, amounts: np.ndarray) -> np.ndarray:
    """The saved open interval's accumulators (rows) in today's :data:`MEMBER_COLUMNS` order.

    A save names its rows; one written before the causes of curtailment were booked
    does not, and has the rows of :data:`COLUMNS_BEFORE_CAUSES` (fewer if older still).
    A row the save lacks starts at zero: the open interval's curtailment booked before
    the upgrade keeps no cause (its ``curtailed`` is whole), and every cycle after has one.
    """
    names = saved_columns or COLUMNS_BEFORE_CAUSES[:amounts.shape[0]]
    out = np.zeros((len(MEMBER_COLUMNS), amounts.shape[1]))
    where = {c: i for i, c in enumerate(MEMBER_COLUMNS)}
    for k, name in enumerate(names):
        if name in where:
            out[where[name]] = amounts[k]
    return out


def _carry(state: dict[str, str], ids: tuple[str, ...]) -> CarryState:
    carry = CarryState.fresh(len(ids))
    saved_ids = json.loads(state.get("member_ids", "[]"))
    index = {m: i for i, m in enumerate(saved_ids)}
    saved = json.loads(state.get("carries", "{}"))
    pools = json.loads(state.get("pools_wh", "{}"))
    held = set(json.loads(state.get("held", "[]")))
    for j, m in enumerate(ids):
        for f in LEDGER_FIELDS:
            if f in saved and m in index:
                carry.carries[f][j] = saved[f][index[m]]
        carry.pools_wh[j] = pools.get(m, 0.0)
        carry.held[j] = m in held
    return carry


assert len(MEMBER_COLUMNS) == len(ROW)
