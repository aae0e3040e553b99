"""Late readings from an edge agent's spool booked in the ledger: into the open interval
(no gap), or into the gap accounting of a committed one, once.

The end-to-end test runs the coop's real Controller and the agent on one fast clock
(10 s per wall second, 60 s settlement intervals) against a real mosquitto that is
killed and restarted, with the household's meter on Modbus.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import numpy as np
import pytest

from controller.agent.config import parse_agent_config
from controller.agent.runner import EdgeAgent
from controller.config import parse_config
from controller.cycle import Controller
from controller.ledger import CycleEnergy, IntervalBook
from controller.ledger.accumulator import CarryState
from controller.ledger.late import book_late_reading
from dispatch import LEDGER_FIELDS
from simulators.coop import meter_image
from simulators.household import HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer
from tests.conftest import free_port
from tests.federation_brokers import CoopBroker

SPEED = 10.0  # clock seconds per wall second
STEP = 60  # settlement interval, clock seconds
LOAD_W = 12_000.0


class FastClock:
    """Unix-like seconds running ``SPEED`` times faster than the wall, from ``start``."""

    def __init__(self, start: float) -> None:
        self.start, self.wall0 = start, time.monotonic()

    def __call__(self) -> float:
        return self.start + SPEED * (time.monotonic() - self.wall0)


def _cycle(book: IntervalBook, start: float, end: float, valid: bool, import_wh: float):
    flows = {f: np.zeros(1) for f in LEDGER_FIELDS}
    if valid:
        flows["from_grid"][:] = LOAD_W * (end - start) / 3600
    counters = np.array([[import_wh if valid else math.nan], [math.nan], [math.nan]])
    return book.add_cycle(CycleEnergy(start, end, flows, np.array([valid]), counters))


def test_book_late_reading_fills_the_open_gap_and_counts_a_committed_one_once() -> None:
    book = IntervalBook(("m1",), STEP, None, CarryState.fresh(1))
    wh = lambda t: 1000 + LOAD_W * t / 3600  # noqa: E731 - the meter's counter at t
    _cycle(book, 0, 10, True, wh(10))
    for t in range(10, 40, 10):  # the agent is cut off: three gap cycles
        _cycle(book, t, t + 10, False, math.nan)
    assert book.acc.row("gap_s")[0] == 30
    assert book_late_reading(book, 0, 25.0, np.array([wh(25), math.nan, math.nan])) == 15
    assert book_late_reading(book, 0, 20.0, np.array([wh(20), math.nan, math.nan])) == 0
    # Past the book's end (40): interpolated to 40, the gap closes where the next cycle begins.
    assert book_late_reading(book, 0, 45.0, np.array([wh(45), math.nan, math.nan])) == 15
    [(closed, _)] = _cycle(book, 40, 60, True, wh(60))
    assert closed.column("gap_s")[0] == 0 and closed.column("unallocated_import")[0] == 0
    assert closed.column("from_grid")[0] == pytest.approx(LOAD_W * 60 / 3600, abs=1)

    # A longer cut: [70, 130) unknown across the commit at 120.
    _cycle(book, 60, 70, True, wh(70))
    closed_now = []
    for t in range(70, 130, 10):
        closed_now += _cycle(book, t, t + 10, False, math.nan)
    [(cut, _)] = closed_now
    assert cut.column("gap_s")[0] == 50
    assert book_late_reading(book, 0, 135.0, np.array([wh(135), math.nan, math.nan])) == 10
    assert book_late_reading(book, 0, 135.0, np.array([wh(135), math.nan, math.nan])) == 0
    _cycle(book, 130, 140, True, wh(140))
    [(after, _)] = _cycle(book, 140, 180, True, wh(180))
    # The committed interval's 50 s of energy, once, in the gap accounting.
    assert after.column("unallocated_import")[0] == pytest.approx(LOAD_W * 50 / 3600, abs=1)
    total = sum(int(iv.column(f)[0]) for iv in (cut, after)
                for f in ("from_grid", "unallocated_import"))
    assert total == pytest.approx(LOAD_W * 120 / 3600, abs=2)
    assert after.column("gap_s")[0] == 0


def _coop_toml(port: int, ledger: Path) -> str:
    return f"""
[controller]
cycle_s = 1.0

[mqtt]
port = {port}

[ledger]
settlement_s = {STEP}

[storage]
ledger = "{ledger}"

[[members]]
id = "m1"
name = "Ada"
  [[members.devices]]
  kind = "meter"
  protocol = "mqtt"
  family = "commonwatt-agent"
  topic = "coop/coop-a/agents/m1/live/meter"
  fresh_s = 0.4
"""


def _agent_toml(port: int, modbus_port: int, spool: Path) -> str:
    return f"""
[agent]
member = "m1"
coop = "coop-a"
broker = "127.0.0.1:{port}"
spool = "{spool}"
period_s = 0.1  # the agent waits wall seconds between readings: 1 s of its clock
coop_silent_s = 600
resend_after_s = 30

[[devices]]
kind = "meter"
family = "sunspec"
host = "127.0.0.1"
port = {modbus_port}
unit = 1
"""


def test_agent_outages_book_late_readings_whole_or_as_gap_once(tmp_path: Path) -> None:
    broker = CoopBroker("coop-a", free_port(), tmp_path / "broker")
    broker.configure([])
    broker.start()
    now = time.time()
    t0 = (now // STEP + 1) * STEP + 2  # 2 s into a fresh interval
    clock = FastClock(t0)
    image = meter_image(HouseholdSpec("m1", "Ada", pv_kwp=0.0, annual_kwh=3000))
    image.set(203, "W", LOAD_W)

    def meter_wh() -> float:
        return 1000 + LOAD_W * (clock() - t0) / 3600

    image.set(203, "TotWhImp", int(meter_wh()))
    committed = []

    async def go() -> None:
        server = SimulatedModbusServer(free_port(), {1: image})
        await server.start()
        agent = EdgeAgent(parse_agent_config(_agent_toml(broker.port, server.port,
                                                         tmp_path / "spool.db")), clock)
        controller = Controller(parse_config(_coop_toml(broker.port, tmp_path / "l.sqlite"),
                                             "coop.toml"), clock, nominal_dt_s=1.0)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))

        async def run_until(ts: float) -> None:
            while clock() < ts:
                image.set(203, "TotWhImp", int(meter_wh()))
                report = await controller.cycle()
                committed.extend(report.committed)
                await asyncio.sleep(0.1)

        try:
            await run_until(t0 + STEP)  # the first interval has its own start-up gap
            # 1. A short outage inside the interval [t0 + 58, t0 + 118): from +62 s to +77 s
            #    (the clients' reconnect back-off brings them back some 15 s later).
            await run_until(t0 + 62)
            broker.stop()
            await run_until(t0 + 77)
            broker.start()
            # 2. A long outage across the boundary at +178 s: from +140 s to +200 s.
            await run_until(t0 + 140)
            broker.stop()
            await run_until(t0 + 200)
            broker.start()
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
    short = by_start[STEP]
    print("late booking:", {k: {n: col(iv, n) for n in (
        "from_grid", "unallocated_import", "gap_s", "meter_import")} for k, iv in by_start.items()})
    assert col(short, "meter_import") == pytest.approx(LOAD_W * STEP / 3600, abs=3)
    # 1. Booked whole: no gap, nothing unallocated, all of the interval's energy.
    assert col(short, "gap_s") == 0 and col(short, "unallocated_import") == 0
    cut, after = by_start[2 * STEP], by_start[3 * STEP]
    # 2. The interval that closed during the outage has a gap; its energy comes later,
    #    once, in the gap accounting of the interval open at reconnection.
    assert col(cut, "gap_s") >= 20
    gap_wh = LOAD_W * col(cut, "gap_s") / 3600
    # gap_s counts cycle time, the unallocated Wh the readings' counters: their clocks
    # differ by a reading's age (up to ~2 simulated s on a loaded machine at 10x, 7 Wh).
    assert col(after, "unallocated_import") == pytest.approx(gap_wh, abs=8)
    assert col(short, "from_grid") == pytest.approx(col(short, "meter_import"), abs=3)
    assert col(after, "gap_s") == 0  # its own share of the outage came back in the readings
    # Every Wh of the two intervals once: the dispatch's, the readings', the gap's.
    whole = LOAD_W * 2 * STEP / 3600
    booked = sum(col(iv, "from_grid") + col(iv, "unallocated_import") for iv in (cut, after))
    assert booked == pytest.approx(whole, abs=4), "every Wh, once"
    assert col(cut, "meter_import") + col(after, "meter_import") == pytest.approx(whole, abs=4)
