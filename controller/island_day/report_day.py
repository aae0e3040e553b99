"""The island report's two verdicts on the day's edges (#21): how it began, how it ended.

**The eve** (:mod:`controller.island.eve`): the SoC each battery reached when the
island started, against the plan's starting SoC. The controller wrote both into
the audit log (``island_eve`` rows) the cycle the eve ended; the report reads the
last eve that ended for an island starting inside the window (or up to an hour
before it: the window is cut to whole intervals). A battery *reached* its target
when its SoC was within :data:`REACHED_TOL_PCT` of it.

**The black start**: each grid-forming battery's SoC at the window's end (as the
report rebuilds it from the ledger) against ``[island] black_start_pct``, and the
hours of critical load the grid-formers still hold: their energy above the floor,
through one discharge leg (``√`` of the battery's round trip), over the critical
tier's mean power measured over the window. The verdict fails when one ends
below the reserve or its end SoC is unknown.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from controller.governance.audit import AuditLog
from controller.island_day.black_start import BLACK_START_PCT
from controller.island_day.report_batteries import Battery
from controller.island_day.report_inputs import ReportConfig, Window

#: A battery reached the plan's starting SoC when this close to it, %.
REACHED_TOL_PCT = 0.5
#: An eve belongs to the window when its island began this long before the window, s.
BEFORE_S = 3600


def eve_summary(audit: AuditLog, window: Window, label: dict[str, str]) -> dict | None:
    """The eve of the island in ``window``, from the audit log; None without one."""
    end = None
    for row in audit.rows(limit=100_000):
        if row["action"] != "island_eve":
            continue
        try:
            detail = json.loads(row["detail"])
            at = float(detail["island_ts"])
        except (KeyError, TypeError, ValueError):
            continue
        if detail.get("to") == "restoring" and window.start - BEFORE_S <= at <= window.end:
            end = (row, detail)
    if end is None:
        return None
    row, detail = end
    batteries = {}
    for member, b in (detail.get("batteries") or {}).items():
        target, soc = b.get("target_pct"), b.get("soc_pct")
        reached = None if target is None or soc is None else bool(
            soc >= target - REACHED_TOL_PCT)
        batteries[label.get(member, member)] = {"target_pct": target, "soc_pct": soc,
                                                "reached": reached}
    return {"cause": detail.get("cause"), "ended_ts": row["ts"],
            "at_island_start": detail.get("cause") == "island started",
            "island_ts": detail["island_ts"], "batteries": batteries,
            "all_reached": all(b["reached"] for b in batteries.values()) if batteries
            else None}


def black_start_summary(batteries: list[Battery], cfg: ReportConfig, critical_wh: float,
                        hours: float, label: dict[str, str]) -> dict | None:
    """The black-start verdict at the window's end; None without a grid-forming battery."""
    reserve = cfg.island.black_start_pct if cfg.island is not None else BLACK_START_PCT
    devices = {m.id: m.device("battery") for m in cfg.coop.members}
    formers = [b for b in batteries if (d := devices.get(b.member)) is not None
               and d.grid_forming]
    if not formers:
        return None
    end: dict[str, float | None] = {}
    left_wh, unknown = 0.0, []
    for b in formers:
        soc = b.soc_pct
        last = None if soc is None or np.isnan(soc[-1]) else float(soc[-1])
        end[label.get(b.member, b.member)] = None if last is None else round(last, 2)
        if last is None or not b.capacity_wh:
            unknown.append(label.get(b.member, b.member))
            continue
        device = devices[b.member]
        eta = math.sqrt(device.efficiency if device is not None else 1.0)
        floor = b.floor_pct or 0.0
        left_wh += max(last - floor, 0.0) / 100.0 * b.capacity_wh * eta
    below = [m for m, pct in end.items() if pct is not None and pct < reserve - 0.05]
    critical_w = critical_wh / hours if hours > 0 else 0.0
    return {"reserve_pct": reserve, "end_soc_pct": end, "below": below, "unknown": unknown,
            "met": not below and not unknown,
            "critical_mean_w": round(critical_w, 1),
            "critical_hours_left": round(left_wh / critical_w, 2) if critical_w > 0 else None}


def day_edges_html(summary: dict[str, Any], names: dict[str, str]) -> str:
    """Two paragraphs for the page: the eve's SoC at the start, the black start."""
    out = []
    eve = summary.get("eve")
    if eve is not None:
        rows = ", ".join(
            f"{escape(names.get(m, m))} {_pct(b['soc_pct'])} of {_pct(b['target_pct'])}"
            + ("" if b["reached"] else ' <span class="bad">(short)</span>')
            for m, b in eve["batteries"].items())
        when = ("at the island's start" if eve["at_island_start"]
                else f"when the eve ended ({escape(str(eve['cause']))})")
        out.append(f"<p>Island eve: SoC {when} against the plan's starting SoC: "
                   f"{rows or 'no battery had a target'}.</p>")
    bs = summary.get("black_start")
    if bs is not None:
        hours = bs["critical_hours_left"]
        left = "unknown" if hours is None else (
            "more than a week" if hours > 168 else f"{hours:.1f}\u202fh")
        verdict = ("every grid-former at or above it" if bs["met"] else
                   '<span class="bad">NOT met: ' + escape(", ".join(
                       [f"{names.get(m, m)} {bs['end_soc_pct'][m]:.0f}\u202f%"
                        for m in bs["below"]] + [f"{names.get(m, m)} unknown"
                                                 for m in bs["unknown"]])) + "</span>")
        out.append(f"<p>Black-start reserve ({bs['reserve_pct']:g}\u202f% on each "
                   f"grid-former) at the end: {verdict}; critical load still held: {left}.</p>")
    return "".join(out)


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}\u202f%"


def audit_beside(ledger: Path) -> AuditLog:
    """The audit log the controller writes beside ``ledger``."""
    return AuditLog.beside(ledger)
