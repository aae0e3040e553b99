"""The 24-hour island plan: a linear program over steps × batteries (scipy HiGHS).

Islanded, the coop is a copper plate with no grid. In each step ``t``::

    Σ served = Σ PV − curtailed + Σ discharge − Σ charge
    served   = load − shed (critical + essential + flexible)

and each battery ``b`` obeys, with its round-trip efficiency split evenly
over both legs (``η = √round_trip``)::

    e[t, b] = e[t-1, b] + η c[t, b] − d[t, b] / η,   floor ≤ e ≤ capacity,
    0 ≤ c ≤ charge rating × Δt,  0 ≤ d ≤ discharge rating × Δt.

Shedding and curtailment are slack, so the LP is always feasible: it never
answers "infeasible", it says what it had to shed and which limit bound.

**Shed per member.** On the copper plate one member's shed kWh and another's
are interchangeable in every constraint, so the LP decides the coop's shed per
tier and step (3 × T variables) and the plan splits it over members pro rata
to their load of that tier in that step. Per-member shed variables would give
the same optimum at an arbitrary vertex (one house dark, its neighbour whole)
and N times the columns. Curtailment is split pro rata to PV the same way.
The LP still grows with the coop through its batteries (3 × T × B columns).

**Objective.** Lexicographic by weights per kWh: critical shed 10⁶, essential
10³, flexible 1 (so "total shed" is third), curtailed PV 10⁻², and 4·10⁻³ per
kWh through either leg of a battery. A weighted sum is exactly lexicographic
when no trade between levels exceeds the weight ratio (10³ between tiers,
10² from shed to curtailment). Energy moved between tiers and times loses at
most a round trip per pass through a battery, so a trade stays below
1/η_rt per pass: exact unless it needs ten or more passes at 50 % round trip
(thirty at 80 %). The throughput cost stops the LP from burning surplus by
charging and discharging at once (that absorbs ``(1−η_rt)/(1+η_rt)`` per kWh
of throughput, which costs more than curtailing it for any round trip above
0.43) and from shuffling energy between batteries; storing surplus still
beats curtailing it. Within a tier, shedding later is preferred by 10⁻⁴
relative (the grid may be back by then). The small weights are no smaller
because HiGHS took 3-5 times longer with 10⁻³/4·10⁻⁴.

**Required starting SoC.** For a level (``essential``: critical and essential
hold; ``flexible``: everything holds) one more LP lets the starting content of
each battery be a variable between its floor and capacity and minimizes, after
the shed of the tiers that must hold (10³ per kWh), the sum of the starting
energies. Tiers below the level may be shed freely: the essential level's
answer is the least energy with which critical and essential loads survive
when flexible loads are shed as needed (even at noon, to charge). The split
over batteries is not unique on a copper plate: a tie-break (10⁻³ of a
battery's usable kWh per unit) minimizes the largest starting fraction of
any battery's usable range, so the need is spread evenly. Identical
batteries are merged first (:func:`battery_classes`, exact here), so these
LPs stay small. One LP is exact, where bisection on a common SoC would need
~20 solves and only answer for equal SoCs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from controller.island.limits import TOL_WH, Binding, autonomy_hours, find_bindings
from controller.island.plan_black_start import RESERVE_WEIGHT, end_floor_rows
from controller.island.plan_trajectory import follow_early
from dispatch.fleet import Fleet

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

    from controller.island.plan_rows import Block

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

TIERS = ("critical", "essential", "flexible")
SHED_WEIGHTS = (1e6, 1e3, 1.0)
CURTAIL_WEIGHT = 1e-2
THROUGHPUT_WEIGHT = 4e-3
HOLD_WEIGHT = 1e3
TIE_WEIGHT = 1e-3
#: The trajectory LP (store early, spread across batteries: plan_trajectory.py) may take
#: this many times the plan's own LP, and at least MIN_TRAJECTORY_S; past it the plan keeps
#: the first LP's solution. At 300 members HiGHS took 20 times the plan's LP for it.
TRAJECTORY_FACTOR = 2.0
MIN_TRAJECTORY_S = 5.0
LATER = 1e-4
#: Required-start levels: the last tier that must hold.
LEVELS = ("essential", "flexible")


@dataclass(frozen=True, slots=True)
class Problem:
    """A planning problem: forecasts (W, per step and member) and the batteries.

    Attributes:
        pv_w: T × N mean PV power per step.
        tier_load_w: 3 × T × N load per tier (critical, essential, flexible).
        fleet: the B batteries (one element per battery).
        stored_wh: each battery's content now.
        battery_member: index of each battery's member.
        step_s: step length, s.
        member_ids: names of the members, for reports.
        start_ts: Unix time of the first step's start.
        end_floor_wh: each battery's black-start reserve at the end (B,), Wh; None: none
            (see :mod:`controller.island.plan_black_start`).
        grid_forming: per battery, whether it forms the grid; given, the plan keeps
            the operating reserve (:mod:`.plan_rows`), else it plans energy alone.
        reserve_load_pct, reserve_pv_pct: the reserve, % of served load and of PV used.
        charge_ceiling_wh: per battery, the content above which it may not charge
            (AC-coupled PV: the grid-former's frequency shift curtails it there); a
            battery already above keeps its content as its ceiling. None: capacity.
        locked_on_w, held_off_w: 3 × T × N, switchable loads running within their
            ``min_on_s`` and held off within their ``min_off_s``, per tier, step and
            member, over the whole steps they cover (:mod:`.plan_rows`). None: none.
    """

    pv_w: FloatArray
    tier_load_w: FloatArray
    fleet: Fleet
    stored_wh: FloatArray
    battery_member: IntArray
    step_s: float = 900.0
    member_ids: list[str] = field(default_factory=list)
    start_ts: float = 0.0
    end_floor_wh: FloatArray | None = None
    grid_forming: NDArray[np.bool_] | None = None
    reserve_load_pct: float = 10.0
    reserve_pv_pct: float = 25.0
    charge_ceiling_wh: FloatArray | None = None
    locked_on_w: FloatArray | None = None
    held_off_w: FloatArray | None = None

    def __post_init__(self) -> None:
        t, n = np.shape(self.pv_w)
        b = self.fleet.size
        shapes = {"pv_w": (t, n), "tier_load_w": (3, t, n), "stored_wh": (b,),
                  "battery_member": (b,), "grid_forming": (b,), "charge_ceiling_wh": (b,),
                  "locked_on_w": (3, t, n), "held_off_w": (3, t, n), "end_floor_wh": (b,)}
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value is None:
                continue
            if np.shape(value) != shape:
                raise ValueError(f"Problem.{name}: expected shape {shape}, got {np.shape(value)}")
            if not np.isfinite(value).all():
                raise ValueError(f"Problem.{name}: expected finite numbers")
        if b and not ((self.battery_member >= 0) & (self.battery_member < n)).all():
            raise ValueError(f"Problem.battery_member: expected member indices below {n}")
        if self.member_ids and len(self.member_ids) != n:
            raise ValueError(f"Problem.member_ids: expected {n} names")
        for name in ("reserve_load_pct", "reserve_pv_pct"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"Problem.{name}: expected 0 to 100 %, got "
                                 f"{getattr(self, name)}")
        for name in ("locked_on_w", "held_off_w"):
            value = getattr(self, name)
            if value is not None and (np.asarray(value) < 0).any():
                raise ValueError(f"Problem.{name}: expected W >= 0")

    @classmethod
    def from_shares(cls, pv_w: FloatArray, load_w: FloatArray, critical_share: FloatArray,
                    essential_share: FloatArray, fleet: Fleet, stored_wh: FloatArray,
                    battery_member: IntArray, step_s: float = 900.0,
                    member_ids: list[str] | None = None, start_ts: float = 0.0) -> Problem:
        """Split each member's load into tiers by its shares."""
        load = np.maximum(np.asarray(load_w, dtype=float), 0.0)
        crit = np.asarray(critical_share, dtype=float)[None, :]
        ess = np.asarray(essential_share, dtype=float)[None, :]
        tiers = np.stack([load * crit, load * ess, load * np.clip(1.0 - crit - ess, 0.0, 1.0)])
        return cls(np.maximum(np.asarray(pv_w, dtype=float), 0.0), tiers, fleet,
                   np.asarray(stored_wh, dtype=float),
                   np.asarray(battery_member, dtype=np.int64).reshape(-1), step_s,
                   list(member_ids or []), start_ts)

    @property
    def hours(self) -> float:
        """Length of one step in hours."""
        return self.step_s / 3600.0

    @property
    def lower_wh(self) -> FloatArray:
        """Each battery's floor in this plan: its floor, or its content if already below."""
        return np.minimum(self.fleet.soc_min_wh, self.start_wh)

    @property
    def start_wh(self) -> FloatArray:
        """Each battery's content now, within [0, capacity]."""
        return np.clip(self.stored_wh, 0.0, self.fleet.capacity_wh)


@dataclass(slots=True)
class Plan:
    """What the island plan decided, per step of ``problem``.

    Attributes:
        battery_w: T × B battery power, discharge > 0.
        stored_wh: (T+1) × B content at each step boundary (row 0: now).
        shed_wh: 3 × T × N shed energy per tier, member and step.
        curtailed_wh: T × N curtailed PV.
        feasible: per tier, whether nothing of it is shed.
        required_start_wh: per level (``essential``, ``flexible``), the least
            starting content of each battery (B,) for the level to hold.
        required_holds: per level, whether it can hold at all (with the
            batteries as full as it takes), black-start reserve included.
        autonomy_h: hours on batteries alone from now (see :mod:`.limits`).
        binding: limits that bind, see :class:`~controller.island.limits.Binding`.
        solve_s: wall time of the LPs.
        reserve_shortfall_w: per step, the operating reserve the plan could not keep
            (capacity shortage, W), when the problem says which batteries form the grid.
        cut_mid_run_wh: 3 × T, running loads the plan had to cut before their
            ``min_on_s`` (part of ``shed_wh``), when the problem has locks.
    """

    problem: Problem
    battery_w: FloatArray
    stored_wh: FloatArray
    shed_wh: FloatArray
    curtailed_wh: FloatArray
    feasible: dict[str, bool]
    required_start_wh: dict[str, FloatArray]
    required_holds: dict[str, bool]
    autonomy_h: dict[str, float]
    binding: list[Binding]
    solve_s: float
    reserve_shortfall_w: FloatArray | None = None
    cut_mid_run_wh: FloatArray | None = None

    @property
    def soc_pct(self) -> FloatArray:
        """(T+1) × B state of charge, %."""
        return _pct(self.stored_wh, self.problem.fleet.capacity_wh)

    def required_start_pct(self, level: str = "essential") -> FloatArray:
        """Each battery's required starting SoC for ``level``, %."""
        return _pct(self.required_start_wh[level], self.problem.fleet.capacity_wh)

    def coop_required_pct(self, level: str = "essential") -> float:
        """The coop's required starting energy as a share of all capacity, %."""
        cap = float(self.problem.fleet.capacity_wh.sum())
        return 100.0 * float(self.required_start_wh[level].sum()) / cap if cap > 0 else 0.0

    def shed_by_tier_wh(self) -> dict[str, float]:
        """Coop shed over the horizon per tier."""
        return {t: float(self.shed_wh[k].sum()) for k, t in enumerate(TIERS)}


def _pct(wh: FloatArray, capacity: FloatArray) -> FloatArray:
    return np.divide(100.0 * wh, capacity, out=np.zeros_like(wh, dtype=float),
                     where=capacity > 0)


class _Layout:
    """Column offsets of the LP's variables (all energies in kWh)."""

    def __init__(self, t: int, b: int, free_start: bool, end_floor: bool = False) -> None:
        self.t, self.b = t, b
        tb = t * b
        self.c, self.d, self.e = 0, tb, 2 * tb
        self.s, self.x = 3 * tb, 3 * tb + 3 * t
        self.e0, self.z = 3 * tb + 4 * t, 3 * tb + 4 * t + b
        self.n = self.z + 1 if free_start else self.e0
        # Last: each battery's shortfall below its black-start reserve, then its surplus.
        self.r, self.r_n = self.n, (b if end_floor else 0)
        self.n += 2 * self.r_n
        self.lock: Block | None = None  # running and held-off loads (plan_rows)
        self.reserve: Block | None = None  # operating reserve (plan_rows)


def _solve_lp(problem: Problem, level: str | None) -> tuple[OptimizeResult, _Layout]:
    """Build and solve one LP; ``level`` None is the plan, else a required-start LP.

    The result has ``x`` and, per variable, the objective's sensitivity to its
    lower and upper bounds (``lower.marginals``, ``upper.marginals``). The plan's
    LP takes the problem's optional rows (:mod:`.plan_rows`): locks, reserve.
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    from controller.island.plan_rows import lock_block, reserve_block

    t_steps, b_count = problem.pv_w.shape[0], problem.fleet.size
    free = level is not None
    lay = _Layout(t_steps, b_count, free, problem.end_floor_wh is not None)
    if not free:  # the options' columns after the energy LP's
        lay.lock = lock_block(problem, lay.s, lay.n)
        lay.n += lay.lock.size if lay.lock else 0
        lay.reserve = reserve_block(problem, {"c": lay.c, "d": lay.d, "e": lay.e,
                                              "s": lay.s, "x": lay.x}, lay.n,
                                    lay.lock.offset if lay.lock else None)
        lay.n += lay.reserve.size if lay.reserve else 0
    blocks = [blk for blk in (lay.lock, lay.reserve) if blk is not None]
    h, fleet = problem.hours, problem.fleet
    eta = fleet.leg_efficiency
    pv_kwh = problem.pv_w.sum(axis=1) * h / 1000.0
    tier_kwh = problem.tier_load_w.sum(axis=2) * h / 1000.0  # 3 × T
    steps = np.arange(t_steps)
    tb = np.arange(t_steps * b_count)
    t_of, b_of = tb // b_count, tb % b_count
    # Balance per step: Σd − Σc + ΣS − X = load − PV.
    rows = [t_of, t_of, np.tile(steps, 3), steps]
    cols = [lay.d + tb, lay.c + tb, lay.s + np.arange(3 * t_steps), lay.x + steps]
    vals = [np.ones(tb.size), -np.ones(tb.size), np.ones(3 * t_steps), -np.ones(t_steps)]
    # Dynamics per step and battery: e[t] − e[t−1] − η c + d / η = (e0 if t == 0 and fixed).
    dyn = t_steps + tb
    later = t_of > 0
    rows += [dyn, dyn[later], dyn, dyn]
    cols += [lay.e + tb, lay.e + tb[later] - b_count, lay.c + tb, lay.d + tb]
    vals += [np.ones(tb.size), -np.ones(int(later.sum())), -eta[b_of], 1.0 / eta[b_of]]
    for blk in blocks:
        rows, cols, vals = rows + [blk.eq[0]], cols + [blk.eq[1]], vals + [blk.eq[2]]
    b_eq = np.concatenate([tier_kwh.sum(axis=0) - pv_kwh, np.zeros(tb.size)])
    lower = problem.lower_wh / 1000.0
    if free:
        first = np.arange(b_count)
        rows.append(t_steps + first)
        cols.append(lay.e0 + first)
        vals.append(-np.ones(b_count))
        lower = fleet.soc_min_wh / 1000.0
    else:
        b_eq[t_steps:t_steps + b_count] = problem.start_wh / 1000.0
    if lay.r_n:
        floor = end_floor_rows(problem.end_floor_wh, lay.e + (t_steps - 1) * b_count, lay.r,
                               t_steps + tb.size)
        rows, cols, vals = rows + floor.rows, cols + floor.cols, vals + floor.vals
        b_eq = np.concatenate([b_eq, floor.rhs_kwh])
    a_eq = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(b_eq.size, lay.n)).tocsr()
    cap = fleet.capacity_wh / 1000.0
    bounds = np.zeros((lay.n, 2))
    bounds[lay.c:lay.d, 1] = np.tile(fleet.max_charge_w * h / 1000.0, t_steps)
    bounds[lay.d:lay.e, 1] = np.tile(fleet.max_discharge_w * h / 1000.0, t_steps)
    bounds[lay.e:lay.s] = np.column_stack([np.tile(lower, t_steps), np.tile(cap, t_steps)])
    bounds[lay.s:lay.x, 1] = tier_kwh.ravel()
    bounds[lay.x:lay.x + t_steps, 1] = pv_kwh
    bounds[lay.r:lay.r + 2 * lay.r_n, 1] = np.inf
    cost = np.zeros(lay.n)
    a_ub = b_ub = None
    if not free:
        late = 1.0 - steps / t_steps  # 1 at the first step, falling to 1/T at the last
        cost[lay.s:lay.x] = np.repeat(SHED_WEIGHTS, t_steps) * np.tile(1 + LATER * late, 3)
        cost[lay.x:lay.x + t_steps] = CURTAIL_WEIGHT
        cost[lay.c:lay.e] = THROUGHPUT_WEIGHT
        cost[lay.r:lay.r + lay.r_n] = RESERVE_WEIGHT  # short of the black-start reserve
        if problem.charge_ceiling_wh is not None:  # AC-coupled PV: no charging above it
            ceiling = np.maximum(problem.charge_ceiling_wh, problem.start_wh) / 1000.0
            bounds[lay.e:lay.s, 1] = np.tile(np.minimum(cap, ceiling), t_steps)
        for blk in blocks:
            cost[blk.offset:blk.offset + blk.size] = blk.cost
            bounds[blk.offset:blk.offset + blk.size] = blk.bounds
            if blk.shed_bounds is not None:
                bounds[lay.s:lay.x] = blk.shed_bounds.reshape(-1, 2)
        if lay.reserve is not None:
            r, c_, v, b_ub = lay.reserve.ub
            a_ub = coo_matrix((v, (r, c_)), shape=(b_ub.size, lay.n)).tocsr()
    else:
        must = np.arange(3) <= LEVELS.index(level) + 1
        cost[lay.s:lay.x] = np.repeat(np.where(must, HOLD_WEIGHT, 0.0), t_steps)
        cost[lay.e0:lay.z] = 1.0
        cost[lay.r:lay.r + lay.r_n] = HOLD_WEIGHT  # the reserve must hold, as the tiers
        usable = cap - lower
        bounds[lay.e0:lay.z] = np.column_stack([lower, cap])
        bounds[lay.z] = (0.0, 1.0)
        has = np.flatnonzero(usable > 0)
        cost[lay.z] = TIE_WEIGHT * (float(usable[has].mean()) if has.size else 0.0)
        # (e0 − floor) / usable − z ≤ 0 for every battery with a usable range.
        k = np.arange(has.size)
        a_ub = coo_matrix((np.concatenate([1.0 / usable[has], -np.ones(has.size)]),
                           (np.concatenate([k, k]),
                            np.concatenate([lay.e0 + has, np.full(has.size, lay.z)]))),
                          shape=(has.size, lay.n)).tocsr()
        b_ub = lower[has] / usable[has]
    began = time.perf_counter()
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds,
                  method="highs")
    first_s = time.perf_counter() - began
    if res.status != 0:  # the slack makes every instance feasible: this is a solver failure
        raise RuntimeError(f"island LP failed ({res.status}): {res.message}")
    if not free:  # the same plan, on the trajectory a controller would follow
        x = follow_early(res, cost, a_eq, b_eq, bounds, lay.e, t_steps, b_count, lower, cap,
                         slice(lay.s, lay.x), a_ub, b_ub,
                         time_limit_s=max(MIN_TRAJECTORY_S, TRAJECTORY_FACTOR * first_s))
        if x is not None:
            res.x = x  # the first LP's shadow prices stay: they value its limits
    return res, lay


def battery_classes(fleet: Fleet, key: FloatArray | None = None
                    ) -> tuple[Fleet, IntArray, FloatArray]:
    """Batteries with identical parameters merged: the classes, each battery's class, sizes.

    A class of k identical batteries is one battery with k times the capacity,
    floor and ratings. When the starting contents are free (the required-start
    LPs) this is exact: the LP is symmetric in identical batteries, so averaging
    an optimum over their permutations gives an optimum in which they all do
    the same, which is the merged battery's schedule split k ways. Batteries
    whose ``key`` differs (their black-start reserve) are never merged.
    """
    params = np.column_stack([fleet.capacity_wh, fleet.soc_min_wh, fleet.max_charge_w,
                              fleet.max_discharge_w, fleet.efficiency,
                              np.zeros(fleet.size) if key is None else key])
    unique, inverse, counts = np.unique(params, axis=0, return_inverse=True,
                                        return_counts=True)
    k = counts.astype(np.float64)
    merged = Fleet(capacity_wh=unique[:, 0] * k, soc_min_wh=unique[:, 1] * k,
                   max_charge_w=unique[:, 2] * k, max_discharge_w=unique[:, 3] * k,
                   efficiency=unique[:, 4])
    return merged, inverse.reshape(-1).astype(np.int64), k


def _split(total: FloatArray, weights: FloatArray) -> FloatArray:
    """Distribute ``total`` (… × T) over members pro rata to ``weights`` (… × T × N)."""
    denom = weights.sum(axis=-1, keepdims=True)
    share = np.divide(weights, denom, out=np.zeros_like(weights), where=denom > 0)
    return total[..., None] * share


def _prices(res: OptimizeResult, lay: _Layout) -> dict[str, FloatArray]:
    """What relaxing each battery limit by 1 kWh would save, in objective units (T × B)."""
    lower, upper = res.lower.marginals, res.upper.marginals
    shape = (lay.t, lay.b)
    dynamics = res.eqlin.marginals[lay.t:lay.t + lay.t * lay.b]
    return {
        "energy": np.maximum(-dynamics, 0.0).reshape(shape),
        "floor": np.maximum(lower[lay.e:lay.s], 0.0).reshape(shape),
        "full": np.maximum(-upper[lay.e:lay.s], 0.0).reshape(shape),
        "discharge_power": np.maximum(-upper[lay.d:lay.e], 0.0).reshape(shape),
        "charge_power": np.maximum(-upper[lay.c:lay.d], 0.0).reshape(shape),
    }


def plan_island(problem: Problem) -> Plan:
    """Solve the plan and the required starting SoCs; never raises for a hard day."""
    began = time.perf_counter()
    res, lay = _solve_lp(problem, None)
    x = res.x
    t_steps, b_count, h = lay.t, lay.b, problem.hours
    kwh = 1000.0

    def block(offset: int, rows: int, cols: int) -> FloatArray:
        return np.clip(x[offset:offset + rows * cols].reshape(rows, cols), 0.0, None) * kwh

    charge, discharge = block(lay.c, t_steps, b_count), block(lay.d, t_steps, b_count)
    # The content's bounds are the LP's own: HiGHS meets them to its feasibility tolerance
    # (about 1e-5 Wh here), so a content a hair below the floor is the floor.
    content = np.clip(block(lay.e, t_steps, b_count), problem.lower_wh,
                      problem.fleet.capacity_wh)
    stored = np.vstack([problem.start_wh[None, :], content])
    shed = block(lay.s, 3, t_steps)
    curtailed = block(lay.x, 1, t_steps)[0]
    shed = np.where(shed > TOL_WH, shed, 0.0)
    curtailed = np.where(curtailed > TOL_WH, curtailed, 0.0)
    cut = shortfall = None
    if lay.lock is None:
        shed_members = _split(shed, problem.tier_load_w)
    else:
        from controller.island.plan_rows import split_locked

        cut = block(lay.lock.offset, 3, t_steps)
        cut = np.where(cut > TOL_WH, cut, 0.0)
        shed_members = split_locked(shed, cut, problem)
        shed = shed + cut
    if lay.reserve is not None:
        r_at = lay.reserve.offset + lay.reserve.size - t_steps
        short = block(r_at, 1, t_steps)[0]
        shortfall = np.where(short > TOL_WH, short, 0.0) / h
    curtailed_members = _split(curtailed, problem.pv_w)
    required: dict[str, FloatArray] = {}
    holds: dict[str, bool] = {}
    floor = problem.end_floor_wh
    classes, member_of, count = battery_classes(problem.fleet, floor)
    merged = replace(problem, fleet=classes, stored_wh=classes.soc_min_wh,
                     battery_member=np.zeros(classes.size, dtype=np.int64),
                     end_floor_wh=None if floor is None else np.bincount(
                         member_of, weights=floor, minlength=classes.size),
                     grid_forming=None, charge_ceiling_wh=None)  # the energy it takes
    for level in LEVELS:
        res_level, cls = _solve_lp(merged, level)
        xs = res_level.x
        per_class = xs[cls.e0:cls.z] * kwh / count
        required[level] = np.clip(per_class[member_of], problem.fleet.soc_min_wh,
                                  problem.fleet.capacity_wh)
        left = np.clip(xs[cls.s:cls.x].reshape(3, t_steps), 0.0, None) * kwh
        short = float(xs[cls.r:cls.r + cls.r_n].sum()) * kwh  # the black-start reserve
        holds[level] = bool(left[:LEVELS.index(level) + 2].sum() <= TOL_WH * t_steps
                            and short <= TOL_WH * t_steps)
    solve_s = time.perf_counter() - began
    feasible = {tier: bool(shed[k].sum() <= TOL_WH * t_steps) for k, tier in enumerate(TIERS)}
    return Plan(
        problem=problem,
        battery_w=(discharge - charge) / h,
        stored_wh=stored,
        shed_wh=shed_members,
        curtailed_wh=curtailed_members,
        feasible=feasible,
        required_start_wh=required,
        required_holds=holds,
        autonomy_h=autonomy_hours(problem),
        binding=find_bindings(_prices(res, lay), stored[1:] <= problem.lower_wh + TOL_WH,
                              shed.sum(axis=0), curtailed),
        solve_s=solve_s,
        reserve_shortfall_w=shortfall,
        cut_mid_run_wh=cut,
    )
