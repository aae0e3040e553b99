"""What the soak checks in the ledger it wrote: conservation, and booked against produced.

Conservation holds to the Wh or it does not: per member and interval no flow is
negative, a coop-origin part never exceeds its flow, load = served + shed, and
each paired flow (given by one member, received by another) sums to the same Wh
on both sides; the coop row of each interval is the sum of its member rows.
Every Wh of mismatch counts in ``error_wh`` (target 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.soak_fleet import FleetSpec
from controller.accounts.figures import energy_wh
from controller.ledger import LedgerReader
from controller.ledger.schema import MEMBER_AMOUNTS, MEMBER_COLUMNS
from dispatch.rounding import LEDGER_FIELDS, PAIRED, PARTS

COL = {c: k for k, c in enumerate(MEMBER_COLUMNS)}


def conservation(reader: LedgerReader) -> dict[str, Any]:
    """Every committed interval checked; the Wh by which each rule is broken."""
    broken = {"negative": 0, "part_over_whole": 0, "load_not_served_plus_shed": 0,
              "paired_unequal": 0, "coop_row_not_member_sum": 0}
    by_interval: dict[int, np.ndarray] = {}
    rows = 0
    for ts, _member, *values in reader.raw_rows():
        rows += 1
        v = np.array([x or 0 for x in values], dtype=np.int64)
        by_interval.setdefault(ts, []).append(v)  # type: ignore[arg-type]
        broken["negative"] += int(-v[[COL[f] for f in LEDGER_FIELDS]].clip(max=0).sum())
        for part, whole in PARTS.items():
            broken["part_over_whole"] += max(0, int(v[COL[part]] - v[COL[whole]]))
        wh = energy_wh(dict(zip(MEMBER_COLUMNS, values, strict=True)))
        broken["load_not_served_plus_shed"] += abs(wh["load"] - wh["served"] - wh["shed"])
    coop = {ts: sums for ts, sums in reader.series(None, 0, 2**40, "interval")}
    for ts, members in by_interval.items():
        total = np.sum(members, axis=0)
        for receiving, sending in PAIRED.items():
            broken["paired_unequal"] += abs(int(total[COL[receiving]] - total[COL[sending]]))
        sums = coop.get(ts, {})
        broken["coop_row_not_member_sum"] += sum(
            abs(int(total[COL[c]]) - int(sums.get(c) or 0)) for c in MEMBER_AMOUNTS)
    return {"intervals": len(by_interval), "member_rows": rows, "broken_wh": broken,
            "error_wh": sum(broken.values())}


def booked_vs_produced(reader: LedgerReader, spec: FleetSpec) -> dict[str, Any]:
    """Booked PV and load against what the simulators produced, over the intervals the
    controller covered whole (the first one, begun mid-interval, is left out).

    Households with a fault or a gap are summed apart: while a device is unknown
    the ledger books a gap (from the meter's counters), not the energy. ``clean`` holds
    the households that never had a fault, over the intervals in which they had no gap.
    """
    spans = {int(i["start_ts"]): (float(i["start_ts"]), float(i["end_ts"]))
             for i in reader.intervals() if i["covered_s"] == reader.step}
    if not spans:
        return {"note": "no interval covered whole: run longer than two settlement intervals"}
    a, b = int(min(spans)), int(max(spans)) + reader.step
    covered = set(spans)
    index = {m: k for k, m in enumerate(spec.member_ids)}
    n = spec.households
    made = {ts: spec.produced_wh(*span) for ts, span in spans.items()}
    # booked and produced per household: every covered interval, and the gap-free ones
    pv_booked, load_booked, pv_made, load_made = (np.zeros(n) for _ in range(4))
    pv_booked_ok, load_booked_ok, pv_made_ok, load_made_ok = (np.zeros(n) for _ in range(4))
    gap = np.zeros(n, dtype=bool)
    for ts, member, *values in reader.raw_rows(a, b):
        if ts not in covered:
            continue
        k = index[member]
        wh = energy_wh(dict(zip(MEMBER_COLUMNS, values, strict=True)))
        cell = (wh["pv"], wh["load"], made[ts][0][k], made[ts][1][k])
        for total, v in zip((pv_booked, load_booked, pv_made, load_made), cell, strict=True):
            total[k] += v
        if (values[COL["gap_s"]] or 0) > 0:
            gap[k] = True
            continue
        for total, v in zip((pv_booked_ok, load_booked_ok, pv_made_ok, load_made_ok), cell,
                            strict=True):
            total[k] += v
    faulted = spec.faulted()

    def ratios(which: np.ndarray, gap_free: bool = False) -> dict[str, Any]:
        pb, lb, pm, lm = ((pv_booked_ok, load_booked_ok, pv_made_ok, load_made_ok) if gap_free
                          else (pv_booked, load_booked, pv_made, load_made))
        return {"households": int(which.sum()),
                "pv_booked_kwh": round(pb[which].sum() / 1e3, 3),
                "pv_produced_kwh": round(pm[which].sum() / 1e3, 3),
                "pv_booked_over_produced": _ratio(pb[which], pm[which]),
                "load_booked_kwh": round(lb[which].sum() / 1e3, 3),
                "load_produced_kwh": round(lm[which].sum() / 1e3, 3),
                "load_booked_over_produced": _ratio(lb[which], lm[which])}

    # clean: households that never had a fault, over the intervals they have no gap in (a
    # household's first readings over MQTT may come a cycle late: a gap, not a fault)
    return {"intervals_covered_whole": len(covered), "from": a, "to": b,
            "clean": ratios(~faulted, gap_free=True), "faulted_or_gap": ratios(faulted | gap),
            "all": ratios(np.ones(n, dtype=bool))}


def _ratio(a: np.ndarray, b: np.ndarray) -> float | None:
    return round(float(a.sum() / b.sum()), 4) if b.sum() > 0 else None
