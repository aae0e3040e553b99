"""The island day as a batch: one cheap dispatch per scenario, numpy over scenarios.

The survival odds (:mod:`.survival`) need the island day played out under
thousands of scenarios (weather days × component states). The LP of
:mod:`.plan` takes a tenth of a second to seconds per solve; this takes one
pass over the steps with arrays over scenarios. It stands in for the plan's
dispatch with the same copper plate and the same tier order:

* **Batteries as one.** On the copper plate any battery can serve any load and
  take any member's PV, so the batteries that are up in a scenario act as one:
  capacities, floors and power ratings add; the leg efficiency is their
  capacity-weighted mean. (Exact when they would hold equal SoC, which the
  plan's tie-break aims for.)
* **Tiers served in order, with a reserve for the tiers above.** The LP sheds
  flexible loads early to save energy for the critical evening; a greedy
  dispatch would not. So before the pass, a backward pass over the steps finds,
  per scenario and level (critical; critical + essential), the energy above the
  floor that a battery must hold at each step boundary to carry that level to
  the end on the scenario's PV (``need``). In each step the critical tier
  takes what it can; the essential tier only what leaves ``need`` of the
  critical level; the flexible tier what leaves ``need`` of critical +
  essential. Left-over PV charges, the rest is curtailed.
* **No grid-former, no island.** A scenario with no grid-forming battery up
  serves nothing.

Against the LP: the dispatch is greedy in time (the LP sees the whole day at
once), which can only shed more; merging the batteries relaxes their power
limits where they would sit at different SoCs (one full cannot charge, one at
its floor cannot discharge, the merged one can), which can shed less. The
plan's tie-break keeps SoCs even, where the merge is exact. Tests compare it
with the LP on a day (equal to the Wh there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

#: Shed below this (Wh per step) counts as served: the LP's own tolerance.
TOL_WH = 1e-3


@dataclass(frozen=True, slots=True)
class Storage:
    """The batteries that are up in each scenario, merged (S,) arrays, Wh and Wh per step."""

    usable_wh: FloatArray  # capacity − floor
    start_wh: FloatArray  # content above the floor at the start
    charge_wh: FloatArray  # most energy into the batteries per step (AC side)
    discharge_wh: FloatArray  # most energy out per step (AC side)
    eta: FloatArray  # leg efficiency
    alive: BoolArray  # a grid-former is up


@dataclass(frozen=True, slots=True)
class Outcome:
    """What each scenario served.

    Attributes:
        shed_wh: S × tiers shed per tier over the window.
        first_shed: S × tiers index of the first step in which a tier was shed
            (the number of steps if never).
        end_wh: S content above the floor at the end.
    """

    shed_wh: FloatArray
    first_shed: IntArray
    end_wh: FloatArray


def needs(pv_wh: FloatArray, tier_wh: FloatArray, storage: Storage) -> FloatArray:
    """(tiers − 1) × (T+1) × S energy above the floor needed at each boundary to carry each level.

    Level 0 is the critical tier, level 1 critical + essential. Backwards:
    a deficit ``d`` is drawn at ``d / η``; a surplus charges at ``η`` up to the
    charge rating; the need never falls below 0 nor is it capped (a need above
    the usable range is a level that cannot hold). ``pv_wh`` is S × T.
    """
    s, t = pv_wh.shape
    pv_t = np.ascontiguousarray(pv_wh.T)  # a step's scenarios side by side in memory
    levels = tier_wh.shape[0] - 1  # the last tier protects nothing below it
    out = np.zeros((levels, t + 1, s))
    eta, inv_eta, charge = storage.eta, 1.0 / storage.eta, storage.charge_wh
    for level in range(levels):
        load = tier_wh[:level + 1].sum(axis=0)  # T
        for k in range(t - 1, -1, -1):
            d = load[k] - pv_t[k]
            after = out[level, k + 1]
            drawn = after + np.maximum(d, 0.0) * inv_eta
            stored = np.minimum(np.maximum(-d, 0.0), charge) * eta
            out[level, k] = np.maximum(drawn - stored, 0.0)
    return out


def simulate(pv_wh: FloatArray, tier_wh: FloatArray, storage: Storage) -> Outcome:
    """Play the window out for every scenario (see the module docstring).

    Args:
        pv_wh: S × T PV energy per step available to the coop.
        tier_wh: tiers × T load per tier and step (the same in every scenario), most
            important first: 3 rows for the day, 1 (critical alone) for the curves.
        storage: the merged batteries of each scenario.
    """
    s, t = pv_wh.shape
    need = needs(pv_wh, tier_wh, storage)
    pv_t = np.ascontiguousarray(pv_wh.T)
    eta, usable = storage.eta, storage.usable_wh
    a = np.minimum(storage.start_wh, usable).copy()
    n_tiers = tier_wh.shape[0]
    shed = np.zeros((s, n_tiers))
    first = np.full((s, n_tiers), t, dtype=np.int64)
    dead = ~storage.alive
    for k in range(t):
        pv = np.where(dead, 0.0, pv_t[k])
        out_left = np.where(dead, 0.0, storage.discharge_wh)
        # PV beyond what the batteries could take this step costs nothing to use.
        chargeable = np.minimum(storage.charge_wh, (usable - a) / eta)
        charge_pv = np.minimum(pv, chargeable)
        free_pv = pv - charge_pv
        for tier in range(n_tiers):
            want = np.full(s, tier_wh[tier, k])
            reserve = 0.0 if tier == 0 else need[tier - 1, k + 1]
            from_free = np.minimum(want, free_pv)
            free_pv -= from_free
            want -= from_free
            spare = np.maximum(a + eta * charge_pv - reserve, 0.0)  # content left at the end
            from_charge = np.minimum(np.minimum(want, charge_pv), spare / eta)
            charge_pv -= from_charge
            want -= from_charge
            spare -= from_charge * eta
            from_battery = np.minimum(np.minimum(want, spare * eta), out_left)
            from_battery = np.minimum(from_battery, a * eta)
            out_left -= from_battery
            a = a - from_battery / eta
            left = np.where(dead, tier_wh[tier, k], want - from_battery)
            short = left > TOL_WH
            shed[:, tier] += np.where(short, left, 0.0)
            first[:, tier] = np.where(short & (first[:, tier] == t), k, first[:, tier])
        a = np.minimum(a + eta * charge_pv, usable)
    return Outcome(shed, first, a)


def merge(usable_wh: FloatArray, start_wh: FloatArray, charge_wh: FloatArray,
          discharge_wh: FloatArray, eta: FloatArray, grid_forming: BoolArray,
          up: BoolArray) -> Storage:
    """Merge the batteries that are ``up`` (S × B) into one per scenario."""
    upf = up.astype(np.float64)
    total = upf @ usable_wh
    weight = upf @ (usable_wh * eta)
    return Storage(usable_wh=total, start_wh=upf @ start_wh, charge_wh=upf @ charge_wh,
                   discharge_wh=upf @ discharge_wh,
                   eta=np.divide(weight, total, out=np.ones_like(total), where=total > 0),
                   alive=(up & grid_forming[None, :]).any(axis=1))
