"""Optional rows of the island plan's LP: operating reserve and loads that must not be cut.

:func:`controller.island.plan._solve_lp` builds the energy LP (balance, battery
dynamics, shed and curtailment as slack); each function here adds a block of
columns and rows to it when its problem asks for it, so a constraint lives in
one place and the LP stays the same for problems that do not use it.

**Operating reserve** (:func:`reserve_block`, issue 21.2). In every step the
grid-forming inverters keep headroom for the surprises an island meets (a
kettle, a cloud)::

    Σ_g u[t, g] + r[t] ≥ reserve_load_pct % × served[t] + reserve_pv_pct % × PV used[t]

with ``u[t, g]`` (kWh over the step) the extra a grid-former ``g`` could give:

    u ≤ rating × Δt − d + c           (its discharge rating, a charge it could stop)
    u ≤ η (e[t] − floor)              (and the energy behind it over the whole step:
    u ≤ c − d + η (e[t−1] − floor)     at its floor, only a charge it could stop)

Net flows only: charging and discharging at once (which the LP could do at a
loss) gains no headroom, and both energy rows stay ≥ 0 for any plan (the
dynamics keep ``e ≥ floor``), so ``u ≥ 0`` never makes an energy plan infeasible.

``r[t] ≥ 0`` is the **capacity shortage** (reported apart from shed energy),
priced at :data:`RESERVE_WEIGHT` per kWh (W short × step length): far below
essential and critical load (no trade reaches 33,000 kWh of shortage per kWh),
below flexible load in any one step (shedding it frees at most 1.1 kWh of
reserve per kWh), and above curtailment and throughput, so the plan keeps the
grid-formers' headroom by having the other batteries serve first and by charging
the grid-formers, never by throwing PV away (cutting 1 kWh of PV saves at most
0.25 kWh of need: 0.0075 < 0.01). Energy put behind a nearly empty grid-former
keeps reserve in every later step, so the plan will shed a little flexible load
early for it when that saves 33 times as much shortage over the day.
:func:`controller.island_day.reserve.check_reserve` computes the same headroom from
the finished plan, independently, as the referee.

**Loads running or held off** (:func:`lock_block`, issue 21.8). A load switched
on less than its ``min_on_s`` ago cannot be shed before that time has passed, and
one Commonwatt switched off less than ``min_off_s`` ago stays off until then, so
a re-plan takes them as given over the whole steps they cover (a remaining 100 s
in a 900 s step is that step: run lengths round up, never down). Held off loads
are a lower bound on their tier's shed (always feasible: shed may reach the
whole load, surplus is curtailed). Running loads are taken out of the shed's
upper bound into a column of their own, ``k[tier, t]``, at 10 × the tier's shed
weight: the plan cuts a running load only when nothing else is left, and it
never answers "infeasible".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from controller.island.plan import Problem

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Objective per kWh of capacity shortage (reserve not kept), see the module docstring.
RESERVE_WEIGHT = 3e-2
#: Cutting a running load (min_on_s not passed) costs this times shedding its tier.
CUT_FACTOR = 10.0


@dataclass(frozen=True, slots=True)
class Block:
    """Columns and rows one option adds to the LP.

    Attributes:
        cost, bounds: of its new columns (k,) and (k, 2), placed at ``offset``.
        ub: (rows, cols, vals, b_ub) of its ≤ rows, columns absolute, rows from 0.
        eq: (rows, cols, vals) added to the energy LP's equality rows (the balance
            per step is row ``t``).
        shed_bounds: 3 × T × 2 bounds replacing the shed columns' (None: keep).
    """

    offset: int
    cost: FloatArray
    bounds: FloatArray
    ub: tuple[IntArray, IntArray, FloatArray, FloatArray]
    eq: tuple[IntArray, IntArray, FloatArray]
    shed_bounds: FloatArray | None = None

    @property
    def size(self) -> int:
        """How many columns it adds."""
        return int(self.cost.size)


def _empty_i() -> IntArray:
    return np.zeros(0, dtype=np.int64)


def _empty_f() -> FloatArray:
    return np.zeros(0)


def steps_covered(remaining_s: float, step_s: float) -> int:
    """Whole steps a remaining minimum time covers: rounded up (100 s of a 900 s step is
    one step), 0 when nothing remains."""
    if not math.isfinite(remaining_s) or remaining_s <= 0:
        return 0
    return math.ceil(remaining_s / step_s - 1e-9)


def lock_block(problem: Problem, s_at: int, offset: int) -> Block | None:
    """Held-off loads as lower bounds on their tier's shed, running ones in ``k`` columns
    (3 × T from ``offset``); None when the problem has no locks."""
    on, off = problem.locked_on_w, problem.held_off_w
    if on is None and off is None:
        return None
    t_steps = problem.pv_w.shape[0]
    h = problem.hours
    load = problem.tier_load_w.sum(axis=2) * h / 1000.0  # 3 × T kWh
    held = np.zeros_like(load) if off is None else off.sum(axis=2) * h / 1000.0
    running = np.zeros_like(load) if on is None else on.sum(axis=2) * h / 1000.0
    lo = np.minimum(held, load)
    locked = np.minimum(running, load - lo)  # a load both held and running counts once
    up = np.maximum(load - locked, lo)
    shed_bounds = np.stack([lo, up], axis=-1)
    from controller.island.plan import SHED_WEIGHTS

    cost = np.repeat(np.asarray(SHED_WEIGHTS) * CUT_FACTOR, t_steps)
    bounds = np.column_stack([np.zeros(3 * t_steps), locked.ravel()])
    cols = offset + np.arange(3 * t_steps)
    # k enters the balance like shed: Σd − Σc + ΣS + Σk − X = load − PV.
    eq = (np.tile(np.arange(t_steps), 3), cols, np.ones(3 * t_steps))
    del s_at  # the shed columns keep their place; only their bounds change
    return Block(offset, cost, bounds, (_empty_i(), _empty_i(), _empty_f(), _empty_f()), eq,
                 shed_bounds)


def reserve_block(problem: Problem, cols: dict[str, int], offset: int,
                  cut_at: int | None) -> Block | None:
    """Headroom ``u`` (T × G) and shortage ``r`` (T) columns from ``offset`` and their rows;
    None when the problem does not say which batteries form the grid.

    ``cols`` holds the energy LP's column offsets ``c``, ``d``, ``e``, ``s``, ``x``;
    ``cut_at`` the first ``k`` column of :func:`lock_block` (None: none).
    """
    if problem.grid_forming is None:
        return None
    t_steps, b_count = problem.pv_w.shape[0], problem.fleet.size
    h, fleet = problem.hours, problem.fleet
    gf = np.flatnonzero(np.asarray(problem.grid_forming, dtype=bool))
    g_count = gf.size
    eta = fleet.leg_efficiency[gf]
    lower = problem.lower_wh[gf] / 1000.0
    rating = fleet.max_discharge_w[gf] * h / 1000.0
    a, p = problem.reserve_load_pct / 100.0, problem.reserve_pv_pct / 100.0
    u_at, r_at = offset, offset + t_steps * g_count
    tg = np.arange(t_steps * g_count)
    t_of, g_of = tg // g_count, tg % g_count
    battery = t_of * b_count + gf[g_of]  # the (t, b) index of each u
    u = u_at + tg
    rows, cols_, vals, rhs = [], [], [], []
    row = 0
    # u − c + d ≤ rating × Δt
    k = row + tg
    rows += [k, k, k]
    cols_ += [u, cols["c"] + battery, cols["d"] + battery]
    vals += [np.ones(tg.size), -np.ones(tg.size), np.ones(tg.size)]
    rhs.append(rating[g_of])
    row += tg.size
    # u − η e[t] ≤ −η floor
    k = row + tg
    rows += [k, k]
    cols_ += [u, cols["e"] + battery]
    vals += [np.ones(tg.size), -eta[g_of]]
    rhs.append(-eta[g_of] * lower[g_of])
    row += tg.size
    # u − c + d − η e[t−1] ≤ −η floor (t = 0: the content now)
    k = row + tg
    later = t_of > 0
    rows += [k, k, k, k[later]]
    cols_ += [u, cols["c"] + battery, cols["d"] + battery, cols["e"] + battery[later] - b_count]
    vals += [np.ones(tg.size), -np.ones(tg.size), np.ones(tg.size), -eta[g_of][later]]
    start = problem.start_wh[gf] / 1000.0
    rhs.append(np.where(later, -eta[g_of] * lower[g_of],
                        eta[g_of] * (start[g_of] - lower[g_of])))
    row += tg.size
    # need ≤ Σ u + r:  −a ΣS − a Σk − p X − Σu − r ≤ −a load − p PV
    steps = np.arange(t_steps)
    k = row + steps
    rows += [np.tile(k, 3), row + t_of, k, k]
    cols_ += [cols["s"] + np.arange(3 * t_steps), u, cols["x"] + steps, r_at + steps]
    vals += [np.full(3 * t_steps, -a), -np.ones(tg.size), np.full(t_steps, -p),
             -np.ones(t_steps)]
    if cut_at is not None:
        rows.append(np.tile(k, 3))
        cols_.append(cut_at + np.arange(3 * t_steps))
        vals.append(np.full(3 * t_steps, -a))
    load_kwh = problem.tier_load_w.sum(axis=(0, 2)) * h / 1000.0
    pv_kwh = problem.pv_w.sum(axis=1) * h / 1000.0
    rhs.append(-a * load_kwh - p * pv_kwh)
    cost = np.concatenate([np.zeros(tg.size), np.full(t_steps, RESERVE_WEIGHT)])
    bounds = np.column_stack([np.zeros(cost.size), np.full(cost.size, np.inf)])
    ub = (np.concatenate(rows).astype(np.int64), np.concatenate(cols_).astype(np.int64),
          np.concatenate(vals).astype(float), np.concatenate(rhs).astype(float))
    return Block(offset, cost, bounds, ub, (_empty_i(), _empty_i(), _empty_f()))


def split_locked(shed: FloatArray, cut: FloatArray, problem: Problem) -> FloatArray:
    """Per member, 3 × T × N: held-off loads stay with their members, the rest of the shed
    goes pro rata to the load free to shed, a cut pro rata to the running loads."""
    zero = np.zeros_like(problem.tier_load_w)
    held = zero if problem.held_off_w is None else problem.held_off_w
    running = zero if problem.locked_on_w is None else problem.locked_on_w
    h = problem.hours
    held_wh = np.minimum(held, problem.tier_load_w) * h
    free_shed = np.maximum(shed - held_wh.sum(axis=2), 0.0)
    scale = np.divide(shed, held_wh.sum(axis=2), out=np.ones_like(shed),
                      where=held_wh.sum(axis=2) > shed)  # HiGHS's tolerance below the bound
    free = np.maximum(problem.tier_load_w - held - running, 0.0)
    # HiGHS may shed a hair over the free load: where none is free, split by load.
    free = np.where(free.sum(axis=2, keepdims=True) > 0, free, problem.tier_load_w)
    from controller.island.plan import _split

    return held_wh * scale[..., None] + _split(free_shed, free) + _split(cut, running)
