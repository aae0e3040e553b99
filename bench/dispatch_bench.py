"""Dispatch speed: numpy engine vs plain-Python reference vs LP, and the memory limit."""

from __future__ import annotations

import time
from functools import partial
from types import SimpleNamespace

import numpy as np

from bench.timing import median_s
from bench.yardsticks import loop_copy_gbs, numpy_floor_s, stream_floor_s
from controller.fleet_dispatch import EngineKeeper, FleetParams
from dispatch import CoopLimits, Fleet, FleetState, kernel
from dispatch.lp import lp_copper_plate_import, lp_tick_import
from dispatch.reference import reference_tick
from dispatch.series import run_series
from dispatch.tick import BLOCK, DispatchEngine, dispatch_tick

#: Arrays of N float64 a minimal tick must touch: pv, load, stored, pool, capacity,
#: efficiency, both power limits, the floor (9 read) and own use, to/from battery,
#: to/from peers, to/from grid, content, pool, coop part (10 written).
ARRAYS_TOUCHED = 19
DT_S = 60.0


def fleet_of(n: int, seed: int = 0, offered: bool = False) -> tuple[Fleet, FleetState]:
    """A mixed fleet: 60 % with a battery, varied PV; deterministic."""
    rng = np.random.default_rng(seed)
    cap = rng.choice([5000.0, 10000.0, 13500.0], n) * (rng.random(n) < 0.6)
    fleet = Fleet(cap, cap * 0.05, np.full(n, 3300.0), np.full(n, 3300.0), np.full(n, 0.9),
                  offered=np.full(n, offered))
    return fleet, FleetState.start(cap * 0.5, cap * 0.25)


def inputs(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 6000, n) * (rng.random(n) < 0.7), rng.uniform(100, 3000, n)


def memory_bandwidth_gbs(repeats: int = 3) -> float:
    """Bytes moved per second by a numpy copy of 10^8 float64 (read + write)."""
    src = np.ones(100_000_000)
    dst = np.empty_like(src)
    seconds = median_s(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / seconds / 1e9


def bench_tick(sizes: list[int], bandwidth_gbs: float, budget_s: float) -> list[dict]:
    rows = []
    for n in sizes:
        fleet, state = fleet_of(n)
        pv, load = inputs(n)
        engine = DispatchEngine(fleet, fused=False)
        repeats = max(5, min(200, int(2e7 / n)))
        t_numpy = median_s(partial(engine.tick, state, pv, load, None, DT_S), repeats)
        limit_s = ARRAYS_TOUCHED * 8 * n / (bandwidth_gbs * 1e9)
        row = {"households": n, "numpy_ms": round(t_numpy * 1e3, 4),
               "bytes_touched": ARRAYS_TOUCHED * 8 * n,
               "memory_limit_ms": round(limit_s * 1e3, 4),
               "fraction_of_limit": round(limit_s / t_numpy, 3)}
        if kernel.AVAILABLE:
            fused = DispatchEngine(fleet, fused=True)
            t_fused = median_s(partial(fused.tick, state, pv, load, None, DT_S), repeats, 3)
            row |= {"fused_ms": round(t_fused * 1e3, 4),
                    "fused_fraction_of_limit": round(limit_s / t_fused, 3),
                    "numpy_over_fused": round(t_numpy / t_fused, 2)}
        row |= _yardsticks(n, repeats, t_numpy, row.get("fused_ms"))
        row |= _references(fleet, state, pv, load, n, t_numpy, budget_s)
        rows.append(row)
    return rows


def bench_controller_path(sizes: list[int]) -> list[dict]:
    """The controller's per-cycle dispatch: its fleet from the devices' ratings, then a tick.

    ``kept_ms`` is what :class:`~controller.cycle.Controller` runs (an
    :class:`EngineKeeper`: the ratings compared with the last cycle's, the kept fleet and
    engine reused); ``fresh_ms`` what it ran before (a new fleet and a new engine every
    cycle); ``warm_engine_ms`` the engine's tick alone, the floor of both.
    """
    return [_controller_path(n) for n in sizes]


def _controller_path(n: int) -> dict:
    """One row of :func:`bench_controller_path`."""
    rng = np.random.default_rng(3)
    cap = rng.choice([5000.0, 10000.0, 13500.0], n) * (rng.random(n) < 0.6)
    has = cap > 0
    image = SimpleNamespace(has_battery=has, capacity_wh=np.where(has, cap, np.nan),
                            max_charge_w=np.where(has, 3300.0, np.nan),
                            max_discharge_w=np.where(has, 3300.0, np.nan))
    # No battery offered, as in bench_tick's fleet: the tick_1e6 target's common path.
    params = FleetParams(np.full(n, 5.0), np.full(n, 20.0), np.zeros(n),
                         np.zeros(n, dtype=bool), np.zeros(n, dtype=bool),
                         np.zeros(n, dtype=bool), np.full(n, 0.9), np.full(n, np.inf),
                         np.zeros(n, dtype=np.int64), np.ones(n))
    state = FleetState.start(cap * 0.5, cap * 0.25)
    pv, load = inputs(n)
    valid = np.ones(n, dtype=bool)
    keeper = EngineKeeper(params, "prorata")
    limits = CoopLimits()
    repeats = max(5, min(100, int(1e7 / n)))

    def fresh() -> None:
        dispatch_tick(params.fleet(image, False), state, pv, load, valid, DT_S, "prorata",
                      limits)

    def kept() -> None:
        keeper.tick(keeper.fleet(image, False), state, pv, load, valid, DT_S, limits)

    t_fresh = median_s(fresh, repeats)
    t_kept = median_s(kept, repeats)
    engine = keeper.engine(keeper.fleet(image, False), limits)
    t_warm = median_s(partial(engine.tick, state, pv, load, valid, DT_S), repeats)
    t_check = median_s(partial(keeper.fleet, image, False), repeats)
    return {"households": n, "fresh_ms": round(t_fresh * 1e3, 3),
            "kept_ms": round(t_kept * 1e3, 3),
            "warm_engine_ms": round(t_warm * 1e3, 3),
            "ratings_check_ms": round(t_check * 1e3, 3),
            "fresh_over_kept": round(t_fresh / t_kept, 2),
            "kept_over_warm_engine": round(t_kept / t_warm, 2),
            "engines_built": keeper.engines_built}


def _yardsticks(n: int, repeats: int, t_numpy: float, fused_ms: float | None) -> dict:
    """The machine's floors for this size (see :mod:`bench.yardsticks`)."""
    t_floor = numpy_floor_s(n, BLOCK, repeats)
    out = {"numpy_floor_ms": round(t_floor * 1e3, 4),
           "numpy_over_floor": round(t_numpy / t_floor, 2)}
    t_stream = stream_floor_s(n, repeats)
    if t_stream is not None and fused_ms is not None:
        out |= {"stream_floor_ms": round(t_stream * 1e3, 4),
                "fused_over_stream_floor": round(fused_ms / 1e3 / t_stream, 2)}
    return out


def _references(fleet, state, pv, load, n, t_numpy, budget_s) -> dict:  # noqa: ANN001
    out: dict = {}
    if n <= 100_000:
        pv_l, load_l, valid = pv.tolist(), load.tolist(), [True] * n
        start = time.perf_counter()
        reference_tick(fleet, state, pv_l, load_l, valid, DT_S)
        once = time.perf_counter() - start
        if once * 3 < budget_s:
            t_py = median_s(partial(reference_tick, fleet, state, pv_l, load_l, valid, DT_S), 3, 0)
            out |= {"python_ms": round(t_py * 1e3, 3),
                    "python_over_numpy": round(t_py / t_numpy, 1)}
    if n <= 10_000:
        start = time.perf_counter()
        lp_tick_import(fleet, state, pv, load, DT_S)
        once = time.perf_counter() - start
        if once < budget_s:
            out |= {"lp_ms": round(once * 1e3, 1), "lp_over_numpy": round(once / t_numpy, 1)}
    return out


def bench_day(n: int, steps: int, repeats: int) -> dict:
    fleet, state = fleet_of(n)
    rng = np.random.default_rng(2)
    sun = np.clip(np.sin((np.arange(steps) / steps * 24 - 6) / 12 * np.pi), 0, None)
    pv = sun[:, None] * rng.choice([0.0, 3000.0, 6000.0], n)[None, :]
    load = rng.uniform(100, 1500, (steps, n))
    seconds = median_s(partial(run_series, fleet, state, pv, load, DT_S, fused=False), repeats)
    out = {"households": n, "steps": steps, "median_s": round(seconds, 4),
           "per_tick_ms": round(seconds / steps * 1e3, 4)}
    if kernel.AVAILABLE:
        fused = median_s(partial(run_series, fleet, state, pv, load, DT_S, fused=True), repeats)
        out |= {"fused_median_s": round(fused, 4)}
    return out


def bench_copper_plate(n: int = 20, step_min: int = 15, seeds: int = 6) -> dict:
    """Two days (sunny, then cloudy): greedy coop import / multi-period LP lower bound.

    Several random fleets and two PV mixes, so no single fleet decides the figure.
    """
    from simulators.profiles import cloudy_day, load_w_per_mwh_year, pv_w_per_kwp, sunny_day

    days = [sunny_day(), cloudy_day()]
    pv_day = np.concatenate([pv_w_per_kwp(d) for d in days])[::step_min]
    load_day = np.concatenate([load_w_per_mwh_year(d) for d in days])[::step_min]
    fleets = []
    for mix, kwp_choices in (("pv_rich", [0.0, 3.0, 5.0, 8.0]), ("pv_mixed", [0.0, 0.0, 3.0, 5.0])):
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            pv = pv_day[:, None] * rng.choice(kwp_choices, n)[None, :]
            load = load_day[:, None] * rng.uniform(3.0, 6.0, n)[None, :]
            cap = np.where(rng.random(n) < 0.6, rng.choice([5000.0, 10000.0, 13500.0], n), 0.0)
            row = {"mix": mix, "seed": seed}
            start = time.perf_counter()
            bound = lp_copper_plate_import(
                Fleet(cap, cap * 0.05, np.full(n, 3300.0), np.full(n, 3300.0), np.full(n, 0.9)),
                cap * 0.3, pv, load, step_min * 60.0)
            row["lp_s"] = round(time.perf_counter() - start, 3)
            row["bound_kwh"] = round(bound / 1000, 3)
            for offered in (True, False):
                fleet = Fleet(cap, cap * 0.05, np.full(n, 3300.0), np.full(n, 3300.0),
                              np.full(n, 0.9), offered=np.full(n, offered))
                greedy = run_series(fleet, FleetState.start(cap * 0.3), pv, load,
                                    step_min * 60.0).coop["from_grid"]
                key = "offered" if offered else "not_offered"
                row[f"greedy_kwh_{key}"] = round(greedy / 1000, 3)
                row[f"ratio_{key}"] = round(greedy / bound, 4) if bound > 1.0 else None
            fleets.append(row)
    by_mix = {}
    for mix in ("pv_rich", "pv_mixed"):
        rows = [f for f in fleets if f["mix"] == mix and f["ratio_offered"] is not None]
        ratios = [f["ratio_offered"] for f in rows]
        by_mix[mix] = {
            "median_ratio_offered": round(float(np.median(ratios)), 4),
            "max_ratio_offered": round(max(ratios), 4),
            "median_bound_kwh": round(float(np.median([f["bound_kwh"] for f in rows])), 3),
            "max_gap_kwh_offered": round(max(f["greedy_kwh_offered"] - f["bound_kwh"]
                                              for f in rows), 3),
        }
    ratios = [f["ratio_offered"] for f in fleets if f["ratio_offered"] is not None]
    return {
        "households": n, "steps": len(pv_day), "step_min": step_min, "fleets": fleets,
        "by_mix": by_mix, "median_ratio_offered": round(float(np.median(ratios)), 4),
    }


def _verdicts(report: dict) -> dict:
    """Each target beside what was measured, so a run says itself what it met."""
    ticks = {row["households"]: row for row in report["tick"]}
    out: dict = {}

    def verdict(name: str, target: float, measured: float | None, at_most: bool = True) -> None:
        if measured is not None:
            met = measured <= target if at_most else measured >= target
            out[name] = {"target": target, "measured": measured, "met": met}

    big, mid, day = ticks.get(1_000_000, {}), ticks.get(10_000, {}), report["day"]
    verdict("tick_1e6_numpy_ms", 15, big.get("numpy_ms"))
    path = {row["households"]: row for row in report.get("controller_path", [])}.get(1_000_000, {})
    # What the controller runs each cycle: the same 15 ms as a tick, and within 25 % of
    # the warm engine (the ratings check and the kept fleet cost next to nothing).
    verdict("controller_path_1e6_ms", 15, path.get("kept_ms"))
    verdict("controller_path_over_warm_engine_1e6", 1.25, path.get("kept_over_warm_engine"))
    if day["households"] == 10_000:  # a quick run's smaller day says nothing of these
        verdict("day_1440x1e4_s", 0.15, day.get("fused_median_s", day["median_s"]))
        verdict("day_1440x1e4_numpy_s", 0.15, day["median_s"])
    verdict("python_over_numpy_1e4", 150, mid.get("python_over_numpy"), at_most=False)
    fraction = big.get("fused_fraction_of_limit")
    verdict("fused_1e6_times_memory_limit", 2.0, fraction and round(1 / fraction, 2))
    verdict("copper_plate_ratio_offered_median", 1.05,
            report["copper_plate"]["median_ratio_offered"])
    return out


def run(quick: bool = False) -> dict:
    """Every dispatch benchmark, as one JSON-ready dict."""
    bandwidth = memory_bandwidth_gbs()
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    loop_copy = loop_copy_gbs()
    report = {
        "memory_bandwidth_gbs": round(bandwidth, 2),
        "loop_copy_bandwidth_gbs": loop_copy and round(loop_copy, 2),
        "tick": bench_tick(sizes, bandwidth, budget_s=10.0 if quick else 60.0),
        "controller_path": bench_controller_path(sizes),
        "day": bench_day(1_000 if quick else 10_000, 1440, 3),
        "copper_plate": bench_copper_plate(),
    }
    report["targets"] = _verdicts(report)
    return report
