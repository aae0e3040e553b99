"""The plan's expected saving against greedy, booked per member and re-plan.

Each plan books what following it is expected to save over the interval until the next
re-plan (:mod:`controller.planning.expected` says how, and why it is an expectation), in
``plan_savings.sqlite`` beside the ledger: a file of its own, so the ledger's schema and
its writer are untouched. The statement and the coop report sum a month of it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from controller.planning.expected import Expected

FILE_NAME = "plan_savings.sqlite"
_SCHEMA = """CREATE TABLE IF NOT EXISTS saved (
    start REAL NOT NULL, end REAL NOT NULL, member_id TEXT NOT NULL,
    import_wh REAL NOT NULL, money REAL, PRIMARY KEY (start, member_id))"""


def savings_path(ledger: Path) -> Path:
    """Where a ledger's plan savings are booked."""
    return Path(ledger).parent / FILE_NAME


def book(path: Path, start: float, member_ids: Sequence[str], expected: Expected) -> None:
    """Book one plan's expected saving from ``start`` (re-booking a start replaces it)."""
    end = start + expected.booked_steps * expected.step_s
    money = (expected.saved_money if expected.saved_money is not None
             else np.full(len(member_ids), np.nan))
    rows = [(start, end, m, float(wh), None if np.isnan(c) else float(c))
            for m, wh, c in zip(member_ids, expected.saved_import_wh, money, strict=True)]
    with sqlite3.connect(path) as conn:
        conn.execute(_SCHEMA)
        conn.executemany("INSERT OR REPLACE INTO saved VALUES (?, ?, ?, ?, ?)", rows)
    conn.close()


def month_saved(path: Path, start: int, end: int) -> dict[str, tuple[float, float | None]]:
    """Per member, kWh and money saved by plans booked from ``start`` to ``end`` (empty
    when nothing was booked, e.g. ``[dispatch] plan`` off)."""
    if not Path(path).exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT member_id, SUM(import_wh), SUM(money), COUNT(money) "
                            "FROM saved WHERE start >= ? AND start < ? GROUP BY member_id",
                            (start, end)).fetchall()
    conn.close()
    return {m: (round(wh / 1000, 6), round(money, 4) if priced else None)
            for m, wh, money, priced in rows}


def saved_dict(saved: dict[str, tuple[float, float | None]] | None,
               currency: str | None) -> dict[str, object] | None:
    """Published form, summed over the members given: None when nothing is booked."""
    if not saved:
        return None
    money = [c for _, c in saved.values() if c is not None]
    return {"import_kwh": round(sum(wh for wh, _ in saved.values()), 3),
            "money": round(sum(money), 2) if money and currency else None,
            "currency": currency if money else None,
            "counterfactual": "greedy over the same forecast, each re-plan (expected)"}


def saved_lines(saved: dict[str, object] | None) -> list[str]:
    """Text lines of a statement or report."""
    if saved is None:
        return []
    money = ("" if saved["money"] is None
             else f", {saved['money']:.2f} {saved['currency']}")
    return ["", "Rolling plan against greedy (expected, each re-plan over its forecast)",
            f"  grid import saved       {saved['import_kwh']:.3f} kWh{money}"]
