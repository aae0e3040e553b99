"""The storage LP over a horizon: one formulation for the copper-plate bound and the plan.

Variables per battery ``i`` and step ``t`` (Wh): charge ``c``, discharge ``d`` (AC side)
and content ``e`` after the step; per step the coop's grid import ``G``, export ``X``,
load it cannot import ``S`` (over an import cap) and PV it cannot export ``K``::

    sum_i (pv - load)[t, i] + sum_i d[t, i] - sum_i c[t, i] + G[t] + S[t] - X[t] - K[t] = 0
    e[t, i] = e[t-1, i] + eta_i c[t, i] - d[t, i] / eta_i          (e[-1] = stored now)

* ``copper_plate=True``: any surplus charges any battery, any battery serves any
  load, down to the hard floor ``soc_min_wh``: the physical lower bound.
* ``copper_plate=False`` (the rolling plan): the same limits the per-cycle dispatch
  obeys. A battery that is not offered charges only from its owner's surplus and
  serves only its owner's deficit (bounds on ``c`` and ``d``); no battery goes
  below ``max(soc_min, reserve)``; import and export stay within the PCC caps.

Objective: the least grid import; a tie-break of ``wear`` per Wh of throughput so the
plan does not cycle batteries for nothing; a value on what is left at the horizon's
end (a rolling plan lives on after it); money as a second objective: time-of-use
import and export prices, and each offered battery's wear price per Wh it gives
(``wear_price``, the owner's cost of a cycle), all scaled together so that the whole
money range weighs :data:`_MONEY_WEIGHT` per Wh, far below the 1 of a Wh imported:
tests/test_plan_money.py checks that money never buys a Wh of import.
Pure numpy and scipy (imported lazily); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import BoolArray, CoopLimits, Fleet, IntArray

FloatArray = NDArray[np.float64]
#: Cost of a Wh of load shed at the import cap, against 1 for a Wh imported.
_SHED_COST = 1000.0
_METHOD = "highs"
#: What a Wh left in a battery at the horizon's end is worth, against 1 for a Wh imported:
#: less than import (so nothing is imported to fill a battery) and more than the wear
#: tie-break (so free surplus is stored rather than exported just beyond the horizon).
_TERMINAL_VALUE = 0.5
#: Above this many batteries a plan merges offered ones (the LP's size; at 1,000 members
#: unmerged it takes ~19 s). Merged, the split back costs liberated kWh on some fleets.
AGGREGATE_ABOVE = 200
#: Money is a second objective: the whole price range weighs this much per Wh.
_MONEY_WEIGHT = 1e-3


@dataclass(frozen=True, slots=True)
class StoragePlan:
    """The LP's answer: per step and battery, in Wh (arrays T × N; batteryless columns 0)."""

    import_wh: float
    grid_wh: FloatArray
    export_wh: FloatArray
    charge_wh: FloatArray
    discharge_wh: FloatArray
    stored_wh: FloatArray
    solve_s: float


def plan_storage(fleet: Fleet, stored_wh: FloatArray, pv_w: FloatArray, load_w: FloatArray,
                 dt_s: float | FloatArray, copper_plate: bool = False,
                 limits: CoopLimits | None = None, wear_per_wh: float = 1e-4,
                 import_price: FloatArray | None = None, export_price: FloatArray | None = None,
                 aggregate: bool | None = None,
                 wear_price: FloatArray | None = None) -> StoragePlan:
    """Solve the storage LP over ``pv_w`` / ``load_w`` (T × N, mean W per step).

    ``dt_s``: the step, or one per step (a plan can look far ahead in coarse steps).
    ``import_price``/``export_price``: money per Wh per step (T); ``wear_price``: money per
    Wh out of each member's battery (N; 0 or NaN: none), counted for offered batteries.
    ``aggregate`` (default: for a plan over more than :data:`AGGREGATE_ABOVE` batteries,
    never for the bound): offered batteries of the same
    efficiency are one battery in the LP, since on the coop's bus they are interchangeable;
    its content is then split back in proportion to each battery's room (see
    :func:`_split_back`). Own-only batteries stay apart: each is tied to its owner's load.
    Raises RuntimeError when HiGHS does not find an optimum.
    """
    import time

    started = time.perf_counter()
    t_steps, n = pv_w.shape
    h = np.broadcast_to(np.asarray(dt_s, dtype=float) / 3600.0, (t_steps,))[:, None]
    pv, load = np.maximum(pv_w, 0.0) * h, np.maximum(load_w, 0.0) * h
    has = np.flatnonzero(fleet.capacity_wh > 0)  # batteryless members need no variables
    cap = fleet.capacity_wh[has]
    stored = np.clip(np.asarray(stored_wh, dtype=float)[has], 0.0, cap)
    floor = fleet.soc_min_wh[has].copy()
    charge_hi = np.tile(fleet.max_charge_w[has], (t_steps, 1)) * h
    discharge_hi = np.tile(fleet.max_discharge_w[has], (t_steps, 1)) * h
    caps: tuple[float | None, float | None] = (None, None)
    if copper_plate:
        stored = np.maximum(stored, floor)
    else:
        floor = np.maximum(floor, fleet.reserve_wh[has])
        floor = np.minimum(floor, stored)  # below its floor now: it only may not go lower
        own = ~fleet.offered[has]
        surplus, deficit = np.maximum(pv - load, 0.0)[:, has], np.maximum(load - pv, 0.0)[:, has]
        charge_hi[:, own] = np.minimum(charge_hi[:, own], surplus[:, own])
        discharge_hi[:, own] = np.minimum(discharge_hi[:, own], deficit[:, own])
        if limits is not None:
            caps = tuple(c if np.isfinite(c) else None  # type: ignore[assignment]
                         for c in (limits.import_cap_w, limits.export_cap_w))
    eta = fleet.leg_efficiency[has]
    wear = np.zeros(len(has))
    if wear_price is not None and not copper_plate:
        wear = np.where(fleet.offered[has], np.nan_to_num(np.asarray(wear_price, float)[has]),
                        0.0)
    group = np.arange(len(has))
    if aggregate if aggregate is not None else (not copper_plate
                                                and len(has) > AGGREGATE_ABOVE):
        group = _groups(fleet.offered[has], eta)
    groups = int(group.max()) + 1 if len(group) else 0

    def total(values: FloatArray) -> FloatArray:
        out = np.zeros(values.shape[:-1] + (groups,))
        np.add.at(out.T, group, values.T)
        return out

    g_eta = np.zeros(groups)
    g_eta[group] = eta
    g_wear = total(wear * cap) / np.maximum(total(cap), 1e-300)
    x, grid, export = _solve(
        (pv - load).sum(axis=1), h[:, 0], g_eta, total(cap), total(floor), total(stored),
        total(charge_hi), total(discharge_hi), caps, wear_per_wh, copper_plate,
        (import_price, export_price, g_wear))
    content = _split_back(x[2], group, cap, floor, stored, total(stored), charge_hi,
                          discharge_hi, eta)

    def full(values: FloatArray) -> FloatArray:
        out = np.zeros((t_steps, n))
        out[:, has] = values
        return out

    share = np.where(total(cap)[group] > 0, cap / np.maximum(total(cap)[group], 1e-300), 0.0)
    return StoragePlan(float(grid.sum()), grid, export, full(x[0][:, group] * share),
                       full(x[1][:, group] * share), full(content), time.perf_counter() - started)


def _groups(offered: BoolArray, eta: FloatArray) -> IntArray:
    """One group per own-only battery, and one per efficiency among offered batteries
    (not per wear price: money must not change the plan's grouping, and with it what the
    plan can liberate; a group's wear is its batteries' capacity-weighted mean)."""
    key = np.where(offered, -1 - np.unique(np.round(eta, 9), return_inverse=True)[1],
                   np.arange(len(eta)))
    return np.unique(key, return_inverse=True)[1].astype(np.int64)


def _split_back(path: FloatArray, group: IntArray, cap: FloatArray, floor: FloatArray,
                stored: FloatArray, g_stored: FloatArray, charge_hi: FloatArray,
                discharge_hi: FloatArray, eta: FloatArray) -> FloatArray:
    """Each battery's content path from its group's, step by step: a group's rise is shared
    in proportion to what each battery can take in that step (rating, room), a fall to
    what each can give (rating, energy above its floor), as the per-cycle dispatch shares
    the coop's surplus and deficit among offered batteries. Every battery stays within its
    own floor and capacity."""
    out = np.empty((len(path), len(cap)))
    before, g_before = stored.copy(), g_stored
    groups = len(g_stored)
    for t in range(len(path)):  # over time; every step vectorized over batteries
        change = (path[t] - g_before)[group]
        can_take = np.minimum(charge_hi[t] * eta, cap - before)
        can_give = np.minimum(discharge_hi[t] / eta, before - floor)
        weight = np.maximum(np.where(change > 0, can_take, can_give), 0.0)
        total = np.zeros(groups)
        np.add.at(total, group, weight)
        share = np.where(total[group] > 0, weight / np.maximum(total[group], 1e-300), 0.0)
        before = np.clip(before + change * share, np.minimum(floor, before), cap)
        out[t] = before
        g_before = path[t]
    return out


def _solve(net: FloatArray, h: FloatArray, eta: FloatArray, cap: FloatArray, floor: FloatArray,
           stored: FloatArray, charge_hi: FloatArray, discharge_hi: FloatArray,
           caps: tuple[float | None, float | None], wear: float, copper_plate: bool,
           money: tuple[FloatArray | None, FloatArray | None, FloatArray],
           ) -> tuple[tuple[FloatArray, FloatArray, FloatArray], FloatArray, FloatArray]:
    """The LP over B batteries: (charge, discharge, content) each T × B, import, export."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, csr_matrix, hstack, identity, kron, vstack

    t_steps, b = len(net), len(cap)
    tb = t_steps * b
    steps = identity(t_steps, format="csr")
    ones_row = csr_matrix(np.ones((1, b)))
    balance = hstack([kron(steps, -ones_row), kron(steps, ones_row), csr_matrix((t_steps, tb)),
                      steps, -steps, steps, -steps])
    shift = identity(tb, format="csr") - kron(csr_matrix(np.eye(t_steps, k=-1)),
                                              identity(b), format="csr")
    dynamics = hstack([-kron(steps, coo_matrix(np.diag(eta))),
                       kron(steps, coo_matrix(np.diag(1.0 / eta))), shift,
                       csr_matrix((tb, 4 * t_steps))])
    start = np.zeros(tb)
    start[:b] = stored
    import_hi, export_hi = caps
    lower = np.concatenate([np.zeros(2 * tb), np.tile(floor, t_steps), np.zeros(4 * t_steps)])
    upper = np.concatenate([charge_hi.ravel(), discharge_hi.ravel(), np.tile(cap, t_steps),
                            np.full(t_steps, np.inf) if import_hi is None else import_hi * h,
                            np.full(t_steps, np.inf) if export_hi is None else export_hi * h,
                            np.full(t_steps, 0.0 if import_hi is None else np.inf),
                            np.full(t_steps, 0.0 if export_hi is None else np.inf)])
    cost = np.zeros(3 * tb + 4 * t_steps)
    cost[:2 * tb] = 0.0 if copper_plate else wear
    grid = slice(3 * tb, 3 * tb + t_steps)
    cost[grid] = 1.0
    cost[3 * tb + 2 * t_steps:3 * tb + 3 * t_steps] = _SHED_COST
    if not copper_plate:
        cost[3 * tb - b:3 * tb] = -_TERMINAL_VALUE
        _money(*money, t_steps, cost, tb)
    res = linprog(cost, A_eq=vstack([balance, dynamics], format="csr"),
                  b_eq=np.concatenate([-net, start]), bounds=np.column_stack([lower, upper]),
                  method=_METHOD)
    if res.status != 0:
        raise RuntimeError(f"storage LP failed: {res.message}")
    x = res.x
    flows = tuple(x[k * tb:(k + 1) * tb].reshape(t_steps, b) for k in range(3))
    return flows, x[grid], x[3 * tb + t_steps:3 * tb + 2 * t_steps]  # type: ignore[return-value]


def _money(import_price: FloatArray | None, export_price: FloatArray | None,
           wear_price: FloatArray, t_steps: int, cost: FloatArray, tb: int) -> None:
    """Add the money objective to ``cost``: import prices on the grid, export prices as a
    negative cost on export, each battery group's wear price on its discharge; every
    price scaled by the largest so that money weighs at most ``_MONEY_WEIGHT`` per Wh."""
    prices = [np.broadcast_to(p, (t_steps,)) for p in (import_price, export_price)
              if p is not None]
    largest = max([float(np.max(np.abs(p))) for p in prices]
                  + [float(np.max(wear_price, initial=0.0))])
    if largest <= 0:
        return
    scale = _MONEY_WEIGHT / largest
    b = len(wear_price)
    if import_price is not None:
        cost[3 * tb:3 * tb + t_steps] += scale * np.broadcast_to(import_price, (t_steps,))
    if export_price is not None:
        cost[3 * tb + t_steps:3 * tb + 2 * t_steps] -= scale * np.broadcast_to(
            export_price, (t_steps,))
    cost[tb:2 * tb] += scale * np.tile(wear_price, t_steps) if b else 0.0
