"""The rehearsal's day: its events, and its island plan made before it islands.

:func:`inject_events` puts the day's events into the simulated coop, each at
its first occurrence at or after the start (simulated clock, UTC): a named
scenario's (:mod:`controller.island_day.scenarios`) or the options' cloud and dropout.

The rehearsal knows its coop exactly, so the forecast is the simulator's own
profiles (:class:`~simulators.household.HouseholdPhysics`): PV of the day's
profile *without* the injected clouds, and each household's load, both as the
mean over each 15-minute step (sampled every minute). The plan does not know
the events (a cloudy afternoon, a battery dropping out): the rehearsal shows
what they do to a day that was planned without them.

Each member's load is in its ``[[members]] tier``, except a plugged appliance
(a smart plug's), which is ``flexible``: the plan sheds it first, and the
running controller switches its plug off to follow the plan. Batteries, floors,
ratings and efficiencies are the simulated devices' own.

Like a coop charging its batteries before a real island, :func:`prepare`
raises each battery to the plan's required starting SoC (plus a margin) where
it is below it: the level ``flexible`` (every load holds) when it can hold at
all, else ``essential`` (critical and essential hold).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC
from typing import TYPE_CHECKING

import numpy as np

from controller.island.plan import LEVELS, TIERS, Plan, Problem, plan_island
from controller.island_day import scenarios
from controller.island_day.plan_render import Context, to_dict
from dispatch.fleet import Fleet
from simulators.coop import SimulatedCoop

if TYPE_CHECKING:
    from controller.island_day.rehearse import RehearsalOptions
    from controller.island_day.scenarios import Event

STEP_S = 900
SAMPLES_PER_STEP = 15
#: Percentage points above the plan's requirement the batteries are charged to: the
#: registers round the SoC to 0.1 % and the controller must see it at or above.
MARGIN_PCT = 2.0
SCENARIO = "simulated day without the injected events"


def day_start(start: str) -> float:
    """``HH:MM`` today on the simulated coop's clock (UTC), as epoch seconds."""
    try:
        hh, mm = (int(x) for x in start.split(":"))
    except ValueError:
        raise ValueError(f"--start = {start!r}: expected HH:MM, e.g. 06:00") from None
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise ValueError(f"--start = {start!r}: expected HH:MM from 00:00 to 23:59")
    return time.time() // 86400 * 86400 + hh * 3600 + mm * 60


def scenario_events(options: RehearsalOptions) -> tuple[Event, ...]:
    """The day's events: the named scenario's (:mod:`controller.island_day.scenarios`), else
    the options' cloud and second battery's dropout."""
    if options.scenario is not None:
        return scenarios.get(options.scenario).events
    events: list[Event] = []
    if options.cloud is not None:
        lo, hi, factor = options.cloud
        events.append(scenarios.Cloud(lo, (hi - lo) % 24, factor))
    if options.dropout_hour is not None:
        # The battery behind its household gateway drops out: the gateway answers each
        # request with a Modbus exception (as a real one answers 0x0B "target device
        # failed to respond"), so the failure is quick, not a timeout that stalls a cycle
        # of a sped-up day for longer than its setpoints last.
        events.append(scenarios.Dropout(options.dropout_hour, 1))
    return tuple(events)


def inject_events(coop: SimulatedCoop, start_ts: float, options: RehearsalOptions,
                  ) -> tuple[list[dict], list[tuple[float, bool]]]:
    """Put the day's events into the simulated coop; describe them, and the breaker's
    schedule when the grid goes by itself (:func:`controller.island_day.scenarios.inject`)."""
    return scenarios.inject(coop, start_ts, scenario_events(options))


def simulated_problem(coop: SimulatedCoop, start_ts: float, hours: float) -> Problem:
    """The planning problem of ``coop``'s next ``hours`` from ``start_ts``, from its physics."""
    physics, specs = coop.physics, coop.physics.specs
    steps = max(int(round(hours * 3600 / STEP_S)), 1)
    offsets = (np.arange(SAMPLES_PER_STEP) + 0.5) * STEP_S / SAMPLES_PER_STEP
    n = len(specs)
    pv, base, appliance = (np.zeros((steps, n)) for _ in range(3))
    for k in range(steps):
        for dt in offsets:
            t = start_ts + k * STEP_S + dt
            pv[k] += physics.pv_clear_w(t)
            base[k] += physics.base_load_w(t)
            appliance[k] += physics.appliance_w(t)
    owners = np.array([i for i, s in enumerate(specs) if s.battery_wh > 0], dtype=np.int64)
    cap = physics.capacity_wh[owners]
    fleet = Fleet(capacity_wh=cap, soc_min_wh=physics.soc_min_wh[owners],
                  max_charge_w=physics.max_w[owners], max_discharge_w=physics.max_w[owners],
                  efficiency=np.array([specs[i].efficiency for i in owners]))
    # A member's load is in its tier; a plugged appliance is flexible (shed first).
    tier_load = np.zeros((3, steps, n))
    for i, spec in enumerate(specs):
        tier_load[TIERS.index(spec.tier), :, i] += base[:, i] / SAMPLES_PER_STEP
    tier_load[TIERS.index("flexible")] += appliance / SAMPLES_PER_STEP
    return Problem(pv / SAMPLES_PER_STEP, tier_load, fleet, physics.stored_wh[owners].copy(),
                   owners, step_s=STEP_S, member_ids=[s.member_id for s in specs],
                   start_ts=start_ts)


@dataclass(frozen=True, slots=True)
class Preparation:
    """The plan the rehearsal runs against and what it asked of the batteries.

    Attributes:
        plan: the plan from the prepared starting SoCs.
        level: the level the batteries were prepared for (``flexible`` or ``essential``).
        required_soc_pct: the coop's required starting SoC for that level, %: what the
            island command asks for.
        before_pct, after_pct: each battery's SoC before and after preparing, %.
        owners: the member index of each battery.
    """

    plan: Plan
    level: str
    required_soc_pct: float
    before_pct: np.ndarray
    after_pct: np.ndarray
    owners: np.ndarray


def prepare(coop: SimulatedCoop, start_ts: float, hours: float) -> Preparation:
    """Plan the day, charge the simulated batteries to its requirement, plan again from there."""
    problem = simulated_problem(coop, start_ts, hours)
    first = plan_island(problem)
    level = LEVELS[-1] if first.required_holds[LEVELS[-1]] else LEVELS[0]
    fleet, physics = problem.fleet, coop.physics
    cap = fleet.capacity_wh
    before = np.divide(100.0 * problem.stored_wh, cap, out=np.zeros_like(cap), where=cap > 0)
    need = first.required_start_pct(level)
    after = np.clip(np.maximum(before, need + MARGIN_PCT), 0.0, 100.0)
    owners = problem.battery_member
    physics.stored_wh[owners] = after / 100.0 * cap
    plan = plan_island(replace(problem, stored_wh=physics.stored_wh[owners].copy()))
    return Preparation(plan, level, plan.coop_required_pct(level), before, after, owners)


def plan_json(prep: Preparation, coop_name: str) -> dict:
    """The plan as ``commonwatt island plan --json`` writes it (times in UTC, the
    simulated coop's clock), with what the rehearsal prepared."""
    out = to_dict(prep.plan, Context(coop_name, UTC, "UTC", SCENARIO, []))
    out["notes"] = [
        f"rehearsal: batteries charged to the plan's required starting SoC for "
        f"'{prep.level}' + {MARGIN_PCT:g} points where below it; the island command asks "
        f"for a coop SoC of {prep.required_soc_pct:.1f} %"]
    return out
