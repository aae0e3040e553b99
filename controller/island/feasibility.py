"""Before an island starts: does the plan hold from each battery's SoC as it is now?

The island command checks the coop's SoC against the plan's required starting SoC. A
coop total says nothing about where the energy is: at exactly the required total, with
the energy spread evenly rather than as the plan spread it, a night island shed 0.11 to
0.16 kWh of essential load (batteries have power ratings, and the grid-former must keep
its own). So the saved plan is solved again from each battery's content now, as the
controller's re-plans are (:meth:`~controller.island.pilot.IslandPilot.problem`), and
the command is refused when a tier the saved plan holds at its required level would be
shed, naming the batteries below their share.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from controller.island.pilot import BaseForecast, IslandPilot, Readings
from controller.island.plan import LEVELS, TIERS, plan_island
from controller.process_image import ProcessImage


def battery_refusals(plan_path: Path, member_ids: list[str], image: ProcessImage,
                     now: float, end_ts: float) -> tuple[str, ...]:
    """Why the island may not start from these batteries' contents (empty: it may).

    Nothing is refused without a readable saved plan: the coop SoC check still applies.
    """
    try:
        raw = json.loads(plan_path.read_text(encoding="utf-8"))
        base = BaseForecast.from_json(raw)
        holds = bool(raw["required_start"]["flexible"]["holds"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    level = LEVELS[-1] if holds else LEVELS[0]
    must = TIERS[:LEVELS.index(level) + 2]  # essential: critical, essential; flexible: all
    capacity = np.nan_to_num(image.capacity_wh)
    stored = np.where(image.has_battery & np.isfinite(image.soc_pct),
                      np.nan_to_num(image.soc_pct) / 100.0 * capacity, np.nan)
    # The saved forecast as it is (PV and demand unknown: no scaling by what is measured
    # now), so the only difference from the saved plan is where the energy sits.
    unknown = np.full(len(member_ids), np.nan)
    readings = Readings(stored, image.has_battery & image.battery_ok, unknown, unknown)
    pilot = IslandPilot(base, member_ids, 0.0)
    problem = pilot.problem(now, readings, end_ts)
    if problem is None:
        return ()
    # Energy alone, as the required levels are: the reserve may have the plan shed a little
    # flexible load early to back a grid-former, which is no reason to refuse (#21.2).
    plan = plan_island(replace(problem, grid_forming=None))
    shed = plan.shed_by_tier_wh()
    failing = [t for t in must if not plan.feasible[t]]
    if not failing:
        return ()
    need = plan.required_start_pct(level)
    soc = 100.0 * problem.start_wh / np.maximum(problem.fleet.capacity_wh, 1e-9)
    low = [f"{problem.member_ids[int(m)]} {s:.1f} % (needs {n:.1f} %)"
           for m, s, n in zip(problem.battery_member, soc, need, strict=True) if s < n - 0.05]
    enough = float(problem.start_wh.sum()) >= float(plan.required_start_wh[level].sum()) - 1.0
    where = ("the coop total is there, but not where the plan needs it" if enough
             else "the batteries hold less than the plan needs")
    return ("from each battery's SoC now the plan sheds "
            + ", ".join(f"{t} load ({shed[t] / 1000.0:.2f} kWh)" for t in failing)
            + f": {where}" + (f"; below their share: {', '.join(low)}" if low else ""),)
