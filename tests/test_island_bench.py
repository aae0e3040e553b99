"""The island benchmark runs end to end at a tiny size and says what it met."""

from __future__ import annotations

import json

import pytest

from bench import island_bench


def test_plan_benchmark_reports_each_size_beside_its_target(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(island_bench, "TARGETS_S", {6: 60.0})
    report = island_bench.run(sizes=(6, 9))
    small, small_reserve, other, _ = report["plan"]
    assert small["members"] == 6 and small["median_s"] > 0 and small["runs"] == 3
    assert not small["reserve"] and small["capacity_shortage_kwh"] is None
    assert small_reserve["reserve"] and small_reserve["capacity_shortage_kwh"] >= 0
    assert small["target_s"] == 60.0 and small["met"] is True
    assert "met" not in other and other["batteries"] <= 9
    assert set(small["feasible"]) == {"critical", "essential", "flexible"}
    json.dumps(report)


def test_python_m_bench_island_quick_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    assert main(["island", "--quick"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["members"] for row in report["island"]["plan"]] == [10, 10, 30, 30]
