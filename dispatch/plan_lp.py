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
end (a rolling plan lives on after it); with a tariff, money as a second objective
(prices scaled so that no amount of money outweighs one Wh of import).
Pure numpy and scipy (imported lazily); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import CoopLimits, Fleet

FloatArray = NDArray[np.float64]
#: Cost of a Wh of load shed at the import cap, against 1 for a Wh imported.
_SHED_COST = 1000.0
#: What a Wh left in a battery at the horizon's end is worth, against 1 for a Wh imported:
#: less than import (so nothing is imported to fill a battery) and more than the wear
#: tie-break (so free surplus is stored rather than exported just beyond the horizon).
_TERMINAL_VALUE = 0.5
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
                 dt_s: float, copper_plate: bool = False, limits: CoopLimits | None = None,
                 wear_per_wh: float = 1e-4, import_price: FloatArray | None = None,
                 export_price: FloatArray | None = None) -> StoragePlan:
    """Solve the storage LP over ``pv_w`` / ``load_w`` (T × N, mean W per step).

    Raises RuntimeError when HiGHS does not find an optimum.
    """
    import time

    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, csr_matrix, hstack, identity, kron, vstack

    started = time.perf_counter()
    t_steps, n = pv_w.shape
    h = dt_s / 3600.0
    pv, load = np.maximum(pv_w, 0.0) * h, np.maximum(load_w, 0.0) * h
    net = (pv - load).sum(axis=1)
    has = np.flatnonzero(fleet.capacity_wh > 0)  # batteryless members need no variables
    b = len(has)
    eta = fleet.leg_efficiency[has]
    cap = fleet.capacity_wh[has]
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
    stored = np.clip(np.asarray(stored_wh, dtype=float)[has], 0.0, cap)
    start = np.zeros(tb)
    floor = fleet.soc_min_wh[has].copy()
    charge_hi = np.tile(fleet.max_charge_w[has] * h, (t_steps, 1))
    discharge_hi = np.tile(fleet.max_discharge_w[has] * h, (t_steps, 1))
    import_hi = export_hi = None
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
            import_hi = limits.import_cap_w * h if np.isfinite(limits.import_cap_w) else None
            export_hi = limits.export_cap_w * h if np.isfinite(limits.export_cap_w) else None
    start[:b] = stored
    a_eq = vstack([balance, dynamics], format="csr")
    b_eq = np.concatenate([-net, start])
    lower = np.concatenate([np.zeros(2 * tb), np.tile(floor, t_steps), np.zeros(4 * t_steps)])
    upper = np.concatenate([charge_hi.ravel(), discharge_hi.ravel(), np.tile(cap, t_steps),
                            np.full(t_steps, np.inf if import_hi is None else import_hi),
                            np.full(t_steps, np.inf if export_hi is None else export_hi),
                            np.full(t_steps, 0.0 if import_hi is None else np.inf),
                            np.full(t_steps, 0.0 if export_hi is None else np.inf)])
    cost = np.zeros(3 * tb + 4 * t_steps)
    cost[:2 * tb] = 0.0 if copper_plate else wear_per_wh
    grid = slice(3 * tb, 3 * tb + t_steps)
    cost[grid] = 1.0
    cost[3 * tb + 2 * t_steps:3 * tb + 3 * t_steps] = _SHED_COST
    if not copper_plate:
        cost[3 * tb - b:3 * tb] = -_TERMINAL_VALUE
        cost[grid] += _money(import_price, export_price, t_steps, cost, tb)
    res = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=np.column_stack([lower, upper]),
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"storage LP failed: {res.message}")
    x = res.x

    def full(block: int) -> FloatArray:
        out = np.zeros((t_steps, n))
        out[:, has] = x[block * tb:(block + 1) * tb].reshape(t_steps, b)
        return out

    g = x[grid]
    return StoragePlan(float(g.sum()), g, x[3 * tb + t_steps:3 * tb + 2 * t_steps], full(0),
                       full(1), full(2), time.perf_counter() - started)


def _money(import_price: FloatArray | None, export_price: FloatArray | None, t_steps: int,
           cost: FloatArray, tb: int) -> FloatArray | float:
    """Import prices as extra grid cost; export prices as a (negative) cost on export."""
    if import_price is None and export_price is None:
        return 0.0
    prices = [np.broadcast_to(p, (t_steps,)) for p in (import_price, export_price)
              if p is not None]
    scale = _MONEY_WEIGHT / max(float(np.max(np.abs(np.concatenate(prices)))), 1e-12)
    if export_price is not None:
        cost[3 * tb + t_steps:3 * tb + 2 * t_steps] = -scale * np.broadcast_to(export_price,
                                                                              (t_steps,))
    return 0.0 if import_price is None else scale * np.broadcast_to(import_price, (t_steps,))
