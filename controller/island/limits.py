"""What bounds an island plan: limits that bind, and hours of autonomy.

A limit binds when the LP's shadow price on it is positive: relaxing it
would shed (or curtail) less. On a copper plate a battery at its rating
while a neighbour idles does not bind, and its price is zero.

Autonomy treats the batteries as one (summed energy above the floors,
summed power ratings, capacity-weighted leg efficiency), walks the forecast
step by step, repeated if the horizon runs out, and stops at the first step
the batteries cannot carry: energy exhausted (it ends inside the step, pro
rata) or the load above their summed discharge rating (it ends at the
step's start). With PV, surplus charges them up to their charge rating and
capacity. Answers are capped at :data:`AUTONOMY_CAP_H`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from controller.island.plan import Problem

FloatArray = NDArray[np.float64]

AUTONOMY_CAP_H = 168.0
#: Relative margin on the summed discharge rating before autonomy ends on power.
REACHED = 1e-6
#: Energies below this (Wh) count as zero when reading the LP's answer.
TOL_WH = 1e-3
#: Shadow prices below this (objective units per kWh) are no binding.
MIN_PRICE = 1e-5
#: What a shadow price is worth, by the plan's weights (objective per kWh).
PRICE_UNITS = (("critical", 1e6), ("essential", 1e3), ("flexible", 1.0),
               ("operating reserve", 3e-2), ("curtailed PV", 1e-2))


@dataclass(slots=True)
class Binding:
    """A battery limit that binds in the plan, for steps ``[start, end)``.

    ``limit`` is ``empty`` (at its floor while the coop sheds: 1 kWh more in
    it then would save ``per_kwh``), ``floor`` (a floor 1 kWh lower would),
    ``full`` (1 kWh more capacity would), ``discharge_power`` or
    ``charge_power`` (1 kWh more through the rating in a step would). The
    saving is ``per_kwh`` kWh of ``saves`` (a tier's shed, or curtailed PV):
    the largest of the LP's shadow prices over the run.
    ``energy_wh`` is what the coop shed (or, for ``full``/``charge_power``,
    curtailed) in those steps.
    """

    limit: str
    battery: int
    start: int
    end: int
    energy_wh: float
    saves: str
    per_kwh: float


def run_on_batteries(load_w: FloatArray, pv_w: FloatArray, usable_wh: float, room_wh: float,
                     charge_w: float, discharge_w: float, eta: float, step_s: float,
                     cap_h: float = AUTONOMY_CAP_H) -> float:
    """Hours until one battery (aggregate) can no longer carry ``load − pv`` (per step, W)."""
    h = step_s / 3600.0
    stored, room, elapsed = usable_wh, room_wh, 0.0
    for k in range(int(np.ceil(cap_h / h))):
        net = float(load_w[k % len(load_w)] - pv_w[k % len(pv_w)])
        if net <= 0:
            gained = min(-net, charge_w) * h * eta
            gained = min(gained, room)
            stored, room = stored + gained, room - gained
        elif net > discharge_w * (1 + REACHED):
            return elapsed
        else:
            need = net * h / eta
            if need > stored:
                return elapsed + stored * eta / net
            stored, room = stored - need, room + need
        elapsed += h
    return cap_h


def autonomy_hours(problem: Problem) -> dict[str, float]:
    """Hours from now on batteries alone: ``load_no_pv``, ``load_with_pv``, ``critical_no_pv``."""
    fleet = problem.fleet
    start, lower = problem.start_wh, problem.lower_wh
    cap = fleet.capacity_wh
    weights = cap if cap.sum() > 0 else np.ones_like(cap)
    eta = float(np.average(fleet.leg_efficiency, weights=weights)) if fleet.size else 1.0
    args = (float(np.maximum(start - lower, 0.0).sum()), float((cap - start).sum()),
            float(fleet.max_charge_w.sum()), float(fleet.max_discharge_w.sum()), eta,
            problem.step_s)
    load = problem.tier_load_w.sum(axis=(0, 2))
    critical = problem.tier_load_w[0].sum(axis=1)
    pv = problem.pv_w.sum(axis=1)
    zero = np.zeros_like(pv)
    return {
        "load_no_pv": run_on_batteries(load, zero, *args),
        "load_with_pv": run_on_batteries(load, pv, *args),
        "critical_no_pv": run_on_batteries(critical, zero, *args),
    }


def _runs(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int64], ...]:
    """``(battery, start, end)`` of every run of True along axis 0 of a T × B mask."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1]), dtype=np.int8)
    padded[1:-1] = mask
    edges = np.diff(padded, axis=0).T  # B × (T + 1)
    b_start, t_start = np.nonzero(edges == 1)
    _, t_end = np.nonzero(edges == -1)
    return b_start, t_start, t_end


def what_it_saves(price: float) -> tuple[str, float]:
    """A shadow price (objective per kWh) as ``(what, kWh of it saved per kWh)``."""
    for what, weight in PRICE_UNITS:
        if price >= weight / 20.0:
            return what, price / weight
    return PRICE_UNITS[-1][0], price / PRICE_UNITS[-1][1]


def find_bindings(prices: dict[str, FloatArray], at_floor: NDArray[np.bool_],
                  shed_wh: FloatArray, curtailed_wh: FloatArray) -> list[Binding]:
    """Runs of steps in which a battery limit binds, valued by the LP's shadow prices.

    ``prices`` maps ``energy`` (1 kWh more in the battery then), ``floor``,
    ``full``, ``discharge_power`` and ``charge_power`` to T × B arrays of
    objective saved per kWh (see ``plan._prices``). ``empty`` runs are where
    a battery ends a step at its floor (``at_floor``, T × B) while the coop
    sheds, valued at ``energy``; the others are where their price is positive.
    ``shed_wh`` and ``curtailed_wh`` are the coop's per step.
    """
    shedding = (shed_wh > TOL_WH)[:, None]
    masks = {"empty": (at_floor & shedding, prices["energy"])}
    masks |= {k: (prices[k] > MIN_PRICE, prices[k])
              for k in ("floor", "full", "discharge_power", "charge_power")}
    found: list[Binding] = []
    for limit, (mask, price) in masks.items():
        energy = curtailed_wh if limit in ("full", "charge_power") else shed_wh
        total = np.concatenate([[0.0], np.cumsum(energy)])
        for b, start, end in zip(*_runs(mask), strict=True):
            saves, per_kwh = what_it_saves(float(price[start:end, b].max()))
            found.append(Binding(limit, int(b), int(start), int(end),
                                 float(total[end] - total[start]), saves, per_kwh))
    found.sort(key=lambda x: (x.start, x.limit, x.battery))
    return found
