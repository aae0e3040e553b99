"""The dispatch benchmark runs end to end at a small size and says what it met."""

from __future__ import annotations

import json

from bench.dispatch_bench import _verdicts, bench_tick
from dispatch import kernel


def test_tick_benchmark_reports_yardsticks_and_references() -> None:
    (row,) = bench_tick([1_000], bandwidth_gbs=20.0, budget_s=5.0)
    assert row["numpy_ms"] > 0 and row["numpy_floor_ms"] > 0
    assert row["python_over_numpy"] > 1 and row["lp_over_numpy"] > 1
    if kernel.AVAILABLE:
        assert row["fused_ms"] > 0 and row["stream_floor_ms"] > 0
    json.dumps(row)


def test_verdicts_compare_each_target_with_its_measurement() -> None:
    report = {
        "tick": [{"households": 10_000, "python_over_numpy": 200.0},
                 {"households": 1_000_000, "numpy_ms": 30.0, "fused_fraction_of_limit": 0.5}],
        "day": {"households": 10_000, "median_s": 0.3, "fused_median_s": 0.1},
        "copper_plate": {"median_ratio_offered": 1.04},
    }
    verdicts = _verdicts(report)
    assert verdicts["tick_1e6_numpy_ms"] == {"target": 15, "measured": 30.0, "met": False}
    assert verdicts["day_1440x1e4_s"]["met"] and not verdicts["day_1440x1e4_numpy_s"]["met"]
    assert verdicts["python_over_numpy_1e4"]["met"]
    assert verdicts["fused_1e6_times_memory_limit"]["measured"] == 2.0
    assert verdicts["copper_plate_ratio_offered_median"]["met"]
    report["day"]["households"] = 1_000  # a quick run: no verdict on the 10^4 day
    assert "day_1440x1e4_s" not in _verdicts(report)


def test_the_controller_path_keeps_one_engine_and_says_what_it_met() -> None:
    from bench.dispatch_bench import bench_controller_path

    (row,) = bench_controller_path([2_000])
    assert row["engines_built"] == 1  # every timed cycle reused the kept engine
    assert row["kept_ms"] > 0 and row["fresh_ms"] > 0 and row["warm_engine_ms"] > 0
    verdicts = _verdicts({"tick": [], "day": {"households": 1_000, "median_s": 1.0},
                          "copper_plate": {"median_ratio_offered": 1.0},
                          "controller_path": [{"households": 1_000_000, "kept_ms": 12.0,
                                               "kept_over_warm_engine": 1.3}]})
    assert verdicts["controller_path_1e6_ms"] == {"target": 15, "measured": 12.0, "met": True}
    assert not verdicts["controller_path_over_warm_engine_1e6"]["met"]
