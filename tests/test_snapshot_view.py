"""One consistent view for the API (issue 17, point 11): while a real Runtime cycles over a
simulated coop, threads hammer the API; no route touches the open book or the grid state
machine from its own thread, and no answer shows a torn view (Wh counted twice, then not).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from controller.config import parse_config
from controller.runtime import Runtime
from controller.snapshot import Snapshot
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households
from tests.auth_helpers import bearer
from tests.conftest import free_port
from tests.coop_harness import DAY0

CYCLE_S = 0.05
SPEED = 600.0  # 30 simulated s a cycle: a 60-s interval commits every other cycle
HAMMER_S = 4.0
PATHS = ("/api/v1/coop/summary", "/api/v1/members/h01/energy", "/api/v1/members/h02/energy",
         "/api/v1/island", "/api/v1/devices", "/healthz")


class _Watched:
    """``target`` seen through a proxy that notes the thread of every attribute read."""

    def __init__(self, target: object, threads: set[int]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_threads", threads)

    def __getattr__(self, name: str) -> Any:
        self._threads.add(threading.get_ident())
        return getattr(self._target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._threads.add(threading.get_ident())
        setattr(self._target, name, value)


def _hammer(base: str, headers: dict[str, dict[str, str]], until: float,
            answers: list[tuple[float, str, int, Any]]) -> None:
    with httpx.Client(base_url=base, timeout=20) as client:
        k = 0
        while time.monotonic() < until:
            path = PATHS[k % len(PATHS)]
            k += 1
            r = client.get(path, headers=headers[path])
            answers.append((threading.get_ident(), path, r.status_code,
                            r.json() if r.headers.get("content-type", "").startswith(
                                "application/json") else None))


async def _run(tmp: Path) -> tuple[list, set[int], int, Runtime]:
    clock = SimClock(start_s=DAY0 + 11 * 3600, speed=SPEED)
    coop = SimulatedCoop(demo_households(4), clock)
    await coop.start()
    coop.run_in_background()
    port = free_port()
    config = parse_config(coop_toml(coop, tmp / "ledger.sqlite", port, cycle_s=CYCLE_S,
                                    settlement_s=60), "view.toml")
    runtime = Runtime(config, clock.now, nominal_dt_s=CYCLE_S * SPEED)
    # A member reads its own figures; a coordinator the devices.
    coordinator = bearer(runtime.reader, "coordinator")
    headers = {p: coordinator for p in PATHS} | {
        f"/api/v1/members/{m}/energy": bearer(runtime.reader, "member", m) for m in ("h01", "h02")}
    threads: set[int] = set()
    controller = runtime.controller
    controller.book = _Watched(controller.book, threads)  # type: ignore[assignment]
    controller.grid = _Watched(controller.grid, threads)  # type: ignore[assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    answers: list = []
    try:
        await runtime.wait_until_serving()
        while runtime.snapshot is None:
            await asyncio.sleep(CYCLE_S)
        until = time.monotonic() + HAMMER_S
        workers = [asyncio.to_thread(_hammer, f"http://127.0.0.1:{port}", headers, until, answers)
                   for _ in range(4)]
        await asyncio.gather(*workers)
        seq = runtime.snapshot.seq
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await coop.stop()
    return answers, threads, seq, runtime


def test_api_reads_only_the_snapshot_and_never_a_torn_view(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    answers, threads, seq, runtime = asyncio.run(_run(tmp_path))
    assert seq > 20, f"only {seq} cycles ran while the API was hammered"
    assert len(answers) > 100
    bad = [(p, s, b) for _, p, s, b in answers if s != 200]
    assert not bad, bad[:5]
    # The open book and the grid state machine were read by the cycle's thread only.
    assert threads == {loop_thread}, f"read from {len(threads - {loop_thread})} other threads"
    # Booked energy only grows: Wh counted twice (open interval and its commit at once)
    # and then once would show as a drop. One thread's requests follow each other, so
    # each reads a snapshot and a ledger no older than its previous request's.
    for path in ("/api/v1/members/h01/energy", "/api/v1/members/h02/energy",
                 "/api/v1/coop/summary"):
        for thread in {t for t, *_ in answers}:
            seen = [body for t, p, _, body in answers if p == path and t == thread]
            for key in ("load_kwh", "pv_kwh", "served_kwh"):
                values = np.array([body[key] for body in seen])
                assert len(values) > 5
                drops = np.diff(values)
                assert drops.min() >= -0.001, f"{path} {key} fell by {-drops.min():.3f} kWh"
    summaries = [body for _, p, _, body in answers if p == "/api/v1/coop/summary"]
    for body in summaries:  # the coop's figures and its members' come from one snapshot
        total = sum(m["load_kwh"] for m in body["by_member"].values())
        assert abs(total - body["load_kwh"]) <= 0.001 * len(body["by_member"])
    assert isinstance(runtime.snapshot, Snapshot)
    with pytest.raises(ValueError):
        runtime.snapshot.open_wh[0, 0] = 1  # read-only: nothing changes a published view


def test_unwritten_wh_counts_each_interval_once_whatever_the_ledger_has() -> None:
    """Pending intervals count when the ledger ends at or before their start; the open
    interval only when the ledger has not got past its start (the writer may have put
    it on disk after the snapshot): never twice, whichever the reader saw."""
    from controller.ledger.schema import MEMBER_AMOUNTS

    k = len(MEMBER_AMOUNTS)
    pending = np.full((k, 2), 5, dtype=np.int64)
    open_wh = np.full((k, 2), 7, dtype=np.int64)
    snap = Snapshot(seq=1, ts=0.0, wall=0.0, report=None, member_ids=("a", "b"),  # type: ignore[arg-type]
                    grid={}, islanded=False, floor_wh=np.zeros(2), plan_followed=None,
                    devices=(), open_start=1800, open_wh=open_wh, pending=((900, pending),),
                    index={"a": 0, "b": 1})
    first = MEMBER_AMOUNTS[0]
    # The ledger ends where the pending interval starts: pending and open are not on disk.
    assert snap.unwritten_member_wh("a", 900)[first] == 12
    # The writer wrote the pending interval: only the open one is added.
    assert snap.unwritten_wh(1800)["b"][first] == 7
    # ... and, after the snapshot, the open one too (the book closed it): nothing added.
    assert snap.unwritten_member_wh("b", 2700)[first] == 0
    assert snap.unwritten_member_wh("nobody", 900) == {}
