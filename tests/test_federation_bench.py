"""The federation benchmark runs at a small size and reports time and bytes."""

from __future__ import annotations

import json

from bench.federation_bench import run


def test_federation_benchmark_reports_time_and_bytes() -> None:
    report = run(quick=True)
    assert report["coops"] == 10 and report["members"] == 1000
    assert report["interval_ms"] > 0 and report["verify_ms"] > 0
    sizes = report["bytes"]
    assert sizes["received_per_coop"] > sizes["published_per_coop"] > 0
    assert sizes["bridge_out_per_coop"] == sizes["published_per_coop"] * 9
    json.dumps(report)
