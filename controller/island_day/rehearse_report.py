"""What a rehearsal shows: the island report and ``rehearsal.json``.

``rehearsal.json`` holds what the ledger cannot: the run's wall time, cycles
and cycles missed (a cycle whose span is *k* nominal cycles missed *k* − 1),
the controller's cycle times, the events injected, how the batteries were
prepared, what the simulator could not serve (``unserved``) or had to curtail
to keep the island balanced, every battery's lowest SoC on the simulator
against its floor, and whether the dispatch kept the tier order (no member
shed while a less critical one received shared energy, cycle by cycle).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from controller.island.plan import TIERS
from controller.island_day.episode import island_times
from controller.island_day.rehearse_verdicts import render as render_verdicts
from controller.island_day.rehearse_verdicts import verdicts
from controller.ledger.schema import CURTAIL_CAUSES
from simulators.household import TIER_RANK

#: Wh of a cycle below which a flow counts as none (the dispatch's float noise).
TOL_WH = 1e-6
#: Wh of a cycle's shed below which the cycle does not count as one "with shed": half
#: the ledger's Wh, so a count never disagrees with a total that rounds to 0.
SHED_CYCLE_WH = 0.5

if TYPE_CHECKING:
    from controller.island_day.rehearse import Rehearsal
    from controller.ledger import LedgerReader


def tier_order_violations(shed: np.ndarray, received: np.ndarray, rank: np.ndarray,
                          tol_wh: float = TOL_WH) -> list[int]:
    """Cycles (rows of ``shed``/``received``, cycles × members) in which a member was shed
    while a member of a less critical tier (higher ``rank``) received shared energy."""
    out = []
    for k in range(shed.shape[0]):
        shed_ranks = rank[shed[k] > tol_wh]
        fed_ranks = rank[received[k] > tol_wh]
        if shed_ranks.size and fed_ranks.size and fed_ranks.max() > shed_ranks.min():
            out.append(k)
    return out


def tier_ranks(tiers: list[str]) -> np.ndarray:
    """Each tier's drop order (critical 0, essential 1, flexible 2)."""
    return np.array([TIER_RANK[t] for t in tiers], dtype=np.int64)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _kwh(wh: float) -> float:
    return round(float(wh) / 1000.0, 3)


def curtailment(result: Rehearsal, reader: LedgerReader) -> dict:
    """PV held back: as booked (the ledger's ``curtailed`` over the rehearsal), as the
    controller estimated it per cause, and as the simulator held it back."""
    from controller.accounts.figures import energy_wh

    totals = reader.totals()
    booked = energy_wh(totals)["curtailed"]
    by_cause = {c: int(totals.get(f"curtailed_{c}") or 0) for c in CURTAIL_CAUSES}
    island = float(result.island_curtailed_wh.sum())
    cap = float(result.limit_curtailed_wh.sum())
    available = float(result.pv_available_wh.sum())
    held = island + cap
    return {
        "booked_kwh": _kwh(booked),
        # the ledger's split: a cap (command islanded, export_cap on the grid) is the
        # simulator's by_cap, the grid-former's frequency shift its by_island
        "booked_by_cause_kwh": {c: _kwh(wh) for c, wh in by_cause.items()},
        "estimated_kwh": {c: _kwh(float(np.sum(v)))
                          for c, v in result.cycles.held_back_wh.items()},
        "simulator": {"available_kwh": _kwh(available), "delivered_kwh": _kwh(available - held),
                      "held_back_kwh": _kwh(held), "by_cap_kwh": _kwh(cap),
                      "by_island_kwh": _kwh(island)},
        "booked_over_simulator": round(booked / held, 4) if held > 0 else None,
    }


def shedding(result: Rehearsal) -> dict:
    """The guard's passes and alerts and the shedding's events with their reason codes."""
    s = result.shedding or {}
    events = [{**e, "time": _iso(float(e["ts"]))} for e in s.get("events", [])]
    codes: dict[str, int] = {}
    for e in events:
        codes[e["reason"]] = codes.get(e["reason"], 0) + 1
    return {"passes_max": int(s.get("max_passes", 0)), "alerts": int(s.get("alerts", 0)),
            "alert": s.get("alert"), "codes": codes, "events": events}


def summary(result: Rehearsal, reader: LedgerReader) -> dict:
    """``rehearsal.json``'s content."""
    o, log, prep = result.options, result.cycles, result.prep
    ids = result.member_ids
    shed = np.array(log.shed).reshape(-1, len(ids))
    received = np.array(log.received).reshape(-1, len(ids))
    violations = tier_order_violations(shed, received, tier_ranks(result.tiers))
    soc = result.soc_pct
    owners = [int(i) for i in prep.owners]
    transitions = reader.grid_transitions(10_000)
    plan = prep.plan
    return {
        "options": {"hours": o.hours, "speed": o.speed, "start": o.start,
                    "households": o.households, "cycle_s": o.cycle_s, "scenario": o.scenario,
                    "nominal_cycle_s": o.cycle_s * o.speed},
        "simulated": {"from": _iso(result.start_ts), "to": _iso(result.end_ts),
                      "hours": round((result.end_ts - result.start_ts) / 3600.0, 3)},
        "wall_s": round(result.wall_s, 2),
        "cycles": len(log.duration_s),
        "cycles_missed": log.missed,
        "cycle_ms": result.cycle_ms(),
        "device_errors": result.device_errors,
        "events": [{k: (_iso(v) if k.endswith("_ts") else v) for k, v in e.items()}
                   for e in result.events],
        "plan": {
            "file": str(result.plan_path), "level": prep.level,
            "required_soc_pct": round(prep.required_soc_pct, 2),
            "feasible": {t: plan.feasible[t] for t in TIERS},
            "shed_kwh": {t: _kwh(v) for t, v in plan.shed_by_tier_wh().items()},
            "batteries": {ids[m]: {"before_pct": round(float(b), 2),
                                   "start_pct": round(float(a), 2)}
                          for m, b, a in zip(owners, prep.before_pct, prep.after_pct,
                                             strict=True)},
        },
        "plan_followed": {k: v for k, v in result.plan_followed.items()
                          if k in ("plans_made", "replan_s", "problem")},
        "grid": {"islanded_hours": round(reader.islanded_seconds() / 3600.0, 3),
                 "times": island_times(transitions),
                 "transitions": [{**t, "time": _iso(float(t["ts"]))} for t in transitions]},
        "simulator": {
            "unserved_kwh": {m: _kwh(result.unserved_wh[i]) for i, m in enumerate(ids)},
            "switched_off_kwh": {m: _kwh(result.switched_off_wh[i]) for i, m in enumerate(ids)},
            "island_curtailed_kwh": {m: _kwh(result.island_curtailed_wh[i])
                                     for i, m in enumerate(ids)},
            "served_kwh": {m: _kwh(result.served_wh[i]) for i, m in enumerate(ids)},
            "batteries": {ids[i]: {
                "min_soc_pct": round(float(soc[:, i].min()), 3) if soc.size else None,
                # the simulator never goes below a floor: whether a battery reached it
                # is the check that can fail (the grid-former's is a verdict)
                "floor_pct": float(result.floor_pct[i]),
                "reached_floor": bool(soc[:, i].min() <= result.floor_pct[i] + 0.05)
                if soc.size else None} for i in owners},
        },
        "dispatch": {
            "tiers": dict(zip(ids, result.tiers, strict=True)),
            "cycles_islanded": int(sum(log.islanded)),
            "cycles_with_shed": int((shed.sum(axis=1) > SHED_CYCLE_WH).sum())
            if shed.size else 0,
            "shed_kwh": {m: _kwh(shed[:, i].sum()) for i, m in enumerate(ids)}
            if shed.size else {},
            "tier_order_kept": not violations,
            "tier_order_violations": len(violations),
        },
        "shedding": shedding(result),
        "curtailment": curtailment(result, reader),
        "verdicts": verdicts(result, reader.islanded_seconds()),
        "report": [p.name for p in result.report_files],
        "notes": result.notes,
    }


def finish(result: Rehearsal, reader: LedgerReader) -> None:
    """Write the island report and ``rehearsal.json`` into the rehearsal's directory."""
    from controller.island_day.report import run as write_island_report
    from controller.island_day.report_inputs import ReportInputError

    try:
        report = write_island_report(result.config_path, result.out, result.ledger,
                                     result.plan_path)
    except ReportInputError as exc:
        result.notes.append(f"no island report: {exc}")
    else:
        result.report_files = sorted(p for p in result.out.iterdir()
                                     if p.suffix in (".html", ".png") or p.name == "summary.json")
        result.notes.extend(f"report: {n}" for n in report.summary.get("notes", []))
    result.summary = summary(result, reader)
    (result.out / "rehearsal.json").write_text(
        json.dumps(result.summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _hms(iso: str | None) -> str:
    return "never" if iso is None else iso[11:19]


def render_text(result: Rehearsal) -> str:
    """The few lines the command prints at the end."""
    s = result.summary
    sim = result.cycles
    times, shed = s["grid"]["times"], s["shedding"]
    lines = [
        f"Island rehearsal: {s['simulated']['hours']:g} simulated h from "
        f"{s['simulated']['from'][11:16]} UTC in {s['wall_s']:g} s wall "
        f"({result.options.speed:g}x)",
        f"  cycles {s['cycles']} (missed {sim.missed}), cycle median "
        f"{s['cycle_ms']['median']:g} ms, p99 {s['cycle_ms']['p99']:g} ms",
        f"  islanded {s['grid']['islanded_hours']:g} h; plan level {s['plan']['level']} "
        f"(required coop SoC {s['plan']['required_soc_pct']:g} %)",
        f"  islanded at {_hms(times['islanded_at'])}, reconnected at "
        f"{_hms(times['reconnected_at'])} UTC (simulated)",
        f"  shedding: {shed['passes_max']} guard passes at most, {shed['alerts']} alert(s); "
        f"reason codes {shed['codes'] or 'none'}",
        f"  PV on the simulator: available {s['curtailment']['simulator']['available_kwh']:g} kWh, "
        f"held back {s['curtailment']['simulator']['held_back_kwh']:g} kWh; booked curtailed "
        f"{s['curtailment']['booked_kwh']:g} kWh",
        f"  dropped by the island on the simulator: "
        f"{sum(s['simulator']['unserved_kwh'].values()):.2f} kWh, held off by switches "
        f"{sum(s['simulator']['switched_off_kwh'].values()):.2f} kWh; tier order kept: "
        f"{s['dispatch']['tier_order_kept']}",
        *render_verdicts(s["verdicts"]),
        f"  written to {result.out}/: report.html, summary.json, rehearsal.json, plan.json, "
        "the charts and ledger.sqlite",
    ]
    lines += [f"  note: {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"
