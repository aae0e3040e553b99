"""A rehearsal's verdicts: each one a check that can fail, against what the simulator did.

* **islanded**: the coop ran islanded at all (the grid-former confirmed the island).
* **plan tiers held**: per tier, the load the simulator did not serve (dropped by the
  island, or held off by a plug or contactor) during the cycles whose plan in force
  said the tier holds, and every plan in force over the shed mandate before them did
  (a plug a re-plan switched off stays off for its mandate, whatever the next re-plan
  says). The plan in force is the controller's latest re-plan, or the rehearsal's day
  plan before the first one. Anything above :data:`TOL_WH` fails.
* **grid-former alive**: the grid-forming battery never reached its floor. On a real
  island a grid-former at its floor is a blackout, critical loads included (the
  simulator keeps it at the floor and drops load instead, so this can and did fail).

``commonwatt island rehearse`` exits non-zero when a verdict fails.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from controller.cycle import SHED_MANDATE_S
from controller.island.plan import TIERS

if TYPE_CHECKING:
    from controller.island_day.rehearse import Rehearsal

#: Wh of load not served below which a tier counts as held (float noise of the integrator).
TOL_WH = 1.0
#: Percentage points above its floor the grid-former must stay: the registers' resolution.
FLOOR_TOL_PCT = 0.05


def shed_while_held_wh(result: Rehearsal) -> tuple[dict[str, float], dict[str, int]]:
    """Per tier, Wh the simulator did not serve in cycles whose plan in force held the tier,
    and how many cycles that plan held it."""
    log = result.cycles
    ends = np.asarray(log.end_ts, dtype=float)
    shed = {t: 0.0 for t in TIERS}
    cycles = {t: 0 for t in TIERS}
    if ends.size == 0 or result.soc_t.size == 0:
        return shed, cycles
    starts = np.concatenate(([result.start_ts], ends[:-1]))
    cum = result.shed_tier_cum_wh
    day = result.prep.plan.feasible
    o = result.options
    mandate_s = max(SHED_MANDATE_S, math.ceil(3 * o.cycle_s * o.speed))
    first = np.searchsorted(ends, ends - mandate_s, side="left")  # cycles within the mandate
    for k, tier in enumerate(TIERS):
        at = np.interp(np.concatenate((starts, ends)), result.soc_t, cum[:, k])
        grown = at[ends.size:] - at[:ends.size]
        said = np.array([(h if h is not None else day)[tier] for h in log.plan_holds],
                        dtype=bool)
        dropped_at = np.concatenate(([0], np.cumsum(~said)))  # plans that shed it, so far
        held = dropped_at[np.arange(1, ends.size + 1)] - dropped_at[first] == 0
        shed[tier] = float(grown[held].sum())
        cycles[tier] = int(held.sum())
    return shed, cycles


def verdicts(result: Rehearsal, islanded_s: float) -> dict:
    """The rehearsal's verdicts (see the module's docstring); ``ok`` when all pass."""
    shed, cycles = shed_while_held_wh(result)
    tiers = {t: {"plan_held_cycles": cycles[t], "shed_kwh": round(shed[t] / 1000.0, 3),
                 "held": shed[t] <= TOL_WH} for t in TIERS}
    out: dict = {"islanded": {"hours": round(islanded_s / 3600.0, 3), "held": islanded_s > 0},
                 "plan_tiers": tiers}
    g = result.former
    if g is not None and result.soc_pct.size:
        lowest, floor = float(result.soc_pct[:, g].min()), float(result.floor_pct[g])
        out["grid_former"] = {"member": result.member_ids[g], "lowest_pct": round(lowest, 2),
                              "floor_pct": floor, "held": lowest > floor + FLOOR_TOL_PCT}
    out["ok"] = bool(out["islanded"]["held"] and all(v["held"] for v in tiers.values())
                     and out.get("grid_former", {"held": True})["held"])
    return out


def render(v: dict) -> list[str]:
    """The verdicts as the command prints them, failures first named."""
    lines = []
    if not v["islanded"]["held"]:
        lines.append("  FAILED: the coop never islanded")
    for tier, t in v["plan_tiers"].items():
        if not t["held"]:
            lines.append(f"  FAILED: {tier} load shed while the plan in force held it: "
                         f"{t['shed_kwh']:.3f} kWh")
    g = v.get("grid_former")
    if g is not None and not g["held"]:
        lines.append(f"  FAILED: the grid-former {g['member']} reached its floor "
                     f"({g['floor_pct']:g} %): a blackout on a real island")
    held = [t for t, x in v["plan_tiers"].items() if x["held"] and x["plan_held_cycles"]]
    lines.append(f"  verdict: {'PASS' if v['ok'] else 'FAIL'}; tiers the plan held and "
                 f"nothing of them was shed: {', '.join(held) or 'none'}"
                 + (f"; grid-former lowest {g['lowest_pct']:g} % (floor {g['floor_pct']:g} %)"
                    if g is not None else ""))
    return lines
