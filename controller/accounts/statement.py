"""One member's month: energy, gaps, metered drift, money, and a row per day.

Totals come from the ledger's rollups (:meth:`LedgerReader.totals`), the day
rows from the day rollups, the money from the whole coop's month
(:func:`~controller.accounts.budget.month_budget`), so a statement agrees to
the Wh with the API and to the cent with every other member's statement.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from controller.accounts.budget import TRANSFERS, MemberMoney, money, month_budget
from controller.accounts.figures import (
    FIGURES,
    Drift,
    UnknownMemberError,
    figures,
    iso,
    kwh,
    meter_drift,
    month_label,
)
from controller.config import LedgerConfig, TariffConfig
from controller.ledger import LedgerReader
from controller.ledger.periods import next_month
from controller.planning.savings import month_saved, saved_dict, saved_lines


@dataclass(frozen=True, slots=True)
class Statement:
    """A member's month as booked (integer Wh sums; see :func:`statement_dict`)."""

    member_id: str
    name: str
    start: int
    end: int
    settlement_s: int
    totals: dict[str, int | None]
    days: list[tuple[int, dict[str, int | None]]]
    drift: dict[str, Drift]
    money: MemberMoney | None
    currency: str | None
    #: The rolling plan's expected saving against greedy: kWh, money (None: no tariff).
    plan_saved: dict[str, tuple[float, float | None]] | None = None

    @property
    def month(self) -> str:
        """``YYYY-MM``."""
        return month_label(self.start)


def known_member(reader: LedgerReader, member_id: str) -> str:
    """The member's display name; :class:`UnknownMemberError` if it is not in the ledger."""
    names = dict(reader.members())
    if member_id not in names:
        raise UnknownMemberError(member_id, sorted(names))
    return str(names[member_id])


def member_statement(reader: LedgerReader, member_id: str, month_start: int,
                     ledger: LedgerConfig | None = None,
                     tariff: TariffConfig | None = None,
                     wear_per_kwh: Mapping[str, float] | None = None,
                     savings: Path | None = None) -> Statement:
    """The statement of ``member_id`` for the calendar month starting at ``month_start``.

    ``ledger`` gives the drift thresholds (defaults when ``None``); with a
    ``tariff`` the statement carries the member's money lines (with ``wear_per_kwh``, the
    battery owners' wear prices, the wear the coop's fund pays the member).
    """
    name = known_member(reader, member_id)
    ledger = ledger or LedgerConfig()
    end = next_month(month_start)
    totals = reader.totals(member_id, month_start, end)
    days = reader.series(member_id, month_start, end, "day")
    drift = meter_drift(totals, ledger.drift_threshold_pct, ledger.drift_min_wh)
    lines = None
    if tariff is not None:
        lines = month_budget(reader.totals_by_member(month_start, end), tariff,
                             wear_per_kwh).members[member_id]
    saved = None
    if savings is not None:
        saved = {k: v for k, v in month_saved(savings, month_start, end).items()
                 if k == member_id}
    return Statement(member_id, name, month_start, end, reader.step, totals, days, drift,
                     lines, None if tariff is None else tariff.currency, saved)


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def statement_dict(st: Statement) -> dict[str, object]:
    """The statement as plain data (what ``--format json`` prints and the API serves)."""
    return {
        "member_id": st.member_id,
        "name": st.name,
        "month": st.month,
        "from": iso(st.start),
        "to": iso(st.end),
        "settlement_s": st.settlement_s,
        "intervals": st.totals.get("intervals") or 0,
        "totals": figures(st.totals),
        "drift": {k: d.as_dict() for k, d in st.drift.items()},
        "drift_flagged": any(d.flagged for d in st.drift.values()),
        "balances": balances(st.totals),
        "money": None if st.money is None else {"currency": st.currency,
                                                **st.money.as_dict()},
        "plan_saved": saved_dict(st.plan_saved, st.currency),
        "days": [{"day": _day(ts), **figures(sums)} for ts, sums in st.days],
    }


def render_json(st: Statement) -> str:
    """``--format json``."""
    return json.dumps(statement_dict(st), indent=2)


def _csv_cell(value: object) -> object:
    return "" if value is None else value


def render_csv(st: Statement, out: TextIO | None = None) -> str:
    """``--format csv``: one row per day and a ``total`` row, every figure a column."""
    buffer = out if out is not None else io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["day", *FIGURES])
    for ts, sums in st.days:
        f = figures(sums)
        writer.writerow([_day(ts), *(_csv_cell(f[k]) for k in FIGURES)])
    total = figures(st.totals)
    writer.writerow(["total", *(_csv_cell(total[k]) for k in FIGURES)])
    return buffer.getvalue() if out is None else ""


def _num(value: float | int | None, width: int = 10) -> str:
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, float):
        return f"{value:>{width}.3f}"
    return f"{value:>{width}}"


_LINES = (
    ("load", "load"), ("served", "served"), ("liberated", "liberated"),
    ("PV (curtailed included)", "pv"), ("shed (unserved)", "shed"),
    ("curtailed PV", "curtailed"), ("  by a cap islanded (command)", "curtailed_command"),
    ("  by the export cap", "curtailed_export_cap"),
    ("  by the grid-former (frequency)", "curtailed_grid_former"),
)
#: Every booked flow across the member's meter and battery, in sections whose lines add up
#: to the section's total: what the meter counted in and out (beside its own counters),
#: where the member's load and PV went, and what went into and out of its battery.
BALANCES: dict[str, tuple[tuple[str, str], ...]] = {
    "in through the meter": (
        ("from the grid", "from_grid"), ("grid into own battery", "grid_to_battery"),
        ("from neighbours' PV", "from_peers"),
        ("from neighbours' batteries", "from_coop_battery"),
        ("neighbours' PV into own battery", "battery_from_coop"),
        ("other batteries into own battery", "battery_from_batteries"),
        ("unallocated (meter, during gaps)", "unallocated_import")),
    "out through the meter": (
        ("own PV to the grid", "to_grid"), ("own PV to neighbours", "to_peers"),
        ("own PV to neighbours' batteries", "to_coop_battery"),
        ("own battery to neighbours", "battery_to_coop"),
        ("own battery to the grid", "battery_to_grid"),
        ("own battery to other batteries", "battery_to_batteries"),
        ("unallocated (meter, during gaps)", "unallocated_export")),
    "into own battery": (
        ("own PV", "to_battery"), ("neighbours' PV", "battery_from_coop"),
        ("the grid", "grid_to_battery"), ("other batteries", "battery_from_batteries")),
    "out of own battery": (
        ("to own loads", "from_battery"), ("to neighbours", "battery_to_coop"),
        ("to the grid", "battery_to_grid"), ("to other batteries", "battery_to_batteries"),
        ("losses", "losses")),
    "own load": (
        ("own PV", "own_pv_used"), ("own battery", "from_battery"),
        ("neighbours' PV", "from_peers"), ("neighbours' batteries", "from_coop_battery"),
        ("the grid", "from_grid"), ("shed (unserved)", "shed")),
    "own PV": (
        ("used at home", "own_pv_used"), ("into own battery", "to_battery"),
        ("to neighbours", "to_peers"), ("into neighbours' batteries", "to_coop_battery"),
        ("to the grid", "to_grid"), ("curtailed", "curtailed")),
}
#: Sections the meter's own counters check.
_COUNTED = {"in through the meter": "meter_import", "out through the meter": "meter_export"}
_DAY_COLUMNS = ("load", "served", "liberated", "from_peers", "to_peers", "from_grid",
                "to_grid", "shed", "curtailed")


def balances(totals: dict[str, int | None]) -> dict[str, dict[str, object]]:
    """Each section of :data:`BALANCES` in Wh: its lines, their total and, across the
    meter, what the meter's counter recorded (``counted``; None without one, and for the
    other sections)."""
    out: dict[str, dict[str, object]] = {}
    for section, lines in BALANCES.items():
        wh = {key: int(totals.get(key) or 0) for _, key in lines}
        counted = totals.get(_COUNTED[section]) if section in _COUNTED else None
        out[section] = {"lines": wh, "total": sum(wh.values()), "counted": counted}
    return out


def render_text(st: Statement) -> str:
    """``--format text``: the month's lines, gaps, drift, money, then a table of days."""
    t = figures(st.totals)
    lines = [f"Statement of {st.member_id} ({st.name}) for {st.month} "
             f"[{iso(st.start)}, {iso(st.end)}), {_count(st.totals, 'intervals')} intervals "
             f"of {st.settlement_s} s", "", "Energy (kWh)"]
    lines += [f"  {label:<32}{_num(t[f'{key}_kwh'])}" for label, key in _LINES]
    ss = t["self_sufficiency"]
    lines.append(f"  {'self-sufficiency':<32}{'-' if ss is None else f'{ss:.1%}':>10}"
                 "  (liberated / load)")
    labels = {s: dict((k, label) for label, k in rows) for s, rows in BALANCES.items()}
    for section, b in balances(st.totals).items():
        lines += ["", f"Energy {section} (kWh)"]
        lines += [f"  {labels[section][k]:<32}{_num(kwh(wh))}" for k, wh in b["lines"].items()]
        lines.append(f"  {'total':<32}{_num(kwh(b['total']))}")
        if section in _COUNTED:
            counted = b["counted"]
            lines.append(f"  {'the meter counted':<32}"
                         f"{_num(None if counted is None else kwh(counted))}")
    lines += ["", "Gaps",
              f"  not booked {st.totals.get('gap_s') or 0} s, of which no meter counter "
              f"{st.totals.get('unknown_s') or 0} s",
              f"  unallocated (meters during gaps): import {t['unallocated_import_kwh']:.3f}, "
              f"export {t['unallocated_export_kwh']:.3f}, PV {t['unallocated_pv_kwh']:.3f} kWh",
              "", "Meter drift (meter counters against booked grid energy)"]
    for direction, d in st.drift.items():
        if d.metered is None:
            lines.append(f"  {direction}: no meter counter")
            continue
        lines.append(f"  {direction}: metered {kwh(d.metered):.3f}, booked {kwh(d.booked):.3f},"
                     f" drift {kwh(d.drift):+.3f} kWh (limit {kwh(d.limit):.3f})"
                     f"{'  FLAGGED' if d.flagged else ''}")
    if st.money is not None and st.currency is not None:
        c, m = st.currency, st.money
        lines += ["", f"Money ({c})"]
        for kind in TRANSFERS:
            lines.append(f"  {kind.replace('_', ' '):<14} paid {money(m.paid[kind], c):>14}   "
                         f"earned {money(m.earned[kind], c):>14}")
        lines += [f"  coop fee            {money(m.coop_fee, c):>14}",
                  f"  battery wear earned {money(m.wear, c):>14}"
                  "  (the coop pays for neighbours' use of your battery)",
                  f"  between members net {money(m.net_between_members, c):>14}",
                  f"  grid import bill    {money(m.grid_import, c):>14}",
                  f"  grid export revenue {money(m.grid_export, c):>14}",
                  f"  net                 {money(m.net, c):>14}"]
    lines += saved_lines(saved_dict(st.plan_saved, st.currency))
    lines += ["", "Per day (kWh)",
              "  " + f"{'day':<10}" + "".join(f"{h:>11}" for h in _DAY_COLUMNS) + "  self-suff"]
    for ts, sums in st.days:
        f = figures(sums)
        ss = f["self_sufficiency"]
        lines.append("  " + f"{_day(ts):<10}"
                     + "".join(" " + _num(f[f"{k}_kwh"]) for k in _DAY_COLUMNS)
                     + f"{'-' if ss is None else f'{ss:.1%}':>11}")
    return "\n".join(lines) + "\n"


def _count(sums: dict[str, int | None], key: str) -> int:
    """An integer sum, 0 when absent."""
    return int(sums.get(key) or 0)
