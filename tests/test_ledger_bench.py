"""The ledger benchmark: its bulk path writes what the commit path writes, and it runs small."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

from bench.ledger_bench import TARGETS, run
from bench.ledger_data import CoopGenerator, bulk_write, commit_each, table_rows
from controller.ledger import store


def _ledger(path: Path, members: int, days: int, batch: int, bulk: bool) -> dict[str, list[str]]:
    # An outage over intervals 49 and 50: the cycle after it closes intervals 48-50, and a
    # batch of 50 ends between them.
    gen = CoopGenerator(members, outage_at_s=49 * 900)
    conn, lock = store.open_writer(path, gen.step)
    try:
        numbers = store.register_members(conn, gen.members())
        stream = gen.intervals(days * 86_400 // gen.step)
        while chunk := [b for _, b in zip(range(batch), stream, strict=False)]:
            (bulk_write if bulk else commit_each)(conn, chunk, numbers)
        return table_rows(conn)
    finally:
        conn.close()
        lock.release()


def test_bulk_path_writes_the_same_rows_as_committing_each_interval(tmp_path: Path) -> None:
    committed = _ledger(tmp_path / "commit.sqlite", 20, 3, 1, bulk=False)
    # Batches of 50 intervals end mid-hour and mid-day: rollups must merge across batches.
    bulk = _ledger(tmp_path / "bulk.sqlite", 20, 3, 50, bulk=True)
    assert set(bulk) == set(committed)
    for table, rows in committed.items():
        assert bulk[table] == rows, table
    assert len(committed["intervals"]) == 3 * 96
    assert len(committed["member_wh"]) == 20 * 3 * 96
    assert len(committed["open_interval"]) == 2
    # The data exercise what matters: gaps, members without meters, every rollup level.
    assert any("None" in r for r in committed["member_wh"])
    counts = [ast.literal_eval(r)[3:7] for r in committed["intervals"]]
    assert counts.count((0, 0, 900, 0)) == 2  # no cycle, nothing covered, a 900 s gap
    levels = {r.split(",")[0] for r in committed["rollup_member"]}
    assert levels == {"(1", "(2", "(3", "(4"}


def test_ledger_bench_runs_small_and_reports_each_target(tmp_path: Path) -> None:
    start = time.perf_counter()
    report = run(members=5, days=2, repeats=3, naive_budget_s=1.0, tmp_root=str(tmp_path))
    assert time.perf_counter() - start < 10
    assert list(tmp_path.iterdir()) == []  # the ledger is deleted
    json.dumps(report)
    assert report["rollup_equals_raw"] is True
    assert report["build"]["member_rows"] == 5 * 2 * 96
    for name in ("member_month_statement", "coop_summary", "coop_month_report",
                 "member_hour_series_month"):
        query = report["reads"][name]
        assert query["equal"] and query["fast_ms"] > 0 and query["naive_ms"] > 0
        assert query["naive_over_fast"] > 0
    assert report["writes"]["commits_timed"] == 3 and report["writes"]["save_open_ms"] > 0
    assert report["disk"]["tables"]["member_wh"]["cells"] >= 5 * 2 * 96
    assert report["disk"]["member_wh_row"]["on_disk_per_row"] > 0
    assert [t["name"] for t in report["targets"]] == [t[0] for t in TARGETS]
    for target in report["targets"]:
        assert set(target) == {"name", "target", "measured", "unit", "met"}
        assert target["met"] == (target["measured"] < target["target"])
