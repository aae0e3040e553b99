"""The live stream's event ids survive a controller restart, and ``Last-Event-ID`` resumes:
a reconnecting EventSource is never sent a cycle it has had, before or after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from controller.config import parse_config
from controller.runtime import Runtime
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households
from tests.conftest import free_port
from tests.coop_harness import DAY0

CYCLE_S, SPEED = 0.25, 120.0


async def events(base: str, count: int, last: str | None = None) -> list[dict[str, str]]:
    """``count`` events of the stream, sending ``Last-Event-ID: last`` as a browser does."""
    headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": last} if last else {})
    got: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=20) as client, client.stream(
            "GET", "/api/v1/live/stream", headers=headers) as answer:
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if not line:
                if current:
                    got.append(current)
                    current = {}
                if len(got) == count:
                    return got
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                current[key] = value.removeprefix(" ")
    return got


async def run_once(coop: SimulatedCoop, clock: SimClock, ledger: Path,
                   last: str | None) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A controller on ``ledger``: two events from a fresh stream, then one after a
    reconnect with ``Last-Event-ID`` = the second; stopped after."""
    port = free_port()
    config = parse_config(coop_toml(coop, ledger, port, cycle_s=CYCLE_S, settlement_s=60),
                          "resume.toml")
    runtime = Runtime(config, clock.now, nominal_dt_s=CYCLE_S * SPEED)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    base = f"http://127.0.0.1:{port}"
    try:
        await runtime.wait_until_serving()
        fresh = await asyncio.wait_for(events(base, 2, last), 30)
        resumed = await asyncio.wait_for(events(base, 1, fresh[-1]["id"]), 30)
        return fresh, resumed
    finally:
        stop.set()
        await task


def test_event_ids_grow_across_a_restart_and_last_event_id_resumes(tmp_path: Path) -> None:
    async def main() -> tuple[list, list, list, list]:
        clock = SimClock(start_s=DAY0 + 12 * 3600, speed=SPEED)
        coop = SimulatedCoop(demo_households(2), clock)
        await coop.start()
        coop.run_in_background()
        try:
            a, a_resumed = await run_once(coop, clock, tmp_path / "ledger.sqlite", None)
            # restarted on the same ledger; the browser reconnects with the last id it had
            b, b_resumed = await run_once(coop, clock, tmp_path / "ledger.sqlite",
                                          a_resumed[-1]["id"])
        finally:
            await coop.stop()
        return a, a_resumed, b, b_resumed

    a, a_resumed, b, b_resumed = asyncio.run(main())
    ids = [int(e["id"]) for e in (*a, *a_resumed, *b, *b_resumed)]
    # every id larger than the one before: nothing seen twice, across the restart too
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
