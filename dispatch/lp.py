"""Linear-programming references (scipy ``linprog`` with HiGHS) for the dispatch.

* :func:`lp_tick_import`: the least grid import one tick can achieve under
  the same limits the greedy dispatch obeys (own floors, reserves, ratings,
  offered batteries only serving neighbours). The greedy is a feasible point
  of this LP, so it can never import less.
* :func:`lp_copper_plate_import`: the least grid import of a whole period
  with perfect foresight, where any surplus can charge any battery and any
  battery can serve any load: the physical lower bound for a coop.

scipy is imported lazily: it is only needed by tests and benchmarks.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import Fleet, FleetState

FloatArray = NDArray[np.float64]


def lp_tick_import(fleet: Fleet, state: FleetState, pv_w: FloatArray, load_w: FloatArray,
                   dt_s: float) -> float:
    """Minimum coop grid import (Wh) for one on-grid tick with every household valid."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    n, h = fleet.size, dt_s / 3600.0
    pv, load = np.maximum(pv_w, 0.0) * h, np.maximum(load_w, 0.0) * h
    eta = fleet.leg_efficiency
    stored = np.clip(state.stored_wh, 0.0, fleet.capacity_wh)
    reserve = np.maximum(fleet.soc_min_wh, fleet.reserve_wh)
    floor_own = reserve + np.where(state.held, fleet.hysteresis_wh, 0.0)
    charge_room = np.minimum(fleet.max_charge_w * h, (fleet.capacity_wh - stored) / eta)
    own_room = np.minimum(fleet.max_discharge_w * h, np.maximum(stored - floor_own, 0.0) * eta)
    coop_room = np.where(fleet.offered, np.minimum(
        fleet.max_discharge_w * h, np.maximum(stored - np.maximum(floor_own, reserve), 0.0) * eta
    ), 0.0)
    # variables per household: u, c, b, tp, fp, bc, bd, g, x  (9 blocks of n)
    names = ("u", "c", "b", "tp", "fp", "bc", "bd", "g", "x")
    col = {k: np.arange(n) + i * n for i, k in enumerate(names)}
    rows, cols, vals, rhs = [], [], [], []

    def eq(row: int, terms: list[tuple[str, float]], idx: NDArray[np.int64]) -> None:
        for k, coef in terms:
            rows.extend([row] * len(idx))
            cols.extend(col[k][idx])
            vals.extend([coef] * len(idx))

    idx = np.arange(n)
    for i in range(n):  # a constraint per household: not a hot path, a reference
        eq(i, [("u", 1), ("b", 1), ("fp", 1), ("g", 1)], idx[i:i + 1])
        eq(n + i, [("u", 1), ("c", 1), ("tp", 1), ("x", 1)], idx[i:i + 1])
    eq(2 * n, [("tp", 1), ("bd", 1), ("fp", -1), ("bc", -1)], idx)
    rhs = np.concatenate([load, pv, [0.0]])
    a_eq = coo_matrix((vals, (rows, cols)), shape=(2 * n + 1, 9 * n))
    # inequalities: c + bc <= charge_room; b + bd <= max(own_room, coop_room)
    ub_rows, ub_cols, ub_vals = [], [], []
    for i in range(n):
        ub_rows += [i, i, n + i, n + i]
        ub_cols += [col["c"][i], col["bc"][i], col["b"][i], col["bd"][i]]
        ub_vals += [1, 1, 1, 1]
    a_ub = coo_matrix((ub_vals, (ub_rows, ub_cols)), shape=(2 * n, 9 * n))
    b_ub = np.concatenate([charge_room, np.maximum(own_room, coop_room)])
    offered = fleet.offered.astype(float)
    bounds = (
        [(0, None)] * n + [(0, None)] * n + list(zip([0] * n, own_room, strict=True))
        + [(0, None)] * 2 * n + list(zip([0] * n, charge_room * offered, strict=True))
        + list(zip([0] * n, coop_room, strict=True)) + [(0, None)] * 2 * n
    )
    cost = np.zeros(9 * n)
    cost[col["g"]] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=rhs, bounds=bounds,
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"tick LP failed: {res.message}")
    return float(res.fun)


def lp_copper_plate_import(fleet: Fleet, stored_wh: FloatArray, pv_w: FloatArray,
                           load_w: FloatArray, dt_s: float) -> float:
    """Minimum coop grid import (Wh) over T steps with perfect foresight on a copper plate.

    Batteries may go down to their hard floor (``soc_min_wh``) and need not
    end where they started. The formulation is :func:`dispatch.plan_lp.plan_storage`'s.
    """
    from dispatch.plan_lp import plan_storage

    try:
        return plan_storage(fleet, stored_wh, pv_w, load_w, dt_s, copper_plate=True).import_wh
    except RuntimeError as exc:
        raise RuntimeError(f"copper-plate LP failed: {exc}") from None
