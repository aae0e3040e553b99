"""The coop's month: sovereignty figures, fairness, what is missing, and the budget.

Energy comes from the rollups only (:meth:`LedgerReader.totals` and
:meth:`LedgerReader.totals_by_member`), never from member rows; the count of
intervals with a gap, and which devices were unknown, come from the coop's
one row per interval (:meth:`LedgerReader.intervals`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controller.accounts.budget import Budget, money, month_budget
from controller.accounts.figures import (
    energy_wh,
    export_booked,
    figures,
    import_booked,
    iso,
    kwh,
    meter_drift,
    month_label,
    self_sufficiency,
)
from controller.config import LedgerConfig, TariffConfig
from controller.ledger import LedgerReader
from controller.ledger.periods import next_month
from controller.ledger.schema import CURTAIL_CAUSES
from controller.planning.savings import month_saved, saved_dict, saved_lines
from dispatch.metrics import jain_index


@dataclass(frozen=True, slots=True)
class CoopReport:
    """The coop's month as booked (integer sums; see :func:`report_dict`)."""

    start: int
    end: int
    settlement_s: int
    totals: dict[str, int | None]
    by_member: dict[str, dict[str, int | None]]
    names: dict[str, str]
    expected: int
    with_gaps: int
    devices_unknown: dict[str, int]
    drift_flagged: list[str]
    budget: Budget | None
    #: The rolling plan's expected saving against greedy (controller/planning/savings.py).
    plan_saved: dict[str, tuple[float, float | None]] | None = None

    @property
    def month(self) -> str:
        """``YYYY-MM``."""
        return month_label(self.start)

    @property
    def committed(self) -> int:
        """Intervals committed in the month."""
        return int(self.totals.get("intervals") or 0)

    @property
    def absent(self) -> int:
        """Intervals expected but never committed."""
        return max(self.expected - self.committed, 0)


def expected_intervals(month_start: int, month_end: int, step: int,
                       first: int | None, last: int | None) -> int:
    """Intervals of the month while the ledger existed: ``[first start, last end)``.

    A month still running counts up to the last committed interval; intervals
    before the ledger's first one are not expected (the coop had not started).
    """
    if first is None or last is None:
        return 0
    lo, hi = max(month_start, first), min(month_end, last)
    return max(hi - lo, 0) // step


def coop_report(reader: LedgerReader, month_start: int, tariff: TariffConfig | None = None,
                ledger: LedgerConfig | None = None,
                wear_per_kwh: Mapping[str, float] | None = None,
                savings: Path | None = None) -> CoopReport:
    """The report of the calendar month starting at ``month_start`` (``wear_per_kwh``:
    battery owners' wear prices, paid by the fund; see :func:`month_budget`)."""
    ledger = ledger or LedgerConfig()
    end = next_month(month_start)
    totals = reader.totals(None, month_start, end)
    by_member = reader.totals_by_member(month_start, end)
    first, last, _ = reader.span()
    with_gaps, unknown = 0, Counter[str]()
    for row in reader.intervals(month_start, end):
        with_gaps += bool(row["gap_s_coop"])
        if row["missing"]:
            unknown.update(json.loads(str(row["missing"])))
    flagged = sorted(m for m, s in by_member.items() if any(
        d.flagged for d in meter_drift(s, ledger.drift_threshold_pct,
                                       ledger.drift_min_wh).values()))
    return CoopReport(
        month_start, end, reader.step, totals, by_member, dict(reader.members()),
        expected_intervals(month_start, end, reader.step, first, last), with_gaps,
        dict(sorted(unknown.items())), flagged,
        None if tariff is None else month_budget(by_member, tariff, wear_per_kwh),
        month_saved(savings, month_start, end) if savings is not None else None)


def _coop_figures(r: CoopReport) -> dict[str, float | int | None]:
    """The coop's figures; meter counters and drift summed over members with counters."""
    out = figures(r.totals)
    for field, booked in (("import", import_booked), ("export", export_booked)):
        metered = [(s[f"meter_{field}"], booked(s)) for s in r.by_member.values()
                   if s.get(f"meter_{field}") is not None]
        out[f"meter_{field}_kwh"] = kwh(sum(m for m, _ in metered)) if metered else None
        out[f"{field}_drift_kwh"] = kwh(sum(m - b for m, b in metered)) if metered else None
    return out


def report_dict(r: CoopReport) -> dict[str, object]:
    """The report as plain data (what ``--format json`` prints and the API serves)."""
    coop = energy_wh(r.totals)
    members = []
    for m in sorted(r.by_member):
        wh = energy_wh(r.by_member[m])
        members.append({"member_id": m, "name": r.names.get(m, m),
                        "load_kwh": kwh(wh["load"]), "served_kwh": kwh(wh["served"]),
                        "liberated_kwh": kwh(wh["liberated"]), "shed_kwh": kwh(wh["shed"]),
                        "self_sufficiency": self_sufficiency(wh["liberated"], wh["load"]),
                        "net_cents": None if r.budget is None else r.budget.members[m].net})
    sufficiency = [x["self_sufficiency"] for x in members if x["self_sufficiency"] is not None]
    gap_s = int(r.totals.get("gap_s_coop") or 0) + r.absent * r.settlement_s
    return {
        "month": r.month,
        "from": iso(r.start),
        "to": iso(r.end),
        "settlement_s": r.settlement_s,
        "members": len(members),
        "members_served": sum(1 for m in r.by_member.values() if energy_wh(m)["load"] > 0),
        "liberated_kwh": kwh(coop["liberated"]),
        "shared_peer_to_peer_kwh": kwh(coop["to_peers"]),
        "shared_via_coop_batteries_kwh": kwh(coop["battery_to_coop"]),
        "self_sufficiency": self_sufficiency(coop["liberated"], coop["load"]),
        "hours_islanded": round(int(r.totals.get("islanded_s") or 0) / 3600.0, 3),
        "unserved_kwh": kwh(coop["shed"]),
        "curtailed_kwh": kwh(coop["curtailed"]),
        "jain_fairness": jain_index(sufficiency),  # type: ignore[arg-type]
        "intervals": {"committed": r.committed, "expected": r.expected,
                      "missing": r.absent + r.with_gaps, "with_gaps": r.with_gaps,
                      "absent": r.absent},
        "gap_hours": round(gap_s / 3600.0, 3),
        "devices_unknown": r.devices_unknown,
        "drift_flagged": r.drift_flagged,
        "totals": _coop_figures(r),
        "by_member": members,
        "budget": None if r.budget is None else r.budget.as_dict(),
        "plan_saved": saved_dict(r.plan_saved, r.budget and r.budget.currency),
    }


def render_json(r: CoopReport) -> str:
    """``--format json``."""
    return json.dumps(report_dict(r), indent=2)


def _pct(x: object) -> str:
    return "-" if x is None else f"{float(x):.1%}"  # type: ignore[arg-type]


def _or_dash(x: object) -> str:
    return "-" if x is None else str(x)


def render_text(r: CoopReport) -> str:
    """``--format text``: the month's figures, what is missing, members, budget."""
    d = report_dict(r)
    t = d["totals"]
    assert isinstance(t, dict)
    iv = d["intervals"]
    assert isinstance(iv, dict)
    lines = [
        f"Coop report for {d['month']} [{d['from']}, {d['to']}), {d['members']} members "
        f"({d['members_served']} with load)", "",
        f"  liberated                {d['liberated_kwh']:>12.3f} kWh",
        f"  shared peer to peer      {d['shared_peer_to_peer_kwh']:>12.3f} kWh",
        f"  shared via coop batteries{d['shared_via_coop_batteries_kwh']:>12.3f} kWh",
        f"  self-sufficiency         {_pct(d['self_sufficiency']):>12}  (liberated / load)",
        f"  unserved (shed)          {d['unserved_kwh']:>12.3f} kWh",
        f"  curtailed PV             {d['curtailed_kwh']:>12.3f} kWh",
        "    by cause: " + ", ".join(  # cause not recorded: booked before the columns were
            f"{c.replace('_', ' ')} {t[f'curtailed_{c}_kwh']:.3f}" for c in CURTAIL_CAUSES)
        + " kWh",
        f"  hours islanded           {d['hours_islanded']:>12.3f} h",
        f"  Jain fairness            {_or_dash(d['jain_fairness']):>12}"
        "  (over members' self-sufficiency)", "",
        f"Intervals of {r.settlement_s} s: {iv['committed']} committed of {iv['expected']} "
        f"expected; {iv['missing']} missing ({iv['with_gaps']} with a gap, {iv['absent']} "
        f"absent); gaps {d['gap_hours']} h",
    ]
    if r.devices_unknown:
        lines.append("  devices unknown (intervals): " + ", ".join(
            f"{k} ({v})" for k, v in r.devices_unknown.items()))
    if r.drift_flagged:
        lines.append("  meter drift flagged: " + ", ".join(r.drift_flagged))
    lines += ["", f"  {'member':<12}{'load kWh':>12}{'liberated':>12}{'self-suff':>10}"
              + ("" if r.budget is None else f"{'net':>16}")]
    for m in d["by_member"]:  # type: ignore[attr-defined]
        net = "" if r.budget is None else f"{money(m['net_cents'], r.budget.currency):>16}"
        lines.append(f"  {m['member_id']:<12}{m['load_kwh']:>12.3f}{m['liberated_kwh']:>12.3f}"
                     f"{_pct(m['self_sufficiency']):>10}{net}")
    if r.budget is not None:
        b, c = r.budget, r.budget.currency
        lines += ["", f"Budget ({c})",
                  f"  flowed between members  {money(b.flowed_between_members, c):>16}"
                  + "  (" + ", ".join(f"{k.replace('_', ' ')} {money(v, c)}"
                                      for k, v in b.flowed.items()) + ")",
                  f"  paid to the utility     {money(b.paid_to_utility, c):>16}",
                  f"  received from utility   {money(b.received_from_utility, c):>16}",
                  f"  wear paid to owners     {money(b.wear_paid, c):>16}",
                  f"  coop fund (fees - wear) {money(b.fund, c):>16}",
                  f"  balanced to the cent    {'yes' if not b.imbalances() else 'NO':>16}"]
    lines += saved_lines(d["plan_saved"])  # type: ignore[arg-type]
    return "\n".join(lines) + "\n"
