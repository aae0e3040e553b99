"""The island plan's trajectory: among the plans equally good, the one a controller follows.

The plan's LP (:mod:`controller.island.plan`) is indifferent to when a battery charges
from surplus that would otherwise be curtailed, and to which battery holds it: HiGHS
returned a vertex whose SoC sat at the floor until 14:30 on a sunny day and then
charged, one battery full and the next empty. Weights small enough to rank below the
plan's own (shedding later is worth 10⁻⁴ of a flexible kWh spread over the day, about
10⁻⁶ a step) are below what HiGHS resolves, so the choice is a second LP, exactly
lexicographic: the first LP's objective is held (within :data:`REL_TOL`), and it
maximizes stored energy, more early than late, and each step's emptiest battery's
usable fraction (``m[t] <= (e[t, b] - floor) / usable`` for every battery), so the
energy is spread. If the second LP fails, the first LP's plan stands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult
    from scipy.sparse import csr_matrix

FloatArray = NDArray[np.float64]
#: The first LP's objective may grow by this share (and 10⁻⁹ absolute): HiGHS's accuracy.
REL_TOL = 1e-9


def follow_early(res: OptimizeResult, cost: FloatArray, a_eq: csr_matrix, b_eq: FloatArray,
                 bounds: FloatArray, e_at: int, t_steps: int, b_count: int,
                 lower: FloatArray, cap: FloatArray, shed: slice,
                 a_ub: csr_matrix | None = None, b_ub: FloatArray | None = None,
                 time_limit_s: float | None = None) -> FloatArray | None:
    """The second LP's solution (the first LP's columns), None if it failed or ran past
    ``time_limit_s`` (then the plan keeps the first LP's solution: the same figures, on a
    trajectory that need not store early).

    Args:
        res: the first LP's result; ``cost``, ``a_eq``, ``b_eq`` and ``bounds`` its inputs.
        e_at: the first column of the battery contents ``e`` (T × B, kWh, step-major).
        lower, cap: each battery's floor and capacity, kWh.
        shed: the shed columns, held at the first LP's values step by step (when to shed
            is the plan's, to a precision the objective tolerance would blur).
        a_ub, b_ub: the first LP's inequality rows (the reserve's), kept.
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, hstack, vstack

    n = cost.size
    usable = cap - lower
    has = np.flatnonzero(usable > 0)
    if has.size == 0:
        return None
    late = 1.0 - np.arange(t_steps) / t_steps  # 1 at the first step, 1/T at the last
    objective = np.zeros(n + t_steps)
    objective[e_at:e_at + t_steps * b_count] = -np.repeat(late, b_count)
    objective[n:] = -float(usable[has].mean()) * late
    rows = np.arange(t_steps * has.size)
    t_of, b_of = rows // has.size, has[rows % has.size]
    spread = coo_matrix((np.concatenate([np.ones(rows.size), -1.0 / usable[b_of]]),
                         (np.concatenate([rows, rows]),
                          np.concatenate([n + t_of, e_at + t_of * b_count + b_of]))),
                        shape=(rows.size, n + t_steps))
    held = coo_matrix(np.concatenate([cost, np.zeros(t_steps)])[None, :])
    blocks = [held, spread]
    rhs = [[res.fun + REL_TOL * abs(res.fun) + 1e-9], -lower[b_of] / usable[b_of]]
    if a_ub is not None and b_ub is not None:
        blocks.append(hstack([a_ub, coo_matrix((a_ub.shape[0], t_steps))]))
        rhs.append(b_ub)
    a_ub2 = vstack(blocks).tocsr()
    b_ub2 = np.concatenate(rhs)
    a_eq2 = hstack([a_eq, coo_matrix((a_eq.shape[0], t_steps))]).tocsr()
    bounds2 = np.vstack([bounds, np.tile([0.0, 1.0], (t_steps, 1))])
    fixed = np.clip(res.x[shed], bounds[shed, 0], bounds[shed, 1])
    bounds2[shed] = np.column_stack([fixed, fixed])
    options = {} if time_limit_s is None else {"time_limit": float(time_limit_s)}
    second = linprog(objective, A_ub=a_ub2, b_ub=b_ub2, A_eq=a_eq2, b_eq=b_eq, bounds=bounds2,
                     method="highs", options=options)
    return second.x[:n] if second.status == 0 else None
