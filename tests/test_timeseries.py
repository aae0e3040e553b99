"""Per-cycle time series written to a real VictoriaMetrics through influxdb-client."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from pathlib import Path

from controller.config import TimeSeriesConfig
from controller.runtime import Runtime
from tests.conftest import free_port
from tests.coop_harness import start_harness


def export(port: int, metric: str) -> list[dict]:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/force_flush", timeout=10).read()
    query = urllib.parse.quote(f"{metric}{{member=\"h01\"}}")
    url = f"http://127.0.0.1:{port}/api/v1/export?match[]={query}&start=0"
    with urllib.request.urlopen(url, timeout=10) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def run_cycles(tmp_path: Path, url: str, cycles: int) -> Runtime:
    async def run() -> Runtime:
        h = await start_harness(tmp_path)
        h.controller.close()
        config = h.config.model_copy(update={"timeseries": TimeSeriesConfig(url=url)})
        runtime = Runtime(config, h.clock.now, nominal_dt_s=h.dt_s)
        try:
            for _ in range(cycles):
                h.clock.advance(h.dt_s)
                h.coop.step()
                await runtime.cycle_once()
        finally:
            runtime.timeseries.close()
            runtime.controller.close()
            await h.coop.stop()
        return runtime

    return asyncio.run(run())


def test_each_interval_lands_in_victoria_metrics(tmp_path: Path, victoria_metrics: int) -> None:
    runtime = run_cycles(tmp_path, f"http://127.0.0.1:{victoria_metrics}", 12)
    assert runtime.timeseries.failures == 0
    series = export(victoria_metrics, "commonwatt_member_liberated_wh")
    assert len(series) == 1
    values = series[0]["values"]
    assert len(values) == 12
    totals = runtime.reader.totals("h01")
    liberated = (totals["own_pv_used"] + totals["from_battery_coop"] + totals["from_peers"]
                 + totals["from_coop_battery_coop"])
    assert sum(values) == liberated  # the same Wh as the ledger, interval by interval
    soc = export(victoria_metrics, "commonwatt_member_soc_pct")
    assert soc and all(0 <= v <= 100 for v in soc[0]["values"])


def test_a_dead_time_series_server_never_stops_the_cycle(tmp_path: Path) -> None:
    runtime = run_cycles(tmp_path, f"http://127.0.0.1:{free_port()}", 3)
    assert runtime.timeseries.failures == 3
    assert runtime.reader.span()[2] == 3  # every interval still committed to the ledger
