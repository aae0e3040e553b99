"""The edge agent itself goes down (its computer loses power) across an interval boundary:
when it comes back, the meter's own counters close the gap, every Wh booked once.

The coop's real Controller and the agent run on one fast clock (10 s per wall second,
60 s settlement intervals) against a real mosquitto, with the household's meter on Modbus;
the reference is what the simulated meter counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from controller.agent.config import parse_agent_config
from controller.agent.runner import EdgeAgent
from controller.config import parse_config
from controller.cycle import Controller
from simulators.coop import meter_image
from simulators.household import HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer
from tests.conftest import free_port
from tests.federation_brokers import CoopBroker
from tests.test_agent_late_booking import LOAD_W, STEP, FastClock, _agent_toml, _coop_toml


def test_agent_down_across_a_boundary_meter_closes_the_gap(tmp_path: Path) -> None:
    broker = CoopBroker("coop-a", free_port(), tmp_path / "broker")
    broker.configure([])
    broker.start()
    t0 = (time.time() // STEP + 1) * STEP + 2
    clock = FastClock(t0)
    image = meter_image(HouseholdSpec("m1", "Ada", pv_kwp=0.0, annual_kwh=3000))
    image.set(203, "W", LOAD_W)

    def meter_wh() -> float:
        return 1000 + LOAD_W * (clock() - t0) / 3600

    committed = []

    async def go() -> None:
        server = SimulatedModbusServer(free_port(), {1: image})
        await server.start()
        config = parse_agent_config(_agent_toml(broker.port, server.port, tmp_path / "spool.db"))
        controller = Controller(parse_config(_coop_toml(broker.port, tmp_path / "l.sqlite"),
                                             "coop.toml"), clock, nominal_dt_s=1.0)

        def start_agent() -> tuple[asyncio.Event, asyncio.Task]:
            stop = asyncio.Event()
            return stop, asyncio.create_task(EdgeAgent(config, clock).run(stop))

        async def run_until(ts: float) -> None:
            while clock() < ts:
                image.set(203, "TotWhImp", int(meter_wh()))
                report = await controller.cycle()
                committed.extend(report.committed)
                await asyncio.sleep(0.1)

        stop, task = start_agent()
        try:
            await run_until(t0 + 140)
            stop.set()  # the agent's computer loses power for a simulated minute
            await task
            await run_until(t0 + 200)
            stop, task = start_agent()  # back, with its spool: readings go on from there
            await run_until(t0 + 4 * STEP + 5)
        finally:
            stop.set()
            await task
            controller.close()
            await server.stop()

    try:
        asyncio.run(go())
    finally:
        broker.stop()
    by_start = {int(iv.start_ts - (t0 - 2)): iv for iv in committed}
    col = lambda iv, name: int(iv.column(name)[0])  # noqa: E731
    cut, after = by_start[2 * STEP], by_start[3 * STEP]
    print("agent down:", {k: {n: col(iv, n) for n in (
        "from_grid", "unallocated_import", "gap_s", "meter_import")} for k, iv in by_start.items()})
    assert col(cut, "gap_s") >= 20  # the interval that closed while the agent was down
    # Every Wh the meter counted over the two intervals, once: booked by the dispatch or,
    # for the gap, from the counters when the agent came back. The tolerance is a reading's
    # age on this loaded machine (up to ~2 simulated s at 12 kW: 7 Wh), measured below.
    world = LOAD_W * 2 * STEP / 3600
    booked = sum(col(iv, "from_grid") + col(iv, "unallocated_import") for iv in (cut, after))
    assert booked == pytest.approx(world, abs=8), "every Wh, once"
    assert col(cut, "meter_import") + col(after, "meter_import") == pytest.approx(world, abs=8)
