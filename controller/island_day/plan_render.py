"""An island plan for a coordinator: text, or a JSON-ready dict.

Times are shown on the site's clock. Batteries are named by their member
(``h01``; a member's second battery is ``h01#2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np

from controller.island.limits import AUTONOMY_CAP_H, TOL_WH
from controller.island.pilot import problem_json
from controller.island.plan import LEVELS, TIERS, Plan

LIMIT_TEXT = {
    "empty": "battery empty (at its floor) while load is shed",
    "floor": "battery floor",
    "discharge_power": "battery discharging at its power rating",
    "full": "battery full",
    "charge_power": "battery charging at its power rating",
}
LEVEL_TEXT = {"essential": "critical + essential", "flexible": "every load"}


@dataclass(frozen=True, slots=True)
class Context:
    """What the plan was made from, for the heading."""

    coop: str
    tz: tzinfo
    tz_name: str
    scenario: str
    history_members: list[str]


def battery_labels(plan: Plan) -> list[str]:
    """A name per battery: its member's id, ``#2``… for a member's further batteries."""
    ids, seen, out = plan.problem.member_ids, {}, []
    for m in plan.problem.battery_member:
        name = ids[int(m)] if ids else f"m{int(m)}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _clock(plan: Plan, ctx: Context, step: int) -> datetime:
    return datetime.fromtimestamp(plan.problem.start_ts + step * plan.problem.step_s, ctx.tz)


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    on = np.concatenate([[False], values > TOL_WH, [False]]).astype(np.int8)
    edges = np.diff(on)
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def shed_schedule(plan: Plan, top: int | None = None) -> list[dict]:
    """Runs of steps in which a tier is shed: tier, steps, kWh, and kWh per member."""
    ids = plan.problem.member_ids
    out = []
    for k, tier in enumerate(TIERS):
        for start, end in _runs(plan.shed_wh[k].sum(axis=1)):
            per = plan.shed_wh[k, start:end].sum(axis=0)
            order = [i for i in np.argsort(-per, kind="stable") if per[i] > TOL_WH][:top]
            out.append({"tier": tier, "start": int(start), "end": int(end),
                        "kwh": float(per.sum()) / 1000.0,
                        "members": {ids[i]: round(float(per[i]) / 1000.0, 4) for i in order}})
    out.sort(key=lambda r: (r["start"], TIERS.index(r["tier"])))
    return out


def merge_bindings(plan: Plan) -> list[dict]:
    """Bindings of one kind that overlap or touch in time, merged over batteries."""
    order = ("critical", "essential", "flexible", "operating reserve", "curtailed PV")
    out: list[dict] = []
    for x in sorted(plan.binding, key=lambda x: (x.limit, x.start)):
        last = out[-1] if out and out[-1]["limit"] == x.limit else None
        if last is not None and x.start <= last["end"]:
            last["end"] = max(last["end"], x.end)
            last["batteries"].append(x.battery)
            if (order.index(x.saves), -x.per_kwh) < (order.index(last["saves"]),
                                                     -last["per_kwh"]):
                last["saves"], last["per_kwh"] = x.saves, x.per_kwh
        else:
            out.append({"limit": x.limit, "start": x.start, "end": x.end,
                        "batteries": [x.battery], "saves": x.saves, "per_kwh": x.per_kwh})
    for m in out:
        m["batteries"] = sorted(set(m["batteries"]))
    out.sort(key=lambda m: (m["start"], m["limit"]))
    return out


def to_dict(plan: Plan, ctx: Context) -> dict:
    """Everything in the plan, JSON-ready (energies in kWh, times ISO on the site's clock)."""
    p, fleet = plan.problem, plan.problem.fleet
    labels = battery_labels(plan)
    steps = p.pv_w.shape[0]

    def iso(step: int) -> str:
        return _clock(plan, ctx, step).isoformat()

    curtailed = plan.curtailed_wh.sum(axis=0)
    return {
        "coop": ctx.coop,
        "start": iso(0),
        "end": iso(steps),
        "tz": ctx.tz_name,
        "step_s": p.step_s,
        "steps": steps,
        "scenario": ctx.scenario,
        "forecast": {
            "pv_kwh": float(p.pv_w.sum()) * p.hours / 1000.0,
            "load_kwh": {t: float(p.tier_load_w[k].sum()) * p.hours / 1000.0
                         for k, t in enumerate(TIERS)},
            "load_from_history": ctx.history_members,
        },
        "feasible": plan.feasible,
        "shed_kwh": {t: v / 1000.0 for t, v in plan.shed_by_tier_wh().items()},
        "curtailed_kwh": float(curtailed.sum()) / 1000.0,
        "curtailed_by_member_kwh": {p.member_ids[i]: float(curtailed[i]) / 1000.0
                                    for i in np.flatnonzero(curtailed > TOL_WH)},
        # step by step, so what happened can be drawn against it on the same footing
        "per_step": {
            "pv_kw": np.round(p.pv_w.sum(axis=1) / 1000.0, 4).tolist(),
            "shed_kw": np.round(plan.shed_wh.sum(axis=(0, 2)) / p.hours / 1000.0,
                                4).tolist(),
            "curtailed_kw": np.round(plan.curtailed_wh.sum(axis=1) / p.hours / 1000.0,
                                     4).tolist(),
        },
        "required_start": {level: {
            "holds": plan.required_holds[level],
            "coop_pct": plan.coop_required_pct(level),
            "coop_kwh": float(plan.required_start_wh[level].sum()) / 1000.0,
            "batteries_pct": dict(zip(labels, plan.required_start_pct(level).tolist(),
                                      strict=True)),
        } for level in LEVELS},
        "autonomy_h": plan.autonomy_h,
        "autonomy_cap_h": AUTONOMY_CAP_H,
        "batteries": [{
            "battery": labels[b],
            "member": p.member_ids[int(p.battery_member[b])],
            "capacity_kwh": float(fleet.capacity_wh[b]) / 1000.0,
            "soc_now_pct": float(plan.soc_pct[0, b]),
            "target_w": np.round(plan.battery_w[:, b], 1).tolist(),
            "soc_pct": np.round(plan.soc_pct[:, b], 2).tolist(),
        } for b in range(fleet.size)],
        "shed_schedule": [{**r, "start": iso(r["start"]), "end": iso(r["end"])}
                          for r in shed_schedule(plan)],
        "binding": [{"limit": x.limit, "battery": labels[x.battery], "start": iso(x.start),
                     "end": iso(x.end), "energy_kwh": x.energy_wh / 1000.0,
                     "saves": x.saves, "saves_per_kwh": x.per_kwh} for x in plan.binding],
        "solve_s": plan.solve_s,
        # What the running controller re-plans from when it islands (controller/island/pilot.py).
        "inputs": problem_json(p),
    }


def _hours(value: float) -> str:
    return f"≥ {AUTONOMY_CAP_H:.0f} h" if value >= AUTONOMY_CAP_H else f"{value:.1f} h"


def render_text(plan: Plan, ctx: Context, max_rows: int = 12) -> str:
    """A coordinator's summary: tiers, required SoC, shed schedule, autonomy, binding limits."""
    p, fleet = plan.problem, plan.problem.fleet
    labels = battery_labels(plan)
    steps = p.pv_w.shape[0]

    def hm(step: int) -> str:
        return _clock(plan, ctx, step).strftime("%H:%M")

    start = _clock(plan, ctx, 0)
    load = {t: float(p.tier_load_w[k].sum()) * p.hours / 1000.0 for k, t in enumerate(TIERS)}
    lines = [
        f"Island plan for {ctx.coop}: from {start:%Y-%m-%d %H:%M} ({ctx.tz_name}) for "
        f"{steps * p.step_s / 3600:g} h in {steps} steps of {p.step_s / 60:g} min, "
        f"scenario {ctx.scenario}",
        f"Forecast: PV {float(p.pv_w.sum()) * p.hours / 1000:.1f} kWh; load "
        f"{sum(load.values()):.1f} kWh (" + ", ".join(f"{t} {v:.1f}" for t, v in load.items())
        + f"); {len(ctx.history_members)} of {len(p.member_ids)} members' load from their "
        "ledger history, the rest BDEW H25",
        f"Batteries: {fleet.size}, {float(p.start_wh.sum()) / 1000:.1f} of "
        f"{float(fleet.capacity_wh.sum()) / 1000:.1f} kWh now",
        "",
        "Tiers:",
    ]
    shed = plan.shed_by_tier_wh()
    for tier in TIERS:
        state = "holds" if plan.feasible[tier] else f"SHED {shed[tier] / 1000:.2f} kWh"
        lines.append(f"  {tier:<10} {state}")
    lines += ["", "Required starting SoC:"]
    for level in LEVELS:
        pct = plan.coop_required_pct(level)
        kwh = float(plan.required_start_wh[level].sum()) / 1000
        note = "" if plan.required_holds[level] else " (cannot hold even so: see the shed)"
        lines.append(f"  for {LEVEL_TEXT[level]} to hold: coop {pct:.0f} % ({kwh:.1f} kWh){note}")
    if fleet.size:
        lines.append(f"  {'battery':<12} {'capacity':>9} {'now':>6} {'crit+ess':>9} {'all':>6}")
        need = {level: plan.required_start_pct(level) for level in LEVELS}
        for b in range(min(fleet.size, max_rows)):
            lines.append(f"  {labels[b]:<12} {fleet.capacity_wh[b] / 1000:>5.1f} kWh "
                         f"{plan.soc_pct[0, b]:>5.0f}% {need['essential'][b]:>8.0f}% "
                         f"{need['flexible'][b]:>5.0f}%")
        if fleet.size > max_rows:
            lines.append(f"  … and {fleet.size - max_rows} more (--json lists every battery)")
    a = plan.autonomy_h
    lines += ["", f"Autonomy from now: {_hours(a['load_no_pv'])} on batteries alone at the "
              f"forecast load; {_hours(a['load_with_pv'])} with the forecast PV; critical "
              f"loads alone {_hours(a['critical_no_pv'])}", "", "Shed schedule:"]
    schedule = shed_schedule(plan, top=3)
    for r in schedule[:max_rows]:
        most = ", ".join(f"{m} {v:.2f}" for m, v in r["members"].items())
        lines.append(f"  {hm(r['start'])}–{hm(r['end'])}  {r['tier']:<9} {r['kwh']:.2f} kWh"
                     f"  (most: {most})")
    if not schedule:
        lines.append("  nothing is shed")
    lines += ["", "Binding limits (1 kWh more there would save):"]
    merged = merge_bindings(plan)
    for m in merged[:max_rows]:
        names = [labels[b] for b in m["batteries"]]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        lines.append(f"  {hm(m['start'])}–{hm(m['end'])}  {LIMIT_TEXT[m['limit']]}: {shown};"
                     f" up to {m['per_kwh']:.2f} kWh of {m['saves']}")
    if len(merged) > max_rows:
        lines.append(f"  … and {len(merged) - max_rows} more (--json lists each)")
    if not merged:
        lines.append("  none")
    curtailed = float(plan.curtailed_wh.sum()) / 1000
    if curtailed > 0:
        lines.append(f"  PV curtailed over the day: {curtailed:.2f} kWh")
    return "\n".join(lines) + "\n"
