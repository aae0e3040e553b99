"""``commonwatt island report``: the island day as booked, against its plan.

After the coop's 24-hour energy island (or a rehearsal) this reads the ledger
and writes, into one directory:

* ``summary.json``: the coop's, each member's, each tier's and each
  battery's figures over the island window, and the plan's verdict;
* one PNG per chart (:mod:`~controller.island_day.report_plots`);
* ``report.html``: one self-contained page, readable on a phone
  (:mod:`~controller.island_day.report_html`).

**Window.** By default the last island episode in the ledger: its islanded
intervals (``islanded_s > 0``), joined across breaks shorter than an hour
(:data:`~controller.island_day.report_inputs.JOIN_S`: a short reconnection or a
controller restart stays one day). A ledger that never islanded gives its
last 24 h. ``--from``/``--to`` choose it by hand (one alone means 24 h from
or to it). The window is cut to whole settlement intervals; every figure
covers exactly the intervals inside.

**Figures.** Energy comes from :meth:`LedgerReader.totals` and
:meth:`LedgerReader.totals_by_member` through
:func:`controller.accounts.figures.energy_wh`, so the report's totals are the
ledger's totals: ``load = served + shed``, ``liberated`` is the
:data:`~dispatch.rounding.LIBERATED_FIELDS`, self-sufficiency is liberated /
load (shed load counts against it). ``shared`` is what crossed between
members: PV given to neighbours plus energy neighbours drew from offered
batteries (``to_peers + battery_to_coop``).

**Tiers.** A member's load is split into tiers by its ``[island]`` shares
(``critical_share``, ``essential_share``, the rest flexible; unlisted members
take the table's defaults), or, without an ``[island]`` table, all of it is
in its ``[[members]] tier``. Shed is attributed per interval and member to
the flexible part first, then essential, then critical: the order in which
the dispatch sheds. A tier *held* when none of its load was shed.

**Batteries.** The ledger books battery flows per member, so there is one
battery per member (a member's several ``[[island.batteries]]`` add up). Its
content is rebuilt interval by interval from the booked flows::

    stored_after = stored_before + (to_battery + battery_from_coop + grid_to_battery
                                    + battery_from_batteries)
                   − (from_battery + battery_to_coop + battery_to_grid
                      + battery_to_batteries) − losses

from the plan's starting SoC for that battery, else the ``[[island.batteries]]``
``soc_pct``, else 50 % (``start_soc_source`` says which). Capacity comes from
``[[island.batteries]]``, else from the plan; the floor from
``[[island.batteries]] floor_pct``, else the battery device's floor (as the
plan takes it). Intervals the ledger never committed move nothing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from controller.accounts.figures import (
    SERVED_FIELDS,
    AccountsInputError,
    energy_wh,
    kwh,
    self_sufficiency,
)
from controller.config import ConfigError
from controller.island.plan import TIERS
from controller.island.site import parse_tz
from controller.island_day.report_batteries import (
    BATTERY_IN,
    BATTERY_OUT,
    Battery,
    battery_summary,
    lost_batteries,
    rebuild_batteries,
)
from controller.island_day.report_day import audit_beside, black_start_summary, eve_summary
from controller.island_day.report_inputs import (
    FloatArray,
    ReportConfig,
    ReportInputError,
    Window,
    island_window,
    load_report_config,
    parse_when,
    plan_shed_kw,
    read_plan,
)
from controller.island_day.trust import odds_summary
from controller.ledger import LedgerReader
from controller.ledger.schema import MEMBER_COLUMNS
from dispatch.rounding import LEDGER_FIELDS

#: A tier held when less than this was attributed to it (Wh; the ledger books whole Wh).
HELD_WH = 0.5


# ------------------------------------------------------------------ figures
@dataclass(slots=True)
class IslandReport:
    """Everything the summary, the charts and the page are made of.

    ``coop`` holds the coop's Wh per interval (T) for each ledger field, NaN
    where no interval was committed; ``islanded`` each interval's islanded
    seconds.
    """

    name: str
    window: Window
    tz: tzinfo
    tz_name: str
    summary: dict
    names: dict[str, str]
    coop: dict[str, FloatArray]
    islanded: FloatArray
    batteries: list[Battery]
    plan: dict | None
    plan_shed_kw: tuple[FloatArray, FloatArray] | None = None  # (step boundaries, kW)
    notes: list[str] = field(default_factory=list)


def tier_shares(ids: list[str], cfg: ReportConfig) -> tuple[FloatArray, str]:
    """N × 3 share of each member's load in each tier, and where they came from."""
    by_id = {m.id: m for m in cfg.coop.members}
    island = cfg.island
    if island is None:
        shares = np.zeros((len(ids), 3))
        for i, m in enumerate(ids):
            shares[i, TIERS.index(by_id[m].tier if m in by_id else "essential")] = 1.0
        return shares, "[[members]] tier"
    listed = {m.member: m for m in island.members}
    shares = np.zeros((len(ids), 3))
    for i, m in enumerate(ids):
        entry = listed.get(m)
        crit = island.critical_share if entry is None or entry.critical_share is None else (
            entry.critical_share)
        ess = island.essential_share if entry is None or entry.essential_share is None else (
            entry.essential_share)
        shares[i] = (crit, ess, max(1.0 - crit - ess, 0.0))
    return shares, "[island] shares"


def attribute_shed(load: FloatArray, shed: FloatArray, shares: FloatArray,
                   ) -> tuple[FloatArray, FloatArray]:
    """Tier load and shed (… × 3, Wh) from load and shed (…) and shares (… × 3).

    Shed goes to the flexible part of the load first, then essential, then
    critical; the tiers' shed adds up to ``shed``.
    """
    tier_load = load[..., None] * shares
    tier_shed = np.zeros_like(tier_load)
    left = shed.astype(np.float64)
    for k in (2, 1, 0):
        tier_shed[..., k] = np.minimum(left, tier_load[..., k])
        left = left - tier_shed[..., k]
    tier_shed[..., 0] += left  # only rounding: shed never exceeds load
    return tier_load, tier_shed


@dataclass(frozen=True, slots=True)
class MemberIntervals:
    """Per interval and member (T × N, Wh): load, shed and the battery's net change."""

    load: FloatArray
    shed: FloatArray
    battery: FloatArray
    committed: NDArray[np.bool_]  # T: the ledger has the interval


def member_intervals(reader: LedgerReader, window: Window, ids: list[str]) -> MemberIntervals:
    """Read every member's rows in the window once (three T × N arrays, not every field)."""
    col = {f: MEMBER_COLUMNS.index(f) for f in LEDGER_FIELDS}
    signs = [(col[f], 1) for f in BATTERY_IN] + [(col[f], -1) for f in BATTERY_OUT]
    load_cols = [col[f] for f in (*SERVED_FIELDS, "shed")]
    index = {m: i for i, m in enumerate(ids)}
    shape = (len(window.times), len(ids))
    load, shed, battery = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    committed = np.zeros(shape[0], dtype=bool)
    for ts, member, *values in reader.raw_rows(window.start, window.end):
        t, i = (int(ts) - window.start) // window.step, index[member]
        load[t, i] = sum(values[c] or 0 for c in load_cols)
        shed[t, i] = values[col["shed"]] or 0
        battery[t, i] = sum(sign * (values[c] or 0) for c, sign in signs)
        committed[t] = True
    return MemberIntervals(load, shed, battery, committed)


def _figures(wh: dict[str, int]) -> dict[str, float | None]:
    """The energy figures of the summary, in kWh, from :func:`energy_wh`."""
    return {"load_kwh": kwh(wh["load"]), "served_kwh": kwh(wh["served"]),
            "shed_kwh": kwh(wh["shed"]), "liberated_kwh": kwh(wh["liberated"]),
            "pv_kwh": kwh(wh["pv"]), "curtailed_kwh": kwh(wh["curtailed"]),
            "self_sufficiency": self_sufficiency(wh["liberated"], wh["load"])}


def _plan_summary(plan: dict, path: Path | None, batteries: list[Battery],
                  label: dict[str, str]) -> dict:
    per = {label[b.member]: b.plan_soc[1] for b in batteries if b.plan_soc is not None}
    return {
        "file": None if path is None else str(path),
        "start": plan.get("start"), "end": plan.get("end"), "scenario": plan.get("scenario"),
        "feasible": {t: plan["feasible"][t] for t in TIERS},
        "shed_kwh": {t: float(plan["shed_kwh"].get(t, 0.0)) for t in TIERS},
        "curtailed_kwh": plan.get("curtailed_kwh"),
        "batteries": {m: {"start_soc_pct": round(float(s[0]), 2),
                          "min_soc_pct": round(float(s.min()), 2),
                          "end_soc_pct": round(float(s[-1]), 2)} for m, s in per.items()},
        "survival": odds_summary(plan),  # the odds the plan gave before the day (#21)
    }


def member_labels(reader: LedgerReader, cfg: ReportConfig) -> dict[str, str]:
    """How the report shows each member: its id where it is ``public = true``, else its
    stable pseudonym (the open-data export's, from the ledger's salt)."""
    from controller.accounts.export import pseudonym, pseudonym_salt

    public = {m.id for m in cfg.coop.members if m.public}
    try:
        salt = pseudonym_salt(reader)
    except LookupError:
        salt = ""
    return {m: m if m in public else pseudonym(salt, m) for m, _ in reader.members()}


def build_report(reader: LedgerReader, cfg: ReportConfig, window: Window,
                 plan: dict | None = None, plan_path: Path | None = None) -> IslandReport:
    """Read the window's figures from the ledger (see the module's docstring)."""
    label = member_labels(reader, cfg)
    # named only where public: everyone else is their pseudonym, in every output
    names = {m: name if label[m] == m else label[m] for m, name in reader.members()}
    ids = sorted(names)
    totals = reader.totals(None, window.start, window.end)
    by_member = reader.totals_by_member(window.start, window.end)
    rows = member_intervals(reader, window, ids)
    notes: list[str] = []
    coop_rows = {r["start_ts"]: r for r in reader.intervals(window.start, window.end)}
    t_index = {int(t): k for k, t in enumerate(window.times)}
    coop = {f: np.full(len(window.times), np.nan) for f in LEDGER_FIELDS}
    islanded = np.zeros(len(window.times))
    for ts, sums in reader.series(None, window.start, window.end, "interval"):
        for f in LEDGER_FIELDS:
            coop[f][t_index[ts]] = sums[f] or 0
        islanded[t_index[ts]] = float(coop_rows[ts]["islanded_s"] or 0)  # type: ignore[arg-type]
    shares, tier_source = tier_shares(ids, cfg)
    tier_load, tier_shed = attribute_shed(rows.load, rows.shed, shares[None, :, :])
    member_tier_load, member_tier_shed = tier_load.sum(axis=0), tier_shed.sum(axis=0)
    lost = lost_batteries(list(coop_rows.values()), window.times,
                          {m.id: f"{m.id}/battery" for m in cfg.coop.members
                           if m.device("battery") is not None})
    batteries = rebuild_batteries(cfg, plan, ids, rows.battery, lost)
    config_tier = {m.id: m.tier for m in cfg.coop.members}

    coop_wh = energy_wh(totals)
    with_gaps = sum(1 for r in coop_rows.values() if r["gap_s_coop"])
    expected = len(window.times)
    absent = expected - int(rows.committed.sum())
    if absent:
        notes.append(f"{absent} of {expected} intervals in the window were never committed "
                     "(controller down): their energy is unknown, not zero")
    if tier_source == "[[members]] tier" and cfg.island is None:
        notes.append("no [island] table: each member's whole load is in its [[members]] tier")
    for b in batteries:
        soc = b.soc_pct
        if soc is None:
            notes.append(f"battery of {label[b.member]}: capacity unknown (no [[island.batteries]] "
                         "entry, not in the plan): no SoC")
        elif np.nanmin(soc) < -0.5 or np.nanmax(soc) > 100.5:
            notes.append(f"battery of {label[b.member]}: rebuilt SoC leaves 0-100 % "
                         f"({np.nanmin(soc):.0f} to {np.nanmax(soc):.0f} %): its starting SoC "
                         f"({b.start_soc_source}) or capacity is off")
        if b.unknown_from_ts is not None:
            notes.append(f"battery of {label[b.member]}: stopped answering in the interval from "
                         f"{_iso(b.unknown_from_ts, cfg.tz)[11:16]}: its SoC is unknown from "
                         "then on (drawn as a gap, no end SoC)")
    summary = {
        "coop_name": cfg.coop.name,
        "window": {"from": _iso(window.start, cfg.tz), "to": _iso(window.end, cfg.tz),
                   "from_ts": window.start, "to_ts": window.end, "tz": cfg.tz_name,
                   "source": window.source, "settlement_s": window.step},
        "plan": None,
        "coop": {
            **_figures(coop_wh),
            # served = liberated + from the grid + battery energy of unknown origin (stored
            # before the window from who knows where, so never counted as liberated)
            "from_grid_kwh": kwh(coop_wh["from_grid"]),
            "from_stored_unknown_kwh": kwh(max(
                coop_wh["served"] - coop_wh["liberated"] - coop_wh["from_grid"], 0)),
            "shared_kwh": kwh(coop_wh["to_peers"] + coop_wh["battery_to_coop"]),
            "shared_peer_to_peer_kwh": kwh(coop_wh["to_peers"]),
            "shared_via_coop_batteries_kwh": kwh(coop_wh["battery_to_coop"]),
            "hours_islanded": round(int(totals.get("islanded_s") or 0) / 3600.0, 3),
            "intervals": int(totals.get("intervals") or 0),
            "intervals_expected": expected,
            "intervals_with_gaps": with_gaps,
            "intervals_islanded": int(np.count_nonzero(islanded)),
        },
        "members": {label[m]: {
            "name": names[m],
            **_figures(energy_wh(by_member[m])),
            "tier": config_tier.get(m),
            "tier_shares": {t: round(float(shares[i, k]), 4) for k, t in enumerate(TIERS)},
            "shed_by_tier_kwh": {t: round(float(member_tier_shed[i, k]) / 1000.0, 3)
                                 for k, t in enumerate(TIERS)},
        } for i, m in enumerate(ids)},
        "tiers": {t: {"load_kwh": round(float(member_tier_load[:, k].sum()) / 1000.0, 3),
                      "shed_kwh": round(float(member_tier_shed[:, k].sum()) / 1000.0, 3),
                      "held": bool(member_tier_shed[:, k].sum() < HELD_WH)}
                  for k, t in enumerate(TIERS)},
        "tier_source": tier_source,
        "batteries": {label[b.member]: battery_summary(b, cfg.tz) for b in batteries},
        # The day's edges (#21): SoC reached at the start against the plan; black start.
        "eve": eve_summary(audit_beside(reader.path), window, label),
        "black_start": black_start_summary(batteries, cfg, float(member_tier_load[:, 0].sum()),
                                           len(window.times) * window.step / 3600.0, label),
        "notes": notes,
    }
    report = IslandReport(cfg.coop.name, window, cfg.tz, cfg.tz_name, summary, names, coop,
                          islanded, batteries, plan, notes=notes)
    if plan is not None:
        summary["plan"] = _plan_summary(plan, plan_path, batteries, label)
        report.plan_shed_kw = plan_shed_kw(plan)
        plan_end = plan["start_ts"] + int(plan.get("steps") or 0) * plan["step_s"]
        if abs(plan["start_ts"] - window.start) >= window.step or abs(
                plan_end - window.end) >= window.step:
            notes.append(f"the plan covers {plan.get('start')} to {plan.get('end')}, the report "
                         f"{summary['window']['from']} to {summary['window']['to']}: its "
                         "totals are over its own horizon")
    return report


def _iso(ts: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat()


def _iso(ts: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat()


# ------------------------------------------------------------------ output and command
def write_report(report: IslandReport, out: Path) -> list[Path]:
    """Write ``summary.json``, the PNGs and ``report.html`` into ``out``; the paths written."""
    from controller.island_day.report_html import render_html
    from controller.island_day.report_plots import render_plots

    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(report, out)
    summary = out / "summary.json"
    summary.write_text(json.dumps(report.summary, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
    html = out / "report.html"
    html.write_text(render_html(report, plots), encoding="utf-8")
    return [summary, *(p.path for p in plots), html]


def run(config: Path, out: Path, ledger: Path | None = None, plan: Path | None = None,
        start: str | None = None, end: str | None = None) -> IslandReport:
    """Read everything, build the report and write it; :class:`ReportInputError` or
    :class:`ConfigError` on bad input."""
    import sqlite3

    from controller.ledger import LedgerMissingError

    cfg = load_report_config(config)
    plan_data = None if plan is None else read_plan(plan)
    if plan_data is not None and not cfg.site_tz and plan_data.get("tz"):
        try:  # no [site]: show times on the plan's clock
            cfg = replace(cfg, tz=parse_tz(str(plan_data["tz"])), tz_name=str(plan_data["tz"]))
        except ValueError as exc:
            raise ReportInputError(f"--plan {plan}: tz = {plan_data['tz']!r}: {exc}") from None
    lo = None if start is None else parse_when(start, cfg.tz, "--from")
    hi = None if end is None else parse_when(end, cfg.tz, "--to")
    path = ledger if ledger is not None else cfg.coop.storage.ledger
    try:
        reader = LedgerReader(path)
    except LedgerMissingError as exc:
        raise ReportInputError(f"{'--ledger' if ledger else '[storage] ledger'} = {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise ReportInputError(f"{path}: not a readable ledger ({exc})") from None
    report = build_report(reader, cfg, island_window(reader, lo, hi), plan_data, plan)
    write_report(report, out)
    return report


def main(config: Path, out: Path, ledger: Path | None = None, plan: Path | None = None,
         start: str | None = None, end: str | None = None) -> int:
    """The command: write the report and print where; 2 on bad input."""
    try:
        report = run(config, out, ledger, plan, start, end)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ReportInputError, AccountsInputError) as exc:
        print(f"island report: {exc}", file=sys.stderr)
        return 2
    s = report.summary
    c, w = s["coop"], s["window"]
    held = [t for t in TIERS if s["tiers"][t]["held"]]
    print(f"Island report for {report.name}: {w['from']} to {w['to']} ({w['source']})\n"
          f"  islanded {c['hours_islanded']:g} h, liberated {c['liberated_kwh']:g} kWh, "
          f"unserved {c['shed_kwh']:g} kWh; tiers held: {', '.join(held) or 'none'}\n"
          f"  written to {out}/: report.html, summary.json and the charts")
    for note in s["notes"]:
        print(f"  note: {note}")
    return 0
