"""bench/plan_bench.py: its verdicts say what was met, its parts run at small sizes."""

from __future__ import annotations

from bench.plan_bench import bench_cycle, bench_replan, verdicts


def test_verdicts_put_each_target_beside_its_measurement() -> None:
    report = {"ratios": {"summary": {"plan_perfect_ratio_offered": {"max": 1.01},
                                     "plan_history_ratio_offered": {"max": 1.2}}},
              "replan": {"replan_36h_s": 1.5}, "cycle": {"planned_over_greedy_p99": 1.02}}
    out = verdicts(report)
    assert out["cycle_1000_planned_over_greedy_p99"]["met"]
    assert out["plan_perfect_ratio_offered_max"] == {"target": 1.05, "measured": 1.01,
                                                     "met": True}
    assert not out["plan_history_ratio_offered_max"]["met"]
    assert out["replan_1000_members_36h_s"]["met"]


def test_small_runs() -> None:
    replan = bench_replan(n=30, repeats=1)
    assert replan["replan_24h_s"] > 0 and replan["replan_36h_s"] > 0
    cycle = bench_cycle(n=30, repeats=5)
    assert cycle["planned_p99_ms"] > 0 and cycle["greedy_p99_ms"] > 0


def test_sky_skill_on_a_short_simulated_stretch() -> None:
    from bench.forecast_bench import bench_sky_skill

    out = bench_sky_skill(n=3, days=10)
    assert out["pv_clear_sky_cloudiness"]["forecast"] == "clear sky × cloudiness"
    for key in ("pv_history", "pv_clear_sky_cloudiness", "load_history"):
        assert out[key]["slots"] == 3 * 96 and out[key]["persistence_mae_w"] > 0
