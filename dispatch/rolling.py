"""The rolling plan over a series: re-plan every few steps from a forecast, follow the targets.

Offline twin of the controller's rolling plan (``commonwatt simulate --dispatch plan``):
every ``replan_steps`` the storage LP (:func:`dispatch.plan_lp.plan_storage`) is
solved over the next ``horizon_steps`` of the forecast, from the batteries' content
*now*; until the next re-plan each tick follows the plan's content targets through
:class:`dispatch.planned.PlannedEngine`. A solve that fails leaves greedy in charge,
and targets older than ``expire_steps`` are dropped (greedy again).

The forecast is a callable ``forecast(t, steps) -> (pv_w, load_w)``, each
``steps × N``: what the planner believes at step ``t`` about steps ``t .. t+steps-1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import CoopLimits, Fleet, FleetState
from dispatch.plan_lp import plan_storage
from dispatch.planned import PlannedEngine
from dispatch.series import _ACCUMULATED, SeriesResult, _complete
from dispatch.tick import NO_LIMITS

FloatArray = NDArray[np.float64]
Forecast = Callable[[int, int], tuple[FloatArray, FloatArray]]


@dataclass(slots=True)
class RollingStats:
    """How the plans went: how many, how long they took, how many failed."""

    solves: int = 0
    failures: int = 0
    solve_s: list[float] = field(default_factory=list)
    greedy_ticks: int = 0


def perfect_forecast(pv_w: FloatArray, load_w: FloatArray) -> Forecast:
    """The truth itself (shorter at the end of the series)."""
    def forecast(t: int, steps: int) -> tuple[FloatArray, FloatArray]:
        return pv_w[t:t + steps], load_w[t:t + steps]
    return forecast


def history_forecast(pv_w: FloatArray, load_w: FloatArray, dt_s: float,
                     days: int = 7, pv_quantile: float | None = None) -> Forecast:
    """Each member's mean at the same time of day over the last ``days`` days seen.

    ``pv_quantile``: PV as that quantile of those days instead of their mean (a plan that
    keeps room for surplus which does not come loses more than one that keeps too little).
    Only the past is read: at step ``t`` nothing at or after ``t``. Before a whole
    day has been seen, the mean of everything seen so far (or 0) stands in.
    """
    per_day = max(1, round(86400 / dt_s))

    def forecast(t: int, steps: int) -> tuple[FloatArray, FloatArray]:
        steps = min(steps, len(pv_w) - t)
        out = []
        for series, q in ((pv_w, pv_quantile), (load_w, None)):
            ahead = np.zeros((steps, series.shape[1]))
            for k in range(steps):  # a horizon of rows, each a mean over <= days rows
                past = np.arange(t + k - per_day, max(t + k - (days + 1) * per_day, -1), -per_day)
                past = past[(past >= 0) & (past < t)][:days]
                if len(past):
                    ahead[k] = (series[past].mean(axis=0) if q is None
                                else np.quantile(series[past], q, axis=0))
                elif t > 0:
                    ahead[k] = series[:t].mean(axis=0)
            out.append(ahead)
        return out[0], out[1]
    return forecast


def run_rolling(fleet: Fleet, state: FleetState, pv_w: FloatArray, load_w: FloatArray,
                dt_s: float, forecast: Forecast, policy: str = "prorata",
                limits: CoopLimits = NO_LIMITS, replan_steps: int = 1, horizon_steps: int = 96,
                plan_every: int = 1, expire_steps: int | None = None,
                solver: Callable[..., object] = plan_storage,
                hold: bool = False) -> tuple[SeriesResult, RollingStats]:
    """Dispatch the series with a rolling plan; totals as :func:`dispatch.series.run_series`.

    ``plan_every``: series steps per plan step (the LP runs on means over that many).
    ``expire_steps``: how long targets stay valid (default: twice ``replan_steps``).
    ``hold``: follow the targets down as well as up (:class:`dispatch.planned.PlannedEngine`):
    worth it with a forecast that is right, costly with one that is not.
    """
    pv_w, load_w = np.asarray(pv_w, float), np.asarray(load_w, float)
    engine = PlannedEngine(fleet, policy, limits, fused=False, hold=hold)
    engine.greedy.keep_inputs = True
    expire = 2 * replan_steps if expire_steps is None else expire_steps
    n = fleet.size
    sums = {name: np.zeros(n) for name in (*_ACCUMULATED, "pv", "load")}
    current = state.copy()
    start = np.clip(current.stored_wh, 0.0, fleet.capacity_wh)
    stats = RollingStats()
    targets: FloatArray | None = None
    planned_at = -10**9
    import_capped = export_capped = 0.0
    for t in range(pv_w.shape[0]):
        if t % replan_steps == 0:
            plan = _solve(fleet, current, forecast, t, horizon_steps, plan_every, dt_s, limits,
                          solver, stats)
            if plan is not None:
                targets, planned_at = plan, t
        target = None
        if targets is not None and t - planned_at < expire:
            k = (t - planned_at) // plan_every
            target = targets[k] if k < len(targets) else None
        if target is None:
            stats.greedy_ticks += 1
        result = engine.tick(current, pv_w[t], load_w[t], None, dt_s, target)
        for name in _ACCUMULATED:
            sums[name] += getattr(result, name)
        h = dt_s / 3600.0
        sums["pv"] += np.maximum(pv_w[t], 0.0) * h
        sums["load"] += np.maximum(load_w[t], 0.0) * h
        import_capped += result.import_capped_wh
        export_capped += result.export_capped_wh
        current = FleetState(result.state.stored_wh.copy(), result.state.pool_coop_wh.copy(),
                             result.state.held.copy())
    return SeriesResult(_complete(fleet, sums, start, current.stored_wh.copy()), current,
                        pv_w.shape[0], import_capped, export_capped), stats


def _solve(fleet: Fleet, state: FleetState, forecast: Forecast, t: int, horizon: int,
           every: int, dt_s: float, limits: CoopLimits, solver: Callable[..., object],
           stats: RollingStats) -> FloatArray | None:
    """The content targets per plan step (rows), or None when the solve failed."""
    pv_f, load_f = forecast(t, horizon)
    rows = (len(pv_f) // every) * every
    if rows == 0:
        return None
    n = fleet.size
    pv_m = pv_f[:rows].reshape(-1, every, n).mean(axis=1)
    load_m = load_f[:rows].reshape(-1, every, n).mean(axis=1)
    stats.solves += 1
    try:
        plan = solver(fleet, state.stored_wh, pv_m, load_m, dt_s * every, limits=limits)
    except (RuntimeError, ValueError):
        stats.failures += 1
        return None
    stats.solve_s.append(plan.solve_s)
    return np.where(fleet.capacity_wh > 0, plan.stored_wh, np.nan)
