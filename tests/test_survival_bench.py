"""The survival-odds benchmark runs at a tiny size and reports each size beside its target
and beside the plain loop of LP solves."""

from __future__ import annotations

import json

import pytest

from bench import survival_bench


def test_odds_benchmark_reports_target_and_lp_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(survival_bench, "TARGETS_S", {6: 60.0})
    monkeypatch.setattr(survival_bench, "LP_SAMPLE", 2)
    (row,) = survival_bench.run(sizes=(6,))
    assert row["members"] == 6 and row["weather_days"] == 30 and row["median_s"] > 0
    assert row["target_s"] == 60.0 and row["met"] is True
    loop = row["lp_loop"]
    assert loop["sampled"] == 2 and loop["solves"] == 30 * (row["batteries"] + 1)
    assert loop["estimated_s"] > 0 and row["speedup"] > 0
    assert set(row["p_held"]) == {"critical", "essential", "flexible"}
    json.dumps(row)
