"""The live stream and ``/metrics`` from a real running controller: a ``Runtime`` over a
simulated coop serves uvicorn on 127.0.0.1; an HTTP client reads two Server-Sent Events
and scrapes the metrics. Also what each viewer of the stream may see."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.live_stream import live_view
from controller.config import parse_config
from controller.runtime import Runtime
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households
from tests.conftest import free_port
from tests.coop_harness import DAY0

CYCLE_S = 0.25
SPEED = 120.0


async def read_events(client: httpx.AsyncClient, url: str, count: int) -> list[dict[str, str]]:
    """The first ``count`` events of the stream at ``url``, parsed field by field."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with client.stream("GET", url, headers={"Accept": "text/event-stream"}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        async for line in answer.aiter_lines():
            if not line:
                if current:
                    events.append(current)
                    current = {}
                if len(events) == count:
                    return events
                continue
            if line.startswith(":"):
                continue  # a keep-alive comment
            key, _, value = line.partition(":")
            current[key] = value.removeprefix(" ")
    return events


def samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text page, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def _run_controller(tmp: Path) -> tuple[list[dict[str, str]], str, float, list[Any]]:
    clock = SimClock(start_s=DAY0 + 12 * 3600, speed=SPEED)
    coop = SimulatedCoop(demo_households(3), clock)
    await coop.start()
    coop.run_in_background()
    port = free_port()
    config = parse_config(coop_toml(coop, tmp / "ledger.sqlite", port, cycle_s=CYCLE_S,
                                    settlement_s=60), "live.toml")
    assert config.api.host == "127.0.0.1"
    runtime = Runtime(config, clock.now, nominal_dt_s=CYCLE_S * SPEED)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    base = f"http://127.0.0.1:{port}"
    try:
        await runtime.wait_until_serving()
        async with httpx.AsyncClient(base_url=base, timeout=20) as client:
            events = await asyncio.wait_for(read_events(client, "/api/v1/live/stream", 2), 30)
            polled = (await client.get("/api/v1/live")).json()
            # let a settlement interval (60 simulated s = 2 cycles) commit and be written
            await asyncio.sleep(6 * CYCLE_S)
            metrics = (await client.get("/metrics")).text
            # a stream still open when the controller stops must not hold the stop up
            stream = client.stream("GET", "/api/v1/live/stream")
            answer = await stream.__aenter__()
            assert answer.status_code == 200
            started = time.monotonic()
            stop.set()
            await asyncio.wait_for(asyncio.shield(task), 15)
            stop_s = time.monotonic() - started
            await stream.__aexit__(None, None, None)
        return events, metrics, stop_s, [polled]
    finally:
        stop.set()
        if not task.done():
            await task
        await coop.stop()


def test_stream_and_metrics_of_a_running_controller(tmp_path: Path) -> None:
    events, metrics, stop_s, (polled,) = asyncio.run(_run_controller(tmp_path))
    assert [e["event"] for e in events] == ["cycle", "cycle"]
    first, second = (json.loads(e["data"]) for e in events)
    assert int(events[1]["id"]) > int(events[0]["id"]) == first["event_id"]
    assert first["event_id"] == int(first["ts"] * 1000)  # the cycle's end, in ms
    assert second["ts"] > first["ts"]
    for view in (first, second):
        assert view["grid_state"] in {"UNDEFINED", "ON_GRID"}
        coop = view["coop"]
        assert coop["members"] == 3 and coop["members_read"] == 3
        assert coop["load_w"] > 0 and 0 <= coop["soc_pct"] <= 100
        assert set(view["flows_w"]) >= {"to_peers", "from_grid", "own_pv_used"}
        # the public stream carries the coop, never a member's own figures
        assert "members" not in view and "member" not in view
    assert polled is not None and "members" not in polled and polled["seq"] >= second["seq"]
    assert stop_s < 10, f"an open stream held the stop up for {stop_s:.1f} s"

    got = samples(metrics)
    assert got["commonwatt_cycle_seconds_count"] >= 2
    assert got["commonwatt_cycle_seconds_sum"] > 0
    assert got["commonwatt_cycle_failures_total"] == 0
    devices = {k: v for k, v in got.items() if k.startswith("commonwatt_devices{")}
    assert set(devices) >= {"commonwatt_devices{state=ok}", "commonwatt_devices{state=unknown}",
                            "commonwatt_devices{state=backoff}"}
    assert devices["commonwatt_devices{state=ok}"] > 0
    assert got["commonwatt_intervals_committed_total"] >= 1
    assert got["commonwatt_ledger_intervals"] >= 1
    assert got["commonwatt_ledger_writer_state{state=ok}"] == 1
    assert got["commonwatt_ledger_writer_state{state=failing}"] == 0
    assert got["commonwatt_last_cycle_age_seconds"] >= 0


def test_each_viewer_sees_the_coop_and_only_its_own_member() -> None:
    snapshot = {"seq": 3, "ts": 1.0, "grid_state": "ON_GRID", "islanded": False,
                "coop": {"load_w": 900.0}, "flows_w": {"to_peers": 50.0},
                "members": {"h01": {"load_w": 400.0}, "h02": {"load_w": 500.0}}}
    public = live_view(snapshot, None)
    assert public == {k: v for k, v in snapshot.items() if k != "members"}
    own = live_view(snapshot, "h02")
    assert own["member"] == {"id": "h02", "load_w": 500.0}
    assert "h01" not in json.dumps(own)
